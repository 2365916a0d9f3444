"""What a solver's end point means: converged, no maximum, a boundary, not unique, stalled.

Two parts. :func:`end_point` runs inside the compiled fit, after the solver: the *ray test*
evaluates the log-density further along the direction the solver travelled
(:math:`u^* + s\\,\\hat d` and :math:`u^* + 2s\\,\\hat d`, :math:`\\hat d = (u^*-u_0)/\\|u^*-u_0\\|`),
together with the start and the log-likelihood at :math:`u^*`. :func:`diagnose` then reads
those numbers on the host and gives each problem a :class:`Status` and a message that says
what happened and what to do: if the log-density does not decrease along the ray there is
no interior maximum (separable classes, a mode on the boundary of the support, a density
that grows without bound); a converged point where the objective is flat along a direction
is one of infinitely many maxima (:func:`flat_directions`).
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


class EndPoint(NamedTuple):
    """What the compiled fit reports (a leading batch axis ``B`` on every field when batched)."""

    position: Array  # (dim,)
    params: dict  # constrained
    log_density: Array  # () the maximized objective, summed over observations
    log_likelihood: Array  # ()
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
              solution: Solution, data: Any, priors: dict, n_obs: int) -> EndPoint:
    """The end point's report, traced inside the fit's program.

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
    hessian = jnp.zeros((0, 0), x.dtype)
    if checks_uniqueness(model.dim, n):
        hessian = solution.hessian
        if hessian is None:
            hessian = jax.hessian(lambda u: -log_density(u, data, priors) / n)(x)
    return EndPoint(
        position=x, params=model.constrain(x), log_density=values[0],
        log_likelihood=log_likelihoods[0], grad_norm=solution.grad_norm,
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


def diagnose(model: Model, end: EndPoint, settings: Settings, *, check_unique: bool,
             probe: Callable[[np.ndarray], np.ndarray]) -> Diagnosis:
    """Status and message of each problem of a batch (every field of ``end`` has a leading
    axis ``B``, numpy).

    ``probe(points (B, k, dim)) -> (B, k)`` evaluates the objective :math:`F` for the
    uniqueness check (:func:`flat_directions`), which runs when ``check_unique``.
    """
    flags = _end_point_flags(end, settings.tol)
    improving, stalled = flags[0], flags[1]
    plain = np.isin(end.stop, (Stop.GRADIENT, Stop.SMALL_CHANGE)) & ~improving & ~stalled
    size = end.stop.shape[0]
    results = np.full(size, Status.CONVERGED, dtype=object)
    messages = np.empty(size, dtype=object)
    messages[plain] = _converged_messages(
        end.stop[plain].tolist(), end.num_steps[plain].tolist(), end.grad_norm[plain].tolist(),
        settings)
    on_boundary = {}
    for i in np.flatnonzero(~plain):
        one = jax.tree.map(lambda a: a[i], end)  # noqa: B023
        results[i], messages[i], boundary = _classify(model, one, settings,
                                                      *(flag[i] for flag in flags))
        if results[i] == Status.BOUNDARY:
            on_boundary[i] = _snap_to_boundary(model, one.position, one.direction, boundary)
    converged = results == Status.CONVERGED
    if check_unique and converged.any():
        flat = flat_directions(model, end, probe)
        for i, message in flat.items():
            if converged[i]:
                results[i], messages[i] = Status.NOT_UNIQUE, message
    return Diagnosis(results, messages, on_boundary)


def _end_point_flags(end: EndPoint, tol: float):
    """The two tests of an end point, over a batch.

    Returns
    -------
    improving : (B,) bool
        The log-density does not decrease along the direction travelled (up to round-off
        noise): the optimizer was running off to infinity or to a boundary.
    stalled : (B,) bool
        A stop on the relative change, far from stationary, below the start's log-density.
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
        stalled = ((end.stop == Stop.SMALL_CHANGE) & (end.grad_norm > tol) & np.isfinite(start)
                   & ~(f0 >= start - noise))
    return improving, stalled, noise


def _converged_messages(stops, steps, grad_norms, settings: Settings) -> list[str]:
    """The message of each converged problem; one format string per stop reason, so that a
    batch of thousands costs a millisecond."""
    tol, rtol = settings.tol, settings.rtol
    templates = {
        Stop.GRADIENT: (f"converged after %d steps: gradient norm below tol (grad_norm=%.3g, "
                        f"tol={tol:g})."),
        Stop.SMALL_CHANGE: (f"converged after %d steps: relative change of the objective below "
                            f"rtol={rtol:g} (grad_norm=%.3g, tol={tol:g})."),
    }
    return [templates[c] % (k, g) for c, k, g in zip(stops, steps, grad_norms)]


def _moving_params(model: Model, direction: np.ndarray) -> list[str]:
    """The parameters whose coordinates carry the direction travelled (>= 10% of its
    largest entry), in the model's order."""
    if not np.any(direction != 0):
        return []
    big = np.abs(direction) >= 0.1 * np.max(np.abs(direction))
    owners = model.coordinate_params()
    moving = {owners[i] for i in np.flatnonzero(big)}
    return [name for name in model.params if name in moving]


def _classify(model: Model, end: EndPoint, settings: Settings, improving, stalled, noise):
    """``(Status, message, parameters on the boundary)`` of one problem (numpy fields)."""
    f0, f1, f2 = (float(v) for v in end.ray)
    diverging = _moving_params(model, end.direction)
    boundary = [n for n in diverging
                if not isinstance(model.params[n].transform, IdentityTransform)]
    if improving:
        g1, g2 = f1 - f0, f2 - f1
        grows = f1 == np.inf or f2 == np.inf or (g1 > noise and g2 >= 0.5 * g1)
        if grows:
            return Status.UNBOUNDED, _unbounded_message(boundary, diverging), boundary
        if boundary:
            return Status.BOUNDARY, _boundary_message(boundary), boundary
        return Status.NO_MAXIMUM, _no_maximum_message(diverging), []
    grad_norm, step = float(end.grad_norm), int(end.num_steps)
    if stalled:
        return Status.STALLED, _stalled_message(step, grad_norm, f0, float(end.start),
                                                settings), []
    stop = int(end.stop)
    if stop in (Stop.GRADIENT, Stop.SMALL_CHANGE):
        return Status.CONVERGED, _converged_messages([stop], [step], [grad_norm], settings)[0], []
    if stop == Stop.MAX_STEPS:
        return Status.MAX_STEPS, (
            f"did not converge in max_steps={settings.max_steps} (grad_norm={grad_norm:.3g} > "
            f"tol={settings.tol:g}). Increase max_steps, loosen tol, or give a better init."
        ), []
    return Status.NONFINITE, (
        f"stopped after {step} steps: the log-density or its gradient became NaN or infinite. "
        "Check the model for overflow (e.g. exp of a large linear predictor), standardize the "
        "inputs, or give an init closer to the mode."
    ), []


def _unbounded_message(boundary, diverging) -> str:
    where = (f" as {', '.join(boundary)} approach(es) the boundary of the support"
             if boundary else f" as {', '.join(diverging)} diverge(s)")
    return (
        "no maximum: the log-density grows without bound" + where + " (e.g. a hierarchical "
        "scale going to 0 with jacobian=False, as in the centered eight-schools model). The "
        "point returned is not an estimate. Fix: use a prior that vanishes at the boundary "
        "(e.g. Gamma(2, ...) or LogNormal for a scale), a non-centered parameterization, or "
        "sample the posterior with mm.sample."
    )


def _boundary_message(boundary) -> str:
    return (
        f"the maximum lies on the boundary of the support of {', '.join(boundary)}: the "
        "unconstrained coordinate runs off to infinity while the log-density approaches its "
        "supremum; params hold the boundary value. This is a valid MAP/MLE on the boundary "
        "but not an interior mode (no Laplace approximation). Use jacobian=True for the mode "
        "in unconstrained space, or a prior that vanishes at the boundary."
    )


def _no_maximum_message(diverging) -> str:
    return (
        f"no maximum: the log-density keeps increasing towards a finite supremum as "
        f"{', '.join(diverging)} grow(s) without bound. With a Bernoulli or categorical "
        "likelihood this means the classes are (quasi-)separable and the MLE does not exist. "
        "Fix: add a proper prior (method='map' with e.g. prior=Normal(0, s) on the "
        "coefficients, mm.priors.from_logistic(C)); the MAP exists."
    )


def _stalled_message(step, grad_norm, f0, start, settings: Settings) -> str:
    # The objective stopped changing, far from stationary, at a point *worse* than the
    # start: a stall, e.g. on a curved ridge towards a density that grows without bound
    # (the line search's steps overflow). A stop at a kink (an absolute-error likelihood)
    # also has a large gradient, but is better than its start.
    return (
        f"stalled after {step} steps: the objective stopped changing (relative change below "
        f"rtol={settings.rtol:g}) with the gradient still at {grad_norm:.3g} > "
        f"tol={settings.tol:g}, at a log-density ({f0:.4g}) below the start's ({start:.4g}). "
        "This is not a maximum: the log-density may grow without bound along a curved path "
        "(e.g. a hierarchical scale going to 0, as in the centered eight-schools model), or "
        "the problem is badly scaled. Standardize the inputs, use a prior that vanishes at "
        "the boundary or a non-centered parameterization, or sample the posterior with "
        "mm.sample."
    )


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


# --------------------------------------------------------------------------------------------
# Uniqueness of a converged maximum: is the objective flat along some direction?
# --------------------------------------------------------------------------------------------


def flat_directions(model: Model, end: EndPoint, probe) -> dict[int, str]:
    """``{batch index: message}`` for the end points where the objective is flat along a
    direction (empty for most batches).

    Criterion, in two steps. (1) A candidate: the Hessian :math:`H` of the per-observation
    objective :math:`F` at the end point (for the Newton solver, the Hessian of its last step,
    where that step began: a flat direction is flat there too) has
    :math:`\\lambda_{\\min} \\le \\sqrt{\\epsilon}\\, \\max|\\lambda|` (numerically
    rank-deficient; :math:`\\epsilon` the float's machine epsilon). (2) Confirmed by
    evaluating :math:`F` a long way along the eigenvector :math:`v` of
    :math:`\\lambda_{\\min}`: at :math:`x \\pm s v` with :math:`s = \\max(1, \\|x\\|)`,
    :math:`F` changes by no more than its rounding noise, :math:`10^3 \\epsilon \\max(|F(x)|,
    1)`. Step (2) tells an exactly flat ridge (collinear columns, a parameter the likelihood
    ignores: :math:`F` is constant along :math:`v` however far one goes) from a merely
    ill-conditioned but unique maximum, where :math:`F` rises by
    :math:`\\tfrac12\\lambda_{\\min} s^2` above the noise; the Hessian's own rounding never
    decides alone.
    """
    x, hessian = end.position, end.hessian
    value = -end.log_density / np.maximum(end.n_obs, 1)
    eps = float(np.finfo(x.dtype).eps)
    finite = np.all(np.isfinite(hessian), axis=(-1, -2))
    # The screen reads the lower triangle only, so the Hessians (symmetric to round-off) are
    # symmetrized only for the eigen-decompositions that follow when it fails.
    if np.all(finite) and _clearly_nonsingular(hessian, np.sqrt(eps)):
        return {}
    hessian = 0.5 * (hessian + np.swapaxes(hessian, -1, -2))
    eig, vec = np.linalg.eigh(np.where(finite[:, None, None], hessian, 0.0))
    scale = np.max(np.abs(eig), axis=-1)
    candidate = finite & (eig[:, 0] <= np.sqrt(eps) * scale)
    if not candidate.any():
        return {}
    v = vec[:, :, 0]  # (B, dim), the eigenvector of the smallest eigenvalue
    s = np.maximum(1.0, np.linalg.norm(x, axis=-1))[:, None]
    points = np.stack([x + s * v, x - s * v], axis=1)  # (B, 2, dim)
    probed = probe(np.where(candidate[:, None, None], points, x[:, None, :]))
    noise = 1e3 * eps * np.maximum(np.abs(value), 1.0)
    change = np.max(np.abs(probed - value[:, None]), axis=-1)
    flat = candidate & np.all(np.isfinite(probed), axis=-1) & (change <= noise)
    labels = model.unconstrained_names()
    return {i: _not_unique_message(labels, v[i], eig[i, 0], scale[i], change[i], float(s[i, 0]))
            for i in np.flatnonzero(flat)}


def _not_unique_message(labels, v, smallest, largest, change, step) -> str:
    big = np.flatnonzero(np.abs(v) >= 0.1 * np.max(np.abs(v)))
    combination = " ".join(f"{v[j]:+.3g}*{labels[j]}" for j in big[:6])
    return (
        f"the maximum is not unique: the objective is flat along the direction "
        f"{combination}{' ...' if len(big) > 6 else ''} (the Hessian's smallest eigenvalue is "
        f"{smallest:.2g} against a largest of {largest:.2g}, and the log-density changes by "
        f"{change:.2g} per observation over a step of {step:.3g} along it). The data cannot "
        f"tell {', '.join(labels[j] for j in big[:6])} apart: collinear design columns (e.g. "
        "one dummy per level plus an intercept, or a column that is a sum of others) or a "
        "parameter the likelihood does not use. The point returned is one of infinitely many "
        "maxima. Fix: drop the redundant column(s), or give these parameters a proper prior "
        "(method='map' with e.g. prior=Normal(0, s)), which makes the MAP unique."
    )


def _clearly_nonsingular(hessian, ratio) -> bool:
    """True when every Hessian of the batch ``(B, dim, dim)`` has
    :math:`\\lambda_{\\min} > \\text{ratio} \\cdot \\max|\\lambda|`: a Cholesky factorization of
    :math:`H - \\tau I` with :math:`\\tau = \\text{ratio}\\,\\|H\\|_F \\ge \\text{ratio} \\max|\\lambda|`
    exists. One batched Cholesky costs a fraction of the eigen-decompositions, which are then
    needed only when it fails.
    """
    tau = ratio * np.linalg.norm(hessian, axis=(-1, -2))
    shifted = np.array(hessian)  # H - tau I, through a view of the diagonals
    dim = shifted.shape[-1]
    shifted.reshape(len(shifted), dim * dim)[:, :: dim + 1] -= tau[:, None]
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        return False
    return True
