"""NumPyro's NUTS on a model's log-density: one compiled program for all chains.

NUTS samples the density of the flat unconstrained vector :math:`u \\in \\mathbb{R}^{D}`,

.. math::

    \\log \\pi(u) = \\sum_i \\log p(y_i \\mid T(u)) + \\log p(T(u)) + \\log|\\det J_T(u)|,

built by ``log_density_fn(model, prior=True, jacobian=True)``. The sampler is NumPyro's
functional NUTS, ``numpyro.infer.hmc.hmc(potential_fn_gen=...)``: its
``init_kernel``/``sample_kernel`` take the data and the prior overrides as ``model_args``, so
both are *arguments* of one compiled program (warm-up and sampling in one ``lax.scan``
loop), never constants baked into it. Each program is compiled ahead of time once per
model, settings and argument shapes (:func:`mlemap._programs.compiled`), which is how
``sample`` reports its compile time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from numpyro.infer.hmc import hmc

from mlemap import _adapt, _metric
from mlemap._adapt import AdaptSettings, Chain, Kernel, WarmupInfo
from mlemap._density import log_density_fn, merge_priors
from mlemap._model import Model
from mlemap._programs import compiled, sharding_key

__all__ = ["NutsSettings", "NutsTrace", "run_nuts", "default_chain_method", "chains_fn",
           "adaptive_chains_fn"]

Array = jax.Array


class NutsSettings(NamedTuple):
    """The static settings of one compiled NUTS program with NumPyro's own adaptation
    (``metric="numpyro"``; part of the cache key)."""

    num_warmup: int
    num_samples: int
    target_accept: float
    dense_mass: bool
    max_tree_depth: int | tuple[int, int]


class NutsTrace(NamedTuple):
    """What is recorded at each draw; leading axes ``(chain, draw)`` once stacked."""

    position: Array  # (dim,) unconstrained draw
    potential_energy: Array  # () = -log pi(u)
    energy: Array  # () Hamiltonian at the draw
    num_steps: Array  # () leapfrog steps of the trajectory
    accept_prob: Array  # () mean Metropolis acceptance along the trajectory
    diverging: Array  # () bool
    step_size: Array  # () adapted step size


# --------------------------------------------------------------------------------------------
# NumPyro's adaptation (Stan's windows): one chain, then vmapped, sequential or sharded
# --------------------------------------------------------------------------------------------


def _potential_fn_gen(model: Model) -> Callable:
    """``(data, priors) -> (u -> -log pi(u))``: the potential energy, with the data and the
    prior overrides as model_args (merged over the model's own priors, as in ``mm.fit``)."""
    log_density = log_density_fn(model, prior=True, jacobian=True)

    def potential_fn_gen(data, priors):
        merged = merge_priors(model, priors)
        return lambda position: -log_density(position, data, merged)

    return potential_fn_gen


def chains_fn(model: Model, settings: NutsSettings, batched: bool = True) -> Callable:
    """Build ``run(rng_keys, positions, data, priors) -> (NutsTrace, warm-up gradients)``,
    axes ``(chain, draw, ...)`` and ``(chain,)``.

    ``num_warmup`` adaptation steps (dual-averaging step size, windowed mass matrix: NumPyro's
    ``warmup_adapter``, as in ``numpyro.infer.NUTS``) then ``num_samples`` recorded draws, in
    one ``lax.scan`` whose body is the NUTS kernel vmapped over chains (NumPyro's own
    vectorized layout: it lowers about twice as fast as a vmapped scan, and runs as fast).
    With ``batched=False`` the same program for one chain: ``rng_keys`` a key, ``positions``
    ``(dim,)``, the output ``(draw, ...)``.
    """
    init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_fn_gen(model), algo="NUTS")

    def init_one(rng_key, position, data, priors):
        return init_kernel(
            position,
            settings.num_warmup,
            dense_mass=settings.dense_mass,
            target_accept_prob=settings.target_accept,
            trajectory_length=None,
            max_tree_depth=settings.max_tree_depth,
            model_args=(data, priors),
            rng_key=rng_key,
        )

    def step_one(state, data, priors):
        return sample_kernel(state, model_args=(data, priors))

    if batched:
        init_one = jax.vmap(init_one, in_axes=(0, 0, None, None))
        step_one = jax.vmap(step_one, in_axes=(0, None, None))

    def run(rng_keys, positions, data, priors):
        def step(state, _):
            state = step_one(state, data, priors)
            record = NutsTrace(
                state.z,
                state.potential_energy,
                state.energy,
                state.num_steps,
                state.accept_prob,
                state.diverging,
                state.adapt_state.step_size,
            )
            return state, record

        # One loop over warm-up and draws (the kernel adapts while state.i < num_warmup):
        # the NUTS kernel is compiled once, not once per phase. Warm-up records are dropped,
        # but for their gradient count (leapfrog steps).
        length = settings.num_warmup + settings.num_samples
        _, trace = lax.scan(step, init_one(rng_keys, positions, data, priors), None,
                            length=length)
        warmup_gradients = jnp.sum(trace.num_steps[: settings.num_warmup], axis=0)
        trace = jax.tree.map(lambda x: x[settings.num_warmup :], trace)  # (draw, [chain], ...)
        if batched:
            trace = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trace)
        return trace, warmup_gradients

    return run


# --------------------------------------------------------------------------------------------
# mlemap's adaptation (mlemap._adapt): warm-up of variable length and draws in one while loop
# --------------------------------------------------------------------------------------------


class _Loop(NamedTuple):
    """The schedule's state, shared by the chains of one program (never batched)."""

    t: Array  # iterations done
    phase: Array  # 0 metric windows, 1 step size, 2 draws
    phase_t: Array  # iterations done in the phase
    window: Array  # index of the current metric window
    window_start: Array  # its first iteration
    calibrate: Array  # bool: phase 1 calibrates (the metric settled early), else dual averaging
    recorded: Array  # draws recorded
    warmup: Array  # warm-up iterations (known once the draws start)


def _each(fn, batched, num_shared):
    """``fn(chain, *shared)`` over the chains (vmapped when ``batched``)."""
    return jax.vmap(fn, in_axes=(0,) + (None,) * num_shared) if batched else fn


def _record(chain: Chain) -> NutsTrace:
    state = chain.hmc
    return NutsTrace(_metric.to_position(chain.metric, state.z), state.potential_energy,
                     state.energy, state.num_steps, state.accept_prob, state.diverging,
                     state.adapt_state.step_size)


def adaptive_chains_fn(model: Model, settings: AdaptSettings, batched: bool = True) -> Callable:
    """Build ``run(rng_keys, positions, seed, data, priors) -> (NutsTrace, WarmupInfo)``.

    The trace has axes ``(chain, draw, ...)``, the warm-up information ``(chain, ...)``
    (without the chain axis when ``batched=False``: one chain). ``seed`` is an
    :class:`mlemap._adapt.Seed` when ``settings.seeded``, else ``None``. One
    ``lax.while_loop`` runs the warm-up (:mod:`mlemap._adapt`: metric windows until the
    metric settles or its share of ``num_warmup`` is spent, then the step-size rounds) and
    records ``num_samples`` draws; its iterations are NumPyro's NUTS kernel, compiled once.
    """
    gen = _adapt.potential_fn_gen(model)
    init_kernel, sample_kernel = hmc(potential_fn_gen=gen, algo="NUTS")
    kernel = Kernel(init_kernel, sample_kernel, gen, settings)
    ends, round_length = _adapt.windows(settings.num_warmup, settings.seeded)
    rounds = _adapt.CALIBRATION_ROUNDS if round_length else 0
    first_phase = 0 if ends else (1 if rounds else 2)
    window_ends = jnp.asarray(ends + (-1,))
    each = functools.partial(_each, batched=batched)
    step = each(lambda c, w, d, p: _adapt.step(kernel, c, w, d, p), num_shared=3)
    collect = each(lambda c, slot: _adapt.collect(kernel, c, slot), num_shared=1)
    strict = _adapt.strict_target(settings.target_accept)
    averaging = each(lambda c: _adapt.dual_averaging_step(kernel, c, strict), num_shared=0)
    restart = each(_adapt.restart_averaging, num_shared=0)
    end_window = each(lambda c, d, p: _adapt.end_window(kernel, c, d, p), num_shared=2)
    averaged = each(_adapt.averaged_step_size, num_shared=0)
    end_round = each(lambda c: _adapt.end_round(kernel, c, round_length), num_shared=0)
    finish_rounds = each(lambda c: _adapt.finish_rounds(c, max(rounds, 1)), num_shared=0)
    record = each(_record, num_shared=0)
    init = jax.vmap(lambda k, x, s, d, p: _adapt.init_chain(kernel, k, x, s, d, p),
                    in_axes=(0, 0, 0, None, None)) if batched else (
        lambda k, x, s, d, p: _adapt.init_chain(kernel, k, x, s, d, p))
    skip = lambda c: c  # noqa: E731

    def windows_step(chains, loop, data, priors):
        """Phase 0: collect, and at a window's end estimate; whether phase 0 ends."""
        chains = lax.cond(loop.phase == 0, lambda c: collect(
            c, (loop.t - loop.window_start) % _adapt.BUFFER), skip, chains)
        at_end = (loop.phase == 0) & (loop.t + 1 == window_ends[loop.window])
        chains = lax.cond(at_end, lambda c: end_window(c, data, priors), skip, chains)
        last = loop.window == len(ends) - 1
        settled = jnp.all(chains.info.settled)
        leave = at_end & (settled | last)
        gaussian = jnp.all(chains.info.misfit <= _adapt.GAUSSIAN_MISFIT)
        calibrate = jnp.where(leave, settled & ~last & gaussian & (rounds > 0), loop.calibrate)
        # Calibration starts from dual averaging's average, and so do the draws without
        # rounds; otherwise dual averaging restarts towards the strict target.
        chains = lax.cond(leave, lambda c: lax.cond(calibrate | (rounds == 0), averaged,
                                                    restart, c), skip, chains)
        return chains, at_end, leave, calibrate

    def step_size_step(chains, loop):
        """Phase 1: calibration rounds, or dual averaging; whether phase 1 ends."""
        in_rounds = loop.phase == 1
        calibrating = in_rounds & loop.calibrate
        chains = lax.cond(calibrating, lambda c: c._replace(
            accept_sum=c.accept_sum + c.hmc.accept_prob), skip, chains)
        chains = lax.cond(in_rounds & ~loop.calibrate, averaging, skip, chains)
        chains = lax.cond(calibrating & ((loop.phase_t + 1) % max(round_length, 1) == 0),
                          end_round, skip, chains)
        done = in_rounds & (loop.phase_t + 1 == rounds * round_length)
        chains = lax.cond(done, lambda c: lax.cond(loop.calibrate, finish_rounds, averaged, c),
                          skip, chains)
        return chains, done

    def body(carry, data, priors):
        chains, loop, trace = carry
        chains = step(chains, loop.phase < 2, data, priors)
        chains, at_end, leave, calibrate = windows_step(chains, loop, data, priors)
        chains, done = step_size_step(chains, loop)
        trace = lax.cond(loop.phase == 2, lambda tr: jax.tree.map(
            lambda buf, x: buf.at[loop.recorded].set(x), tr, record(chains)), skip, trace)
        phase = jnp.where(leave, 1 if rounds else 2, loop.phase)
        phase = jnp.where(done, 2, phase)
        t = loop.t + 1
        loop = _Loop(t, phase, jnp.where(phase != loop.phase, 0, loop.phase_t + 1),
                     loop.window + at_end, jnp.where(at_end, t, loop.window_start), calibrate,
                     loop.recorded + (loop.phase == 2),
                     jnp.where((phase == 2) & (loop.phase != 2), t, loop.warmup))
        return chains, loop, trace

    def run(rng_keys, positions, seed, data, priors):
        chains = init(rng_keys, positions, seed, data, priors)
        zero = jnp.zeros((), jnp.result_type(int))
        loop = _Loop(zero, zero + first_phase, zero, zero, zero, jnp.array(False), zero, zero)
        trace = jax.tree.map(lambda x: jnp.zeros((settings.num_samples, *x.shape), x.dtype),
                             record(chains))
        chains, loop, trace = lax.while_loop(
            lambda carry: carry[1].recorded < settings.num_samples,
            lambda carry: body(carry, data, priors), (chains, loop, trace))
        info = chains.info._replace(iterations=jnp.broadcast_to(
            loop.warmup, chains.info.iterations.shape), metric=chains.metric)
        if batched:  # (draw, chain, ...) -> (chain, draw, ...)
            trace = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trace)
        return trace, info

    return run


def _chain_mesh(num_devices: int) -> jax.sharding.Mesh:
    return jax.make_mesh(
        (num_devices,), ("chain",), devices=jax.local_devices()[:num_devices],
        axis_types=(jax.sharding.AxisType.Explicit,),
    )


def _program_fn(model, settings, batched: bool = True) -> Callable:
    """``run(rng_keys, positions, seed, data, priors) -> (NutsTrace, WarmupInfo)`` for either
    adaptation (NumPyro's takes no seed, and its WarmupInfo has no metric)."""
    if isinstance(settings, AdaptSettings):
        return adaptive_chains_fn(model, settings, batched)
    legacy = chains_fn(model, settings, batched)

    def run(keys, positions, seed, data, priors):
        trace, gradients = legacy(keys, positions, data, priors)
        iterations = jnp.full_like(gradients, settings.num_warmup)
        nan = jnp.full(gradients.shape, jnp.nan, trace.step_size.dtype)
        return trace, WarmupInfo(iterations, gradients, jnp.zeros_like(gradients),
                                 jnp.zeros(gradients.shape, bool), nan, nan, None)

    return run


def _parallel_fn(model, settings, mesh):
    """Chains sharded over the devices of ``mesh``; each device runs its chains vmapped.

    ``shard_map`` (not a sharded ``vmap``) so that each device runs its own while-loops and
    does not wait, step by step, for the longest trajectory on the other devices.
    """
    spec = jax.sharding.PartitionSpec("chain")
    shared = jax.sharding.PartitionSpec()
    return jax.shard_map(
        _program_fn(model, settings),
        mesh=mesh,
        in_specs=(spec, spec, spec, shared, shared),
        out_specs=spec,
        check_vma=False,
    )


def default_chain_method(num_chains: int, data) -> str:
    """Parallel when each chain gets its own device; else sequential on a CPU, vectorized on
    an accelerator (see :func:`mlemap.sample`'s ``chain_method``).

    Data already laid out over several devices (``mm.shard``) stays so: vectorized chains,
    each log-density evaluation split over the devices by XLA.
    """
    sharded = any(sharding_key(x) is not None for x in jax.tree.leaves(data))
    if sharded:
        return "vectorized"
    if num_chains > 1 and jax.local_device_count() >= num_chains:
        return "parallel"
    return "sequential" if jax.default_backend() == "cpu" else "vectorized"


def run_nuts(model, settings, chain_method, rng_keys, positions, seed, data, priors, progress):
    """Run all chains: ``(NutsTrace (chain, draw, ...), WarmupInfo (chain, ...), compile s,
    run s)``. ``settings``: :class:`AdaptSettings` (mlemap's adaptation, with
    ``seed`` when seeded) or :class:`NutsSettings` (NumPyro's)."""
    num_chains = positions.shape[0]
    static = (settings, chain_method)
    if chain_method == "sequential":
        one = lambda x: jax.tree.map(lambda a: a[0], x)  # noqa: E731
        program = compiled(
            model, ("sample", "nuts-chain", *static),
            lambda m: _program_fn(m, settings, batched=False),
            rng_keys[0], positions[0], one(seed), data, priors,
        )
        progress(f"compiled in {program.compile_seconds:.1f} s")
        start = time.perf_counter()
        outs = []
        for c in range(num_chains):
            outs.append(jax.block_until_ready(program.run(
                rng_keys[c], positions[c], jax.tree.map(lambda a: a[c], seed), data, priors)))
            progress(f"chain {c + 1}/{num_chains} done ({time.perf_counter() - start:.1f} s)")
        trace, info = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    else:
        if chain_method == "parallel":
            num_devices = min(num_chains, jax.local_device_count())
            mesh = _chain_mesh(num_devices)
            by_chain = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chain"))
            replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            rng_keys, positions, seed = jax.device_put((rng_keys, positions, seed), by_chain)
            data, priors = jax.device_put((data, priors), replicated)
            build = lambda m: _parallel_fn(m, settings, mesh)  # noqa: E731
            static = static + (num_devices,)
        else:
            build = lambda m: _program_fn(m, settings)  # noqa: E731
        program = compiled(model, ("sample", f"nuts-{chain_method}", *static), build, rng_keys,
                           positions, seed, data, priors)
        progress(f"compiled in {program.compile_seconds:.1f} s")
        start = time.perf_counter()
        trace, info = jax.block_until_ready(program.run(rng_keys, positions, seed, data, priors))
    seconds = time.perf_counter() - start
    warmup = f"{int(jnp.max(info.iterations))}"
    if isinstance(settings, AdaptSettings):
        warmup += f" (of at most {settings.num_warmup})"
    progress(f"{num_chains} chains x ({warmup} warm-up + {settings.num_samples} "
             f"draws) in {seconds:.1f} s")
    return trace, info, program.compile_seconds, seconds
