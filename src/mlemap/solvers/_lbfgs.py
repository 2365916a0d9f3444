"""L-BFGS (optax's, with its zoom line search), or any optax ``GradientTransformation``.

The canonical optax L-BFGS loop (optax docs, "L-BFGS"): the line search stores the value and
gradient at the accepted point in the optimizer's state, and ``value_and_grad_from_state``
reuses them, so each iteration costs one line search and no extra evaluation. A
transformation that stores no value (``optax.adam``) gets a plain ``value_and_grad``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mlemap.solvers._base import Iterate, Solver

__all__ = ["lbfgs"]


class LbfgsState(NamedTuple):
    opt_state: Any  # the optax transformation's state
    scale: jax.Array  # () c: the transformation minimizes c F
    scaled_value: jax.Array  # () c F at the iterate
    scaled_grad: jax.Array  # (dim,) c grad F at the iterate


def lbfgs(optimizer: optax.GradientTransformation | None = None) -> Solver:
    """A solver from an optax transformation; default ``optax.lbfgs()``.

    The default sees :math:`c F` with :math:`c = 1/\\|\\nabla F(u_0)\\|_2`, so that its first
    step has length 1, as in L-BFGS-B (scipy, scikit-learn). optax's L-BFGS starts with the
    step :math:`-\\min(1, 1/\\|g_0\\|)\\, g_0`, which is shorter than 1 whenever
    :math:`\\|g_0\\| < 1`, and a per-observation objective has small gradients: the short
    first step costs iterations that L-BFGS-B does not take. L-BFGS is otherwise invariant to
    :math:`c`; the stopping tests are on :math:`F` itself. A given transformation runs as is.
    """
    unit_first_step = optimizer is None
    opt = optax.with_extra_args_support(optax.lbfgs() if optimizer is None else optimizer)

    def init(objective, u0):
        value, grad = jax.value_and_grad(objective)(u0)
        scale = jnp.ones((), value.dtype)
        if unit_first_step:
            norm = jnp.sqrt(jnp.sum(grad * grad))
            usable = jnp.isfinite(value) & jnp.isfinite(norm) & (norm > 0)
            scale = jnp.where(usable, 1.0 / jnp.where(usable, norm, 1.0), scale)
        state = LbfgsState(opt.init(u0), scale, scale * value, scale * grad)
        return Iterate(u0, value, grad), state

    def step(objective, iterate, state):
        scaled = lambda u: state.scale * objective(u)  # noqa: E731
        updates, opt_state = opt.update(
            state.scaled_grad, state.opt_state, iterate.position,
            value=state.scaled_value, grad=state.scaled_grad, value_fn=scaled,
        )
        position = optax.apply_updates(iterate.position, updates)
        if _stores_value(opt_state):
            value, grad = optax.value_and_grad_from_state(scaled)(position, state=opt_state)
        else:
            value, grad = jax.value_and_grad(scaled)(position)
        new_state = LbfgsState(opt_state, state.scale, value, grad)
        return Iterate(position, value / state.scale, grad / state.scale), new_state

    return Solver(init, step)


def _stores_value(opt_state) -> bool:
    """Whether the transformation's state holds the value and gradient at its iterate."""
    try:
        return (optax.tree.get(opt_state, "value") is not None
                and optax.tree.get(opt_state, "grad") is not None)
    except (KeyError, ValueError):
        return False
