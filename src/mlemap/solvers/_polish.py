"""Newton steps after a first-order solver stopped short of ``tol``.

Near the optimum of a badly scaled objective (an unstandardized regression, counts in the
thousands), L-BFGS crawls, or the objective's rounding hides the decrease its line search
needs, and it stops on the relative change or the step limit with a gradient still above
``tol``. Newton's step is invariant to the scaling, and the Newton solver accepts a step by
sufficient decrease of the objective (Armijo), damping the Hessian where it is not positive
definite: from L-BFGS's end point it converges in a few steps where the gradient test can be
met, and leaves a point without a maximum where it was.
"""

from __future__ import annotations

import jax.numpy as jnp

from mlemap.solvers._base import Solution, Stop, minimize
from mlemap.solvers._newton import newton

__all__ = ["polish", "needs_polish", "MAX_DIM", "MIN_STEPS", "POLISH_AFTER"]

#: Polished problems have at most this many coordinates: a dense Hessian costs ~dim gradients.
MAX_DIM = 200
#: The polish's steps: what is left of the fit's ``max_steps``, and at least this many (or
#: ``max_steps`` itself, when smaller).
MIN_STEPS = 50
#: The first solver's iterations before the polish takes over: at least this many, and ten
#: per coordinate (about ten Newton steps' worth of gradients).
POLISH_AFTER = 100


def needs_polish(stop, grad_norm, tol):
    """Where the first solver stopped short of ``tol``, for a reason Newton may overcome."""
    short = ((stop == Stop.SMALL_CHANGE) | (stop == Stop.MAX_STEPS) | (stop == Stop.NO_STEP)
             | (stop == Stop.NONFINITE))
    return short & (grad_norm > tol)


def polish(objective, solution: Solution, tol, rtol, max_steps, *,
           vectorized: bool = False) -> Solution:
    """Newton from ``solution``'s position when :func:`needs_polish`; else ``solution``.

    Newton gets what is left of ``max_steps`` after the first solver's steps, and at least
    ``min(MIN_STEPS, max_steps)``. ``num_steps`` adds the two solvers' iterations; the stop
    and the Hessian (of Newton's last step) are Newton's where it ran, the Hessian NaN
    elsewhere. ``vectorized``: this polish is mapped with ``jax.vmap`` (see :func:`newton`).
    """
    run = needs_polish(solution.stop, solution.grad_norm, tol)
    budget = jnp.maximum(max_steps - solution.num_steps, jnp.minimum(MIN_STEPS, max_steps))
    polished = minimize(newton(vectorized=vectorized, tol=tol), objective, solution.position,
                        tol, rtol, jnp.where(run, budget, 0))
    position, value, grad, num_steps, stop = (
        jnp.where(run, a, b) for a, b in zip(polished[:5], solution[:5]))
    num_steps = solution.num_steps + jnp.where(run, polished.num_steps, 0)
    hessian = jnp.where(run, polished.hessian, jnp.nan)
    return Solution(position, value, grad, num_steps, stop, hessian)
