"""Figures: point estimates against the posterior, prior sweeps, loss comparison, PPC.

Every function draws with arviz-plots 1.x and returns its plot object (a
:class:`arviz_plots.PlotCollection` or :class:`arviz_plots.PlotMatrix`); the caller saves it
(``pc.savefig("fig.png")``). Nothing here shows a window. The posterior is drawn from a *flat*
view of the DataTree (one scalar variable per entry, labelled ``beta[0]`` as
``Model.flat_names()`` does), so every panel is titled with the same name as the rows of
:func:`mlemap.compare`.

``var_names`` everywhere takes flat labels (``"beta[0]"``) or whole parameters (``"beta"``,
expanded to all its entries). ``estimates`` is the same dict as :func:`mlemap.compare`'s:
label -> ``PointEstimate`` (drawn at its ``params``), ``LaplaceApprox`` (at the mean of its
constrained draws, or as a distribution where the figure shows distributions) or a dict of
constrained values.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import arviz_base
import arviz_plots
import jax
import numpy as np
import pandas as pd
import xarray as xr

from mlemap._flat import (SAMPLE_DIMS, check_names, dataset_labels, estimate_values, flat_point,
                          flatten_dataset, posterior_group)
from mlemap._laplace import LaplaceApprox
from mlemap.families import Family

__all__ = [
    "plot_estimates",
    "plot_pair",
    "plot_forest",
    "plot_prior_sweep",
    "plot_loss_comparison",
    "plot_ppc",
]

#: Colours (matplotlib cycle names) and line styles of the estimates, in order.
_COLORS = ("C1", "C2", "C3", "C4", "C5", "C6")
_LINESTYLES = ("--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)))
_MARKERS = ("X", "P", "D", "s", "^", "v")


# --------------------------------------------------------------------------------------------
# Shared preparation
# --------------------------------------------------------------------------------------------


def _prepare(posterior, estimates, var_names):
    """Flat posterior dataset, selected labels and each estimate's flat values."""
    post = posterior_group(posterior)
    estimates = {} if estimates is None else estimates
    if not isinstance(estimates, Mapping):
        raise TypeError("estimates must be a dict label -> PointEstimate / LaplaceApprox / dict.")
    values = {label: estimate_values(label, est) for label, est in estimates.items()}
    if values:
        names = check_names(values, post, None)
    else:
        names = [k for k in post.data_vars]
    flat = flatten_dataset(post, names)
    labels = _select(list(flat.data_vars), names, var_names)
    axes = dataset_labels(post, names)
    points = {label: flat_point(v, names, axes) for label, v in values.items()}
    return flat[labels], labels, names, points


def _select(labels: list[str], names: list[str], var_names) -> list[str]:
    if var_names is None:
        return labels
    if isinstance(var_names, str):
        var_names = [var_names]
    out = []
    for v in var_names:
        if v in labels:
            out.append(v)
        elif v in names:
            out.extend(k for k in labels if k == v or k.startswith(f"{v}["))
        else:
            raise ValueError(
                f"var_names: {v!r} is neither a parameter ({names}) nor an entry ({labels})."
            )
    return list(dict.fromkeys(out))


def _tree(ds: xr.Dataset) -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": ds})


def _estimate_aes(pc, labels: Sequence[str], dim: str = "estimate") -> None:
    """Map colour and line style to the estimates, independent of the variable, so that
    ``add_legend(dim)`` can label them (a per-variable mapping cannot be put in a legend)."""
    coords = {dim: list(labels)}
    cycle = lambda seq: [seq[i % len(seq)] for i in range(len(labels))]  # noqa: E731
    pc.update_aes_from_dataset("color", xr.Dataset({"mapping": (dim, cycle(_COLORS))}, coords))
    pc.update_aes_from_dataset(
        "linestyle", xr.Dataset({"mapping": (dim, np.array(cycle(_LINESTYLES), dtype=object))},
                                coords))


# --------------------------------------------------------------------------------------------
# Marginals with reference lines
# --------------------------------------------------------------------------------------------


def plot_estimates(
    posterior: xr.DataTree,
    estimates: Mapping[str, Any],
    *,
    var_names=None,
    kind: str | None = None,
    backend: str = "matplotlib",
    **pc_kwargs,
):
    """Marginal posteriors, each panel with the estimates as labelled vertical lines.

    ``arviz_plots.plot_dist`` (density, mean and the ETI interval ArviZ defaults to) and
    ``arviz_plots.add_lines`` with one value per estimate and parameter; a legend names the
    estimates. A ``LaplaceApprox`` is drawn at the mean of its constrained draws.

    Returns
    -------
    arviz_plots.PlotCollection
    """
    flat, labels, _, points = _prepare(posterior, estimates, var_names)
    if not points:
        raise ValueError("plot_estimates needs at least one estimate to draw as a line.")
    order = list(points)
    pc = arviz_plots.plot_dist(_tree(flat), kind=kind, backend=backend, **pc_kwargs)
    refs = xr.Dataset(
        {k: ("estimate", [points[e][k] for e in order]) for k in labels},
        coords={"estimate": order},
    )
    _estimate_aes(pc, order)
    arviz_plots.add_lines(pc, refs, ref_dim="estimate",
                          aes_by_visuals={"ref_line": ["color", "linestyle"]})
    pc.add_legend("estimate")
    return pc


# --------------------------------------------------------------------------------------------
# Pair plot with points
# --------------------------------------------------------------------------------------------


def _scatter_point(da_x, da_y, target, **kwargs):
    """A marker at one (x, y): the backend's scatter (arviz_plots' ``scatter_couple`` draws
    clouds with no marker choice)."""
    plot_backend = arviz_plots.visuals.backend_from_object(target)
    return plot_backend.scatter(np.atleast_1d(da_x.values), np.atleast_1d(da_y.values), target,
                                **kwargs)


def plot_pair(
    posterior: xr.DataTree,
    estimates: Mapping[str, Any],
    var_names,
    *,
    backend: str = "matplotlib",
    **pc_kwargs,
):
    """Pair plot of two or three parameters with the estimates as labelled points.

    ``arviz_plots.plot_pair`` (draws in the lower triangle, marginals on the diagonal), then
    one marker per estimate in every off-diagonal panel.

    Parameters
    ----------
    var_names : list of str
        Two to four flat labels (``["beta[0]", "sigma"]``) or parameters.

    Returns
    -------
    arviz_plots.PlotMatrix
    """
    flat, labels, _, points = _prepare(posterior, estimates, var_names)
    if not 2 <= len(labels) <= 4:
        raise ValueError(f"plot_pair draws two to four parameters; var_names selects {labels}.")
    order = list(points)
    pc_kwargs.setdefault("figure_kwargs", {"figsize": (3.2 * len(labels), 3.2 * len(labels))})
    pm = arviz_plots.plot_pair(_tree(flat), backend=backend, **pc_kwargs)
    if order:
        ds = xr.Dataset(
            {k: ("estimate", [points[e][k] for e in order]) for k in labels},
            coords={"estimate": order},
        )
        coords = {"estimate": order}
        pm.update_aes_from_dataset(
            "color", xr.Dataset({"mapping": ("estimate", list(_COLORS[: len(order)]))}, coords))
        pm.update_aes_from_dataset(
            "marker", xr.Dataset({"mapping": ("estimate", list(_MARKERS[: len(order)]))}, coords))
        pm.map_triangle(_scatter_point, "estimate", data=ds, triangle="lower", size=80,
                        edgecolor="k", zorder=3)
        pm.add_legend("estimate", aes=["color", "marker"],
                      visual_kwargs={"linestyle": "none", "markersize": 8})
    return pm


# --------------------------------------------------------------------------------------------
# Forest plot
# --------------------------------------------------------------------------------------------


def _as_one_chain(ds: xr.Dataset, num: int) -> xr.Dataset:
    """``num`` draws (evenly spaced) as one chain, so that ArviZ can align the trees."""
    stacked = ds.stack(__sample__=SAMPLE_DIMS)
    index = np.linspace(0, stacked.sizes["__sample__"] - 1, num).round().astype(int)
    out = {k: (SAMPLE_DIMS, stacked[k].values[index][None, :]) for k in ds.data_vars}
    return xr.Dataset(out, coords={"chain": [0], "draw": np.arange(num)})


def plot_forest(
    posterior: xr.DataTree,
    estimates: Mapping[str, Any],
    *,
    var_names=None,
    ci_probs=None,
    backend: str = "matplotlib",
    **pc_kwargs,
):
    """Forest plot: NUTS, each Laplace approximation and each point estimate per parameter.

    ``arviz_plots.plot_forest`` of a dict of DataTrees (the keys become the ``model``
    dimension): the posterior, each ``LaplaceApprox``'s draws, and each point as a
    degenerate distribution (its interval has zero width: a dot). ArviZ concatenates the
    trees, so each is brought to one chain of the same number of draws (the smaller of the
    posterior's and the Laplace draws', evenly thinned).

    Returns
    -------
    arviz_plots.PlotCollection
    """
    flat, labels, names, points = _prepare(posterior, estimates, var_names)
    sizes = [int(np.prod([flat.sizes[d] for d in SAMPLE_DIMS]))]
    laplace_draws = {}
    for label, est in (estimates or {}).items():
        if isinstance(est, LaplaceApprox):
            ds = flatten_dataset(est.draws["posterior"].to_dataset(), names)[labels]
            laplace_draws[label] = ds
            sizes.append(int(np.prod([ds.sizes[d] for d in SAMPLE_DIMS])))
    num = min(sizes)
    trees = {"NUTS": _tree(_as_one_chain(flat, num))}
    for label in points:
        if label in laplace_draws:
            trees[label] = _tree(_as_one_chain(laplace_draws[label], num))
        else:
            trees[label] = _tree(xr.Dataset(
                {k: (SAMPLE_DIMS, np.full((1, num), points[label][k])) for k in labels},
                coords={"chain": [0], "draw": np.arange(num)}))
    pc = arviz_plots.plot_forest(trees, combined=True, ci_probs=ci_probs, backend=backend,
                                 **pc_kwargs)
    pc.add_legend("model")
    return pc


# --------------------------------------------------------------------------------------------
# Prior sweep
# --------------------------------------------------------------------------------------------


def plot_prior_sweep(sweep: xr.Dataset, *, var_names=None, backend: str = "matplotlib",
                     **pc_kwargs):
    """The prior's pull: MAP path and posterior mean with its interval against the prior scale.

    One panel per parameter (x: the prior scale, log axis; tight on the left, flat on the
    right): the MAP path of the batched fit as a line, the NUTS posterior mean with its ETI at
    each sampled scale, and the MLE (the flat-prior limit) as a horizontal line.

    Parameters
    ----------
    sweep : xarray.Dataset
        From :func:`mlemap.prior_sweep`.
    var_names : list of str, optional
        Flat labels (``"beta[0]"``) or parameter names; default every parameter.

    Returns
    -------
    arviz_plots.PlotCollection
    """
    needed = {"map", "mle", "mean", "lower", "upper"}
    if not isinstance(sweep, xr.Dataset) or not needed <= set(sweep.data_vars):
        raise TypeError("sweep must be the xarray.Dataset returned by mlemap.prior_sweep.")
    labels = list(sweep["parameter"].values)
    names = list(dict.fromkeys(k.split("[")[0] for k in labels))
    labels = _select(labels, names, var_names)
    sweep = sweep.sel(parameter=labels)
    # One variable per parameter entry so that PlotCollection.wrap gives one panel each.
    panels = xr.Dataset({k: ("scale", sweep["map"].sel(parameter=k).values) for k in labels},
                        coords={"scale": sweep["scale"].values})
    col_wrap = pc_kwargs.pop("col_wrap", min(4, len(labels)))
    rows = -(-len(labels) // col_wrap)
    pc_kwargs.setdefault("figure_kwargs", {"figsize": (3.6 * col_wrap, 3.0 * rows + 0.8),
                                           "layout": "constrained"})
    pc = arviz_plots.PlotCollection.wrap(panels, backend=backend, cols=["__variable__"],
                                         col_wrap=col_wrap, **pc_kwargs)
    plot_backend = importlib.import_module(f"arviz_plots.backend.{backend}")
    x_map = sweep["scale"].values
    x_nuts = sweep["nuts_scale"].values
    for k in labels:
        target = pc.get_target(k, {})
        plot_backend.line(x_map, sweep["map"].sel(parameter=k).values, target, color="C1",
                          width=2)
        plot_backend.hline(float(sweep["mle"].sel(parameter=k)), target, color="C2",
                           linestyle="--")
        mean = sweep["mean"].sel(parameter=k).values
        lower = sweep["lower"].sel(parameter=k).values
        upper = sweep["upper"].sel(parameter=k).values
        for x, lo, hi in zip(x_nuts, lower, upper, strict=True):
            plot_backend.line([x, x], [lo, hi], target, color="C0", width=2)
        plot_backend.scatter(x_nuts, mean, target, color="C0", size=30)
        plot_backend.title(k, target)
        plot_backend.xlabel(f"prior scale ({sweep.attrs.get('name', '')})", target)
        plot_backend.xscale(target, "log")
    if backend == "matplotlib":
        _sweep_legend(pc, sweep.attrs.get("ci", "interval"))
    return pc


def _sweep_legend(pc, ci: str) -> None:
    """A matplotlib figure legend for the three elements, made by hand: they are drawn
    directly, not through aesthetic mappings, so ``PlotCollection.add_legend`` cannot."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="C1", linewidth=2, label="MAP path (batched fit)"),
        Line2D([], [], color="C0", marker="o", linewidth=2,
               label=f"posterior mean, {ci} (NUTS)"),
        Line2D([], [], color="C2", linestyle="--", label="MLE (flat-prior limit)"),
    ]
    pc.get_viz("figure").legend(handles=handles, loc="outside upper center", ncols=3)


# --------------------------------------------------------------------------------------------
# Loss comparison (LOO)
# --------------------------------------------------------------------------------------------


def plot_loss_comparison(table: pd.DataFrame, *, backend: str = "matplotlib", **pc_kwargs):
    """ELPD (PSIS-LOO) of each likelihood, from :func:`mlemap.compare_losses`.

    ``arviz_plots.plot_compare``: each model's ELPD difference to the best with its standard
    error; higher is better, and differences under about 4 are negligible.

    Returns
    -------
    arviz_plots.PlotCollection
    """
    if not isinstance(table, pd.DataFrame) or not {"elpd_diff", "dse"} <= set(table.columns):
        raise TypeError("table must be the DataFrame returned by mlemap.compare_losses "
                        "(arviz_stats.compare's columns elpd_diff and dse).")
    if backend == "matplotlib":  # room for ArviZ's two-line title
        pc_kwargs.setdefault("figure_kwargs", {"layout": "constrained"})
    return arviz_plots.plot_compare(table, backend=backend, **pc_kwargs)


# --------------------------------------------------------------------------------------------
# Posterior predictive check for a glm
# --------------------------------------------------------------------------------------------


def _glm_predictive(posterior: xr.DataTree, family: Family, num_samples: int, seed: int):
    """Posterior predictive draws of a ``mm.glm`` fit: ``y_rep ~ family(X beta + intercept)``
    at ``num_samples`` posterior draws (evenly spaced), as a ``posterior_predictive`` group.

    ``mm.sample`` records no predictions (it does not know the family); the family's own
    NumPyro distribution draws them here.
    """
    if family.link == "softmax":
        raise ValueError("plot_ppc supports glm families with one linear predictor (not "
                         "categorical).")
    if "observed_data" not in posterior.children:
        raise ValueError("The posterior has no observed_data group (X, y); use mm.sample's output.")
    obs = posterior["observed_data"].to_dataset()
    if not {"X", "y"} <= set(obs.data_vars):
        raise ValueError(f"observed_data must hold 'X' and 'y' (a mm.glm model); it has "
                         f"{sorted(obs.data_vars)}.")
    post = posterior_group(posterior)
    stacked = post.stack(__sample__=SAMPLE_DIMS)
    total = stacked.sizes["__sample__"]
    index = np.linspace(0, total - 1, min(num_samples, total)).round().astype(int)
    X = np.asarray(obs["X"].values, dtype=float)
    beta = stacked["beta"].transpose("__sample__", ...).values[index]  # (S, d)
    eta = beta @ X.T  # (S, n)
    if "intercept" in stacked:
        eta = eta + stacked["intercept"].values[index][:, None]
    nuisance = {k: stacked[k].values[index][:, None] for k in family.learned}
    y_rep = np.asarray(family.distribution(eta, nuisance).sample(jax.random.key(seed)))
    y_rep = y_rep.reshape((1, len(index), -1))
    y_obs = np.asarray(obs["y"].values)
    return arviz_base.from_dict(
        {"posterior_predictive": {"y": y_rep}, "observed_data": {"y": y_obs}},
        dims={"y": ["obs"]},
    )


def plot_ppc(
    posterior: xr.DataTree,
    family: Family,
    *,
    num_samples: int = 50,
    seed: int = 0,
    backend: str = "matplotlib",
    **pc_kwargs,
):
    """Posterior predictive check of a fitted ``mm.glm``: replicated ``y`` against the data.

    Draws ``y_rep`` from the family at ``num_samples`` posterior draws (the linear predictor
    from ``observed_data``'s ``X``), then ``arviz_plots.plot_ppc_dist`` (one density per
    replicate, the observed one on top).

    Parameters
    ----------
    posterior : xarray.DataTree
        ``mm.sample`` of a model made by ``mm.glm`` (parameters ``intercept``, ``beta`` and the
        family's nuisance parameters; observed data ``X``, ``y``).
    family : mlemap.families.Family
        The family the glm was built with.

    Returns
    -------
    arviz_plots.PlotCollection
    """
    if not isinstance(family, Family):
        raise TypeError(f"family must be an mlemap.families family; got {family!r}.")
    tree = _glm_predictive(posterior, family, num_samples, seed)
    return arviz_plots.plot_ppc_dist(tree, num_samples=num_samples, backend=backend, **pc_kwargs)
