"""What a solver's end point means: converged, no maximum, a boundary, not unique, stalled.

Two parts. :func:`end_point` runs inside the compiled fit, after the solver: the *ray test*
evaluates the log-density further along the direction the solver travelled
(:math:`u^* + s\\,\\hat d` and :math:`u^* + 2s\\,\\hat d`, :math:`\\hat d = (u^*-u_0)/\\|u^*-u_0\\|`),
together with the start and the log-likelihood at :math:`u^*`. :func:`diagnose` then reads
those numbers on the host and gives each problem a :class:`Status` and a message that says
what happened and what to do: if the log-density does not decrease along the ray there is
no interior maximum (separable classes, a mode on the boundary of the support, a density
that grows without bound); a converged point where the objective is flat along a direction
is one of infinitely many maxima, one where it dips is a saddle (:func:`second_order`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import IdentityTransform

from mlemap._model import Model
from mlemap._second_order import SADDLE, second_order
from mlemap.solvers import Solution, Stop

__all__ = ["Status", "EndPoint", "end_point", "diagnose", "checks_uniqueness"]

Array = jax.Array


class Status(enum.IntEnum):
    """How a fit ended; ``PointEstimate.message`` says it in words, with the numbers."""

    CONVERGED = 0
    MAX_STEPS = 1
    NONFINITE = 2
    NO_MAXIMUM = 3
    BOUNDARY = 4
    UNBOUNDED = 5
    NOT_UNIQUE = 6
    STALLED = 7
    SADDLE = 8


class EndPoint(NamedTuple):
    """What the compiled fit reports (a leading batch axis ``B`` on every field when batched)."""

    position: Array  # (dim,)
    origin: Array  # (dim,) the start u0
    params: dict  # constrained
    log_density: Array  # () the maximized objective, summed over observations
    log_likelihood: Array  # ()
    grad: Array  # (dim,) gradient of F (FISTA: the minimum-norm subgradient)
    grad_norm: Array  # () max |grad F|
    num_steps: Array  # () int
    stop: Array  # () int, a solvers.Stop
    ray: Array  # (3,) log-density at u*, u* + s d, u* + 2 s d
    start: Array  # () log-density at the initial point u0
    direction: Array  # (dim,) unit direction travelled
    n_obs: Array  # () int, length of the pointwise log-likelihood
    hessian: Array  # (dim, dim) of F = -log_density / n at the end point (Newton: the one
    #                 its last step was taken with); (0, 0) when not computed


class Settings(NamedTuple):
    """The stopping settings of a fit, for the messages."""

    tol: float
    rtol: float
    max_steps: int


# --------------------------------------------------------------------------------------------
# Inside the compiled fit
# --------------------------------------------------------------------------------------------

#: A converged fit is checked for a flat direction when it has at most this many coordinates
#: (the Hessian at the end point is computed inside the solver's program: dim**2 numbers per
#: problem, also under a batch of thousands) ...
MAX_UNIQUE_CHECK_DIM = 100
#: ... and when the dense Hessian is cheap: it costs about ``dim`` gradients, each a pass over
#: ``n_obs * dim`` numbers; above this much work it would cost more than a fit.
MAX_UNIQUE_CHECK_WORK = 2e7


def checks_uniqueness(dim: int, n_obs: int) -> bool:
    """Whether a converged fit of this size gets the uniqueness check."""
    return dim <= MAX_UNIQUE_CHECK_DIM and dim * dim * max(n_obs, 1) <= MAX_UNIQUE_CHECK_WORK


def end_point(model: Model, log_density: Callable, pointwise: Callable, u0: Array,
              solution: Solution, data: Any, priors: dict, n_obs: int, *,
              fresh_hessian: bool = False) -> EndPoint:
    """The end point's report, traced inside the fit's program.

    The Hessian is the solver's own (Newton's last step's) when it has one, else none;
    computed at the end point where it is cheap (``checks_uniqueness``) and the solver has
    none, or ``fresh_hessian`` asks for it.

    The three ray points and the start ``u0`` are one batch (``vmap``), and the
    log-likelihood at ``x`` is taken with them: for a GLM the four linear predictors become
    one matrix-matrix product, a single pass over ``X`` instead of five.
    """
    x = solution.position
    d = x - u0
    dist = jnp.sqrt(jnp.sum(d * d))
    direction = jnp.where(dist > 0, d / jnp.where(dist > 0, dist, 1.0), 0.0)
    s = jnp.maximum(dist, 1.0)
    steps = jnp.arange(3, dtype=x.dtype)[:, None] * s  # (3, 1): x, x + s d, x + 2 s d
    points = jnp.concatenate([x[None, :] + steps * direction[None, :], u0[None, :]])
    values, log_likelihoods = jax.vmap(
        lambda u: (log_density(u, data, priors), jnp.sum(pointwise(u, data))))(points)
    n = max(n_obs, 1)
    hessian = solution.hessian  # the solver's own, when it has one (Newton, the polish)
    if checks_uniqueness(model.dim, n) and (hessian is None or fresh_hessian):
        hessian = jax.hessian(lambda u: -log_density(u, data, priors) / n)(x)
    if hessian is None:
        hessian = jnp.zeros((0, 0), x.dtype)
    return EndPoint(
        position=x, origin=u0, params=model.constrain(x), log_density=values[0],
        log_likelihood=log_likelihoods[0], grad=solution.grad, grad_norm=solution.grad_norm,
        num_steps=solution.num_steps, stop=solution.stop, ray=values[:3], start=values[3],
        direction=direction, n_obs=jnp.asarray(n_obs, jnp.int32), hessian=hessian,
    )


# --------------------------------------------------------------------------------------------
# On the host
# --------------------------------------------------------------------------------------------


class Diagnosis(NamedTuple):
    """Per problem of a batch ``(B,)``: the status, the message, and the constrained values
    of the problems whose maximum lies on the boundary (``{index: params}``)."""

    results: np.ndarray  # (B,) object, Status
    messages: np.ndarray  # (B,) object, str
    on_boundary: dict[int, dict]


#: Stops after which the solver can go no further (as opposed to the step limit): there the
#: ray test may say that there is no maximum.
_FINAL_STOPS = (Stop.GRADIENT, Stop.SMALL_CHANGE, Stop.NO_STEP, Stop.NONFINITE)


def diagnose(model: Model, end: EndPoint, settings: Settings, *, check_unique: bool,
             probe: Callable[[np.ndarray], np.ndarray]) -> Diagnosis:
    """Status and message of each problem of a batch (every field of ``end`` has a leading
    axis ``B``, numpy).

    ``CONVERGED`` means the first-order condition holds at the returned point: the gradient
    test passed there, :math:`\\|\\nabla F\\|_\\infty \\le` ``tol`` (``Stop.GRADIENT``), or,
    where the end point's Hessian :math:`H` is known and the solver could go no further, the
    same test in the units of the curvature, :math:`\\max_j |\\partial_j F|/\\sqrt{|H_{jj}|}`,
    or in :math:`H`'s metric, the Newton decrement (:func:`_scaled_first_order`: with raw
    columns in the thousands, the plain gradient's entries cannot get below ``tol`` in
    floating point, while the point is a maximum to the last digit); the log-density does
    not keep increasing along the direction travelled; and, where the Hessian is at hand
    (``check_unique``), the point is neither a saddle nor one of a ridge of maxima
    (:func:`mlemap._second_order.second_order`). ``probe(points (B, k, dim)) -> (B, k)``
    evaluates the objective :math:`F` for those checks and for the long ray of a solver
    stopped by the step limit (:func:`_long_ray`).
    """
    improving, below_start, noise = _end_point_flags(end)
    plain = (end.stop == Stop.GRADIENT) & ~improving
    size = end.stop.shape[0]
    results = np.empty(size, dtype=object)
    results[:] = [Status.CONVERGED] * size
    messages = np.empty(size, dtype=object)
    messages[plain] = _converged_messages(end.num_steps[plain].tolist(),
                                          end.grad_norm[plain].tolist(), settings)
    # The step limit stops a solver anywhere, on its way up too: only a long ray says whether
    # the log-density rises without end along the way it went.
    runaway, grows = _long_ray(end, ~plain & improving & (end.stop == Stop.MAX_STEPS), probe)
    on_boundary = {}
    for i in np.flatnonzero(~plain):
        one = jax.tree.map(lambda a: a[i], end)  # noqa: B023
        results[i], messages[i], boundary = _classify(
            model, one, settings, improving[i], below_start[i], noise[i],
            runaway=bool(runaway[i]), long_ray_grows=bool(grows[i]))
        if results[i] == Status.BOUNDARY:
            on_boundary[i] = _snap_to_boundary(model, one.position, one.direction, boundary)
    # A flat ridge of maxima also reads as "no maximum" when the solver moved along it: the
    # second-order check tells them apart (a ridge is flat both ways, a supremum is not).
    converged, ridge = results == Status.CONVERGED, results == Status.NO_MAXIMUM
    if check_unique and (converged | ridge).any():
        for i, (kind, message) in second_order(model, end, probe).items():
            status = Status.SADDLE if kind == SADDLE else Status.NOT_UNIQUE
            if converged[i] or (ridge[i] and status == Status.NOT_UNIQUE):
                results[i], messages[i] = status, message
    return Diagnosis(results, messages, on_boundary)


def _end_point_flags(end: EndPoint):
    """The ray test of each end point of a batch.

    Returns
    -------
    improving : (B,) bool
        The log-density does not decrease along the direction travelled (up to round-off
        noise): the solver was running off to infinity or to a boundary.
    below_start : (B,) bool
        The log-density at the end is below the start's.
    noise : (B,)
    """
    f0, f1, f2 = end.ray[:, 0], end.ray[:, 1], end.ray[:, 2]
    start = np.broadcast_to(end.start, f0.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        noise = np.where(np.isfinite(f0), 1e-12 * (1.0 + np.abs(f0)), 0.0)
        moved = np.any(end.direction != 0, axis=-1)

        def up(a, b):  # b is not lower than a (NaN: unknown, treated as not higher)
            return (b == np.inf) | (np.isfinite(a) & np.isfinite(b) & (b >= a - noise))

        improving = moved & up(f0, f1) & up(f1, f2)
        below_start = np.isfinite(start) & ~(f0 >= start - noise)
    return improving, below_start, noise


#: The long ray: the log-density at u* + 2^k s d, k < _RAY_DOUBLINGS (to 1024 s).
_RAY_DOUBLINGS = 11


def _long_ray(end: EndPoint, mask: np.ndarray, probe) -> tuple[np.ndarray, np.ndarray]:
    """``(runaway, grows)`` ``(B,)``, for the problems of ``mask``: the log-density at
    :math:`u^* + 2^k s\\,\\hat d` (``s`` the ray test's step) never decreases for k up to 10
    (1024 steps), and its last rise is at least half the one before (it grows without bound,
    rather than towards a finite supremum). With a proper prior it turns down within a few
    doublings, however far the solver was from the maximum when it was stopped."""
    runaway = grows = np.zeros(mask.shape, bool)
    if not mask.any():
        return runaway, grows
    x, d = end.position, end.direction
    s = np.maximum(np.linalg.norm(x - end.origin, axis=-1), 1.0)
    steps = s[:, None] * 2.0 ** np.arange(_RAY_DOUBLINGS)  # (B, K)
    points = x[:, None, :] + steps[:, :, None] * d[:, None, :]
    points = np.where(mask[:, None, None] & np.isfinite(points), points, x[:, None, :])
    with np.errstate(invalid="ignore", over="ignore"):
        values = -probe(points)  # (B, K) log-density per observation
        start = (end.log_density / np.maximum(end.n_obs, 1))[:, None]
        path = np.concatenate([start, values], axis=1)
        noise = 1e-12 * (1.0 + np.abs(path[:, :1]))
        rises = np.diff(path, axis=1)
        runaway = mask & np.all((rises >= -noise) | (path[:, 1:] == np.inf), axis=1) & (
            path[:, -1] > path[:, 0] + noise[:, 0])
        grows = runaway & ((path[:, -1] == np.inf) | (rises[:, -1] >= 0.5 * rises[:, -2]))
    return runaway, grows


def _converged_messages(steps, grad_norms, settings: Settings) -> list[str]:
    """The message of each converged problem; one format string, so that a batch of
    thousands costs a millisecond."""
    template = (f"converged after %d steps: gradient norm below tol (grad_norm=%.3g, "
                f"tol={settings.tol:g}).")
    return [template % (k, g) for k, g in zip(steps, grad_norms)]


def _moving_params(model: Model, direction: np.ndarray) -> list[str]:
    """The parameters whose coordinates carry the direction travelled (>= 10% of its
    largest entry), in the model's order."""
    if not np.any(direction != 0):
        return []
    big = np.abs(direction) >= 0.1 * np.max(np.abs(direction))
    owners = model.coordinate_params()
    moving = {owners[i] for i in np.flatnonzero(big)}
    return [name for name in model.params if name in moving]


def _classify(model: Model, end: EndPoint, settings: Settings, improving, below_start, noise,
              *, runaway=False, long_ray_grows=False):
    """``(Status, message, parameters on the boundary)`` of one problem (numpy fields) that
    did not plainly converge; ``runaway``: the long ray confirmed that the log-density rises
    without end (``long_ray_grows``: without bound) where the step limit stopped it."""
    stop, step, grad_norm = int(end.stop), int(end.num_steps), float(end.grad_norm)
    diverging = _moving_params(model, end.direction)
    boundary = [n for n in diverging
                if not isinstance(model.params[n].transform, IdentityTransform)]
    hints = _hints(model, diverging)
    if improving and (stop in _FINAL_STOPS or runaway):
        f0, f1, f2 = (float(v) for v in end.ray)
        grows = f1 == np.inf or f2 == np.inf or (f1 - f0 > noise and f2 - f1 >= 0.5 * (f1 - f0))
        grows = long_ray_grows if runaway else grows
        if grows:
            return Status.UNBOUNDED, _unbounded_message(boundary, diverging, hints), boundary
        if boundary:
            return Status.BOUNDARY, _boundary_message(boundary, hints), boundary
        return Status.NO_MAXIMUM, _no_maximum_message(diverging, hints), []
    if stop == Stop.MAX_STEPS:
        return Status.MAX_STEPS, _max_steps_message(step, grad_norm, settings), []
    certificate = _scaled_first_order(end, settings.tol)
    if stop != Stop.NONFINITE and not improving and certificate:
        return Status.CONVERGED, (
            f"converged after {step} steps: gradient below tol {certificate}; unscaled, its "
            f"largest entry is {grad_norm:.3g}, in the units of the parameters."), []
    if stop == Stop.NONFINITE:
        return Status.NONFINITE, (
            f"stopped after {step} steps: the next point of the solver had a non-finite "
            f"log-density or gradient (NaN or infinite); the point returned is the last finite "
            f"one (grad_norm={grad_norm:.3g} > tol={settings.tol:g}). Check the model for "
            "overflow (e.g. exp of a large linear predictor) or a mean that leaves the "
            "likelihood's support, standardize the inputs, or give an init closer to the mode."
        ), []
    return Status.STALLED, _stalled_message(end, settings, below_start), []


def _hints(model: Model, names) -> str:
    """The model's own words on what a runaway of these parameters means."""
    said = [model.runaway_hints[n] for n in names if n in model.runaway_hints]
    return " ".join(dict.fromkeys(said))


def _unbounded_message(boundary, diverging, hints) -> str:
    where = (f" as {', '.join(boundary)} approach(es) the boundary of the support"
             if boundary else f" as {', '.join(diverging)} diverge(s)")
    return (
        "no maximum: the log-density grows without bound" + where + ". The point returned is "
        "not an estimate. " + (hints + " " if hints else "") + "Fix: use a prior that vanishes "
        "at the boundary (e.g. Gamma(2, ...) or LogNormal for a scale), a non-centered "
        "parameterization (a hierarchical scale going to 0 with jacobian=False, as in the "
        "centered eight-schools model), or sample the posterior with mm.sample."
    )


def _boundary_message(boundary, hints) -> str:
    return (
        f"the maximum lies on the boundary of the support of {', '.join(boundary)}: the "
        "unconstrained coordinate runs off to infinity while the log-density approaches its "
        "supremum; params hold the boundary value. This is a valid MAP/MLE on the boundary "
        "but not an interior mode (no Laplace approximation). " + (hints + " " if hints else "")
        + "Use jacobian=True for the mode in unconstrained space, or a prior that vanishes at "
        "the boundary."
    )


def _no_maximum_message(diverging, hints) -> str:
    return (
        f"no maximum: the log-density keeps increasing towards a finite supremum as "
        f"{', '.join(diverging)} grow(s) without bound. The point returned is not an "
        "estimate. " + (hints or "Fix: give these parameters a proper prior (method='map' "
                        "with e.g. prior=Normal(0, s)), under which the MAP exists, or fix "
                        "them.")
    )


def _max_steps_message(step, grad_norm, settings) -> str:
    return (f"did not converge in {step} steps (max_steps={settings.max_steps}; "
            f"grad_norm={grad_norm:.3g} > tol={settings.tol:g}). Increase max_steps, loosen "
            "tol, or give a better init.")


def _stalled_message(end: EndPoint, settings: Settings, below_start) -> str:
    """Why a solver that could go no further stopped short of the gradient test."""
    step, grad_norm, f0 = int(end.num_steps), float(end.grad_norm), float(end.ray[0])
    head = f"stalled after {step} steps with the gradient at {grad_norm:.3g} > tol={settings.tol:g}"
    decrease = 0.5 * _newton_decrement(end) ** 2
    value = abs(f0) / max(int(end.n_obs), 1)  # |F|
    rounding = 100 * float(np.finfo(end.position.dtype).eps) * value
    if decrease <= rounding:
        # Newton's step would lower F by less than its rounding: a maximum to working
        # precision, where the gradient test cannot be met.
        return (
            f"{head}: the point is a maximum to working precision (a Newton step would raise "
            f"the log-density by {decrease * int(end.n_obs):.2g}, below its rounding), but the "
            "gradient test cannot be met at this precision. The problem is badly scaled: "
            f"rescale the parameters (standardize the inputs), or loosen tol to about "
            f"{2 * grad_norm:.1g}."
        )
    if int(end.stop) == Stop.NO_STEP:
        return (
            f"{head}: the line search found no point along the step with a finite and higher "
            "log-density, so the iterate could not move. Usually the point is at the edge of "
            "where the log-density is finite (e.g. a Gamma or Poisson mean that the next step "
            "would make negative, under an identity or inverse link: give an init inside, or "
            "use a log link), or the log-density is not differentiable there (an absolute-error "
            "likelihood at a kink). This is not a converged maximum."
        )
    if below_start:
        return (
            f"{head}: the objective stopped changing at a log-density ({f0:.4g}) below the "
            f"start's ({float(end.start):.4g}). This is not a maximum: the log-density may grow "
            "without bound along a curved path (e.g. a hierarchical scale going to 0, as in "
            "the centered eight-schools model), or the problem is badly scaled. Standardize the "
            "inputs, use a prior that vanishes at the boundary or a non-centered "
            "parameterization, or sample the posterior with mm.sample."
        )
    return (
        f"{head}: the objective stopped changing (relative change below "
        f"rtol={settings.rtol:g}). This is not a converged maximum: the problem may be badly "
        "scaled (standardize the inputs), or the log-density not differentiable there (an "
        "absolute-error likelihood at a kink). Give a better init, or loosen tol."
    )


def _scaled_first_order(end: EndPoint, tol: float) -> str:
    """Where the end point's Hessian :math:`H` is known: ``"in the units of the curvature
    (...)"`` when :math:`\\max_j |\\partial_j F| / \\sqrt{|H_{jj}|} \\le` ``tol``, ``"in the
    Hessian's metric (...)"`` when the Newton decrement is; else ``""``. Both are the
    first-order condition, invariant to the units of the parameters (the first to each
    one's own, the second to any linear change of them)."""
    if end.hessian.size == 0 or not np.all(np.isfinite(end.hessian)):
        return ""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        diagonal = np.abs(np.diag(end.hessian))
        diagonal = np.maximum(diagonal, np.finfo(diagonal.dtype).eps * np.max(diagonal))
        scaled = float(np.max(np.abs(end.grad) / np.sqrt(diagonal), initial=0.0))
    if scaled <= tol:
        return f"in the units of the curvature (max |g_j| / sqrt(H_jj) = {scaled:.3g}, tol={tol:g})"
    decrement = _newton_decrement(end)
    if decrement <= tol:
        return f"in the Hessian's metric (Newton decrement {decrement:.3g}, tol={tol:g})"
    return ""


def _newton_decrement(end: EndPoint) -> float:
    """:math:`\\sqrt{g^\\top H^{-1} g}` at the end point (half its square is the decrease of F
    that a Newton step predicts), where its Hessian is known and positive definite; else
    ``inf``. Scaled to unit diagonal before the factorization, as in ``laplace``."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _decrement(end.hessian, end.grad)


def _decrement(hessian, grad) -> float:
    if hessian.size == 0 or not np.all(np.isfinite(hessian)) or not np.all(np.isfinite(grad)):
        return np.inf
    diagonal = np.diag(hessian)
    if not np.all(diagonal > 0):
        return np.inf
    d = 1.0 / np.sqrt(diagonal)
    try:
        factor = np.linalg.cholesky(0.5 * (hessian + hessian.T) * d[:, None] * d[None, :])
    except np.linalg.LinAlgError:
        return np.inf
    half = np.linalg.solve(factor, grad * d)
    return float(np.sqrt(half @ half))


def _snap_to_boundary(model: Model, position, direction, names) -> dict:
    """Constrained values with the diverging coordinates of ``names`` at their limit."""
    owners = np.array(model.coordinate_params())
    big = np.abs(direction) >= 0.1 * np.max(np.abs(direction))
    snap = np.isin(owners, names) & big
    limit = np.where(snap, np.sign(direction) * np.inf, np.asarray(position))
    params = model.constrain(jnp.asarray(limit))
    if all(bool(jnp.all(jnp.isfinite(v))) for v in params.values()):
        return params
    return model.constrain(jnp.asarray(position))
