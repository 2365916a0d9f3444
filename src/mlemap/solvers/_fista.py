"""FISTA with backtracking and adaptive restart, for an objective with an L1 part.

Minimizes :math:`F(u) = h(u) + \\sum_j w_j |u_j - m_j|` over the coordinates where the L1
part applies, with :math:`h` smooth (the objective given to the solver). Its proximal step
(soft-thresholding) sets coordinates to exactly :math:`m_j`: a lasso's zeros are exact
zeros. Beck & Teboulle (2009), SIAM J. Imaging Sci. 2(1); restart: O'Donoghue & Candes
(2015), Found. Comput. Math. 15. optax has no proximal solver for per-coordinate L1 weights
taken from (batched) priors, hence this one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlemap.solvers._base import Iterate, Solver

__all__ = ["fista", "L1"]

_MAX_BACKTRACKS = 60


class L1(NamedTuple):
    """The L1 part :math:`\\sum_j w_j |u_j - m_j|` over ``mask``."""

    loc: jax.Array  # (dim,) m
    weight: jax.Array  # (dim,) w >= 0
    mask: jax.Array  # (dim,) bool, where the L1 part applies

    def value(self, u):
        return jnp.sum(jnp.where(self.mask, self.weight * jnp.abs(u - self.loc), 0.0))

    def prox(self, v, step):
        """:math:`\\arg\\min_u \\tfrac{1}{2 s}\\|u - v\\|^2 + \\mathrm{L1}(u)` with step ``s``."""
        shrunk = self.loc + jnp.sign(v - self.loc) * jnp.maximum(
            jnp.abs(v - self.loc) - step * self.weight, 0.0)
        return jnp.where(self.mask, shrunk, v)

    def min_subgradient(self, u, grad):
        """The element of smallest magnitude of :math:`\\partial F(u)`, given ``grad`` of h."""
        at_kink = u == self.loc
        smooth_side = grad + self.weight * jnp.sign(u - self.loc)
        kink = jnp.sign(grad) * jnp.maximum(jnp.abs(grad) - self.weight, 0.0)
        return jnp.where(self.mask, jnp.where(at_kink, kink, smooth_side), grad)


class FistaState(NamedTuple):
    y: jax.Array  # (dim,) extrapolated point
    t: jax.Array  # () momentum
    lipschitz: jax.Array  # () backtracking estimate of h's Lipschitz constant


def fista(l1: L1) -> Solver:
    """FISTA on ``h + l1``; ``objective`` is the smooth part :math:`h`.

    The iterate's ``grad`` is the minimum-norm subgradient of :math:`F`, so the loop's
    gradient test is the first-order condition of the non-smooth problem. A step whose
    backtracking finds no point of sufficient decrease leaves the iterate where it was, which
    ends the loop (``Stop.NO_STEP``).
    """

    def init(objective, u0):
        x0 = l1.prox(u0, 0.0)
        value, grad = jax.value_and_grad(objective)(x0)
        one = jnp.ones((), x0.dtype)
        return (Iterate(x0, value + l1.value(x0), l1.min_subgradient(x0, grad)),
                FistaState(x0, one, one))

    def step(objective, iterate, state):
        value_and_grad = jax.value_and_grad(objective)
        hy, gy = value_and_grad(state.y)
        eps = jnp.finfo(hy.dtype).eps

        def too_high(b):
            return ~b[4] & (b[5] < _MAX_BACKTRACKS)

        def double(b):
            lipschitz = b[0] * 2.0
            z = l1.prox(state.y - gy / lipschitz, 1.0 / lipschitz)
            hz, gz = value_and_grad(z)
            dz = z - state.y
            bound = hy + jnp.dot(gy, dz) + 0.5 * lipschitz * jnp.dot(dz, dz)
            ok = jnp.isfinite(hz) & (hz <= bound + 10 * eps * jnp.abs(hy))
            return lipschitz, z, hz, gz, ok, b[5] + 1

        start = (state.lipschitz * 0.25, state.y, hy, gy, jnp.zeros((), bool),
                 jnp.zeros((), jnp.int32))
        lipschitz, z, hz, gz, ok, _ = jax.lax.while_loop(too_high, double, start)
        # Restart the momentum when it points against the proximal-gradient step.
        restart = jnp.dot(state.y - z, z - iterate.position) > 0
        t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2)) / 2.0
        y = jnp.where(restart, z, z + ((state.t - 1.0) / t_next) * (z - iterate.position))
        t = jnp.where(restart, 1.0, t_next)
        new = Iterate(z, hz + l1.value(z), l1.min_subgradient(z, gz))
        # No point of sufficient decrease: the iterate does not move, and the loop stops.
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, iterate)
        return new, FistaState(y, t, lipschitz)

    return Solver(init, step, stops_on_small_change=False)
