"""Flat views of posteriors and estimates: one scalar per parameter entry, named like
:meth:`Model.flat_names` (``beta[0]``, ``W[1,0]``, ``sigma``; ``beta[educ]`` where the axis
is labelled: a posterior's coords, a model's ``coords``).

``compare`` and the plots read every posterior and every estimate through these views, so
that each table row and each panel carries the same name whatever the parameter's rank.
An estimate is a ``PointEstimate`` (its ``params``), a ``LaplaceApprox`` (the mean of its
constrained draws) or a plain dict of constrained values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from mlemap._fit import PointEstimate
from mlemap._laplace import LaplaceApprox
from mlemap._model import Model, entry_name

__all__ = ["SAMPLE_DIMS", "flatten_dataset", "flat_point", "posterior_group",
           "estimate_values", "check_names", "dataset_labels"]

SAMPLE_DIMS = ("chain", "draw")


def flatten_dataset(ds: xr.Dataset, names: list[str]) -> xr.Dataset:
    """``{beta: (chain, draw, 2)} -> {beta[0]: (chain, draw), beta[1]: (chain, draw)}``.

    The flat layout makes every ArviZ table and plot label its rows ``beta[0]``, exactly as
    ``Model.flat_names()`` does, whatever the parameter's rank; a dim with coords gives its
    labels, ``beta[educ]``.
    """
    out = {}
    labels = dataset_labels(ds, names)
    for name in names:
        da = ds[name]
        extra = [d for d in da.dims if d not in SAMPLE_DIMS]
        values = da.transpose(*SAMPLE_DIMS, *extra).values
        for index in np.ndindex(values.shape[2:]):
            key = entry_name(name, _labels_at(labels[name], index))
            out[key] = (SAMPLE_DIMS, values[(slice(None), slice(None), *index)])
    return xr.Dataset(out, coords={d: ds[d] for d in SAMPLE_DIMS})


def dataset_labels(ds: xr.Dataset, names: list[str]) -> dict[str, list[list]]:
    """Per parameter, the labels of each axis after ``chain, draw``: the dim's coords (ArviZ
    numbers an unlabelled dim 0..n-1, which is the index itself)."""
    return {name: [list(ds[name][d].values.tolist()) if d in ds[name].coords
                   else list(range(ds[name].sizes[d]))
                   for d in ds[name].dims if d not in SAMPLE_DIMS] for name in names}


def _labels_at(labels: list[list] | None, index: tuple) -> tuple:
    return index if labels is None else tuple(axis[i] for axis, i in zip(labels, index))


def flat_point(params: Mapping[str, Any], names: list[str],
               labels: Mapping[str, list[list]] | None = None) -> dict[str, float]:
    """``{beta: [1, 2]} -> {beta[0]: 1.0, beta[1]: 2.0}``; with ``labels`` (per parameter,
    each axis's labels, e.g. from :func:`dataset_labels`), ``beta[educ]``."""
    out = {}
    labels = labels or {}
    for name in names:
        value = np.asarray(params[name], dtype=float)
        for index in np.ndindex(value.shape):
            out[entry_name(name, _labels_at(labels.get(name), index))] = float(value[index])
    return out


def posterior_group(posterior) -> xr.Dataset:
    if isinstance(posterior, xr.DataTree):
        if "posterior" not in posterior.children:
            raise ValueError(
                "The posterior DataTree has no 'posterior' group (it has "
                f"{sorted(posterior.children)}). Pass the DataTree returned by mm.sample."
            )
        return posterior["posterior"].to_dataset()
    raise TypeError(
        f"posterior must be an xarray.DataTree from mm.sample; got {type(posterior).__name__}."
    )


def _param_shape(ds: xr.Dataset, name: str) -> tuple[int, ...]:
    da = ds[name]
    return tuple(da.sizes[d] for d in da.dims if d not in SAMPLE_DIMS)


# --------------------------------------------------------------------------------------------
# Estimates: PointEstimate, LaplaceApprox or a plain dict of values
# --------------------------------------------------------------------------------------------


def estimate_values(label: str, estimate) -> dict[str, np.ndarray]:
    """The constrained values an estimate is drawn at: a point's params, a Laplace mean."""
    if isinstance(estimate, PointEstimate):
        if np.ndim(estimate.log_density) != 0:
            raise ValueError(
                f"estimates[{label!r}] is a batched PointEstimate (leading axis "
                f"{np.shape(estimate.log_density)[0]}); index one fit first, e.g. with "
                "jax.tree.map(lambda a: a[i], ...) or by refitting without batch=."
            )
        return {k: np.asarray(v) for k, v in estimate.params.items()}
    if isinstance(estimate, LaplaceApprox):
        if estimate.draws is None:
            raise ValueError(
                f"estimates[{label!r}] is a Laplace approximation without draws (its Hessian "
                "is not positive definite); it has no distribution to compare."
            )
        draws = estimate.draws["posterior"].to_dataset()
        return {k: draws[k].mean(SAMPLE_DIMS).values for k in estimate.mode.params}
    if isinstance(estimate, Mapping):
        return {k: np.asarray(v, dtype=float) for k, v in estimate.items()}
    raise TypeError(
        f"estimates[{label!r}] must be a PointEstimate (mm.fit), a LaplaceApprox (mm.laplace) "
        f"or a dict of parameter values; got {type(estimate).__name__}."
    )


def check_names(estimates: dict[str, dict], post: xr.Dataset, model: Model | None) -> list[str]:
    """The parameter names shared by every estimate and the posterior, in the model's order."""
    labels = list(estimates)
    first = list(estimates[labels[0]])
    expected = list(model.params) if model is not None else first
    for label, values in estimates.items():
        missing = sorted(set(expected) - set(values))
        unknown = sorted(set(values) - set(expected))
        if missing or unknown:
            against = "the model's" if model is not None else f"estimates[{labels[0]!r}]'s"
            raise ValueError(
                f"estimates[{label!r}] has parameters that do not match {against} "
                f"{expected}: missing {missing}, unknown {unknown}. Compare estimates of the "
                "same model as the posterior."
            )
    absent = [name for name in expected if name not in post.data_vars]
    if absent:
        raise ValueError(
            f"The posterior has no variable for the parameters {absent}; its variables are "
            f"{sorted(post.data_vars)}. The estimates and the posterior must come from the "
            "same model (same parameter names)."
        )
    for label, values in estimates.items():
        for name in expected:
            shape = tuple(np.shape(values[name]))
            if shape != _param_shape(post, name):
                raise ValueError(
                    f"estimates[{label!r}][{name!r}] has shape {shape}, but the posterior's "
                    f"{name!r} has shape {_param_shape(post, name)} (dims after chain, draw)."
                )
    return expected
