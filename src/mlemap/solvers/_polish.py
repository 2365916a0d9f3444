"""A few Newton steps after a first-order solver stopped short of ``tol``.

Near the optimum of a badly scaled objective (e.g. an unstandardized regression), the
objective's rounding error hides the decrease that a line search needs, and L-BFGS stops on
the relative change with a gradient still above ``tol``. Newton steps need no line search
there: each is accepted only if it lowers the gradient norm, so a problem without a maximum
(singular Hessian) is left as it was. This takes float64 fits to scikit-learn's exact
solvers' precision; optax has no Newton step, hence written here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlemap.solvers._base import Solution, Stop, max_abs

__all__ = ["polish", "MAX_DIM"]

#: Polished problems have at most this many coordinates: a dense Hessian costs ~dim gradients.
MAX_DIM = 200


def polish(objective, solution: Solution, tol, max_steps: int = 10) -> Solution:
    """Newton steps from ``solution`` when it stopped on a small change or the step limit.

    ``num_steps`` stays the first solver's; the stop becomes ``GRADIENT`` when the gradient
    test passes after the polish.
    """
    value_and_grad = jax.value_and_grad(objective)
    hessian = jax.hessian(objective)

    def cond(c):
        _, _, g, i, stop = c
        return ~stop & (i < max_steps) & (max_abs(g) > tol)

    def body(c):
        u, value, g, i, _ = c
        h = hessian(u)
        h = 0.5 * (h + h.T)
        step = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(h), g)
        value_new, g_new = value_and_grad(u + step)
        better = (jnp.all(jnp.isfinite(step)) & jnp.isfinite(value_new)
                  & (max_abs(g_new) < max_abs(g)))
        return (jnp.where(better, u + step, u), jnp.where(better, value_new, value),
                jnp.where(better, g_new, g), i + 1, ~better)

    run = (solution.stop == Stop.SMALL_CHANGE) | (solution.stop == Stop.MAX_STEPS)
    grad = jax.grad(objective)(solution.position)
    u, value, g, _, _ = jax.lax.while_loop(
        cond, body, (solution.position, solution.value, grad, jnp.zeros((), jnp.int32), ~run))
    stop = jnp.where(run & (max_abs(g) <= tol), Stop.GRADIENT, solution.stop).astype(jnp.int32)
    return solution._replace(position=u, value=value, grad_norm=max_abs(g), stop=stop)
