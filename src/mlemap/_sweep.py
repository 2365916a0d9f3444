"""prior_sweep(): the MAP path and the posterior as the prior on one parameter goes from
tight to flat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import arviz_base
import arviz_stats
import jax.numpy as jnp
import numpy as np
import xarray as xr

from mlemap._fit import fit
from mlemap._flat import SAMPLE_DIMS, flatten_dataset
from mlemap._model import Model
from mlemap._sample import sample

__all__ = ["prior_sweep"]


def prior_sweep(
    model: Model,
    data: Any,
    name: str,
    prior_fn: Callable[[Any], Any],
    scales,
    *,
    nuts_scales=None,
    ci_prob: float | None = None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
) -> xr.Dataset:
    """The MAP path and the posterior as the prior on one parameter goes from tight to flat.

    The MAP at every scale in ``scales`` is one batched ``mm.fit(..., batch="priors")`` call
    (one compiled program); the MLE (``method="mle"``) is the flat-prior limit; NUTS runs at
    each of ``nuts_scales`` (default: three scales of ``scales``, smallest, middle, largest).

    Parameters
    ----------
    model, data
    name : str
        The parameter whose prior is swept (e.g. ``"beta"``).
    prior_fn : callable
        ``scale -> numpyro Distribution``, e.g. ``lambda s: dist.Normal(0.0, s)``. It is
        called with an array of shape ``(B, 1, ..., 1)`` (one trailing 1 per axis of the
        parameter) for the batched fit, and with a 0-d array for each NUTS run; it must be
        JAX-traceable (no Python ``float(s)``).
    scales : array (B,)
        Prior scales, increasing (tight to flat).
    nuts_scales : array, optional
        Scales at which to sample, each with ``mm.sample(..., priors={name: prior_fn(s)})``:
        the priors are an argument of the compiled program, so every scale runs the same one.
    ci_prob : float, optional
        Posterior interval (ETI); ArviZ's default 0.89.
    num_warmup, num_samples, num_chains, seed
        NUTS settings, per scale.

    Returns
    -------
    xarray.Dataset
        Dims ``scale`` (B), ``nuts_scale``, ``parameter`` (flat names): ``map``
        (scale, parameter), ``map_converged`` (scale), ``mle`` (parameter), ``mean``,
        ``lower``, ``upper`` (nuts_scale, parameter); attrs ``name``, ``ci``.
    """
    if name not in model.params:
        raise ValueError(f"{name!r} is not a parameter of the model ({sorted(model.params)}).")
    scales = np.asarray(scales, dtype=float)
    if scales.ndim != 1 or scales.size < 2 or np.any(scales <= 0):
        raise ValueError("scales must be a 1-D array of at least two positive prior scales.")
    if nuts_scales is None:
        nuts_scales = scales[[0, scales.size // 2, -1]]
    nuts_scales = np.asarray(nuts_scales, dtype=float).reshape(-1)
    if ci_prob is None:
        ci_prob = arviz_base.rcParams["stats.ci_prob"]
    shape = model.params[name].shape
    # One batched fit over the path's scales and NUTS's: the MAP at each NUTS scale is its
    # chains' starting point (no separate compile of a MAP start inside mm.sample).
    every = np.concatenate([scales, nuts_scales])
    batched = prior_fn(jnp.asarray(every).reshape((-1,) + (1,) * len(shape)))
    path = fit(model, data, method="map", priors={name: batched}, batch="priors")
    mle = fit(model, data, method="mle")
    names = list(model.params)
    labels = model.flat_names()
    map_values = np.stack([
        np.concatenate([np.asarray(path.params[k][i]).ravel() for k in names])
        for i in range(scales.size)
    ])
    mle_values = np.concatenate([np.asarray(mle.params[k]).ravel() for k in names])

    means, lowers, uppers = [], [], []
    for i, scale in enumerate(nuts_scales):
        prior = prior_fn(jnp.asarray(scale, dtype=jnp.result_type(float)))
        j = scales.size + i
        start = {k: np.asarray(path.params[k][j]) for k in names}
        finite = bool(path.converged[j]) and bool(np.all(np.isfinite(model.unconstrain(start))))
        tree = sample(model, data, priors={name: prior}, num_warmup=num_warmup,
                      num_samples=num_samples, num_chains=num_chains, seed=seed + i,
                      init=start if finite else "prior", progress_bar=False)
        flat = flatten_dataset(tree["posterior"].to_dataset(), names)
        ci = arviz_stats.eti(flat, prob=ci_prob, dim=list(SAMPLE_DIMS))
        means.append([float(flat[k].mean()) for k in labels])
        lowers.append([float(ci[k].isel(ci_bound=0)) for k in labels])
        uppers.append([float(ci[k].isel(ci_bound=1)) for k in labels])
    return xr.Dataset(
        {
            "map": (("scale", "parameter"), map_values),
            "map_converged": ("scale", np.asarray(path.converged, dtype=bool)[: scales.size]),
            "mle": ("parameter", mle_values),
            "mean": (("nuts_scale", "parameter"), np.asarray(means)),
            "lower": (("nuts_scale", "parameter"), np.asarray(lowers)),
            "upper": (("nuts_scale", "parameter"), np.asarray(uppers)),
        },
        coords={"scale": scales, "nuts_scale": nuts_scales, "parameter": labels},
        attrs={"name": name, "ci": f"eti {round(100 * ci_prob)}%"},
    )
