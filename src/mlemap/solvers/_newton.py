"""Newton's method with an exact Hessian, for problems of a few parameters.

For a handful of parameters the dense Hessian costs about ``dim`` gradients and Newton
converges in a few steps (one for a quadratic such as ridge), where L-BFGS needs tens of
line-search steps; in a batch of small fits every member also waits for the slowest one's
loop. optax has no second-order method, hence this solver.

Each step solves with the Hessian :math:`H` (a factorization that also tells whether it is
positive definite); where it is not (a saddle region, a non-convex objective), it solves
with :math:`H + \\mu I`, the smallest :math:`\\mu` of a geometric sequence that makes it
positive definite (Levenberg-Marquardt damping): a descent direction that still follows the
curvature. Then it backtracks from the full step until the objective decreases sufficiently (Armijo),
or, where that decrease is below what the objective's rounding resolves, until the
gradient's norm decreases; when no trial point gives a finite objective, the iterate does
not move and the loop stops (``Stop.NO_STEP``). No eigen-decomposition: batched over a thousand small fits, ``eigh`` is
far slower than an elimination.

The value and gradient at the full step come from the passes that also give its Hessian:
the full step is nearly always accepted, and then they are the next step's. In a loop of
problems (a CPU) the Hessian is computed only when another step follows, at the top of that
step, from the residuals that the trial point's reverse pass left in the state
(:class:`_Residuals`): the last step never computes one, and the uniqueness check gets the
Hessian that step was taken with.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mlemap.solvers._base import Iterate, Solver

__all__ = ["newton", "MAX_DIM"]

#: Default solver of batched fits of at most this many unconstrained parameters.
MAX_DIM = 20
_ARMIJO = 1e-4
_ROUNDING = 10.0
_MAX_BACKTRACKS = 40
_ELIMINATION_MAX_DIM = 20


class NewtonState(NamedTuple):
    curvature: Any  # at the iterate: the Hessian (eager), or the pullback's residuals (lazy)
    hessian: jax.Array  # (dim, dim) the one the last step was taken with (zeros before)


def newton(*, vectorized: bool = False, tol=None) -> Solver:
    """Damped Newton with Armijo backtracking.

    Parameters
    ----------
    tol : float or traced scalar, optional
        Stop (the step does not move, ``Stop.NO_STEP``) at a point where the Hessian is
        positive definite and the Newton decrement :math:`\\sqrt{g^\\top H^{-1} g}` is at most
        ``tol``: the first-order condition in the Hessian's metric. ``fit`` reads it back
        from the end point.
    vectorized : bool
        The caller maps this solve with ``jax.vmap``. There a conditional becomes a select
        that runs every branch, so each trial point gets its value, gradient and Hessian at
        once (eager). In a loop of problems (``lax.map``) a trial gets its value and
        gradient, and the state keeps the residuals of its reverse pass; the next step, if
        there is one, starts by turning them into the Hessian (lazy).

    Where the plain gradient cannot get below ``tol`` in floating point (a parameter of huge
    curvature: raw columns in the thousands), Newton's steps shrink below the resolution of
    the position and the loop stops (``Stop.NO_STEP``); ``fit`` then certifies the point by
    the same test in the units of the curvature, or by the Newton decrement.

    The solver's ``hessian`` is the one the last step was taken with: at the point where that
    step began (at ``u0`` when no step was taken). A direction along which the objective is
    flat (collinear columns, a parameter the likelihood ignores) is flat there too.
    """
    # Built at trace time by init (it needs the objective) and read by step and hessian.
    layout: dict[str, Any] = {}

    def curvature(pullback, dim, dtype):
        residuals = layout.get("residuals")
        if residuals is not None:
            return residuals.varying(pullback)
        return _hessian(pullback, dim, dtype)

    def at(objective, u):
        value, grad, pullback = _value_grad_pullback(objective)(u)
        return value, grad, curvature(pullback, u.shape[0], u.dtype)

    def hessian_of(state, dim, dtype):
        residuals = layout.get("residuals")
        return residuals.hessian(state.curvature) if residuals is not None else state.curvature

    def init(objective, u0):
        dim, dtype = u0.shape[0], u0.dtype
        value_grad_pullback = _value_grad_pullback(objective)
        value, grad, pullback = value_grad_pullback(u0)
        if not vectorized:  # the probe at u0 + 0 is never run (dead code)
            residuals = _Residuals(pullback, value_grad_pullback(u0 + 0)[2], dim, dtype)
            layout["residuals"] = residuals if residuals.usable else None
        state = NewtonState(curvature(pullback, dim, dtype), jnp.zeros((dim, dim), dtype))
        return Iterate(u0, value, grad), state

    def step(objective, iterate, state):
        dim, dtype = iterate.position.shape[0], iterate.position.dtype
        hessian = hessian_of(state, dim, dtype)  # another step follows: needed now
        direction, undamped = _direction(hessian, iterate.grad)
        slope = jnp.dot(iterate.grad, direction)
        stationary = jnp.zeros((), bool) if tol is None else undamped & (-slope <= tol * tol)

        # Near the minimum the decrease that the quadratic model predicts, -slope / 2, falls
        # below what F resolves (its rounding grows with the terms it sums, not with |F|),
        # while the gradient still shrinks quadratically: there a step is accepted when it
        # lowers the gradient's norm, the signal that is still exact (in the spirit of Hager
        # and Zhang's approximate Wolfe conditions).
        eps = jnp.finfo(dtype).eps
        unresolved = -slope <= jnp.sqrt(eps) * jnp.maximum(jnp.abs(iterate.value), 1.0)
        grad_norm = jnp.max(jnp.abs(iterate.grad), initial=0.0)

        def too_high(trial):  # sufficient decrease, from the full step down
            t, value, grad, k = trial[0], trial[1], trial[2], trial[-1]
            armijo = value <= iterate.value + _ARMIJO * t * slope + _ROUNDING * eps * jnp.abs(
                iterate.value)
            flat = unresolved & (jnp.max(jnp.abs(grad), initial=0.0) < grad_norm)
            ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & (armijo | flat)
            return ~ok & (k < _MAX_BACKTRACKS)

        def halve(trial):
            t = trial[0] / 2
            return (t, *at(objective, iterate.position + t * direction), trial[-1] + 1)

        t, value, grad, curvature_new, _ = jax.lax.while_loop(
            too_high, halve, (jnp.ones((), dtype), *at(objective, iterate.position + direction), 0))
        # The last, tiny trial is taken even without sufficient decrease when it is finite: at
        # a point where JAX's derivative is not the function's (a kink of a formula, such as
        # NumPyro's Bernoulli log-probability at a logit of exactly 0), this moves off it.
        accepted = jnp.isfinite(value) & ~stationary
        new = jax.tree.map(lambda a, b: jnp.where(accepted, a, b),
                           (Iterate(iterate.position + t * direction, value, grad), curvature_new),
                           (iterate, state.curvature))
        return new[0], NewtonState(new[1], hessian)

    def final_hessian(state, num_steps):
        if layout.get("residuals") is None:
            return jnp.where(num_steps == 0, state.curvature, state.hessian)
        # No step taken: the Hessian at u0, computed only then.
        return jax.lax.cond(num_steps == 0, lambda: layout["residuals"].hessian(state.curvature),
                            lambda: state.hessian)

    return Solver(init, step, final_hessian, returns_finite=True)


def _value_grad_pullback(objective):
    """``u -> (F(u), grad F(u), pullback)``, reverse over reverse from one ``jax.vjp``.

    The gradient is differentiated once more in reverse mode, with the value carried as an
    auxiliary output: one forward and one backward pass give ``F`` and ``grad F``, and the
    Hessian's rows are the pullbacks of the unit vectors (:func:`_hessian`), one batched pass
    that runs only where it is used. (``jax.hessian`` after ``value_and_grad`` computes the
    gradient twice.)
    """

    def grad_and_value(u):
        value, grad = jax.value_and_grad(objective)(u)
        return grad, value

    def value_grad_pullback(u):
        grad, pullback, value = jax.vjp(grad_and_value, u, has_aux=True)
        return value, grad, pullback

    return value_grad_pullback


def _hessian(pullback, dim, dtype):
    """The Hessian ``(dim, dim)`` from the gradient's ``pullback``: its rows are the pullbacks
    of the unit vectors (the Hessian is symmetric)."""
    return jax.vmap(lambda e: pullback(e)[0])(jnp.eye(dim, dtype=dtype))


class _Residuals:
    """The residuals of the gradient's pullback as arrays that a ``while_loop`` can carry.

    ``jax.vjp``'s pullback is a pytree whose leaves are the arrays its backward pass needs.
    Those that are the same object at two different points (the data, closed over), and
    numpy constants, do not depend on the point: they stay out of the loop's state. A
    pullback is rebuilt from the others and the structure of the one at ``u0``: the same
    function at the same shapes, so the same computation. ``usable`` is False where the
    pullback is not such a pytree (another JAX version); the solver then computes each
    Hessian at once (eager).

    Parameters
    ----------
    pullback0, probe
        The gradient's pullbacks at ``u0`` and at another point (``u0 + 0``, a new tracer).
    dim, dtype
        Of the position.
    """

    def __init__(self, pullback0, probe, dim, dtype):
        self.leaves0, self.treedef = jax.tree_util.tree_flatten(pullback0)
        probe = jax.tree_util.tree_leaves(probe)
        self.usable = len(probe) == len(self.leaves0) > 0 and all(
            hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in self.leaves0)
        self.invariant = [not isinstance(leaf, jax.Array)
                          or any(leaf is other for other in self.leaves0) for leaf in probe]
        self.dim, self.dtype = dim, dtype

    def varying(self, pullback) -> tuple:
        """The leaves of ``pullback`` that depend on the point."""
        leaves = jax.tree_util.tree_leaves(pullback)
        if len(leaves) != len(self.leaves0):
            raise AssertionError("the gradient's pullback changed structure between points")
        return tuple(leaf for leaf, fixed in zip(leaves, self.invariant) if not fixed)

    def hessian(self, varying):
        """The Hessian ``(dim, dim)`` at the point whose :meth:`varying` leaves these are."""
        varying = iter(varying)
        leaves = [leaf0 if fixed else next(varying)
                  for leaf0, fixed in zip(self.leaves0, self.invariant)]
        pullback = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return _hessian(pullback, self.dim, self.dtype)


def solve_positive_definite(matrix, rhs):
    """``(matrix^{-1} rhs, positive_definite)`` for a symmetric ``matrix (dim, dim)``.

    Up to ``_ELIMINATION_MAX_DIM`` columns, Gauss-Jordan elimination without pivoting, unrolled. For a
    positive definite matrix it is as stable as Cholesky (no growth), and its pivots are the
    ratios of consecutive leading principal minors, so all of them are positive exactly when
    the matrix is positive definite (Sylvester's criterion): the test comes with the solve.
    Written out because LAPACK's Cholesky and two triangular solves are three library calls
    per step, which for a few parameters cost more than the gradient. Above, LAPACK's
    Cholesky (an unrolled elimination would make a large program), which fails with NaN.
    """
    dim = matrix.shape[0]
    if dim > _ELIMINATION_MAX_DIM:
        factor = jnp.linalg.cholesky(matrix)
        solution = jax.scipy.linalg.cho_solve((factor, True), rhs)
        return solution, jnp.all(jnp.isfinite(factor)) & jnp.all(jnp.diag(factor) > 0)
    augmented = jnp.concatenate([matrix, rhs[:, None]], axis=1)  # (dim, dim + 1)
    smallest_pivot = jnp.asarray(jnp.inf, matrix.dtype)
    for k in range(dim):
        pivot = augmented[k, k]
        smallest_pivot = jnp.minimum(smallest_pivot, pivot)
        row = augmented[k] / pivot
        augmented = (augmented - jnp.outer(augmented[:, k], row)).at[k].set(row)
    return augmented[:, dim], smallest_pivot > 0


#: Levenberg-Marquardt damping: mu runs over scale * growth**k, k < _MAX_DAMPINGS, from
#: scale = _FIRST_DAMPING * max |H_jj|.
_FIRST_DAMPING, _DAMPING_GROWTH, _MAX_DAMPINGS = 1e-10, 4.0, 30


def _direction(hessian, grad):
    """``(step, undamped)``: ``-(H + mu I)^{-1} g`` with ``mu = 0`` where ``H`` is positive
    definite (``undamped``), else the first ``mu`` of the damping sequence that makes it so;
    ``-g / max |H_jj|`` if none does (a Hessian that is not finite)."""
    hessian = 0.5 * (hessian + hessian.T)
    scale = jnp.maximum(jnp.max(jnp.abs(jnp.diag(hessian)), initial=0.0), 1e-300)

    def attempt(matrix):
        solution, positive_definite = solve_positive_definite(matrix, grad)
        step = -solution
        return step, positive_definite & jnp.all(jnp.isfinite(step)) & (jnp.dot(grad, step) < 0)

    def undamped_fails(carry):
        return ~carry[1] & (carry[2] < _MAX_DAMPINGS)

    def damp(carry):
        # Marquardt's damping, mu * diag(|H|) (floored), so that it does not depend on units.
        diagonal = jnp.maximum(jnp.abs(jnp.diag(hessian)), jnp.finfo(hessian.dtype).eps * scale)
        mu = _FIRST_DAMPING * _DAMPING_GROWTH ** carry[2].astype(hessian.dtype)
        return (*attempt(hessian + jnp.diag(mu * diagonal)), carry[2] + 1)

    def damped(first):
        step, ok, _ = jax.lax.while_loop(undamped_fails, damp, (*first, jnp.zeros((), jnp.int32)))
        return jnp.where(ok, step, -grad / jnp.maximum(scale, 1.0))

    first = attempt(hessian)
    return jax.lax.cond(first[1], lambda first: first[0], damped, first), first[1]
