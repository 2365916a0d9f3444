"""NUTS whose metric is learned from draws and gradients, seeded from the mode: one compiled
loop over warm-up and draws.

NumPyro's functional NUTS (``numpyro.infer.hmc.hmc(potential_fn_gen=...)``) integrates the
trajectories with an identity mass matrix in the coordinates :math:`x` of a metric
(:mod:`mlemap._metric`): its potential is :math:`x \\mapsto -\\log\\pi(F(x))`, and the metric
is a *model argument* of the kernel, so it changes between iterations without recompiling.
NumPyro's own adaptation is switched off; this module adapts instead:

1. **Start.** Seeded (``init="map"``): the Laplace approximation's metric and the step size
   from the largest eigenvalue of the Hessian in its coordinates (:func:`seed_step_size`).
   Otherwise nutpie's first metric (variances :math:`1/|\\nabla\\log\\pi|`; the identity
   when the start is the MAP, where the gradient vanishes) and NumPyro's
   ``find_reasonable_step_size``.
2. **Metric windows.** Draws and gradients (in the current :math:`x`) fill a buffer; at the
   end of each window (:func:`windows`: nutpie's short early windows when unseeded, growing
   windows), :func:`mlemap._metric.estimate` gives a correction of the current metric. When
   its :func:`~mlemap._metric.spread` is below ``SETTLED`` in every chain of the program, the
   metric has *settled*: it is kept and the warm-up moves on, however much of ``num_warmup``
   is left. Otherwise the correction is composed into the metric, the step size is searched
   again and dual averaging (NumPyro's ``dual_averaging``) restarts, as in Stan.
3. **Step size.** When the metric settled before the last window, ``CALIBRATION_ROUNDS``
   rounds of ``round_length`` iterations at a fixed step size :math:`\\epsilon`, each
   followed by :math:`\\epsilon \\leftarrow \\epsilon\\,\\sqrt{\\Phi^{-1}(\\delta/2) /
   \\Phi^{-1}(\\bar a/2)}`, with :math:`\\bar a` the round's mean acceptance statistic and
   :math:`\\delta` the target; the draws use the rounds' geometric mean. The acceptance of
   HMC on a Gaussian in high dimension is :math:`2\\Phi(-c\\,\\epsilon^2)` (Beskos et al.
   2013), so one round solves :math:`\\bar a(\\epsilon) = \\delta` when that holds (the
   correction is bounded by 2 otherwise). Dual averaging's average lands below that step
   size after a short warm-up (its iterates are noisy and the acceptance is concave in them),
   which costs NUTS a tree depth on a regression (BENCHMARKS.md section 4). When the metric
   did not settle (a hierarchical posterior, whose curvature varies: the Gaussian model of
   the acceptance does not hold), dual averaging goes on for the same iterations and its
   average is used, as in Stan: its downward bias then guards against divergences.
4. **Draws** at the final metric and step size, recorded in :math:`u = F(x)`.

Warm-up iterations are therefore *at most* ``num_warmup``. The chains of one program
(vectorized, or one device's under ``"parallel"``) share the schedule (they advance in
lock-step anyway) and move on when all have settled; sequential chains each have their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtri
from numpyro.infer.hmc import momentum_generator
from numpyro.infer.hmc_util import (IntegratorState, dual_averaging, euclidean_kinetic_energy,
                                    find_reasonable_step_size)

from mlemap import _metric
from mlemap._density import log_density_fn, merge_priors
from mlemap._metric import Metric

__all__ = ["AdaptSettings", "Seed", "WarmupInfo", "Kernel", "Chain", "windows",
           "seed_step_size", "potential_fn_gen", "init_chain", "step", "collect",
           "dual_averaging_step", "end_window", "averaged_step_size", "restart_averaging",
           "end_round", "finish_rounds", "strict_target", "BUFFER", "CALIBRATION_ROUNDS",
           "GAUSSIAN_MISFIT"]

Array = jax.Array

#: A correction whose log condition number is below this leaves the metric as it is
#: (log 2: the correction's variances all within a factor 2 of each other).
SETTLED = float(np.log(2.0))
#: The step size is calibrated (to target_accept) only when the gradients of the last window
#: are this close to a Gaussian's (mlemap._metric.gaussian_misfit): measured 0.001-0.013 on
#: regressions (logistic, kidiq, arK), 0.05-0.23 on eight schools (non-centered).
GAUSSIAN_MISFIT = 0.03
#: Windows with fewer draws than this are not tested for a settled metric.
MIN_TEST_DRAWS = 20
#: Draws and gradients kept for an estimate (the last ones of a longer window).
BUFFER = 256
#: Step-size calibration: rounds, and iterations per round (fewer when num_warmup is small).
CALIBRATION_ROUNDS = 2
ROUND_LENGTH = 50
#: Window lengths: seeded (the metric is nearly right: test it soon), and unseeded (nutpie's
#: early windows of 10 draws, then doubling).
SEEDED_WINDOWS = (30, 60, 120, 240)
UNSEEDED_WINDOWS = (10, 10, 10, 20, 40, 80, 160)


class AdaptSettings(NamedTuple):
    """The static settings of one compiled program (part of the cache key)."""

    num_warmup: int
    num_samples: int
    target_accept: float
    max_tree_depth: int | tuple[int, int]
    rank: int  # eigenpairs of the metric: 0 diagonal, dim dense
    seeded: bool  # the metric and step size are arguments (from the Laplace approximation)
    #: Unseeded: nutpie's first metric, 1 / |gradient| at the start, or (False) the identity,
    #: when the start is the MAP, where the gradient is ~0 and says nothing of the scales
    #: (a kinked likelihood whose Hessian seeds nothing: variances of 1e20 stalled a chain).
    gradient_metric: bool = True


class Seed(NamedTuple):
    """A starting metric and step size per chain (leading chain axis when batched)."""

    metric: Metric
    step_size: Array


class WarmupInfo(NamedTuple):
    """What the warm-up did, per chain."""

    iterations: Array  # () warm-up iterations run (<= num_warmup)
    gradients: Array  # () leapfrog steps (gradient evaluations) of the warm-up
    metric_updates: Array  # () times the metric changed after the start
    settled: Array  # () bool: the metric passed the settled test before num_warmup
    spread: Array  # () the last test's log condition number of the correction
    misfit: Array  # () the last window's gaussian_misfit (0: the gradients of a Gaussian)
    metric: Metric  # the final metric


class Chain(NamedTuple):
    """One chain's state between iterations."""

    hmc: object  # NumPyro's HMCState, z in the metric's coordinates
    metric: Metric
    da: tuple  # NumPyro's dual-averaging state
    draws: Array  # (BUFFER, d) in x
    grads: Array  # (BUFFER, d) of log pi in x
    weights: Array  # (BUFFER,)
    accept_sum: Array  # () over the current calibration round
    log_steps: Array  # () sum of the calibrated log step sizes of the rounds so far
    info: WarmupInfo


def windows(num_warmup: int, seeded: bool) -> tuple[tuple[int, ...], int]:
    """``(ends of the metric windows, iterations per calibration round)``.

    ``CALIBRATION_ROUNDS * round_length`` iterations end the warm-up (at most a third of
    it); the windows fill the rest, the last one stretched to its end.
    """
    round_length = min(ROUND_LENGTH, num_warmup // (3 * CALIBRATION_ROUNDS))
    if round_length < 10:
        round_length = 0
    budget = num_warmup - CALIBRATION_ROUNDS * round_length
    sizes = SEEDED_WINDOWS if seeded else UNSEEDED_WINDOWS
    ends, end = [], 0
    for size in _sizes(sizes):
        if end + size > budget:
            break
        end += size
        ends.append(end)
    if ends:
        ends[-1] = budget
    elif budget > 0:
        ends = [budget]
    return tuple(ends), round_length


def _sizes(sizes):
    yield from sizes
    size = sizes[-1]
    while True:
        size *= 2
        yield size


def potential_fn_gen(model) -> Callable:
    """``(data, priors, metric) -> (x -> -log pi(F(x)))``, NumPyro's ``potential_fn_gen``."""
    log_density = log_density_fn(model, prior=True, jacobian=True)

    def gen(data, priors, metric):
        merged = merge_priors(model, priors)
        return lambda x: -log_density(_metric.to_position(metric, x), data, merged)

    return gen


def seed_step_size(whitened_hessian_max: float, dim: int, target_accept: float) -> float:
    """A first step size in the coordinates of a Laplace metric.

    :math:`\\epsilon_0 = 0.6\\,(50/d)^{1/4} \\sqrt{\\Phi^{-1}(\\delta/2) / \\Phi^{-1}(0.4)}
    / \\sqrt{h}`, with :math:`h` the largest eigenvalue of the negative Hessian in those
    coordinates (1 when the metric is the Laplace covariance): NUTS on a 50-dimensional
    standard normal has mean acceptance 0.8 at a step size near 0.6, and the high-dimension
    acceptance :math:`2\\Phi(-c\\,\\epsilon^2\\,d^{1/2})` scales it to other :math:`d` and
    :math:`\\delta`.
    """
    from scipy.special import ndtri as host_ndtri

    ratio = float(host_ndtri(target_accept / 2) / host_ndtri(0.4))
    return 0.6 * (50.0 / max(dim, 1)) ** 0.25 * np.sqrt(ratio) / np.sqrt(whitened_hessian_max)


# --------------------------------------------------------------------------------------------
# One chain: start, step, window end, calibration
# --------------------------------------------------------------------------------------------


class Kernel(NamedTuple):
    init: Callable
    sample: Callable
    gen: Callable
    settings: AdaptSettings


def _set_step(state, step_size):
    return state._replace(adapt_state=state.adapt_state._replace(step_size=step_size))


def _find_step_size(kernel, state, metric, step_size, key, data, priors):
    """NumPyro's doubling/halving search from ``step_size``, and its gradient evaluations.

    Each try is one leapfrog step and doubles (or halves) the step size, except the first
    (unchanged) and the last (the one that turns back): ``1 + |log2(found / start)|`` tries.
    """
    potential = kernel.gen(data, priors, metric)
    z_info = IntegratorState(state.z, None, state.potential_energy, state.z_grad)
    found = find_reasonable_step_size(potential, euclidean_kinetic_energy, momentum_generator,
                                      step_size, jnp.ones_like(state.z), z_info, key)
    # A search that failed (no step size at which the energy is finite) ends at 0 or NaN:
    # its tries are counted down to the smallest normal float.
    floor = jnp.finfo(found.dtype).tiny
    ratio = jnp.where(jnp.isfinite(found), jnp.maximum(found, floor), floor) / step_size
    tries = 1 + jnp.round(jnp.abs(jnp.log2(ratio)))
    return found, tries.astype(jnp.result_type(int))


def init_chain(kernel, key, position, seed, data, priors) -> Chain:
    settings = kernel.settings
    dim, dtype = position.shape[0], position.dtype
    kernel_key, step_key = jax.random.split(key)
    if settings.seeded:
        metric, step_size = seed.metric, seed.step_size
    elif settings.gradient_metric:
        grad = jax.grad(lambda u: -kernel.gen(data, priors, _metric.identity(dim, 0))(u))(position)
        metric, step_size = _metric.from_gradient_at(position, grad, settings.rank), 1.0
    else:
        metric = _metric.identity(dim, settings.rank, dtype)._replace(center=position)
        step_size = 1.0
    state = kernel.init(_metric.from_position(metric, position), 1, step_size=step_size,
                        adapt_step_size=False, adapt_mass_matrix=False, trajectory_length=None,
                        max_tree_depth=settings.max_tree_depth,
                        model_args=(data, priors, metric), rng_key=kernel_key)
    gradients = jnp.ones((), jnp.result_type(int))  # the kernel's at the start
    if not settings.seeded:
        step_size, tries = _find_step_size(kernel, state, metric, jnp.asarray(step_size, dtype),
                                           step_key, data, priors)
        gradients = gradients + 1 + tries
    step_size = jnp.asarray(step_size, dtype)
    zero, izero = jnp.zeros((), dtype), jnp.zeros((), jnp.result_type(int))
    inf = jnp.asarray(jnp.inf, dtype)
    info = WarmupInfo(izero, gradients, izero, jnp.array(False), inf, inf, metric)
    return Chain(_set_step(state, step_size), metric, _da_start(step_size, settings.seeded),
                  jnp.zeros((BUFFER, dim), dtype), jnp.zeros((BUFFER, dim), dtype),
                  jnp.zeros(BUFFER, dtype), zero, zero, info)


def _da_start(step_size, seeded):
    """Dual averaging from ``step_size``, shrinking towards ``10 * step_size`` (Stan's
    exploration) unless the step size comes from the Hessian (then towards itself)."""
    da_init, _ = dual_averaging()
    return da_init(jnp.log(step_size) + (0.0 if seeded else jnp.log(10.0)))


def step(kernel, chain: Chain, warm, data, priors) -> Chain:
    """One NUTS transition; ``warm`` selects the warm-up tree depth (NumPyro's ``i < 1``)."""
    state = chain.hmc._replace(i=jnp.where(warm, 0, 1).astype(chain.hmc.i.dtype))
    state = kernel.sample(state, model_args=(data, priors, chain.metric))
    info = chain.info._replace(
        gradients=chain.info.gradients + jnp.where(warm, state.num_steps, 0))
    return chain._replace(hmc=state, info=info)


def strict_target(target_accept: float) -> float:
    """:math:`(1 + \\delta)/2`: the acceptance dual averaging aims at where the posterior is
    not near-Gaussian."""
    return 0.5 * (1.0 + target_accept)


def dual_averaging_step(kernel, chain: Chain, target: float | None = None) -> Chain:
    """One step of dual averaging on the last transition's acceptance statistic, towards
    ``target`` (default ``target_accept``)."""
    _, da_update = dual_averaging()
    target = kernel.settings.target_accept if target is None else target
    da = da_update(target - chain.hmc.accept_prob, chain.da)
    return chain._replace(hmc=_set_step(chain.hmc, jnp.exp(da[0])), da=da)


def collect(kernel, chain: Chain, slot) -> Chain:
    """Record the draw and its gradient in the buffer; one step of dual averaging."""
    state = chain.hmc
    moved = jnp.any(state.z != chain.draws[(slot - 1) % BUFFER]) | (slot == 0)
    chain = chain._replace(
        draws=chain.draws.at[slot].set(state.z), grads=chain.grads.at[slot].set(-state.z_grad),
        weights=chain.weights.at[slot].set(moved.astype(chain.weights.dtype)))
    return dual_averaging_step(kernel, chain)


def end_window(kernel, chain: Chain, data, priors) -> Chain:
    """Estimate a correction from the window's draws; keep the metric when it has settled,
    else compose the correction into it, move the state and restart the step size."""
    rank = kernel.settings.rank
    correction = _metric.estimate(chain.draws, chain.grads, chain.weights, rank)
    count = jnp.sum(chain.weights)
    spread = jnp.where(count >= 2, _metric.spread(correction), jnp.inf)
    settled = (count >= MIN_TEST_DRAWS) & (spread <= SETTLED)
    misfit = _metric.gaussian_misfit(correction, chain.draws, chain.grads, chain.weights)
    new = _metric.compose(chain.metric, correction)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in new]))
    change = finite & ~settled & (count >= 2)
    old_state = chain.hmc
    grad_u = _metric.from_gradient(chain.metric, old_state.z_grad)
    u = _metric.to_position(chain.metric, old_state.z)
    candidate = old_state._replace(z=_metric.from_position(new, u),
                                   z_grad=_metric.to_gradient(new, grad_u))
    current = old_state.adapt_state.step_size
    # Searched only where the metric changed (all chains of a vmapped program search).
    key = jax.random.fold_in(old_state.rng_key, 1)
    step_size, tries = lax.cond(
        change, lambda: _find_step_size(kernel, candidate, new, current, key, data, priors),
        lambda: (current, jnp.zeros((), jnp.result_type(int))))
    # No finite, positive step size for the new metric (its trajectories are not finite
    # around the current point: an estimate from gradients that barely vary, as a kinked
    # likelihood's): the new metric is rejected and the chain goes on with the current one.
    change = change & jnp.isfinite(step_size) & (step_size > 0)
    step_size = jnp.where(change, step_size, current)
    pick = lambda a, b: jnp.where(change, a, b)  # noqa: E731
    metric = jax.tree.map(pick, new, chain.metric)
    state = jax.tree.map(pick, candidate, old_state)
    da = jax.tree.map(pick, _da_start(step_size, False), chain.da)
    info = chain.info._replace(metric_updates=chain.info.metric_updates + change,
                               settled=settled, spread=spread, misfit=misfit,
                               gradients=chain.info.gradients + tries)
    return chain._replace(hmc=_set_step(state, step_size), metric=metric, da=da, info=info,
                          weights=jnp.zeros_like(chain.weights))


def averaged_step_size(chain: Chain) -> Chain:
    """Dual averaging's average step size (the current one when it has just restarted)."""
    step_size = jnp.where(chain.da[3] > 0, jnp.exp(chain.da[1]), chain.hmc.adapt_state.step_size)
    return chain._replace(hmc=_set_step(chain.hmc, step_size),
                          accept_sum=jnp.zeros_like(chain.accept_sum),
                          log_steps=jnp.zeros_like(chain.log_steps))


def restart_averaging(chain: Chain) -> Chain:
    """Dual averaging's average step size, then dual averaging again from it (shrinking
    towards it: no exploration of 10 times larger steps)."""
    chain = averaged_step_size(chain)
    return chain._replace(da=_da_start(chain.hmc.adapt_state.step_size, True))


def end_round(kernel, chain: Chain, round_length: int) -> Chain:
    """:math:`\\epsilon \\leftarrow \\epsilon \\sqrt{\\Phi^{-1}(\\delta/2)/\\Phi^{-1}(\\bar a/2)}`,
    the factor bounded to [1/2, 2]; the log of the new step size is added up."""
    mean = jnp.clip(chain.accept_sum / round_length, 0.01, 0.99)
    ratio = jnp.sqrt(ndtri(kernel.settings.target_accept / 2) / ndtri(mean / 2))
    step_size = chain.hmc.adapt_state.step_size * jnp.clip(ratio, 0.5, 2.0)
    return chain._replace(hmc=_set_step(chain.hmc, step_size),
                          accept_sum=jnp.zeros_like(chain.accept_sum),
                          log_steps=chain.log_steps + jnp.log(step_size))


def finish_rounds(chain: Chain, rounds: int) -> Chain:
    """The geometric mean of the rounds' step sizes (each an estimate of the one whose mean
    acceptance is the target: their mean halves the noise of one)."""
    return chain._replace(hmc=_set_step(chain.hmc, jnp.exp(chain.log_steps / rounds)))
