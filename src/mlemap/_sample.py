"""sample(): NumPyro's NUTS on the model's log-density, returned as an ArviZ DataTree.

NUTS samples the density of the flat unconstrained vector :math:`u \\in \\mathbb{R}^{D}`,

.. math::

    \\log \\pi(u) = \\sum_i \\log p(y_i \\mid T(u)) + \\log p(T(u)) + \\log|\\det J_T(u)|,

the very function that ``log_density_fn(model, prior=True, jacobian=True)`` builds for the
Laplace approximation, and maps each draw back with :math:`T` (NumPyro's ``biject_to``).

The sampler is NumPyro's functional NUTS, ``numpyro.infer.hmc.hmc(potential_fn_gen=...)``:
its ``init_kernel``/``sample_kernel`` take the data and the prior overrides (``priors=``)
as ``model_args``, so both are *arguments* of one compiled program (warm-up and sampling in
one ``lax.scan`` loop), never constants baked into it. Each compiled program is cached per
(model, settings, shapes and dtypes of the data and of the priors' parameters): calling
:func:`sample` again on new data of the same shapes, or with priors of other scales but the
same structure, runs the same executable, with no tracing and no compilation.
"""

from __future__ import annotations

import collections
import importlib.metadata
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import Distribution
from numpyro.infer.hmc import hmc

from mlemap._fit import _check_priors, _merge_priors, fit
from mlemap._model import (Model, check_log_likelihood, check_param_names, log_density_fn,
                           resolve_prior)
from mlemap._shard import spans_processes, to_host

__all__ = ["sample", "SamplingWarning"]

Array = jax.Array

#: Half-width of the uniform jitter around the MAP (unconstrained space) for ``init="map"``.
MAP_JITTER = 0.1
#: Half-width of Stan's and NumPyro's default uniform initialization (unconstrained space).
UNIFORM_RADIUS = 2.0
#: How many times a random start that gives a non-finite log-density is drawn again.
MAX_INIT_TRIES = 20
#: Diagnostic thresholds (Vehtari et al. 2021): R-hat, bulk ESS per chain.
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
#: Name of the pointwise log-likelihood variable and of its observation dimension.
LOG_LIKELIHOOD_VAR = "log_likelihood"
OBS_DIM = "obs"
_CHAIN_METHODS = ("parallel", "vectorized", "sequential")


class SamplingWarning(UserWarning):
    """A sampling diagnostic failed: divergences, R-hat, ESS or tree depth."""


# --------------------------------------------------------------------------------------------
# States and settings
# --------------------------------------------------------------------------------------------


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


class _Program(NamedTuple):
    """A compiled executable and the seconds that its compilation took (0 on a cache hit)."""

    run: Callable
    compile_seconds: float


# --------------------------------------------------------------------------------------------
# Compilation cache: one executable per (model, kind, static settings, argument shapes)
# --------------------------------------------------------------------------------------------

_CACHE: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
_CACHE_SIZE = 32


def _signature(args) -> tuple:
    """Hashable description of a pytree of arrays: structure, shapes, dtypes, weak types."""
    leaves, treedef = jax.tree.flatten(args)
    return (
        treedef,
        tuple(
            (tuple(np.shape(x)), str(x.dtype), bool(getattr(x, "weak_type", False)),
             _sharding_key(x))
            for x in leaves
        ),
    )


def _sharding_key(x):
    """The sharding of a multi-device array (a compiled program is specialized to it)."""
    sharding = getattr(x, "sharding", None)
    if sharding is None or len(sharding.device_set) <= 1:
        return None
    return sharding


def _compiled(model: Model, kind: str, static: tuple, build: Callable[[], Callable], *args):
    """Return the compiled ``build()`` for these arguments' shapes, compiling on a miss.

    The model is part of the key (models hash by identity), so two models never share a
    program; the cache is a bounded LRU, so it does not keep every model alive forever.
    """
    key = (model, kind, static, _signature(args))
    run = _CACHE.get(key)
    if run is not None:
        _CACHE.move_to_end(key)
        return _Program(run, 0.0)
    start = time.perf_counter()
    run = jax.jit(build()).lower(*args).compile()
    seconds = time.perf_counter() - start
    _CACHE[key] = run
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _Program(run, seconds)


# --------------------------------------------------------------------------------------------
# The NUTS program: one chain, then vmapped, sequential or sharded over devices
# --------------------------------------------------------------------------------------------


def _potential_fn_gen(model: Model) -> Callable:
    """``(data, priors) -> (u -> -log pi(u))``: the potential energy, with the data and the
    prior overrides as model_args (merged over the model's own priors, as in ``mm.fit``)."""
    log_density = log_density_fn(model, prior=True, jacobian=True)

    def potential_fn_gen(data, priors):
        merged = _merge_priors(model, priors, {})
        return lambda position: -log_density(position, data, merged)

    return potential_fn_gen


def _chains_fn(model: Model, settings: NutsSettings, batched: bool = True) -> Callable:
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
        _chains_fn(model, settings),
        mesh=mesh,
        in_specs=(spec, spec, jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec()),
        out_specs=spec,
        check_vma=False,
    )


def _default_chain_method(num_chains: int, data) -> str:
    """Parallel when each chain gets its own device; else sequential on a CPU, vectorized on
    an accelerator (measured, see :func:`sample`).

    Data already laid out over several devices (``mm.shard``) stays so: vectorized chains,
    each log-density evaluation split over the devices by XLA.
    """
    sharded = any(_sharding_key(x) is not None for x in jax.tree.leaves(data))
    if sharded:
        return "vectorized"
    if num_chains > 1 and jax.local_device_count() >= num_chains:
        return "parallel"
    return "sequential" if jax.default_backend() == "cpu" else "vectorized"


def _run_nuts(model, settings, chain_method, rng_keys, positions, data, priors, progress):
    """Run all chains; return (NutsTrace with leading (chain, draw) axes, compile s, run s)."""
    num_chains = positions.shape[0]
    static = (settings, chain_method)
    if chain_method == "sequential":
        program = _compiled(
            model, "nuts-chain", static, lambda: _chains_fn(model, settings, batched=False),
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
            build = lambda: _parallel_fn(model, settings, mesh)  # noqa: E731
            static = static + (num_devices,)
        else:
            build = lambda: _chains_fn(model, settings)  # noqa: E731
        program = _compiled(model, f"nuts-{chain_method}", static, build, rng_keys, positions,
                            data, priors)
        progress(f"compiled in {program.compile_seconds:.1f} s")
        start = time.perf_counter()
        trace = jax.block_until_ready(program.run(rng_keys, positions, data, priors))
    seconds = time.perf_counter() - start
    progress(f"{num_chains} chains x ({settings.num_warmup} warm-up + {settings.num_samples} "
             f"draws) in {seconds:.1f} s")
    return trace, program.compile_seconds, seconds


# --------------------------------------------------------------------------------------------
# Starting points
# --------------------------------------------------------------------------------------------


def _start_terms_fn(model: Model) -> Callable:
    """Build ``terms(positions (C, dim), data, priors) -> dict name -> (C,)`` of each finite
    check (``priors``: the overrides, merged over the model's own).

    The log-likelihood, each parameter's log-prior and log-Jacobian, and whether the gradient
    of the whole log-density is finite: so an error can name the term that is not finite.
    """
    log_density = log_density_fn(model, prior=True, jacobian=True)

    def terms(position, data, priors):
        merged = _merge_priors(model, priors, {})
        params = model.constrain(position)
        out = {"log_likelihood": jnp.sum(model.log_likelihood(params, data))}
        for name in model.params:
            prior = resolve_prior(merged[name], params)
            if prior is not None:
                out[f"log_prior of {name!r}"] = jnp.sum(prior.log_prob(params[name]))
        for name, u in model.unflatten(position).items():
            transform = model.params[name].transform
            out[f"log-Jacobian of {name!r}"] = jnp.sum(
                transform.log_abs_det_jacobian(u, transform(u))
            )
        grad = jax.grad(log_density)(position, data, merged)
        out["gradient"] = jnp.where(jnp.all(jnp.isfinite(grad)), 0.0, jnp.nan)
        return out

    return jax.vmap(terms, in_axes=(0, None, None))


def _finite_at(model, positions, data, priors) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which starting points have a finite log-density and gradient, and every term."""
    program = _compiled(model, "start-terms", (), lambda: _start_terms_fn(model), positions, data,
                        priors)
    terms = {k: to_host(v) for k, v in program.run(positions, data, priors).items()}
    finite = np.all([np.isfinite(v) for v in terms.values()], axis=0)
    return finite, terms


def _describe_bad_start(terms: dict[str, np.ndarray], chain: int) -> str:
    bad = [name for name, v in terms.items() if not np.isfinite(v[chain])]
    values = ", ".join(f"{name} = {terms[name][chain]}" for name in bad if name != "gradient")
    if "gradient" in bad:
        values = (values + ", " if values else "") + "the gradient has non-finite entries"
    return values


def _uniform_positions(model, rng_key, num_chains):
    """NumPyro's ``init_to_uniform`` / Stan's default: U(-2, 2) in unconstrained space."""
    return jax.random.uniform(
        rng_key, (num_chains, model.dim), minval=-UNIFORM_RADIUS, maxval=UNIFORM_RADIUS
    )


def _prior_positions(model, priors, rng_key, num_chains):
    """A draw from each proper prior (the overrides ``priors`` merged over the model's own,
    mapped to unconstrained space), U(-2, 2) where flat."""
    merged = _merge_priors(model, priors, {})
    rows = []
    for key in jax.random.split(rng_key, num_chains):
        parts = []
        for name, param in model.params.items():
            key, sub = jax.random.split(key)
            u = None
            # A conditional (hierarchical) prior needs the others' values: start uniform.
            if isinstance(merged[name], Distribution):
                prior = merged[name]
                own = len(prior.batch_shape) + len(prior.event_shape)
                sample_shape = param.shape[: len(param.shape) - own]
                value = jnp.broadcast_to(prior.sample(sub, sample_shape), param.shape)
                u = param.transform.inv(value)
                if not bool(jnp.all(jnp.isfinite(u))):
                    u = None  # a draw on the boundary of the support: fall back to uniform
            if u is None:
                u = jax.random.uniform(
                    sub, param.unconstrained_shape, minval=-UNIFORM_RADIUS,
                    maxval=UNIFORM_RADIUS,
                )
            parts.append(jnp.ravel(u))
        rows.append(jnp.concatenate(parts))
    return jnp.stack(rows).astype(jnp.result_type(float))


def _map_positions(model, data, priors, rng_key, num_chains):
    """The ``jacobian=True`` MAP (``mm.fit``, same priors) with U(-0.1, 0.1) jitter per chain,
    or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed fit is reported below, once
            estimate = fit(model, data, method="map", jacobian=True, priors=priors)
    except NotImplementedError as err:
        reason = f"mm.fit is not available ({err})"
    except Exception as err:  # noqa: BLE001 - any failure of the optimizer means: fall back
        reason = f"mm.fit raised {type(err).__name__}: {err}"
    else:
        if bool(np.all(np.asarray(estimate.converged))):
            center = model.unconstrain(estimate.params)
            jitter = jax.random.uniform(
                rng_key, (num_chains, model.dim), minval=-MAP_JITTER, maxval=MAP_JITTER
            )
            return center[None, :] + jitter, None
        reason = f"the MAP optimization did not converge ({estimate.status})"
    return None, reason


def _dict_positions(model, init, num_chains):
    """User values (constrained): each of the parameter's shape, or (num_chains, *shape)."""
    check_param_names(model, init, "init's names", "Give one value per parameter, with "
                      f"the shapes {_expected_shapes(model, num_chains)}.")
    per_chain = []
    for c in range(num_chains):
        values = {}
        for name, param in model.params.items():
            value = np.asarray(init[name], dtype=float)
            if value.shape == param.shape:
                values[name] = value
            elif value.shape == (num_chains, *param.shape):
                values[name] = value[c]
            else:
                raise ValueError(
                    f"init[{name!r}] has shape {value.shape}; expected {param.shape} (one start "
                    f"shared by every chain) or {(num_chains, *param.shape)} (one per chain)."
                )
        per_chain.append(model.unconstrain(values))
    positions = jnp.stack(per_chain)
    if not bool(jnp.all(jnp.isfinite(positions))):
        raise ValueError(
            "init has a value outside a parameter's support (its unconstrained value is not "
            f"finite): constraints are { {n: str(p.constraint) for n, p in model.params.items()} }."
        )
    return positions


def _expected_shapes(model, num_chains):
    return {name: f"{p.shape} or {(num_chains, *p.shape)}" for name, p in model.params.items()}


def _initial_positions(model, data, priors, init, rng_key, num_chains):
    """Starting points ``(num_chains, dim)``, each with a finite log-density and gradient.

    Random starts ("map", "prior", "uniform") that are not finite are drawn again, up to
    ``MAX_INIT_TRIES`` times; an error names the term (log-likelihood, a log-prior, a
    log-Jacobian, the gradient) that is not finite.
    """
    if isinstance(init, Mapping):
        positions = _dict_positions(model, init, num_chains)
        finite, terms = _finite_at(model, positions, data, priors)
        if not finite.all():
            c = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"The log-density is not finite at the given init for chain {c}: "
                f"{_describe_bad_start(terms, c)}. Choose starting values inside the region "
                "where the likelihood and the priors are finite."
            )
        return positions, "dict"

    if init == "map":
        map_key, rng_key = jax.random.split(rng_key)
        positions, reason = _map_positions(model, data, priors, map_key, num_chains)
        if positions is None:
            warnings.warn(
                f"init='map': {reason}; the chains start from init='prior' instead.",
                SamplingWarning,
                stacklevel=3,
            )
            init = "prior"
    if init == "prior":
        draw = lambda key: _prior_positions(model, priors, key, num_chains)  # noqa: E731
    elif init == "uniform":
        draw = lambda key: _uniform_positions(model, key, num_chains)  # noqa: E731
    if init != "map":
        rng_key, sub = jax.random.split(rng_key)
        positions = draw(sub)
    for _ in range(MAX_INIT_TRIES):
        finite, terms = _finite_at(model, positions, data, priors)
        if finite.all():
            return positions, init
        rng_key, sub = jax.random.split(rng_key)
        fresh = _uniform_positions(model, sub, num_chains)
        positions = jnp.where(jnp.asarray(finite)[:, None], positions, fresh)
    raise ValueError(
        f"The log-density is not finite at any of {MAX_INIT_TRIES} random starting points "
        f"(init={init!r}, then U(-{UNIFORM_RADIUS:g}, {UNIFORM_RADIUS:g}) in unconstrained "
        f"space); at the last one: {_describe_bad_start(terms, int(np.flatnonzero(~finite)[0]))}. "
        "Check the data (NaN or inf, values outside the likelihood's support) and the "
        "priors, or pass init as a dict of values where the density is finite."
    )


# --------------------------------------------------------------------------------------------
# From unconstrained draws to the DataTree
# --------------------------------------------------------------------------------------------


def _postprocess_fn(model: Model, pointwise: bool = True) -> Callable:
    """Build ``f(positions (C, S, dim), data, priors)``: constrained params, derived, pointwise
    log-likelihood ``(C, S, n_obs)`` (``None`` unless ``pointwise``) and per-parameter
    log-prior ``(C, S)`` under the overrides ``priors`` merged over the model's own, in one
    call."""

    def one(position, data, priors):
        merged = _merge_priors(model, priors, {})
        params = model.constrain(position)
        derived = model.derived(params, data) if model.derived is not None else {}
        log_lik = model.log_likelihood(params, data) if pointwise else None
        log_prior = {}
        for name in model.params:
            prior = resolve_prior(merged[name], params)
            log_prior[name] = (jnp.sum(prior.log_prob(params[name])) if prior is not None
                               else jnp.zeros((), dtype=position.dtype))
        return params, dict(derived), log_lik, log_prior

    return jax.vmap(jax.vmap(one, in_axes=(0, None, None)), in_axes=(0, None, None))


def _observed_data(data) -> dict[str, np.ndarray]:
    """The data pytree as a flat dict of NumPy arrays (names from the pytree paths)."""
    if isinstance(data, Mapping) and all(isinstance(k, str) for k in data):
        leaves = {k: v for k, v in data.items()}
        flat = {}
        for key, value in leaves.items():
            sub = jax.tree_util.tree_flatten_with_path(value)[0]
            if len(sub) == 1 and not sub[0][0]:
                flat[key] = to_host(sub[0][1])
            else:
                for path, leaf in sub:
                    flat[key + _path_name(path)] = to_host(leaf)
        return flat
    return {
        "data" + _path_name(path): to_host(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]
    }


def _path_name(path) -> str:
    return "".join(
        "_" + str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path
    ).replace("/", "_")


def _versions() -> dict[str, str]:
    out = {}
    for package in ("mlemap", "jax", "numpyro", "arviz", "arviz-base", "arviz-stats"):
        try:
            out[f"{package.replace('-', '_')}_version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[f"{package.replace('-', '_')}_version"] = "unknown"
    return out


def _to_datatree(model, data, trace: NutsTrace, post, attrs):
    """Assemble the ArviZ DataTree with ``arviz_base.from_dict``."""
    import arviz_base

    params, derived, log_lik, log_prior = post
    clash = sorted(set(derived) & set(params))
    if clash:
        raise ValueError(
            f"Model.derived returns {clash}, which are also parameter names; rename them."
        )
    posterior = {k: to_host(v) for k, v in {**params, **derived}.items()}
    groups, dims = {}, {}
    if log_lik is not None:
        log_lik = to_host(log_lik)
        event_ndim = log_lik.ndim - 2  # 1 for the usual (n_obs,)
        dims[LOG_LIKELIHOOD_VAR] = ([OBS_DIM] if event_ndim == 1
                                    else [f"{OBS_DIM}_dim_{i}" for i in range(event_ndim)])
        groups["log_likelihood"] = {LOG_LIKELIHOOD_VAR: log_lik}
    num_steps = to_host(trace.num_steps)
    sample_stats = {
        "diverging": np.asarray(to_host(trace.diverging), dtype=bool),
        "lp": -to_host(trace.potential_energy),
        "energy": to_host(trace.energy),
        "tree_depth": _tree_depth(num_steps),
        "n_steps": num_steps,
        "acceptance_rate": to_host(trace.accept_prob),
        "step_size": to_host(trace.step_size),
    }
    return arviz_base.from_dict(
        {
            "posterior": posterior,
            **groups,
            "sample_stats": sample_stats,
            "log_prior": {k: to_host(v) for k, v in log_prior.items()},
            "observed_data": _observed_data(data),
        },
        dims=dims,
        index_origin=0,
        attrs={"/": attrs, "posterior": attrs, "sample_stats": attrs},
    )


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    """NumPyro's convention: ``tree_depth = floor(log2(num_steps)) + 1``."""
    return (np.floor(np.log2(np.maximum(num_steps, 1))) + 1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def _diagnose(dt, num_chains: int, max_tree_depth: int) -> list[str]:
    """One message per failed check: divergences, R-hat, bulk ESS, maximum tree depth."""
    import arviz_stats

    messages = []
    stats = dt["sample_stats"]
    total = stats["diverging"].size
    divergent = int(stats["diverging"].sum())
    if divergent:
        messages.append(
            f"{divergent} of {total} transitions after warm-up diverged "
            f"({100 * divergent / total:.1f}%): the posterior has regions of high curvature "
            "that NUTS cannot explore, so the draws may be biased. Increase target_accept "
            "(e.g. 0.95) or reparameterize (e.g. non-centered)."
        )
    hit = int((stats["tree_depth"] >= max_tree_depth).sum())
    if hit:
        messages.append(
            f"{hit} of {total} trajectories stopped at the maximum tree depth "
            f"({max_tree_depth}, {2**max_tree_depth - 1} leapfrog steps): sampling is "
            "inefficient. Increase max_tree_depth, use dense_mass=True, or reparameterize."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant quantities give NaN
        rhat = arviz_stats.rhat(dt, group="posterior")
        ess = arviz_stats.ess(dt, group="posterior", method="bulk")
    rhat_bad = _flagged(rhat, lambda v: v > RHAT_MAX)
    if rhat_bad:
        worst = max(v for _, v in rhat_bad)
        messages.append(
            f"R-hat > {RHAT_MAX} for {len(rhat_bad)} of {_size(rhat)} quantities (largest "
            f"{worst:.3f}: {_names(rhat_bad)}): the chains have not mixed. Run longer "
            "(num_warmup, num_samples) or reparameterize."
        )
    min_ess = ESS_PER_CHAIN_MIN * num_chains
    ess_bad = _flagged(ess, lambda v: v < min_ess)
    if ess_bad:
        worst = min(v for _, v in ess_bad)
        messages.append(
            f"Bulk ESS < {min_ess} ({ESS_PER_CHAIN_MIN} per chain) for {len(ess_bad)} of "
            f"{_size(ess)} quantities (smallest {worst:.0f}: {_names(ess_bad)}): posterior "
            "means and quantiles are unreliable. Draw more samples (num_samples)."
        )
    return messages


#: A coordinate "drifts" when, in every chain, the median |u| of the last quarter of the draws
#: is at least this many times that of the first quarter (and its R-hat fails).
DRIFT_GROWTH = 2.0


def _drift_messages(model: Model, positions: np.ndarray, log_density: np.ndarray) -> list[str]:
    """A message when the draws drift without bound, the mark of an improper posterior.

    ``positions`` ``(chain, draw, dim)``, unconstrained; ``log_density`` ``(chain, draw)``.
    A coordinate drifts when its split R-hat exceeds ``RHAT_MAX`` and, in *every* chain,
    either

    - its median absolute value over the last quarter of the draws is at least
      ``DRIFT_GROWTH`` times that over the first quarter (the chains are all still moving
      outward): a density that does not decay in some direction (a flat prior with separable
      classes or collinear columns) makes NUTS's adapted step grow and the draws run off
      geometrically; or
    - the log-density over the last quarter is one and the same number while the coordinate
      moves: the chains have already run off so far that the density is flat to the last bit
      (separable classes: every probability is exactly 1), and they wander there.

    A stationary chain of a proper posterior has the same distribution in both quarters and a
    log-density that varies from draw to draw, so neither happens in all chains by chance.
    """
    import arviz_stats

    num_chains, num_draws, dim = positions.shape
    quarter = num_draws // 4
    if quarter < 1 or dim == 0:
        return []
    with np.errstate(invalid="ignore", over="ignore"):
        first = np.median(np.abs(positions[:, :quarter]), axis=1)  # (chain, dim)
        last = np.median(np.abs(positions[:, -quarter:]), axis=1)
        growing = (last >= DRIFT_GROWTH * first) & (last > 0)
        tail, tail_density = positions[:, -quarter:], log_density[:, -quarter:]
        flat_density = np.ptp(tail_density, axis=1) == 0  # (chain,); NaN: not flat
        moving = np.ptp(tail, axis=1) > 0  # (chain, dim)
        drifts = np.all(growing | (flat_density[:, None] & moving), axis=0)
        drifts |= np.any(~np.isfinite(positions), axis=(0, 1))
    if not drifts.any():
        return []
    labels = []
    for name, param in model.params.items():
        labels.extend([name] if param.size == 1 and param.unconstrained_shape == ()
                      else [f"{name}[{i}]" for i in range(param.size)])
    drifting = []
    for j in np.flatnonzero(drifts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = float(arviz_stats.rhat(positions[:, :, j]))
        if not np.isfinite(rhat) or rhat > RHAT_MAX:
            drifting.append((labels[j], j, rhat))
    if not drifting:
        return []
    name, j, rhat = drifting[0]
    names = ", ".join(n for n, _, _ in drifting[:5]) + (", ..." if len(drifting) > 5 else "")
    flat_chains = np.flatnonzero(flat_density)
    if flat_chains.size and not np.all(growing[:, j]):
        how = (f"in every chain, {names} (unconstrained) keep growing or wander where the "
               f"log-density is exactly flat (chain {flat_chains[0]}: "
               f"{tail_density[flat_chains[0], 0]:.6g} at each of its last {quarter} draws)")
    else:  # growing everywhere, or run off to non-finite values
        how = f"in every chain, {names} (unconstrained) keep growing"
    return [
        f"The draws drift without bound: {how}; {name}'s median magnitude went from "
        f"{np.median(first[:, j]):.3g} in the first quarter of the draws to "
        f"{np.median(last[:, j]):.3g} in the last (R-hat "
        f"{rhat:.3g}). The posterior is probably improper (it does not integrate, e.g. a flat "
        "prior with separable classes or collinear columns), so these are not draws from a "
        "distribution and no summary of them means anything. Fix: give these parameters a "
        "proper prior (e.g. Normal(0, s)); mm.fit(..., method='mle') says whether the "
        "likelihood has a unique maximum."
    ]


def _flagged(ds, test) -> list[tuple[str, float]]:
    """``(name[index], value)`` of every finite entry of a dataset for which ``test`` holds."""
    out = []
    for name, da in ds.data_vars.items():
        values = np.asarray(da)
        for index in np.ndindex(values.shape):
            v = float(values[index])
            if np.isfinite(v) and test(v):
                label = name if not index else f"{name}[{','.join(map(str, index))}]"
                out.append((label, v))
    return out


def _size(ds) -> int:
    return sum(int(np.size(da)) for da in ds.data_vars.values())


def _names(flagged, limit=5) -> str:
    names = [n for n, _ in flagged[:limit]]
    return ", ".join(names) + (", ..." if len(flagged) > limit else "")


# --------------------------------------------------------------------------------------------
# sample()
# --------------------------------------------------------------------------------------------


def _check_arguments(num_warmup, num_samples, num_chains, target_accept, max_tree_depth,
                     chain_method, init, seed):
    def is_int(x):
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(num_chains) or num_chains < 1:
        raise ValueError(f"num_chains must be an integer >= 1; got {num_chains!r}.")
    if not is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1; got {num_samples!r}.")
    if not is_int(num_warmup) or num_warmup < 0:
        raise ValueError(f"num_warmup must be an integer >= 0; got {num_warmup!r}.")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(
            f"target_accept must be strictly between 0 and 1 (e.g. 0.8, or 0.95 for hard "
            f"posteriors); got {target_accept!r}."
        )
    depths = max_tree_depth if isinstance(max_tree_depth, tuple) else (max_tree_depth,)
    if not all(is_int(d) and d >= 1 for d in depths):
        raise ValueError(
            f"max_tree_depth must be an integer >= 1 (or a (warm-up, sampling) pair); "
            f"got {max_tree_depth!r}."
        )
    if chain_method is not None and chain_method not in _CHAIN_METHODS:
        raise ValueError(
            f"chain_method must be None (automatic) or one of {_CHAIN_METHODS}; "
            f"got {chain_method!r}."
        )
    if chain_method == "parallel" and num_chains % min(num_chains, jax.local_device_count()):
        raise ValueError(
            f"chain_method='parallel' needs num_chains ({num_chains}) to be a multiple of the "
            f"devices used ({jax.local_device_count()} available)."
        )
    if not isinstance(init, Mapping) and init not in ("map", "prior", "uniform"):
        raise ValueError(
            f"init must be 'map', 'prior', 'uniform' or a dict of parameter values; got {init!r}."
        )
    if not is_int(seed):
        raise TypeError(f"seed must be an integer; got {seed!r}.")


def _as_arrays(data):
    """Every leaf of the data as a (non-weakly-typed) JAX array, checked to be numeric."""

    def convert(x):
        if isinstance(x, jax.Array):  # keep it where it is (e.g. sharded by mm.shard)
            dtype = x.dtype
            if jnp.issubdtype(dtype, jnp.floating) and dtype != jnp.result_type(float):
                return x.astype(jnp.result_type(float))
            if not (jnp.issubdtype(dtype, jnp.number) or dtype == bool):
                raise TypeError(f"Data must be numeric arrays; found dtype {dtype}.")
            return x
        array = np.asarray(x)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(
                f"Data must be numeric arrays; found an array of dtype {array.dtype}. Encode "
                "categories as integers and pass only arrays (put constants in the model)."
            )
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(jnp.result_type(float))
        return jnp.asarray(array)

    return jax.tree.map(convert, data)


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def progress(message):
        if enabled:
            print(f"mlemap.sample: {message}", file=sys.stderr, flush=True)

    return progress


def sample(
    model: Model,
    data: Any,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    priors: Mapping[str, Distribution | None] | None = None,
    init: str | Mapping[str, Any] = "map",
    chain_method: str | None = None,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int | tuple[int, int] = 10,
    log_likelihood: bool = True,
    progress_bar: bool = True,
):
    """Draw from the posterior of ``model`` given ``data`` with NumPyro's NUTS.

    NUTS runs on the flat unconstrained vector :math:`u` of length ``model.dim`` with the
    log-density

    .. math::

        \\log \\pi(u) = \\sum_{i=1}^{n} \\log p(y_i \\mid T(u)) + \\log p(T(u))
                        + \\log|\\det J_T(u)|,

    the same builder as the MAP (``log_density_fn``) plus the log-Jacobian of the constraint
    transforms :math:`T`. Each chain adapts a step size (dual averaging, to
    ``target_accept``) and a diagonal or dense mass matrix during ``num_warmup`` iterations,
    then records ``num_samples`` draws, which are mapped to the constrained space in one
    vmapped call.

    Parameters
    ----------
    model : Model
    data : pytree of arrays
        The model's data, passed to ``model.log_likelihood``. It is an argument of the
        compiled program: new data of the same shapes and dtypes reuses it (no recompile).
    num_warmup, num_samples : int
        Adaptation iterations (discarded) and recorded draws, per chain.
    num_chains : int
        Independent chains, each from its own starting point (>= 1).
    seed : int
        Seeds the starting points and every chain; the same seed gives the same draws.
    priors : dict[str, Distribution | None], optional
        Prior overrides, as in :func:`mlemap.fit`: name -> NumPyro distribution (``None``:
        flat) replacing ``model.params[name].prior``; the other parameters keep theirs. The
        priors are an argument of the compiled programs: priors of the same structure with
        other parameter values (e.g. another scale) reuse them, with no tracing.
    init : {"map", "prior", "uniform"} or dict
        Starting points. ``"map"``: the ``jacobian=True`` MAP from ``mm.fit``, jittered by
        U(-0.1, 0.1) per unconstrained coordinate and chain (falls back to ``"prior"`` with a
        warning if the fit fails or does not converge). ``"prior"``: a draw from each
        parameter's prior, U(-2, 2) in unconstrained space where the prior is flat.
        ``"uniform"``: U(-2, 2) in unconstrained space for every parameter (Stan's and
        NumPyro's default). A dict of constrained values, each of the parameter's shape (one
        start for every chain) or ``(num_chains, *shape)``. ``"map"`` fits, and ``"prior"``
        draws from, the priors with ``priors=`` applied.
    chain_method : {None, "parallel", "vectorized", "sequential"}
        How chains run. ``None`` picks ``"parallel"`` (one chain per device, through
        ``jax.shard_map``) when ``jax.local_device_count() >= num_chains``; otherwise
        ``"sequential"`` on a CPU and ``"vectorized"`` (one ``vmap``-ed program) on an
        accelerator. Measured on a 2-core CPU, one device, 4 chains x (1000 + 1000), warm
        sampling seconds sequential against vectorized: eight schools 0.1 against 0.5;
        kidiq (n=434, 4 coefficients) 2.4 against 4.7; logistic regression d=20, n=500
        1.0 against 1.7, n=2,000 2.4 against 7.6, n=5,000 8.3 against 8.3; and compiling
        the sequential program took 3-5 s against 9-13 s. Vectorized chains advance in
        lock-step, every step as long as the longest trajectory of the four, and a batched
        while-loop evaluates both sides of each branch; on a CPU that costs more than
        batching saves. To get parallel chains on a CPU, give the host several devices
        *before JAX starts*::

            import numpyro; numpyro.set_host_device_count(4)   # before importing jax
            # or: XLA_FLAGS=--xla_force_host_platform_device_count=4 python script.py

        Data sharded by ``mm.shard`` default to ``"vectorized"`` (each evaluation split over
        the devices); on a multi-host run, where the data span other processes' devices,
        ``"parallel"`` is refused.
    target_accept : float
        Target mean acceptance probability of the step-size adaptation, in (0, 1); raise it
        (0.95, 0.99) to remove divergences.
    dense_mass : bool
        Adapt a dense (full) mass matrix instead of a diagonal one.
    max_tree_depth : int or (int, int)
        Maximum depth of the NUTS tree (at most ``2**max_tree_depth - 1`` leapfrog steps); a
        pair sets warm-up and sampling separately.
    log_likelihood : bool
        Store the pointwise log-likelihood (the ``log_likelihood`` group, what LOO and
        ``mm.compare_losses`` read). It holds ``C * S * n_obs`` numbers: 32 GB in float64 for
        4 x 1000 draws of n = 1e6 observations. ``False`` leaves the group out (as
        ``arviz_base.from_numpyro(log_likelihood=False)``); the draws are the same.
    progress_bar : bool
        Print the compile time and the time of each phase (or chain, when sequential) to
        stderr. It never changes the compiled program.

    Returns
    -------
    xarray.DataTree
        Built with ``arviz_base.from_dict``; ``C = num_chains``, ``S = num_samples``:

        - ``posterior``: each parameter ``(chain, draw, *shape)`` with dims
          ``{name}_dim_{i}``, constrained, plus the quantities of ``model.derived``;
        - ``log_likelihood`` (unless ``log_likelihood=False``): ``"log_likelihood"``
          ``(chain, draw, obs)``, the pointwise
          :math:`\\log p(y_i \\mid \\theta)` (what ``arviz_stats.loo`` reads);
        - ``sample_stats``: ``diverging``, ``lp`` (:math:`\\log \\pi(u)`), ``energy``,
          ``tree_depth``, ``n_steps``, ``acceptance_rate``, ``step_size``, each ``(C, S)``;
        - ``log_prior``: per parameter, :math:`\\sum \\log p(\\theta_k)` ``(C, S)`` under
          the priors sampled (``priors=`` applied; 0 where flat), for ``arviz_stats.psense``;
        - ``observed_data``: the data arrays;
        - attrs (root, posterior, sample_stats): ``seed``, ``num_chains``, ``num_warmup``,
          ``num_samples``, ``chain_method``, ``init``, ``target_accept``, ``dense_mass``
          (0/1), ``max_tree_depth``, ``compile_seconds``, ``sampling_seconds`` and the
          versions of mlemap, jax, numpyro and arviz. Plain numbers and strings, so
          ``dt.to_netcdf(path)`` round-trips.

    Warns
    -----
    SamplingWarning
        One warning per failed diagnostic, with the numbers: divergent transitions, R-hat
        > 1.01, bulk ESS < 100 per chain, trajectories at the maximum tree depth; and draws
        that drift without bound (every chain still moving outward, R-hat failing: an
        improper posterior, see ``_drift_messages``).

    Raises
    ------
    ValueError
        ``num_chains < 1`` and other invalid settings; an ``init`` dict with wrong names or
        shapes; a log-density that is not finite at any starting point (the message names
        the log-likelihood, log-prior, log-Jacobian or gradient that is not).

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> model = mm.Model(
    ...     {"mu": mm.Param(prior=dist.Normal(0.0, 10.0))},
    ...     lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]),
    ... )
    >>> dt = mm.sample(model, {"y": np.array([0.1, -0.3, 0.5])}, init="prior")
    >>> float(dt.posterior["mu"].mean())  # doctest: +SKIP
    0.097
    >>> dt = mm.sample(model, {"y": np.array([0.1, -0.3, 0.5])},
    ...                priors={"mu": dist.Normal(0.0, 0.5)})  # doctest: +SKIP
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mlemap.Model; got {type(model).__name__}.")
    _check_arguments(num_warmup, num_samples, num_chains, target_accept, max_tree_depth,
                     chain_method, init, seed)
    if not isinstance(log_likelihood, bool | np.bool_):
        raise TypeError(f"log_likelihood must be True or False; got {log_likelihood!r}.")
    priors, _ = _check_priors(model, priors, False)  # fit's checks and messages
    progress = _progress_printer(progress_bar)
    data = _as_arrays(data)
    priors = _as_arrays(priors)  # the distributions' parameters as arrays of fixed dtypes
    check_log_likelihood(model, data)  # pointwise, checked before anything is traced
    chain_method = chain_method or _default_chain_method(num_chains, data)
    if chain_method == "parallel" and any(spans_processes(x) for x in jax.tree.leaves(data)):
        raise ValueError(
            "chain_method='parallel' runs the chains on this process's devices, but the data "
            "span other processes' devices (mm.shard on a multi-host run). Leave chain_method "
            "to its default ('vectorized': every log-density evaluation is split over all "
            "devices), or use 'sequential'."
        )
    settings = NutsSettings(
        int(num_warmup), int(num_samples), float(target_accept), bool(dense_mass),
        tuple(int(d) for d in max_tree_depth) if isinstance(max_tree_depth, tuple)
        else int(max_tree_depth),
    )

    init_key, chains_key = jax.random.split(jax.random.key(int(seed)))
    positions, init_used = _initial_positions(model, data, priors, init, init_key, num_chains)
    chain_keys = jax.random.split(chains_key, num_chains)

    trace, compile_seconds, sampling_seconds = _run_nuts(
        model, settings, chain_method, chain_keys, positions, data, priors, progress
    )
    pointwise = bool(log_likelihood)
    post_program = _compiled(
        model, "postprocess", (pointwise,), lambda: _postprocess_fn(model, pointwise),
        trace.position, data, priors,
    )
    post = post_program.run(trace.position, data, priors)

    sampling_depth = max_tree_depth[1] if isinstance(max_tree_depth, tuple) else max_tree_depth
    attrs = {
        "seed": int(seed),
        "num_chains": int(num_chains),
        "num_warmup": int(num_warmup),
        "num_samples": int(num_samples),
        "chain_method": chain_method,
        "init": init_used,
        "target_accept": float(target_accept),
        "dense_mass": int(bool(dense_mass)),
        "max_tree_depth": int(sampling_depth),
        "compile_seconds": float(compile_seconds + post_program.compile_seconds),
        "sampling_seconds": float(sampling_seconds),
        "inference_library": "numpyro",
        **_versions(),
    }
    dt = _to_datatree(model, data, trace, post, attrs)
    messages = _diagnose(dt, num_chains, sampling_depth)
    messages += _drift_messages(model, to_host(trace.position),
                                -to_host(trace.potential_energy))
    for message in messages:
        warnings.warn(message, SamplingWarning, stacklevel=2)
    return dt
