"""Newton's method with an exact Hessian, for problems of a few parameters.

For a handful of parameters the dense Hessian costs about ``dim`` gradients and Newton
converges in a few steps (one for a quadratic such as ridge), where L-BFGS needs tens of
line-search steps; in a batch of small fits every member also waits for the slowest one's
loop. optax has no second-order method, hence this solver.

Each step solves with the Hessian (an elimination that also tells whether it is positive
definite); where it is not, the step is steepest descent scaled by the largest curvature.
Then it backtracks (Armijo) from the full step. No eigen-decomposition: batched over a
thousand small fits, ``eigh`` is far slower than an elimination.

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
_MAX_BACKTRACKS = 40


class NewtonState(NamedTuple):
    curvature: Any  # at the iterate: the Hessian (eager), or the pullback's residuals (lazy)
    hessian: jax.Array  # (dim, dim) the one the last step was taken with (zeros before)


def newton(*, vectorized: bool = False) -> Solver:
    """Damped Newton with Armijo backtracking.

    Parameters
    ----------
    vectorized : bool
        The caller maps this solve with ``jax.vmap``. There a conditional becomes a select
        that runs every branch, so each trial point gets its value, gradient and Hessian at
        once (eager). In a loop of problems (``lax.map``) a trial gets its value and
        gradient, and the state keeps the residuals of its reverse pass; the next step, if
        there is one, starts by turning them into the Hessian (lazy).

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
        direction = _direction(hessian, iterate.grad)
        slope = jnp.dot(iterate.grad, direction)

        def too_high(trial):  # Armijo's sufficient decrease, from the full step down
            t, value, k = trial[0], trial[1], trial[-1]
            armijo = value <= iterate.value + _ARMIJO * t * slope
            return ~(jnp.isfinite(value) & armijo) & (k < _MAX_BACKTRACKS)

        def halve(trial):
            t = trial[0] / 2
            return (t, *at(objective, iterate.position + t * direction), trial[-1] + 1)

        t, value, grad, curvature_new, _ = jax.lax.while_loop(
            too_high, halve, (jnp.ones((), dtype), *at(objective, iterate.position + direction), 0))
        new = Iterate(iterate.position + t * direction, value, grad)
        return new, NewtonState(curvature_new, hessian)

    def final_hessian(state, num_steps):
        if layout.get("residuals") is None:
            return jnp.where(num_steps == 0, state.curvature, state.hessian)
        # No step taken: the Hessian at u0, computed only then.
        return jax.lax.cond(num_steps == 0, lambda: layout["residuals"].hessian(state.curvature),
                            lambda: state.hessian)

    return Solver(init, step, final_hessian)


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

    Gauss-Jordan elimination without pivoting, unrolled over the ``dim`` columns. For a
    positive definite matrix it is as stable as Cholesky (no growth), and its pivots are the
    ratios of consecutive leading principal minors, so all of them are positive exactly when
    the matrix is positive definite (Sylvester's criterion): the test comes with the solve.
    Written out because LAPACK's Cholesky and two triangular solves are three library calls
    per step, which for a few parameters cost more than the gradient.
    """
    dim = matrix.shape[0]
    augmented = jnp.concatenate([matrix, rhs[:, None]], axis=1)  # (dim, dim + 1)
    smallest_pivot = jnp.asarray(jnp.inf, matrix.dtype)
    for k in range(dim):
        pivot = augmented[k, k]
        smallest_pivot = jnp.minimum(smallest_pivot, pivot)
        row = augmented[k] / pivot
        augmented = (augmented - jnp.outer(augmented[:, k], row)).at[k].set(row)
    return augmented[:, dim], smallest_pivot > 0


def _direction(hessian, grad):
    """``-H^{-1} g`` when ``H`` is positive definite, else ``-g / max |H_jj|``."""
    hessian = 0.5 * (hessian + hessian.T)
    solution, positive_definite = solve_positive_definite(hessian, grad)
    newton_step = -solution
    scale = jnp.maximum(jnp.max(jnp.abs(jnp.diag(hessian)), initial=0.0), 1.0)
    ok = positive_definite & jnp.all(jnp.isfinite(newton_step)) & (jnp.dot(grad, newton_step) < 0)
    return jnp.where(ok, newton_step, -grad / scale)
