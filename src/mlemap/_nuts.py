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

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from numpyro.infer.hmc import hmc

from mlemap._density import log_density_fn, merge_priors
from mlemap._model import Model
from mlemap._programs import compiled, sharding_key

__all__ = ["NutsSettings", "NutsTrace", "run_nuts", "default_chain_method", "chains_fn"]

Array = jax.Array


class NutsSettings(NamedTuple):
    """The static settings of one compiled NUTS program (part of the cache key)."""

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
# The NUTS program: one chain, then vmapped, sequential or sharded over devices
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
    """Build ``run(rng_keys, positions, data, priors) -> NutsTrace``, axes ``(chain, draw, ...)``.

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
        # the NUTS kernel is compiled once, not once per phase. Warm-up records are dropped.
        length = settings.num_warmup + settings.num_samples
        _, trace = lax.scan(step, init_one(rng_keys, positions, data, priors), None,
                            length=length)
        trace = jax.tree.map(lambda x: x[settings.num_warmup :], trace)  # (draw, [chain], ...)
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trace) if batched else trace

    return run


def _chain_mesh(num_devices: int) -> jax.sharding.Mesh:
    return jax.make_mesh(
        (num_devices,), ("chain",), devices=jax.local_devices()[:num_devices],
        axis_types=(jax.sharding.AxisType.Explicit,),
    )


def _parallel_fn(model, settings, mesh):
    """Chains sharded over the devices of ``mesh``; each device runs its chains vmapped.

    ``shard_map`` (not a sharded ``vmap``) so that each device runs its own while-loops and
    does not wait, step by step, for the longest trajectory on the other devices.
    """
    spec = jax.sharding.PartitionSpec("chain")
    return jax.shard_map(
        chains_fn(model, settings),
        mesh=mesh,
        in_specs=(spec, spec, jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec()),
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


def run_nuts(model, settings, chain_method, rng_keys, positions, data, priors, progress):
    """Run all chains; return (NutsTrace with leading (chain, draw) axes, compile s, run s)."""
    num_chains = positions.shape[0]
    static = (settings, chain_method)
    if chain_method == "sequential":
        program = compiled(
            model, ("sample", "nuts-chain", *static),
            lambda m: chains_fn(m, settings, batched=False),
            rng_keys[0], positions[0], data, priors,
        )
        progress(f"compiled in {program.compile_seconds:.1f} s")
        start = time.perf_counter()
        traces = []
        for c in range(num_chains):
            traces.append(jax.block_until_ready(
                program.run(rng_keys[c], positions[c], data, priors)))
            progress(f"chain {c + 1}/{num_chains} done ({time.perf_counter() - start:.1f} s)")
        trace = jax.tree.map(lambda *xs: jnp.stack(xs), *traces)
    else:
        if chain_method == "parallel":
            num_devices = min(num_chains, jax.local_device_count())
            mesh = _chain_mesh(num_devices)
            by_chain = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chain"))
            replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            rng_keys = jax.device_put(rng_keys, by_chain)
            positions = jax.device_put(positions, by_chain)
            data = jax.device_put(data, replicated)
            priors = jax.device_put(priors, replicated)
            build = lambda m: _parallel_fn(m, settings, mesh)  # noqa: E731
            static = static + (num_devices,)
        else:
            build = lambda m: chains_fn(m, settings)  # noqa: E731
        program = compiled(model, ("sample", f"nuts-{chain_method}", *static), build, rng_keys,
                           positions, data, priors)
        progress(f"compiled in {program.compile_seconds:.1f} s")
        start = time.perf_counter()
        trace = jax.block_until_ready(program.run(rng_keys, positions, data, priors))
    seconds = time.perf_counter() - start
    progress(f"{num_chains} chains x ({settings.num_warmup} warm-up + {settings.num_samples} "
             f"draws) in {seconds:.1f} s")
    return trace, program.compile_seconds, seconds
