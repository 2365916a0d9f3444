"""sample(): NumPyro's NUTS on the model's log-density, returned as an ArviZ DataTree.

NUTS samples the density of the flat unconstrained vector :math:`u \\in \\mathbb{R}^{D}`,

.. math::

    \\log \\pi(u) = \\sum_i \\log p(y_i \\mid T(u)) + \\log p(T(u)) + \\log|\\det J_T(u)|,

the very function that ``log_density_fn(model, prior=True, jacobian=True)`` builds for the
Laplace approximation, and maps each draw back with :math:`T` (NumPyro's ``biject_to``).
``sample`` coordinates: check the arguments, find the starting points
(:mod:`mlemap._starts`), run the chains (:mod:`mlemap._nuts`), assemble the DataTree and
diagnose the draws (:mod:`mlemap._draws`). Calling it again on new data of the same shapes,
or with priors of other scales but the same structure, or on another model of the same
structure (a new ``mm.glm`` per fold), runs the same executables, with no tracing and no
compilation.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from numpyro.distributions import Distribution

from mlemap import _checks
from mlemap._data import as_arrays, check_data
from mlemap._density import argument_priors, check_log_likelihood
from mlemap._draws import (diagnostics, drift_messages, nuts_stats, postprocess_fn, to_datatree,
                           versions)
from mlemap._model import Model
from mlemap._adapt import AdaptSettings
from mlemap._nuts import NutsSettings, default_chain_method, run_nuts
from mlemap._programs import compiled
from mlemap._shard import spans_processes, to_host
from mlemap._starts import SamplingWarning, initial_state, laplace_seed

__all__ = ["sample", "SamplingWarning"]


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
    metric: str = "auto",
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
    transforms :math:`T`. Each chain adapts a step size (to ``target_accept``) and a metric
    (``metric``) during at most ``num_warmup`` iterations, then records ``num_samples``
    draws, which are mapped to the constrained space in one vmapped call.

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
        U(-0.1, 0.1) per unconstrained coordinate and chain; the fit's end point is used
        when it is finite and interior though not converged (a kink of an absolute-error
        likelihood: a fine start for NUTS), and the chains fall back to ``"prior"`` with a
        warning when the fit fails or runs off (no maximum, unbounded, a boundary). ``"prior"``: a draw from each
        parameter's prior, U(-2, 2) in unconstrained space where the prior is flat.
        ``"uniform"``: U(-2, 2) in unconstrained space for every parameter (Stan's and
        NumPyro's default). A dict of constrained values, each of the parameter's shape (one
        start for every chain) or ``(num_chains, *shape)``. ``"map"`` fits, and ``"prior"``
        draws from, the priors with ``priors=`` applied.
    chain_method : {None, "parallel", "vectorized", "sequential"}
        How chains run. ``None`` picks ``"parallel"`` (one chain per device, through
        ``jax.shard_map``) when ``jax.local_device_count() >= num_chains``; otherwise
        ``"sequential"`` on a CPU and ``"vectorized"`` (one ``vmap``-ed program) on an
        accelerator (experiments/BENCHMARKS.md has the measurements). Vectorized chains
        advance in lock-step, every step as long as the longest trajectory of the four, and a
        batched while-loop evaluates both sides of each branch; on a CPU that costs more than
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
        Adapt a dense (full) mass matrix instead of a diagonal one (``metric="dense"``).
    metric : {"auto", "dense", "low_rank", "diag", "numpyro"}
        The metric (inverse mass matrix) and how it is learned. All but ``"numpyro"`` learn
        it from draws *and* gradients (nutpie's estimator, :mod:`mlemap._metric`) in windows,
        starting, with ``init="map"``, from the Laplace approximation at the MAP (the step
        size from the Hessian's largest eigenvalue), and end the warm-up when the metric has
        settled: ``num_warmup`` is then the most it runs. ``"dense"``: a full matrix;
        ``"low_rank"``: a diagonal plus at most 32 eigenpairs (:math:`O(dk)` per leapfrog
        step); ``"diag"``; ``"auto"``: dense up to 128 parameters, low-rank above.
        ``"numpyro"``: NumPyro's own adaptation (Stan's windows, diagonal, or dense with
        ``dense_mass=True``) over all ``num_warmup`` iterations.
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
          ``{name}_dim_{i}`` (or its ``Param.dims``, labelled by the model's ``coords``:
          ``mm.glm`` on a DataFrame gives ``beta`` the dim ``coef`` with the column names),
          constrained, plus the quantities of ``model.derived``;
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
          (0/1), ``max_tree_depth``, ``metric`` (the kind used), ``metric_rank``,
          ``metric_init`` ("laplace", "gradient" or "identity"), ``adaptation`` ("mlemap"
          or "numpyro"), ``compile_seconds``, ``sampling_seconds``, the versions of mlemap,
          jax, numpyro and arviz, and per chain (integer arrays): ``warmup_iterations``,
          ``warmup_gradients``, ``sampling_gradients`` (leapfrog steps), ``divergences``,
          ``metric_settled`` (0/1) and ``metric_updates``. Plain numbers, strings and 1-d
          integer arrays, so ``dt.to_netcdf(path)`` round-trips.

    Warns
    -----
    SamplingWarning
        One warning per failed diagnostic, with the numbers: divergent transitions, R-hat
        > 1.01, bulk ESS < 100 per chain, trajectories at the maximum tree depth; and draws
        that drift without bound (every chain still moving outward, R-hat failing: an
        improper posterior, see ``mlemap._draws.drift_messages``).

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
    _checks.sample_settings(num_warmup, num_samples, num_chains, target_accept, max_tree_depth,
                            chain_method, init, seed, log_likelihood)
    kind = metric_kind(metric, dense_mass, model.dim)
    priors, _ = _checks.priors_override(model, priors, False)  # fit's checks and messages
    # Every non-conditional prior, the model's own too, is an argument of the programs
    # (shared by the models of the same structure), as arrays of fixed dtypes.
    priors = as_arrays(argument_priors(model, priors))
    data, _ = check_data(data, model)
    check_log_likelihood(model, data)  # pointwise, checked before anything is traced
    options = Options(int(num_warmup), int(num_samples), int(num_chains), int(seed),
                      _chain_method(chain_method, num_chains, data), float(target_accept),
                      kind, tuple(int(d) for d in max_tree_depth)
                      if isinstance(max_tree_depth, tuple) else int(max_tree_depth),
                      bool(log_likelihood), bool(progress_bar))
    return run_sampler(model, data, priors, init, options)


class Options(NamedTuple):
    """``sample``'s checked settings."""

    num_warmup: int
    num_samples: int
    num_chains: int
    seed: int
    chain_method: str
    target_accept: float
    metric: str  # "dense", "low_rank", "diag", "numpyro_diag" or "numpyro_dense"
    max_tree_depth: int | tuple[int, int]
    log_likelihood: bool
    progress_bar: bool


#: ``metric="auto"`` is dense up to this dimension (O(d^2) per leapfrog step), low-rank above.
DENSE_MAX_DIM = 128
#: Eigenpairs of a low-rank metric, at most.
LOW_RANK_MAX = 32
METRICS = ("auto", "dense", "low_rank", "diag", "numpyro")


def metric_kind(metric: str, dense_mass: bool, dim: int) -> str:
    """The metric ``sample`` adapts, from its ``metric`` and ``dense_mass`` arguments."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    if not isinstance(dense_mass, bool | np.bool_):
        raise TypeError(f"dense_mass must be True or False; got {dense_mass!r}.")
    if metric == "numpyro":
        return "numpyro_dense" if dense_mass else "numpyro_diag"
    if dense_mass and metric not in ("auto", "dense"):
        raise ValueError(f"dense_mass=True asks for a dense metric but metric={metric!r}; "
                         "give one of them (dense_mass=True is metric='dense').")
    if metric == "auto":
        return "dense" if dense_mass or dim <= DENSE_MAX_DIM else "low_rank"
    return metric


def metric_rank(kind: str, dim: int) -> int:
    """Eigenpairs of the metric: ``dim`` dense, at most ``LOW_RANK_MAX`` (and below ``dim``)
    low-rank, 0 diagonal."""
    return {"dense": dim, "diag": 0}.get(kind, min(max(dim - 1, 0), LOW_RANK_MAX))


def run_sampler(model, data, priors, init, options: Options):
    """Start, run and assemble ``sample`` (arguments already checked)."""
    init_key, chains_key = jax.random.split(jax.random.key(options.seed))
    start = initial_state(model, data, priors, init, init_key, options.num_chains)
    rank = metric_rank(options.metric, model.dim)
    seeded = None
    if not options.metric.startswith("numpyro"):
        seed_key = jax.random.fold_in(init_key, 1)
        seeded = laplace_seed(model, data, priors, start, rank, options.target_accept, seed_key)
    positions, seed = start.positions, None
    if seeded is not None:
        positions, seed = seeded
    settings = _settings(options, rank, seeded is not None, start.mode is None)
    trace, info, compile_seconds, sampling_seconds = run_nuts(
        model, settings, options.chain_method, jax.random.split(chains_key, options.num_chains),
        positions, seed, data, priors, _progress_printer(options.progress_bar),
    )
    post = compiled(model, ("sample", "postprocess", options.log_likelihood),
                    lambda m: postprocess_fn(m, options.log_likelihood),
                    trace.position, data, priors)
    attrs = _attrs(options, start.init, seeded is not None, rank, trace, info)
    if seeded is None and start.mode is not None:
        attrs["metric_init"] = "identity"
    attrs.update(compile_seconds=float(compile_seconds + post.compile_seconds),
                 sampling_seconds=float(sampling_seconds))
    dt = to_datatree(model, data, post.run(trace.position, data, priors), attrs, nuts_stats(trace))
    sampling_depth = (options.max_tree_depth[1] if isinstance(options.max_tree_depth, tuple)
                      else options.max_tree_depth)
    messages = diagnostics(dt, options.num_chains, sampling_depth)
    messages += drift_messages(model, to_host(trace.position), -to_host(trace.potential_energy))
    for message in messages:
        warnings.warn(message, SamplingWarning, stacklevel=3)
    return dt


def _settings(options: Options, rank: int, seeded: bool, gradient_metric: bool):
    if options.metric.startswith("numpyro"):
        return NutsSettings(options.num_warmup, options.num_samples, options.target_accept,
                            options.metric == "numpyro_dense", options.max_tree_depth)
    return AdaptSettings(options.num_warmup, options.num_samples, options.target_accept,
                         options.max_tree_depth, rank, seeded, gradient_metric)


def _attrs(options: Options, init_used: str, seeded: bool, rank: int, trace, info) -> dict:
    """Plain numbers, strings and 1-d integer arrays (per chain), so netCDF round-trips."""
    depth = options.max_tree_depth
    per_chain = lambda x: np.asarray(to_host(x), dtype=np.int64)  # noqa: E731
    numpyro = options.metric.startswith("numpyro")
    return {
        "seed": options.seed, "num_chains": options.num_chains,
        "num_warmup": options.num_warmup, "num_samples": options.num_samples,
        "chain_method": options.chain_method, "init": init_used,
        "target_accept": options.target_accept,
        "dense_mass": int(options.metric in ("dense", "numpyro_dense")),
        "max_tree_depth": int(depth[1] if isinstance(depth, tuple) else depth),
        "metric": options.metric, "metric_rank": int(rank if not numpyro else 0),
        "metric_init": "laplace" if seeded else ("identity" if numpyro else "gradient"),
        "adaptation": "numpyro" if numpyro else "mlemap",
        "warmup_iterations": per_chain(info.iterations),
        "warmup_gradients": per_chain(info.gradients),
        "sampling_gradients": per_chain(np.sum(to_host(trace.num_steps), axis=1)),
        "divergences": per_chain(np.sum(to_host(trace.diverging), axis=1)),
        "metric_settled": per_chain(info.settled),
        "metric_updates": per_chain(info.metric_updates),
        "inference_library": "numpyro", **versions(),
    }


def _chain_method(chain_method, num_chains, data) -> str:
    chain_method = chain_method or default_chain_method(num_chains, data)
    if chain_method == "parallel" and any(spans_processes(x) for x in jax.tree.leaves(data)):
        raise ValueError(
            "chain_method='parallel' runs the chains on this process's devices, but the data "
            "span other processes' devices (mm.shard on a multi-host run). Leave chain_method "
            "to its default ('vectorized': every log-density evaluation is split over all "
            "devices), or use 'sequential'."
        )
    return chain_method


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def progress(message):
        if enabled:
            print(f"mlemap.sample: {message}", file=sys.stderr, flush=True)

    return progress
