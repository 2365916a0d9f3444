"""The shape of every solver, the one loop that runs it, and why it stopped.

A solver minimizes an objective :math:`F(u)` over a flat vector ``u`` of shape ``(dim,)``.
It is a pair of pure functions, in the manner of optax's ``GradientTransformation`` and
blackjax's kernels:

- ``init(objective, u0) -> (iterate, state)``;
- ``step(objective, iterate, state) -> (iterate, state)``, one iteration (a line search, a
  backtracking proximal step, a damped Newton step);

where the :class:`Iterate` is what every solver has (the point, :math:`F` and its gradient)
and ``state`` is the solver's own (its memory, curvature, momentum). :func:`minimize` runs
any solver in one ``jax.lax.while_loop`` and decides, in one place (:func:`stop_code`), when
and why to stop; the :class:`Solution` is the one result type of every solver.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Stop", "Iterate", "Solution", "Solver", "minimize", "stop_code", "max_abs"]

Array = jax.Array
Objective = Callable[[Array], Array]


class Stop(enum.IntEnum):
    """Why a solver's loop stopped; ``fit`` diagnoses the end point from it."""

    RUNNING = -1
    #: :math:`\|\nabla F\|_\infty \le` ``tol`` at the iterate: the first-order condition.
    GRADIENT = 0
    #: No progress: :math:`|F_k - F_{k-1}| \le` ``rtol`` :math:`\max(|F_k|, |F_{k-1}|, 1)` and
    #: the gradient's norm did not decrease either.
    SMALL_CHANGE = 1
    #: ``max_steps`` iterations.
    MAX_STEPS = 2
    #: The proposed iterate's value or gradient was NaN or infinite; the last finite one is kept.
    NONFINITE = 3
    #: The step was zero: the line search found no point of sufficient decrease with a finite
    #: objective (every trial non-finite, or none lower), so the solver cannot go on.
    NO_STEP = 4


class Iterate(NamedTuple):
    """What every solver holds at each iteration."""

    position: Array  # (dim,)
    value: Array  # () F at position
    grad: Array  # (dim,) gradient of F (a proximal solver: the minimum-norm subgradient)


class Solution(NamedTuple):
    """The end of a solver's loop."""

    position: Array  # (dim,)
    value: Array  # () F at position
    grad: Array  # (dim,) gradient of F (a proximal solver: the minimum-norm subgradient)
    num_steps: Array  # () int32, iterations taken
    stop: Array  # () int32, a Stop
    hessian: Array | None  # (dim, dim) of F, for a solver that has one (Newton); else None

    @property
    def grad_norm(self) -> Array:
        """:math:`\\|\\nabla F\\|_\\infty` at ``position``."""
        return max_abs(self.grad)


class Solver(NamedTuple):
    """A minimizer as pure functions; see the module docstring.

    Attributes
    ----------
    init : callable
        ``(objective, u0) -> (Iterate, state)``.
    step : callable
        ``(objective, iterate, state) -> (Iterate, state)``.
    hessian : callable, optional
        ``(state, num_steps) -> (dim, dim)``: a Hessian of :math:`F` the solver already has
        at the end (for ``fit``'s uniqueness check), or ``None``.
    stops_on_small_change : bool
        Whether the loop also stops when neither :math:`F` (``rtol``) nor the gradient
        improves. A proximal solver's objective can stand still between momentum restarts,
        so FISTA says no.
    returns_finite : bool
        The solver never proposes a non-finite iterate (it keeps its own when every trial
        is non-finite), so the loop need not select between the old and the new one.
    """

    init: Callable[[Objective, Array], tuple[Iterate, Any]]
    step: Callable[[Objective, Iterate, Any], tuple[Iterate, Any]]
    hessian: Callable[[Any, Array], Array] | None = None
    stops_on_small_change: bool = True
    returns_finite: bool = False


def max_abs(x: Array) -> Array:
    """:math:`\\|x\\|_\\infty`, 0 for an empty vector."""
    return jnp.max(jnp.abs(x), initial=0.0)


def stop_code(new: Iterate, old: Iterate | None, tol, rtol, num_steps, max_steps) -> Array:
    """The :class:`Stop` code after ``num_steps`` iterations, the first that applies of:
    non-finite, gradient test, zero step, small change (neither at the start, ``old=None``;
    no small change when ``rtol`` is ``None``), step limit."""
    finite = (jnp.isfinite(new.value) & jnp.all(jnp.isfinite(new.grad))
              & jnp.all(jnp.isfinite(new.position)))
    no_step = small_change = jnp.zeros((), bool)
    if old is not None:
        no_step = jnp.all(new.position == old.position)
        if rtol is not None:
            # Near a minimum F stops changing in its last digits while the gradient, still
            # exact, keeps shrinking (quadratically for Newton): that is progress too.
            magnitude = jnp.maximum(jnp.maximum(jnp.abs(new.value), jnp.abs(old.value)), 1.0)
            small_change = ((jnp.abs(new.value - old.value) <= rtol * magnitude)
                            & (max_abs(new.grad) >= max_abs(old.grad)))
    return jnp.where(
        ~finite, Stop.NONFINITE,
        jnp.where(max_abs(new.grad) <= tol, Stop.GRADIENT,
                  jnp.where(no_step, Stop.NO_STEP,
                            jnp.where(small_change, Stop.SMALL_CHANGE,
                                      jnp.where(num_steps >= max_steps, Stop.MAX_STEPS,
                                                Stop.RUNNING)))),
    ).astype(jnp.int32)


def minimize(solver: Solver, objective: Objective, u0: Array, tol, rtol, max_steps) -> Solution:
    """Run ``solver`` on ``objective`` from ``u0`` in one ``lax.while_loop``.

    Each iteration proposes an iterate; a non-finite one stops the loop with the last finite
    iterate kept, and so does one that did not move (a solver whose line search found no
    acceptable point returns its iterate unchanged). ``tol``, ``rtol`` and ``max_steps`` are
    traced values (arguments of the compiled program).
    """
    rtol = rtol if solver.stops_on_small_change else None
    iterate, state = solver.init(objective, u0)
    zero = jnp.zeros((), jnp.int32)
    code = stop_code(iterate, None, tol, rtol, zero, max_steps)

    def body(carry):
        iterate, state, num_steps, _ = carry
        new, new_state = solver.step(objective, iterate, state)
        num_steps = num_steps + 1
        code = stop_code(new, iterate, tol, rtol, num_steps, max_steps)
        if solver.returns_finite:
            return new, new_state, num_steps, code
        keep = code != Stop.NONFINITE
        iterate, state = jax.tree.map(lambda a, b: jnp.where(keep, a, b),
                                      (new, new_state), (iterate, state))
        return iterate, state, num_steps, code

    iterate, state, num_steps, code = jax.lax.while_loop(
        lambda carry: carry[3] == Stop.RUNNING, body, (iterate, state, zero, code))
    hessian = None if solver.hessian is None else solver.hessian(state, num_steps)
    return Solution(iterate.position, iterate.value, iterate.grad, num_steps, code, hessian)
