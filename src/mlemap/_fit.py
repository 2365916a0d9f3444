"""fit(): MLE and MAP with optax in one jitted loop; convergence report; batched fits.

The objective minimized is the negative log-density per observation over the flat
unconstrained vector :math:`u` of shape ``(dim,)``:

.. math::

    F(u) = -\\frac{1}{n}\\,\\ell(u), \\qquad
    \\ell(u) = \\sum_{i=1}^{n} \\log p(y_i \\mid T(u))
              \\;[+ \\log p(T(u))]\\;[+ \\log|\\det J_T(u)|]

(the prior term for ``method="map"``, the Jacobian term for ``jacobian=True``; see
:func:`mlemap._model.log_density_fn`). Dividing by :math:`n` makes the gradient tolerance
``tol`` mean the same as scikit-learn's ``tol`` for its L-BFGS solvers: the largest absolute
entry of the gradient of the *mean* loss plus penalty.

Two solvers, both a ``jax.lax.while_loop`` inside one compiled function:

- smooth objectives: ``optax.lbfgs`` with its zoom line search (or any optax
  ``GradientTransformation`` given as ``optimizer``), stopping when
  :math:`\\|\\nabla F\\|_\\infty \\le` ``tol`` or the relative change of :math:`F` is below
  ``rtol``;
- a Laplace prior on a real parameter (the lasso): FISTA with backtracking and adaptive
  restart, whose proximal step (soft-thresholding) sets coefficients to exactly zero, stopping
  when the smallest subgradient of :math:`F` has :math:`\\|\\cdot\\|_\\infty \\le` ``tol``.
  optax has no proximal solver for a per-coordinate L1 weight taken from a (batched) prior,
  hence the hand-written loop.

After the loop, a *ray test* checks that the point is an interior maximum: the log-density is
evaluated further along the direction the optimizer travelled (:math:`u^* + s\\,\\hat d`,
:math:`\\hat d = (u^*-u_0)/\\|u^*-u_0\\|`). If it does not decrease there, there is no interior
maximum, and the status says which case it is (separable classes, a mode on the boundary of
the support, a density that grows without bound) and what to do.
"""

from __future__ import annotations

import enum
import math
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions import Distribution, Laplace
from numpyro.distributions.transforms import IdentityTransform

from mlemap._model import (Model, _data_signature, check_log_likelihood, check_param_names,
                           log_density_fn, pointwise_log_likelihood_fn)
from mlemap._newton import GRAD, MAX, NONFINITE, REL, RUNNING, newton
from mlemap._newton import MAX_DIM as NEWTON_MAX_DIM
from mlemap._shard import count_nonfinite, spans_processes

__all__ = ["fit", "PointEstimate", "Status", "FitError", "FitWarning"]

Array = jax.Array


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class FitError(RuntimeError):
    """Raised by ``fit(..., throw=True)`` when no (interior) maximum was found."""


class FitWarning(UserWarning):
    """Warned by ``fit`` when no (interior) maximum was found and ``throw=False``."""


class Status(enum.IntEnum):
    """How a fit ended; ``PointEstimate.status`` is the readable message of one of these."""

    CONVERGED = 0
    MAX_STEPS = 1
    NONFINITE = 2
    NO_MAXIMUM = 3
    BOUNDARY = 4
    UNBOUNDED = 5
    NOT_UNIQUE = 6
    STALLED = 7


# Raw exit codes of the compiled loop (before the ray test classifies them).
_RUNNING, _GRAD, _REL, _MAX, _NONFINITE = RUNNING, GRAD, REL, MAX, NONFINITE


class PointEstimate(NamedTuple):
    """An MLE or MAP point and how the optimizer got there.

    With a batched fit (``batch=``), every array field has a leading batch axis ``(B, ...)``
    and ``status``/``result`` are tuples of length ``B``.

    Attributes
    ----------
    params : dict[str, Array]
        The estimate, constrained, each of its parameter's shape. At a mode on the boundary
        of the support, the parameters that reach it hold the boundary value (e.g. ``0.0``).
    log_density : float
        The maximized objective :math:`\\ell(u^*)` (log-likelihood, + log-prior for ``"map"``,
        + log-Jacobian for ``jacobian=True``), summed over observations.
    log_likelihood : float
        :math:`\\sum_i \\log p(y_i \\mid \\hat\\theta)`.
    grad_norm : float
        :math:`\\|\\nabla F(u^*)\\|_\\infty` of the per-observation objective
        :math:`F = -\\ell/n` in unconstrained space (for the lasso: the smallest subgradient).
    num_steps : int
        Optimizer iterations (each one a line search or a backtracking proximal step).
    converged : bool
        ``True`` only for ``Status.CONVERGED`` (not for ``Status.NOT_UNIQUE``, a maximum
        that is one of infinitely many).
    method : str
        ``"map"`` or ``"mle"``.
    jacobian : bool
        Whether the log-Jacobian of the constraining transform was included.
    status : str
        A readable message: what happened, and what to do when it is a failure.
    result : Status
        The enumeration member behind ``status``.
    position : Array
        The estimate as the flat unconstrained vector ``(dim,)``.
    n_obs : int
        Number of observations (the length of the pointwise log-likelihood).
    solver : str
        ``"lbfgs"``, ``"proximal"`` (FISTA, for Laplace priors) or ``"optax"`` (given).
    """

    params: dict[str, Array]
    log_density: Any
    log_likelihood: Any
    grad_norm: Any
    num_steps: Any
    converged: Any
    method: str
    jacobian: bool
    status: Any
    result: Any
    position: Array
    n_obs: int
    solver: str


# --------------------------------------------------------------------------------------------
# The compiled core
# --------------------------------------------------------------------------------------------


class _Out(NamedTuple):
    position: Array  # (dim,)
    params: dict  # constrained
    log_density: Array  # ()
    log_likelihood: Array  # ()
    grad_norm: Array  # ()
    num_steps: Array  # () int
    code: Array  # () int, raw exit code
    ray: Array  # (3,) log-density at u*, u* + s d, u* + 2 s d
    start: Array  # () log-density at the initial point u0
    direction: Array  # (dim,) unit direction travelled
    n_obs: Array  # () int, length of the pointwise log-likelihood
    hessian: Array  # (dim, dim) of F = -log_density / n at the end point (Newton: the one its
    #                 last step was taken with); (0, 0) when not computed (_checks_uniqueness)


class _LoopState(NamedTuple):
    position: Array  # (dim,)
    opt_state: Any
    value: Array  # () F at position
    grad: Array  # (dim,)
    step: Array  # () int
    code: Array  # () int


class _FistaState(NamedTuple):
    x: Array  # (dim,) current iterate (a proximal output: exact zeros)
    y: Array  # (dim,) extrapolated point
    t: Array  # () momentum
    lipschitz: Array  # () backtracking estimate of the smooth part's Lipschitz constant
    value: Array  # () full objective at x
    grad_norm: Array  # () smallest subgradient at x, max-abs
    step: Array  # () int
    code: Array  # () int


def _merge_priors(model: Model, fixed: Mapping, batched: Mapping) -> dict:
    priors = dict(model.priors)
    priors.update(fixed)
    priors.update(batched)
    return priors


def _proximal_names(model: Model, priors: Mapping, method: str) -> tuple[str, ...]:
    """Parameters whose prior is a Laplace on the real line: their L1 term is handled exactly."""
    if method != "map":
        return ()
    return tuple(
        name
        for name, prior in priors.items()
        if isinstance(prior, Laplace) and isinstance(model.params[name].transform, IdentityTransform)
    )


def _n_obs(model: Model, position, data) -> int:
    shape = jax.eval_shape(pointwise_log_likelihood_fn(model), position, data).shape
    return math.prod(shape)


def _make_core(model, method, jacobian, optimizer, prox_names, unit_first_step=False,
               vectorized=False):
    """The un-jitted solve for one problem: ``core(u0, data, fixed, batched, tol, rtol, steps)``.

    ``unit_first_step``: for the default L-BFGS, see :func:`_quasi_newton`. ``vectorized``:
    the solve will be mapped with ``jax.vmap`` (see :func:`newton`).
    """
    log_density = log_density_fn(model, prior=(method == "map"), jacobian=jacobian)

    def core(u0, data, fixed_priors, batched_priors, tol, rtol, max_steps):
        priors = _merge_priors(model, fixed_priors, batched_priors)
        n = max(1, _n_obs(model, u0, data))
        hessian = None  # at x, when the solver has it (Newton); else _finish computes it
        if prox_names:
            x, grad_norm, step, code = _fista(
                model, log_density, u0, data, priors, prox_names, n, tol, max_steps
            )
        elif optimizer is None:  # the exact-Hessian Newton solver, for a few parameters
            x, grad_norm, step, code, hessian = newton(
                lambda u: -log_density(u, data, priors) / n, u0, tol, rtol, max_steps,
                vectorized=vectorized,
            )
        else:
            x, grad_norm, step, code = _quasi_newton(
                optimizer, lambda u: -log_density(u, data, priors) / n, u0, tol, rtol, max_steps,
                unit_first_step=unit_first_step,
            )
        return _finish(model, log_density, u0, x, data, priors, grad_norm, step, code,
                       hessian=hessian)

    return core


def _make_polish(model, method, jacobian):
    """``polish(u0, out, data, fixed, batched, tol)``: Newton steps after L-BFGS, then the same
    finish. A program of its own, compiled only when some fit stopped short of ``tol``."""
    log_density = log_density_fn(model, prior=(method == "map"), jacobian=jacobian)

    def polish(u0, out, data, fixed_priors, batched_priors, tol):
        priors = _merge_priors(model, fixed_priors, batched_priors)
        n = max(1, _n_obs(model, u0, data))
        objective = lambda u: -log_density(u, data, priors) / n  # noqa: E731
        x, grad, code = _newton_polish(objective, out.position, jax.grad(objective)(out.position),
                                       out.code, tol)
        grad_norm = jnp.max(jnp.abs(grad), initial=0.0)
        return _finish(model, log_density, u0, x, data, priors, grad_norm, out.num_steps, code)

    return polish


def _finish(model, log_density, u0, x, data, priors, grad_norm, step, code, hessian=None):
    """The end point's report, with the ray test: does the log-density keep increasing along
    the direction travelled, ``x + s d`` and ``x + 2 s d``?

    The three points and the start ``u0`` are one batch (``vmap``), and the log-likelihood at
    ``x`` is taken with them: for a GLM the four linear predictors become one matrix-matrix
    product, a single pass over ``X`` instead of five.
    """
    pointwise = pointwise_log_likelihood_fn(model)
    d = x - u0
    dist = jnp.sqrt(jnp.sum(d * d))
    direction = jnp.where(dist > 0, d / jnp.where(dist > 0, dist, 1.0), 0.0)
    s = jnp.maximum(dist, 1.0)
    steps = jnp.arange(3, dtype=x.dtype)[:, None] * s  # (3, 1): x, x + s d, x + 2 s d
    points = jnp.concatenate([x[None, :] + steps * direction[None, :], u0[None, :]])
    values, log_likelihoods = jax.vmap(
        lambda u: (log_density(u, data, priors), jnp.sum(pointwise(u, data))))(points)
    ray = values[:3]
    n = max(1, _n_obs(model, u0, data))
    if _checks_uniqueness(model.dim, n):  # for the uniqueness check (_flat_directions)
        if hessian is None:  # Newton's own (of its last step: see newton) when given
            hessian = jax.hessian(lambda u: -log_density(u, data, priors) / n)(x)
    else:
        hessian = jnp.zeros((0, 0), x.dtype)
    return _Out(
        position=x,
        params=model.constrain(x),
        log_density=ray[0],
        log_likelihood=log_likelihoods[0],
        grad_norm=grad_norm,
        num_steps=step,
        code=code,
        ray=ray,
        start=values[3],
        direction=direction,
        n_obs=jnp.asarray(_n_obs(model, u0, data), jnp.int32),
        hessian=hessian,
    )


def _quasi_newton(optimizer, objective, u0, tol, rtol, max_steps, unit_first_step=False):
    """Minimize ``objective`` with an optax transformation in a ``lax.while_loop``.

    The canonical optax L-BFGS loop (optax docs, "L-BFGS"): the line search stores the value
    and gradient at the accepted point in the state, and ``value_and_grad_from_state`` reuses
    them, so each iteration costs one line search and no extra evaluation.

    ``unit_first_step``: the optimizer sees :math:`c F` with :math:`c = 1/\\|\\nabla F(u_0)\\|_2`,
    so that its first step has length 1, as in L-BFGS-B (scipy, scikit-learn). optax's
    L-BFGS starts with the step :math:`-\\min(1, 1/\\|g_0\\|)\\, g_0`, which is shorter than 1
    whenever :math:`\\|g_0\\| < 1`, and a per-observation objective has small gradients: on
    the issue's L2-logistic benchmark (n = 1e5, d = 50) the short first step cost two more
    iterations than scipy's (7 against 5). L-BFGS is otherwise invariant to :math:`c`; the
    stopping tests below are on :math:`F` itself.
    """
    opt = optax.with_extra_args_support(optimizer)
    opt_state = opt.init(u0)
    try:
        stores_value = (
            optax.tree.get(opt_state, "value") is not None
            and optax.tree.get(opt_state, "grad") is not None
        )
    except (KeyError, ValueError):
        stores_value = False
    value0, grad0 = jax.value_and_grad(objective)(u0)
    finite0 = jnp.isfinite(value0) & jnp.all(jnp.isfinite(grad0))
    code0 = jnp.where(
        ~finite0,
        _NONFINITE,
        jnp.where(jnp.max(jnp.abs(grad0), initial=0.0) <= tol, _GRAD,
                  jnp.where(max_steps <= 0, _MAX, _RUNNING)),
    )
    scale = jnp.ones((), value0.dtype)  # the optimizer minimizes scale * F
    if unit_first_step:
        norm0 = jnp.sqrt(jnp.sum(grad0 * grad0))
        scale = jnp.where(finite0 & (norm0 > 0), 1.0 / jnp.where(norm0 > 0, norm0, 1.0), scale)
    scaled = lambda u: scale * objective(u)  # noqa: E731
    plain_value_and_grad = jax.value_and_grad(scaled)
    if stores_value:
        from_state = optax.value_and_grad_from_state(scaled)

        def value_and_grad(u, state):
            return from_state(u, state=state)
    else:

        def value_and_grad(u, state):
            return plain_value_and_grad(u)

    def cond(state):
        return state.code == _RUNNING

    def body(state):
        updates, opt_state = opt.update(
            state.grad, state.opt_state, state.position,
            value=state.value, grad=state.grad, value_fn=scaled,
        )
        position = optax.apply_updates(state.position, updates)
        value, grad = value_and_grad(position, opt_state)
        step = state.step + 1
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & jnp.all(jnp.isfinite(position))
        # The tests are on F = value / scale (tol and rtol are F's).
        grad_norm = jnp.max(jnp.abs(grad), initial=0.0) / scale
        f_new, f_old = value / scale, state.value / scale
        magnitude = jnp.maximum(jnp.maximum(jnp.abs(f_new), jnp.abs(f_old)), 1.0)
        small_change = jnp.abs(f_new - f_old) <= rtol * magnitude
        code = jnp.where(
            ~finite, _NONFINITE,
            jnp.where(grad_norm <= tol, _GRAD,
                      jnp.where(small_change, _REL,
                                jnp.where(step >= max_steps, _MAX, _RUNNING))),
        )
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        return _LoopState(
            position=keep(position, state.position),
            opt_state=keep(opt_state, state.opt_state),
            value=keep(value, state.value),
            grad=keep(grad, state.grad),
            step=step,
            code=code,
        )

    init = _LoopState(u0, opt_state, scale * value0, scale * grad0, jnp.zeros((), jnp.int32),
                      code0)
    final = jax.lax.while_loop(cond, body, init)
    grad_norm = jnp.max(jnp.abs(final.grad), initial=0.0) / scale
    return final.position, grad_norm, final.step, final.code


# Newton polish for small problems (dim <= this): a dense Hessian costs ~dim gradients.
_MAX_POLISH_DIM = 200


def _newton_polish(objective, position, grad, code, tol, max_newton=10):
    """A few Newton steps after L-BFGS stopped on the relative change or on max_steps.

    Near the optimum of a badly scaled objective (e.g. an unstandardized regression), the
    objective's rounding error hides the decrease that a line search needs, and L-BFGS stops
    on the relative change with a gradient still above ``tol``. Newton steps need no line
    search there: each is accepted only if it lowers the gradient norm, so a problem without a
    maximum (singular Hessian) is left as it was. Used after the default L-BFGS only (a given
    optimizer runs as is), for dim <= ``_MAX_POLISH_DIM``. This takes float64 fits to scikit-learn's
    exact solvers' precision; optax has no Newton step, hence written here.
    """
    value_and_grad = jax.value_and_grad(objective)
    hessian = jax.hessian(objective)

    def cond(c):
        _, g, i, stop = c
        return ~stop & (i < max_newton) & (jnp.max(jnp.abs(g), initial=0.0) > tol)

    def body(c):
        u, g, i, _ = c
        h = hessian(u)
        h = 0.5 * (h + h.T)
        step = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(h), g)
        value_new, g_new = value_and_grad(u + step)
        better = (jnp.all(jnp.isfinite(step)) & jnp.isfinite(value_new)
                  & (jnp.max(jnp.abs(g_new), initial=0.0) < jnp.max(jnp.abs(g), initial=0.0)))
        return (jnp.where(better, u + step, u), jnp.where(better, g_new, g), i + 1, ~better)

    run = (code == _REL) | (code == _MAX)
    u, g, _, _ = jax.lax.while_loop(
        cond, body, (position, grad, jnp.zeros((), jnp.int32), ~run))
    code = jnp.where(run & (jnp.max(jnp.abs(g), initial=0.0) <= tol), _GRAD, code)
    return u, g, code


def _l1_weights(model, priors, prox_names, n, dtype):
    """Flat ``(loc, weight, mask)``: F's L1 part is ``sum(weight * |u - loc|)`` on ``mask``."""
    locs, weights, masks = [], [], []
    for name, param in model.params.items():
        if name in prox_names:
            prior = priors[name]
            locs.append(jnp.broadcast_to(jnp.asarray(prior.loc, dtype), param.shape).ravel())
            w = 1.0 / (jnp.asarray(prior.scale, dtype) * n)
            weights.append(jnp.broadcast_to(w, param.shape).ravel())
            masks.append(jnp.ones(param.size, bool))
        else:
            locs.append(jnp.zeros(param.size, dtype))
            weights.append(jnp.zeros(param.size, dtype))
            masks.append(jnp.zeros(param.size, bool))
    return jnp.concatenate(locs), jnp.concatenate(weights), jnp.concatenate(masks)


def _fista(model, log_density, u0, data, priors, prox_names, n, tol, max_steps):
    """FISTA with backtracking and gradient-based adaptive restart.

    Minimizes :math:`F(u) = h(u) + \\sum_j w_j |u_j - m_j|` with :math:`h` the smooth part
    (everything but the Laplace priors, per observation), :math:`w_j = 1/(n\\,b_j)` and
    :math:`m_j, b_j` the Laplace priors' location and scale. Beck & Teboulle (2009), SIAM J.
    Imaging Sci. 2(1); restart: O'Donoghue & Candes (2015), Found. Comput. Math. 15.
    """
    smooth_priors = {k: (None if k in prox_names else v) for k, v in priors.items()}
    dtype = u0.dtype

    def h(u):
        return -log_density(u, data, smooth_priors) / n

    h_value_and_grad = jax.value_and_grad(h)
    loc, w, mask = _l1_weights(model, priors, prox_names, n, dtype)

    def l1(u):
        return jnp.sum(jnp.where(mask, w * jnp.abs(u - loc), 0.0))

    def prox(v, step):
        shrunk = loc + jnp.sign(v - loc) * jnp.maximum(jnp.abs(v - loc) - step * w, 0.0)
        return jnp.where(mask, shrunk, v)

    def min_subgradient(u, g):
        at_kink = u == loc
        smooth_side = g + w * jnp.sign(u - loc)
        kink = jnp.sign(g) * jnp.maximum(jnp.abs(g) - w, 0.0)
        return jnp.max(jnp.abs(jnp.where(mask, jnp.where(at_kink, kink, smooth_side), g)),
                       initial=0.0)

    eps = jnp.finfo(dtype).eps
    x0 = prox(u0, 0.0)
    h0, g0 = h_value_and_grad(x0)
    gn0 = min_subgradient(x0, g0)
    code0 = jnp.where(~jnp.isfinite(h0), _NONFINITE,
                      jnp.where(gn0 <= tol, _GRAD, jnp.where(max_steps <= 0, _MAX, _RUNNING)))

    def body(state):
        hy, gy = h_value_and_grad(state.y)

        def bt_cond(b):
            return ~b[4] & (b[5] < 60)

        def bt_body(b):
            lipschitz = b[0] * 2.0
            z = prox(state.y - gy / lipschitz, 1.0 / lipschitz)
            hz, gz = h_value_and_grad(z)
            dz = z - state.y
            bound = hy + jnp.dot(gy, dz) + 0.5 * lipschitz * jnp.dot(dz, dz)
            ok = jnp.isfinite(hz) & (hz <= bound + 10 * eps * jnp.abs(hy))
            return lipschitz, z, hz, gz, ok, b[5] + 1

        start = (state.lipschitz * 0.25, state.y, hy, gy, jnp.zeros((), bool),
                 jnp.zeros((), jnp.int32))
        lipschitz, z, hz, gz, ok, _ = jax.lax.while_loop(bt_cond, bt_body, start)
        value = hz + l1(z)
        # Restart the momentum when it points against the proximal-gradient step.
        restart = jnp.dot(state.y - z, z - state.x) > 0
        t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2)) / 2.0
        y = jnp.where(restart, z, z + ((state.t - 1.0) / t_next) * (z - state.x))
        t = jnp.where(restart, 1.0, t_next)
        grad_norm = min_subgradient(z, gz)
        step = state.step + 1
        code = jnp.where(~ok, _NONFINITE,
                         jnp.where(grad_norm <= tol, _GRAD,
                                   jnp.where(step >= max_steps, _MAX, _RUNNING)))
        return _FistaState(
            x=jnp.where(ok, z, state.x), y=jnp.where(ok, y, state.x), t=t,
            lipschitz=lipschitz, value=jnp.where(ok, value, state.value),
            grad_norm=jnp.where(ok, grad_norm, state.grad_norm), step=step, code=code,
        )

    init = _FistaState(x0, x0, jnp.ones((), dtype), jnp.ones((), dtype), h0 + l1(x0), gn0,
                       jnp.zeros((), jnp.int32), code0)
    final = jax.lax.while_loop(lambda s: s.code == _RUNNING, body, init)
    return final.x, final.grad_norm, final.step, final.code


def _programs(model: Model) -> dict:
    """The compiled functions of ``fit`` for this model, kept on the model (freed with it)."""
    return model._programs.setdefault("fit", {})


def _compiled(model, key, build):
    per_model = _programs(model)
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def _maps_with_vmap() -> bool:
    """Whether :func:`_over_batch` maps with ``jax.vmap`` (accelerators) or ``lax.map`` (CPU)."""
    return jax.default_backend() != "cpu"


def _over_batch(solve, in_axes):
    """``solve`` mapped over the leading (batch) axis of the arguments whose ``in_axes`` is 0.

    ``jax.vmap`` on an accelerator. On a CPU, a loop inside the compiled program
    (``jax.lax.map``), for two reasons measured on 1000 fits with n = 200, d = 10: XLA's CPU
    code for batched small matrix products (what ``vmap`` makes of a GLM's Hessian) is ~3x
    slower than one small product per problem, and under ``vmap`` every problem's
    ``while_loop`` runs until the slowest one stops. Ridge (Newton): 64 -> 32 ms; logistic
    (Newton, 4-6 steps): 370 -> 145 ms. The results agree to round-off (1e-15).
    """
    if _maps_with_vmap():
        return jax.vmap(solve, in_axes=in_axes)

    def looped(*args):
        batched = tuple(a for a, axis in zip(args, in_axes) if axis == 0)

        def one(sliced):
            rest = iter(sliced)
            return solve(*(next(rest) if axis == 0 else a for a, axis in zip(args, in_axes)))

        return jax.lax.map(one, batched)

    return looped


def _solver_fn(model, method, jacobian, optimizer, prox_names, batch_data, batch_priors):
    key = ("solve", method, jacobian, optimizer, prox_names, batch_data, batch_priors)

    def build():
        batched = batch_data or batch_priors
        fn = _make_core(model, method, jacobian, optimizer.optimizer, prox_names,
                        unit_first_step=optimizer.key == "lbfgs",  # the default, not a user's
                        vectorized=batched and _maps_with_vmap())
        if batched:
            fn = _over_batch(fn, (None, 0 if batch_data else None, None,
                                  0 if batch_priors else None, None, None, None))
        return jax.jit(fn)

    return _compiled(model, key, build)


def _polish_fn(model, method, jacobian, batch_data, batch_priors):
    key = ("polish", method, jacobian, batch_data, batch_priors)

    def build():
        fn = _make_polish(model, method, jacobian)
        if batch_data or batch_priors:
            fn = _over_batch(fn, (None, 0, 0 if batch_data else None, None,
                                  0 if batch_priors else None, None))
        return jax.jit(fn)

    return _compiled(model, key, build)


def _initial_value_fn(model, method, jacobian, batch_data, batch_priors):
    key = ("initial", method, jacobian, batch_data, batch_priors)

    def build():
        log_density = log_density_fn(model, prior=(method == "map"), jacobian=jacobian)

        def value(u0, data, fixed, batched):
            return log_density(u0, data, _merge_priors(model, fixed, batched))

        if batch_data or batch_priors:
            value = jax.vmap(value, in_axes=(None, 0 if batch_data else None, None,
                                             0 if batch_priors else None))
        return jax.jit(value)

    return _compiled(model, key, build)


# --------------------------------------------------------------------------------------------
# Input checks (before tracing)
# --------------------------------------------------------------------------------------------


def _check_start(start: np.ndarray) -> None:
    """Raise when the log-density at the initial point (one value per problem) is not finite."""
    bad = ~np.isfinite(np.ravel(start))
    if bad.any():
        raise ValueError(
            f"The log-density at the initial point is {np.ravel(start)[bad][0]} (not finite). "
            "Give init= with values where the likelihood and prior are positive (e.g. inside "
            "every prior's support, with a linear predictor that does not overflow)."
        )


def _check_data(data, batch_data: bool) -> tuple[Any, int | None]:
    leaves_with_path = jax.tree_util.tree_flatten_with_path(data)[0]
    sizes = set()
    for path, leaf in leaves_with_path:
        name = jax.tree_util.keystr(path) or "data"
        # An array spanning other processes (multi-host) has no host copy: it is checked on
        # its devices, into a count that every process reads (and so raises on).
        distributed = spans_processes(leaf)
        arr = leaf if distributed else np.asarray(leaf)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"data{name} must be a numeric array; got dtype {arr.dtype}.")
        bad = 0
        if np.issubdtype(arr.dtype, np.floating):
            bad = (count_nonfinite(arr) if distributed
                   else arr.size - int(np.count_nonzero(np.isfinite(arr))))
        if bad:
            raise ValueError(
                f"data{name} has {bad} NaN or infinite value(s). Remove or impute them before "
                "fitting."
            )
        if batch_data:
            if arr.ndim == 0:
                raise ValueError(
                    f"batch='data' needs a leading batch axis on every data array; data{name} "
                    "is a scalar. Stack the datasets: np.stack([d1, d2, ...])."
                )
            sizes.add(arr.shape[0])
    if batch_data and len(sizes) > 1:
        raise ValueError(
            f"batch='data': the data arrays have different leading (batch) sizes {sorted(sizes)}; "
            "every array needs the same number of datasets along axis 0."
        )
    data = jax.tree.map(jnp.asarray, data)
    return data, (sizes.pop() if sizes else None)


def _check_priors(model: Model, priors, batch_priors: bool) -> tuple[dict, int | None]:
    if priors is None:
        if batch_priors:
            raise ValueError("batch='priors' needs priors=: a dict name -> distribution whose "
                             "parameters have a leading batch axis.")
        return {}, None
    if not isinstance(priors, Mapping):
        raise TypeError(f"priors must be a dict name -> numpyro distribution or None; got "
                        f"{type(priors).__name__}.")
    unknown = sorted(set(priors) - set(model.params))
    if unknown:
        raise ValueError(f"priors has unknown parameter name(s) {unknown}; the model's "
                         f"parameters are {sorted(model.params)}.")
    for name, prior in priors.items():
        if prior is not None and not isinstance(prior, Distribution):
            raise TypeError(f"priors[{name!r}] must be a numpyro distribution or None (flat); "
                            f"got {type(prior).__name__}.")
    if not batch_priors:
        return dict(priors), None
    # Every parameter of every batched prior gets a leading axis of the batch size B: leaves
    # with a leading axis of 1, and scalars, are broadcast. NumPyro stores a distribution's
    # parameters as its pytree leaves, so `jax.vmap(..., in_axes=0)` then slices them.
    sizes = set()
    for name, prior in priors.items():
        if prior is None:
            raise ValueError(f"batch='priors': priors[{name!r}] is None (flat); a batched prior "
                             "must be a distribution. Leave flat parameters out of priors=.")
        if len(prior.batch_shape) == 0:
            raise ValueError(
                f"batch='priors': priors[{name!r}] has batch shape (); the batch axis must be "
                "its leading axis, e.g. Normal(0.0, scales[:, None]) for a vector parameter."
            )
        sizes.add(prior.batch_shape[0])
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"batch='priors': the priors have different batch sizes {sorted(sizes)}.")
    size = sizes.pop() if sizes else 1
    out = {}
    for name, prior in priors.items():
        leaves, treedef = jax.tree_util.tree_flatten(prior)
        new = []
        for leaf in leaves:
            leaf = jnp.asarray(leaf)
            if leaf.ndim == 0:
                leaf = jnp.broadcast_to(leaf, (size,))
            elif leaf.shape[0] in (1, size):
                leaf = jnp.broadcast_to(leaf, (size,) + leaf.shape[1:])
            else:
                raise ValueError(
                    f"batch='priors': a parameter of priors[{name!r}] has shape {leaf.shape}, "
                    f"whose leading axis is neither 1 nor the batch size {size}."
                )
            new.append(leaf)
        out[name] = jax.tree_util.tree_unflatten(treedef, new)
    return out, size


def _initial_position(model: Model, init) -> Array:
    if init is None:  # numpy: a jit argument without a dispatch of its own
        return np.zeros((model.dim,), jnp.result_type(float))
    if not isinstance(init, Mapping):
        raise TypeError(f"init must be a dict name -> constrained value; got "
                        f"{type(init).__name__}.")
    check_param_names(model, init, "init's names", f"Give a value for each of "
                      f"{sorted(model.params)} (or init=None for the default).")
    for name, param in model.params.items():
        shape = tuple(np.shape(init[name]))
        if shape != param.shape:
            raise ValueError(f"init[{name!r}] has shape {shape}; the model declares {param.shape}.")
        value = np.asarray(init[name], dtype=float)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"init[{name!r}] is not finite.")
        inside = np.asarray(param.constraint(jnp.asarray(value)))
        if not np.all(inside):
            raise ValueError(f"init[{name!r}] = {value} lies outside the parameter's support "
                             f"{param.constraint}.")
    return model.unconstrain(init)


def _parse_batch(batch) -> tuple[bool, bool]:
    if batch is None:
        return False, False
    parts = (batch,) if isinstance(batch, str) else tuple(batch)
    bad = [p for p in parts if p not in ("data", "priors")]
    if bad:
        raise ValueError(f"batch must be None, 'data', 'priors' or ('data', 'priors'); got "
                         f"{batch!r}.")
    return "data" in parts, "priors" in parts


# --------------------------------------------------------------------------------------------
# Uniqueness of a converged maximum: is the objective flat along some direction?
# --------------------------------------------------------------------------------------------

#: A converged fit is checked for a flat direction when it has at most this many coordinates
#: (the Hessian at the end point is computed inside the solver's program: dim**2 numbers per
#: problem, also under a batch of thousands).
MAX_UNIQUE_CHECK_DIM = 100
#: ... and when the dense Hessian is cheap: it costs about ``dim`` gradients, each a pass over
#: ``n_obs * dim`` numbers; above this many, it would cost more than the fit itself
#: (n = 1e5, d = 50: 0.4 s on a 2-core CPU, against 0.3 s for the whole L-BFGS fit).
MAX_UNIQUE_CHECK_WORK = 2e7


def _checks_uniqueness(dim: int, n_obs: int) -> bool:
    return dim <= MAX_UNIQUE_CHECK_DIM and dim * dim * n_obs <= MAX_UNIQUE_CHECK_WORK


def _probe_fn(model, method, jacobian, batch_data, batch_priors):
    """F at ``points`` ``(k, dim)`` (``(B, k, dim)`` when batched)."""
    key = ("probe", method, jacobian, batch_data, batch_priors)

    def build():
        log_density = log_density_fn(model, prior=(method == "map"), jacobian=jacobian)

        def probe(points, data, fixed_priors, batched_priors):
            priors = _merge_priors(model, fixed_priors, batched_priors)
            n = max(1, _n_obs(model, points[0], data))
            return jax.vmap(lambda u: -log_density(u, data, priors) / n)(points)

        if batch_data or batch_priors:
            probe = jax.vmap(probe, in_axes=(0, 0 if batch_data else None, None,
                                             0 if batch_priors else None))
        return jax.jit(probe)

    return _compiled(model, key, build)


def _coordinate_labels(model: Model) -> list[str]:
    labels = []
    for name, param in model.params.items():
        labels.extend([name] if param.size == 1 and param.unconstrained_shape == ()
                      else [f"{name}[{i}]" for i in range(param.size)])
    return labels


def _clearly_nonsingular(hessian, ratio) -> bool:
    """True when every Hessian of the batch ``(B, dim, dim)`` has
    :math:`\\lambda_{\\min} > \\text{ratio} \\cdot \\max|\\lambda|`: a Cholesky factorization of
    :math:`H - \\tau I` with :math:`\\tau = \\text{ratio}\\,\\|H\\|_F \\ge \\text{ratio} \\max|\\lambda|`
    exists. One batched Cholesky costs a fraction of the eigen-decompositions (1000 problems
    of 11 parameters: ~2 ms against 24 ms), which are then needed only when it fails.
    """
    tau = ratio * np.linalg.norm(hessian, axis=(-1, -2))
    shifted = np.array(hessian)  # H - tau I, through a view of the diagonals (broadcasting
    dim = shifted.shape[-1]  # tau * I over the batch cost 1.4 ms for 1000 problems, this 0.2)
    shifted.reshape(len(shifted), dim * dim)[:, :: dim + 1] -= tau[:, None]
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        return False
    return True


def _flat_directions(model, method, jacobian, batch_data, batch_priors, positions, data,
                     fixed_priors, batched_priors, log_density, n_obs, hessian):
    """``{batch index: message}`` for the end points where the objective is flat along a
    direction (empty for most batches).

    Criterion, in two steps. (1) A candidate: the Hessian :math:`H` of the per-observation
    objective :math:`F` at the end point (for the Newton solver, the Hessian of its last step,
    where that step began: a flat direction is flat there too) has
    :math:`\\lambda_{\\min} \\le \\sqrt{\\epsilon}\\, \\max|\\lambda|` (numerically
    rank-deficient; :math:`\\epsilon` the float's machine epsilon). (2) Confirmed by
    evaluating :math:`F` a long way along the eigenvector :math:`v` of
    :math:`\\lambda_{\\min}`: at :math:`x \\pm s v` with :math:`s = \\max(1,
    \\|x\\|)`, :math:`F` changes by no more than its rounding noise, :math:`10^3 \\epsilon
    \\max(|F(x)|, 1)`. Step (2) tells an exactly flat ridge (collinear columns, a parameter
    the likelihood ignores: :math:`F` is constant along :math:`v` however far one goes) from a
    merely ill-conditioned but unique maximum, where :math:`F` rises by
    :math:`\\tfrac12\\lambda_{\\min} s^2` above the noise; the Hessian's own rounding never
    decides alone.
    """
    batched = batch_data or batch_priors
    x = np.asarray(positions)
    value, hessian = -np.asarray(log_density) / np.asarray(n_obs), np.asarray(hessian)
    if not batched:
        x, value, hessian = x[None], value[None], hessian[None]
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
    messages = {}
    if not candidate.any():
        return messages
    v = vec[:, :, 0]  # (B, dim), the eigenvector of the smallest eigenvalue
    s = np.maximum(1.0, np.linalg.norm(x, axis=-1))[:, None]
    points = np.stack([x + s * v, x - s * v], axis=1)  # (B, 2, dim)
    points = np.where(candidate[:, None, None], points, x[:, None, :])
    probed = np.asarray(_probe_fn(model, method, jacobian, batch_data, batch_priors)(
        jnp.asarray(points if batched else points[0]), data, fixed_priors, batched_priors))
    if not batched:
        probed = probed[None]
    noise = 1e3 * eps * np.maximum(np.abs(value), 1.0)
    change = np.max(np.abs(probed - value[:, None]), axis=-1)
    labels = _coordinate_labels(model)
    for i in np.flatnonzero(candidate & np.all(np.isfinite(probed), axis=-1)
                            & (change <= noise)):
        big = np.flatnonzero(np.abs(v[i]) >= 0.1 * np.max(np.abs(v[i])))
        combination = " ".join(f"{v[i, j]:+.3g}*{labels[j]}" for j in big[:6])
        messages[i] = (
            f"the maximum is not unique: the objective is flat along the direction "
            f"{combination}{' ...' if len(big) > 6 else ''} (the Hessian's smallest "
            f"eigenvalue is {eig[i, 0]:.2g} against a largest of {scale[i]:.2g}, and the "
            f"log-density changes by {change[i]:.2g} per observation over a step of "
            f"{float(s[i, 0]):.3g} along it). The data cannot tell "
            f"{', '.join(labels[j] for j in big[:6])} apart: collinear design columns (e.g. "
            "one dummy per level plus an intercept, or a column that is a sum of others) or "
            "a parameter the likelihood does not use. The point returned is one of infinitely "
            "many maxima. Fix: drop the redundant column(s), or give these parameters a "
            "proper prior (method='map' with e.g. prior=Normal(0, s)), which makes the MAP "
            "unique."
        )
    return messages


# --------------------------------------------------------------------------------------------
# Classification of the end point
# --------------------------------------------------------------------------------------------


_COORDINATE_NAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _param_of_coordinate(model: Model) -> list[str]:
    """The parameter each unconstrained coordinate belongs to (memoized: a batched fit
    classifies every problem with it)."""
    if model not in _COORDINATE_NAMES:
        names = []
        for name, param in model.params.items():
            names.extend([name] * param.size)
        _COORDINATE_NAMES[model] = names
    return _COORDINATE_NAMES[model]


def _end_point_flags(code, ray, direction, grad_norm, start, tol):
    """The two tests of an end point, vectorized over a batch of ``B`` problems.

    Parameters
    ----------
    code, grad_norm, start : (B,)
    ray : (B, 3)
        The log-density at ``x``, ``x + s d`` and ``x + 2 s d`` (see :func:`_finish`).
    direction : (B, dim)

    Returns
    -------
    improving : (B,) bool
        The log-density does not decrease along the direction travelled (up to round-off
        noise): the optimizer was running off to infinity or to a boundary.
    stalled : (B,) bool
        A stop on the relative change, far from stationary, below the start's log-density.
    noise : (B,)
    """
    f0, f1, f2 = ray[:, 0], ray[:, 1], ray[:, 2]
    with np.errstate(invalid="ignore", over="ignore"):
        noise = np.where(np.isfinite(f0), 1e-12 * (1.0 + np.abs(f0)), 0.0)
        moved = np.any(direction != 0, axis=-1)

        def up(a, b):  # b is not lower than a (NaN: unknown, treated as not higher)
            return (b == np.inf) | (np.isfinite(a) & np.isfinite(b) & (b >= a - noise))

        improving = moved & up(f0, f1) & up(f1, f2)
        stalled = ((code == _REL) & (grad_norm > tol) & np.isfinite(start)
                   & ~(f0 >= start - noise))
    return improving, stalled, noise


def _converged_messages(codes, steps, grad_norms, tol, rtol) -> list[str]:
    """The message of each converged problem; one format string per stop reason, so that a
    batch of thousands costs a millisecond."""
    templates = {
        _GRAD: f"converged after %d steps: gradient norm below tol (grad_norm=%.3g, tol={tol:g}).",
        _REL: (f"converged after %d steps: relative change of the objective below rtol={rtol:g} "
               f"(grad_norm=%.3g, tol={tol:g})."),
    }
    return [templates[c] % (k, g) for c, k, g in zip(codes, steps, grad_norms)]


def _classify(model, code, ray, direction, grad_norm, step, tol, rtol, max_steps,
              start, improving, stalled, noise):
    """Status and message for one problem (numpy scalars / vectors), given its
    :func:`_end_point_flags`."""
    f0, f1, f2 = (float(v) for v in ray)
    moved = bool(np.any(direction != 0))
    coord_names = _param_of_coordinate(model)
    big = np.abs(direction) >= 0.1 * np.max(np.abs(direction)) if moved else np.zeros(0, bool)
    diverging = sorted({coord_names[i] for i in np.flatnonzero(big)}) if moved else []
    boundary = [n for n in diverging
                if not isinstance(model.params[n].transform, IdentityTransform)]
    if improving:
        g1, g2 = f1 - f0, f2 - f1
        grows = f1 == np.inf or f2 == np.inf or (g1 > noise and g2 >= 0.5 * g1)
        if grows:
            where = (f" as {', '.join(boundary)} approach(es) the boundary of the support"
                     if boundary else f" as {', '.join(diverging)} diverge(s)")
            return Status.UNBOUNDED, (
                "no maximum: the log-density grows without bound" + where + " (e.g. a "
                "hierarchical scale going to 0 with jacobian=False, as in the centered "
                "eight-schools model). The point returned is not an estimate. Fix: use a prior "
                "that vanishes at the boundary (e.g. Gamma(2, ...) or LogNormal for a scale), "
                "a non-centered parameterization, or sample the posterior with mm.sample."
            ), boundary
        if boundary:
            return Status.BOUNDARY, (
                f"the maximum lies on the boundary of the support of {', '.join(boundary)}: "
                "the unconstrained coordinate runs off to infinity while the log-density "
                "approaches its supremum; params hold the boundary value. This is a valid MAP/"
                "MLE on the boundary but not an interior mode (no Laplace approximation). Use "
                "jacobian=True for the mode in unconstrained space, or a prior that vanishes at "
                "the boundary."
            ), boundary
        return Status.NO_MAXIMUM, (
            f"no maximum: the log-density keeps increasing towards a finite supremum as "
            f"{', '.join(diverging)} grow(s) without bound. With a Bernoulli or categorical "
            "likelihood this means the classes are (quasi-)separable and the MLE does not "
            "exist. Fix: add a proper prior (method='map' with e.g. prior=Normal(0, s) on the "
            "coefficients, mm.priors.from_logistic(C)); the MAP exists."
        ), []
    if stalled:
        # The objective stopped changing, far from stationary, at a point *worse* than the
        # start: a stall, e.g. on a curved ridge towards a density that grows without bound
        # (the line search's steps overflow). A stop at a kink (an absolute-error likelihood)
        # also has a large gradient, but is better than its start.
        return Status.STALLED, (
            f"stalled after {step} steps: the objective stopped changing (relative change "
            f"below rtol={rtol:g}) with the gradient still at {grad_norm:.3g} > tol={tol:g}, "
            f"at a log-density ({f0:.4g}) below the start's ({start:.4g}). "
            "This is not a maximum: the log-density may grow without bound along a curved "
            "path (e.g. a hierarchical scale going to 0, as in the centered eight-schools "
            "model), or the problem is badly scaled. Standardize the inputs, use a prior that "
            "vanishes at the boundary or a non-centered parameterization, or sample the "
            "posterior with mm.sample."
        ), []
    if code in (_GRAD, _REL):
        return Status.CONVERGED, _converged_messages([code], [step], [grad_norm], tol, rtol)[0], []
    if code == _MAX:
        return Status.MAX_STEPS, (
            f"did not converge in max_steps={max_steps} (grad_norm={grad_norm:.3g} > "
            f"tol={tol:g}). Increase max_steps, loosen tol, or give a better init."
        ), []
    return Status.NONFINITE, (
        f"stopped after {step} steps: the log-density or its gradient became NaN or infinite. "
        "Check the model for overflow (e.g. exp of a large linear predictor), standardize the "
        "inputs, or give an init closer to the mode."
    ), []


def _snap_to_boundary(model, position, direction, names):
    """Constrained values with the diverging coordinates of ``names`` at their limit."""
    coord_names = np.array(_param_of_coordinate(model))
    big = np.abs(direction) >= 0.1 * np.max(np.abs(direction))
    snap = np.isin(coord_names, names) & big
    limit = np.where(snap, np.sign(direction) * np.inf, np.asarray(position))
    params = model.constrain(jnp.asarray(limit))
    if all(bool(jnp.all(jnp.isfinite(v))) for v in params.values()):
        return params
    return model.constrain(jnp.asarray(position))


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(
    model: Model,
    data: Any,
    *,
    method: str = "map",
    jacobian: bool = False,
    priors: Mapping[str, Distribution | None] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    init: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    tol: float | None = None,
    rtol: float | None = None,
    batch: str | tuple[str, ...] | None = None,
    throw: bool = False,
) -> PointEstimate:
    """Maximum likelihood or maximum a posteriori estimate of a model.

    Maximizes, over the flat unconstrained vector :math:`u` ``(dim,)``,

    .. math::

        \\ell(u) = \\sum_{i=1}^{n} \\log p(y_i \\mid \\theta)
        \\;+\\; [\\mathrm{map}]\\, \\log p(\\theta)
        \\;+\\; [\\mathrm{jacobian}]\\, \\log|\\det J_T(u)|,
        \\qquad \\theta = T(u),

    by minimizing :math:`F(u) = -\\ell(u)/n`. ``method="mle"`` drops the prior (and the
    Jacobian); ``method="map"`` with ``jacobian=False`` is the textbook MAP (ridge, lasso,
    Stan's ``optimize``), with ``jacobian=True`` the mode of the unconstrained density.

    Parameters
    ----------
    model : Model
    data : pytree of arrays
        The model's data (e.g. ``{"X": (n, d), "y": (n,)}``). With ``batch`` containing
        ``"data"``, every array has a leading axis of ``B`` datasets.
    method : {"map", "mle"}
    jacobian : bool
        Include :math:`\\log|\\det J_T(u)|` (``method="map"`` only).
    priors : dict[str, Distribution | None], optional
        Priors replacing the model's own for the named parameters (``None``: flat). With
        ``batch`` containing ``"priors"``, each given distribution has a leading batch axis
        in its batch shape, e.g. ``{"beta": Normal(0.0, taus[:, None])}`` for ``B = len(taus)``
        prior scales on a vector ``beta`` (a regularization path); its parameters are
        broadcast along that axis.
    optimizer : optax.GradientTransformation, optional
        Default ``optax.lbfgs()`` with its zoom line search. Any optax transformation works
        (the loop passes ``value``, ``grad`` and ``value_fn`` to those that take them).
        A real parameter with a ``Laplace`` prior under ``method="map"`` is handled by the
        proximal solver (exact zeros) when ``optimizer`` is ``None``.
    init : dict[str, array], optional
        Constrained starting values for *every* parameter. Default: unconstrained zeros
        (0 for real, 1 for positive, the centre for an interval or a simplex).
    max_steps : int, optional
        Iteration limit; default 1000 (quasi-Newton) or 50000 (proximal).
    tol : float, optional
        Stop when :math:`\\|\\nabla F\\|_\\infty \\le` ``tol`` (scikit-learn's ``tol`` for
        L-BFGS). Default 1e-9 in float64, 1e-5 in float32.
    rtol : float, optional
        Also stop when :math:`|F_k - F_{k-1}| \\le` ``rtol`` :math:`\\max(|F_k|, |F_{k-1}|, 1)`
        (the precision limit). Default ``4 * eps``; not used by the proximal solver.
    batch : None, "data", "priors" or ("data", "priors")
        Fit ``B`` problems in one compiled call (``vmap`` on an accelerator, a compiled loop
        on a CPU: see :func:`_over_batch`); every field of the result gets a leading axis
        ``B``.
    throw : bool
        Raise :class:`FitError` when the result is not a converged interior maximum; by
        default a :class:`FitWarning` is issued and the point is returned. A converged
        maximum that is not unique (the objective is flat along a direction: collinear
        columns under a flat prior) is ``Status.NOT_UNIQUE``, a failure too; the check
        (``_flat_directions``) runs for up to ``MAX_UNIQUE_CHECK_DIM`` coordinates where
        ``dim**2 * n_obs <= MAX_UNIQUE_CHECK_WORK`` (the dense Hessian is cheap), and not
        for the proximal (lasso) solver.

    Returns
    -------
    PointEstimate

    Raises
    ------
    ValueError, TypeError
        On bad input, before anything is compiled: an ``init`` with missing or unknown
        names, wrong shapes or values outside the support; a start where the log-density is
        not finite; NaN in the data; inconsistent batch sizes.

    Notes
    -----
    One compiled program per (model, method, jacobian, optimizer, batch layout) serves every
    dataset and prior of the same shapes: data and prior parameters are arguments.

    Examples
    --------
    >>> est = fit(model, {"X": X, "y": y})                     # doctest: +SKIP
    >>> path = fit(model, data, priors={"beta": dist.Normal(0.0, taus[:, None])},
    ...            batch="priors")                              # doctest: +SKIP
    """
    if not isinstance(model, Model):
        raise TypeError(f"fit expects an mlemap.Model; got {type(model).__name__}.")
    if method not in ("map", "mle"):
        raise ValueError(f"method must be 'map' or 'mle'; got {method!r}.")
    jacobian = bool(jacobian)
    if method == "mle" and jacobian:
        raise ValueError("jacobian=True needs method='map': the MLE does not depend on the "
                         "parameterization. Use method='map', jacobian=True for the mode of the "
                         "unconstrained posterior.")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-2)); "
                        f"got {type(optimizer).__name__}.")
    if max_steps is not None and (not isinstance(max_steps, int | np.integer)
                                  or isinstance(max_steps, bool) or max_steps < 0):
        raise ValueError(f"max_steps must be an integer >= 0 (or None for the default); got "
                         f"{max_steps!r}.")
    for name, value in (("tol", tol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, int | float | np.floating)
                                      and np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 (or None for the default); "
                             f"got {value!r}.")
    batch_data, batch_priors = _parse_batch(batch)
    data, data_size = _check_data(data, batch_data)
    # The log-likelihood must be pointwise, checked abstractly before anything is traced;
    # with batch="data", on one dataset's slice.
    check_log_likelihood(model, jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), data) if batch_data else data)
    batched_priors, prior_size = _check_priors(model, priors, batch_priors)
    if data_size is not None and prior_size is not None and data_size != prior_size:
        raise ValueError(f"batch: the data have {data_size} datasets but the priors {prior_size} "
                         "settings; they must be equal.")
    fixed_priors = {} if batch_priors else batched_priors
    if not batch_priors:
        batched_priors = {}
    u0 = _initial_position(model, init)

    merged = _merge_priors(model, fixed_priors, batched_priors)
    prox_names = _proximal_names(model, merged, method) if optimizer is None else ()
    eps = float(jnp.finfo(u0.dtype).eps)
    tol = (1e-9 if u0.dtype == jnp.float64 else 1e-5) if tol is None else float(tol)
    rtol = 4.0 * eps if rtol is None else float(rtol)
    if max_steps is None:
        max_steps = 50_000 if prox_names else 1000
    max_steps = int(max_steps)
    if prox_names:
        solver = "proximal"
    elif optimizer is not None:
        solver = "optax"
    else:
        # Batched small fits: Newton's few steps beat L-BFGS's many (1000 fits at the default
        # tol on a CPU: ridge 38 against 107 ms, logistic 218 against 198 ms; under vmap every
        # problem also waits for the slowest); a single fit compiles faster with L-BFGS.
        batched = batch_data or batch_priors
        solver = "newton" if batched and model.dim <= NEWTON_MAX_DIM else "lbfgs"
    opt = None if solver == "newton" else (optax.lbfgs() if optimizer is None else optimizer)
    opt_key = solver if optimizer is None else optimizer

    solve = _solver_fn(model, method, jacobian, _OptKey(opt_key, opt), prox_names,
                       batch_data, batch_priors)
    # A start where the log-density is not finite: said before the solver is compiled, by a
    # small program of its own. Once the solver has run on these shapes, its own value at the
    # start (_Out.start) is checked instead, sparing a pass over the data. Not for data that
    # spans processes: there every process must run the same programs, and whether this one
    # has run the solver before depends on its own history (a skipped program deadlocks).
    solved = _programs(model).setdefault("solved", set())  # (program, data, priors layouts)
    signature = (solve, _data_signature(data), _data_signature((fixed_priors, batched_priors)))
    warm = signature in solved and not any(
        spans_processes(leaf) for leaf in jax.tree_util.tree_leaves(data))
    if not warm:
        _check_start(np.asarray(_initial_value_fn(model, method, jacobian, batch_data,
                                                  batch_priors)(u0, data, fixed_priors,
                                                                batched_priors)))
    # numpy scalars: jit takes them as arguments without a dispatch of their own.
    tol_array = np.asarray(tol, u0.dtype)
    out = solve(u0, data, fixed_priors, batched_priors, tol_array,
                np.asarray(rtol, u0.dtype), np.asarray(max_steps, np.int32))
    stopped_short = np.isin(np.asarray(out.code), (_REL, _MAX)) & (np.asarray(out.grad_norm) > tol)
    if solver == "lbfgs" and model.dim <= _MAX_POLISH_DIM and stopped_short.any():
        polish = _polish_fn(model, method, jacobian, batch_data, batch_priors)
        out = polish(u0, out, data, fixed_priors, batched_priors, tol_array)
    params, position = out.params, out.position  # stay on the device; the rest is read here
    out = jax.tree.map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a,
                       out._replace(params={}))
    start = out.start
    if warm:
        _check_start(start)
    solved.add(signature)
    batched = batch_data or batch_priors
    n_obs = int(np.ravel(out.n_obs)[0])  # from the compiled call: no extra trace

    # Every problem as a batch (B = 1 for a single fit); a plainly converged one (the usual
    # case) gets its message without the per-problem classification.
    as_batch = (lambda a: a) if batched else (lambda a: np.asarray(a)[None])
    codes, grad_norms, steps = as_batch(out.code), as_batch(out.grad_norm), as_batch(out.num_steps)
    rays, directions, positions = as_batch(out.ray), as_batch(out.direction), as_batch(out.position)
    starts = np.broadcast_to(as_batch(start), codes.shape)
    improving, stalled, noise = _end_point_flags(codes, rays, directions, grad_norms, starts, tol)
    plain = np.isin(codes, (_GRAD, _REL)) & ~improving & ~stalled

    size = codes.shape[0] if batched else None
    # Statuses and messages as object arrays: the plain converged ones in one assignment, the
    # others one by one (a batch of 1000 costs ~1 ms here).
    statuses = np.full(codes.shape[0], Status.CONVERGED, dtype=object)
    messages = np.empty(codes.shape[0], dtype=object)
    messages[plain] = _converged_messages(
        codes[plain].tolist(), steps[plain].tolist(), grad_norms[plain].tolist(), tol, rtol)
    snapped = {}
    for i in np.flatnonzero(~plain):
        statuses[i], messages[i], boundary = _classify(
            model, int(codes[i]), rays[i], directions[i], float(grad_norms[i]), int(steps[i]),
            tol, rtol, max_steps, float(starts[i]), improving[i], stalled[i], noise[i])
        if statuses[i] == Status.BOUNDARY:
            snapped[i] = _snap_to_boundary(model, positions[i], directions[i], boundary)
    converged = statuses == Status.CONVERGED
    if solver != "proximal" and _checks_uniqueness(model.dim, max(n_obs, 1)) and converged.any():
        # A converged maximum may still be one of many (a flat ridge): see _flat_directions.
        flat = _flat_directions(model, method, jacobian, batch_data, batch_priors,
                                out.position, data, fixed_priors, batched_priors,
                                out.log_density, np.maximum(out.n_obs, 1), out.hessian)
        for i, message in flat.items():
            if converged[i]:
                statuses[i], messages[i], converged[i] = Status.NOT_UNIQUE, message, False
    for i, point in snapped.items():
        params = {k: (v.at[i].set(point[k]) if batched else point[k]) for k, v in params.items()}
    statuses, messages = tuple(statuses.tolist()), tuple(messages.tolist())
    scalar = (lambda a: a) if batched else (lambda a: a.item())
    estimate = PointEstimate(
        params=params,
        log_density=scalar(out.log_density),
        log_likelihood=scalar(out.log_likelihood),
        grad_norm=scalar(out.grad_norm),
        num_steps=scalar(out.num_steps),
        converged=converged if batched else bool(converged[0]),
        method=method,
        jacobian=jacobian,
        status=messages if batched else messages[0],
        result=statuses if batched else statuses[0],
        position=position,
        n_obs=n_obs,
        solver=solver,
    )
    if not np.all(converged):
        failed = [i for i, s in enumerate(statuses) if s != Status.CONVERGED]
        if batched:
            message = (f"{len(failed)} of {size} fits did not give a converged interior maximum; "
                       f"the first, at batch index {failed[0]}: {messages[failed[0]]}")
        else:
            message = f"fit({method}): {messages[0]}"
        if throw:
            raise FitError(message)
        warnings.warn(message, FitWarning, stacklevel=2)
    return estimate


class _OptKey:
    """Hashable cache key for an optimizer: the default by name, a user's by identity."""

    def __init__(self, key, optimizer):
        self.key, self.optimizer = key, optimizer

    def __hash__(self):
        return hash(self.key) if isinstance(self.key, str) else id(self.key)

    def __eq__(self, other):
        return isinstance(other, _OptKey) and (
            self.key == other.key if isinstance(self.key, str) else self.key is other.key)
