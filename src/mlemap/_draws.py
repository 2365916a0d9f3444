"""From NUTS's unconstrained draws to an ArviZ DataTree, and what the draws say.

The draws are mapped to the constrained space (with the derived quantities, the pointwise
log-likelihood and each parameter's log-prior) in one vmapped program and assembled with
``arviz_base.from_dict``; the diagnostics read them with ``arviz_stats`` (R-hat, bulk ESS)
and NumPyro's sampler statistics (divergences, tree depth), and a check of our own tells
draws that drift without bound (an improper posterior).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from mlemap._density import merge_priors
from mlemap._model import Model, arviz_dims, entry_name, resolve_prior
from mlemap._nuts import NutsTrace
from mlemap._shard import to_host

__all__ = ["postprocess_fn", "nuts_stats", "to_datatree", "diagnostics", "drift_messages",
           "versions", "LOG_LIKELIHOOD_VAR", "OBS_DIM"]

#: Name of the pointwise log-likelihood variable and of its observation dimension.
LOG_LIKELIHOOD_VAR = "log_likelihood"
OBS_DIM = "obs"
#: Diagnostic thresholds (Vehtari et al. 2021): R-hat, bulk ESS per chain.
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
#: E-BFMI below this in a chain is a warning (Betancourt 2016; Stan's and ArviZ's rule).
BFMI_MIN = 0.3


def postprocess_fn(model: Model, pointwise: bool = True) -> Callable:
    """Build ``f(positions (C, S, dim), data, priors)``: constrained params, derived, pointwise
    log-likelihood ``(C, S, n_obs)`` (``None`` unless ``pointwise``) and per-parameter
    log-prior ``(C, S)`` under the overrides ``priors`` merged over the model's own, in one
    call."""

    def one(position, data, priors):
        merged = merge_priors(model, priors)
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


def versions() -> dict[str, str]:
    out = {}
    for package in ("mlemap", "jax", "numpyro", "arviz", "arviz-base", "arviz-stats"):
        try:
            out[f"{package.replace('-', '_')}_version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[f"{package.replace('-', '_')}_version"] = "unknown"
    return out


def nuts_stats(trace: NutsTrace) -> dict[str, np.ndarray]:
    """The ``sample_stats`` group of NUTS draws, in ArviZ's names."""
    num_steps = to_host(trace.num_steps)
    return {
        "diverging": np.asarray(to_host(trace.diverging), dtype=bool),
        "lp": -to_host(trace.potential_energy),
        "energy": to_host(trace.energy),
        "tree_depth": _tree_depth(num_steps),
        "n_steps": num_steps,
        "acceptance_rate": to_host(trace.accept_prob),
        "step_size": to_host(trace.step_size),
    }


def to_datatree(model, data, post, attrs, sample_stats: dict | None = None):
    """Assemble the ArviZ DataTree with ``arviz_base.from_dict``: ``post`` is
    :func:`postprocess_fn`'s output at draws of shape ``(chain, draw, ...)``;
    ``sample_stats`` (e.g. :func:`nuts_stats`) is left out when None."""
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
    stats = {} if sample_stats is None else {"sample_stats": sample_stats}
    tree = arviz_base.from_dict(
        {
            **groups,
            **stats,
            "log_prior": {k: to_host(v) for k, v in log_prior.items()},
            "observed_data": _observed_data(data),
        },
        dims=dims,
        index_origin=0,
        attrs={"/": attrs, **{group: attrs for group in stats}},
    )
    # The posterior on its own: a named parameter's dims (Param.dims) and labels (coords)
    # are its own, while the log_prior group holds one scalar per parameter of the same name.
    param_dims, coords = arviz_dims(model)
    post = arviz_base.from_dict({"posterior": posterior}, dims=param_dims, coords=coords,
                                index_origin=0, attrs={"posterior": attrs})
    children = {"posterior": post["posterior"], **tree.children}
    return xr.DataTree(tree.to_dataset(), children=dict(children))


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    """NumPyro's convention: ``tree_depth = floor(log2(num_steps)) + 1``."""
    return (np.floor(np.log2(np.maximum(num_steps, 1))) + 1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def diagnostics(dt, num_chains: int, max_tree_depth: int) -> list[str]:
    """One message per failed check: divergences, maximum tree depth, E-BFMI (ArviZ's; the
    energy Bayesian fraction of missing information, Betancourt 2016), R-hat, bulk ESS."""
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
        bfmi = np.asarray(arviz_stats.bfmi(dt)["energy"]).ravel()
        rhat = arviz_stats.rhat(dt, group="posterior")
        ess = arviz_stats.ess(dt, group="posterior", method="bulk")
    low = bfmi[bfmi < BFMI_MIN]
    if low.size:
        messages.append(
            f"E-BFMI < {BFMI_MIN} in {low.size} of {bfmi.size} chains (lowest {low.min():.2f}): "
            "resampling the momentum barely moves the energy, so NUTS explores the posterior's "
            "tails or a funnel (a hierarchical scale) poorly and the draws may be biased. "
            "Reparameterize (e.g. non-centered) or give heavy tails a lighter prior."
        )
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


def drift_messages(model: Model, positions: np.ndarray, log_density: np.ndarray) -> list[str]:
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
    labels = model.unconstrained_names()
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
    """``(name[label], value)`` of every finite entry of a dataset for which ``test`` holds
    (an entry named by its dims' coords, as ``Model.flat_names``)."""
    out = []
    for name, da in ds.data_vars.items():
        values = np.asarray(da)
        labels = [da[d].values if d in da.coords else np.arange(n)
                  for d, n in zip(da.dims, values.shape)]
        for index in np.ndindex(values.shape):
            v = float(values[index])
            if np.isfinite(v) and test(v):
                out.append((entry_name(name, tuple(axis[i] for axis, i in zip(labels, index))),
                            v))
    return out


def _size(ds) -> int:
    return sum(int(np.size(da)) for da in ds.data_vars.values())


def _names(flagged, limit=5) -> str:
    names = [n for n, _ in flagged[:limit]]
    return ", ".join(names) + (", ..." if len(flagged) > limit else "")
