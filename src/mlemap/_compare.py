"""compare(): point estimates against the posterior; compare_losses(): LOO across likelihoods.

Every number here is read from a posterior :class:`xarray.DataTree` (``mm.sample``'s layout)
with ArviZ's own statistics (``arviz_stats.summary``, ``median``, ``psense_summary``,
``wasserstein``, ``loo``, ``compare``). What ArviZ has no function for is written here, each
with its reason: the posterior quantile at which a given point lies, the standardized
distance of a point from the posterior mean, the guard that compares the MAP's log-density
with the draws', and the prior's pull (MAP - MLE) in standard errors.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import arviz_base
import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from mlemap._compare_table import CompareTable
from mlemap._draws import LOG_LIKELIHOOD_VAR
from mlemap._fit import PointEstimate
from mlemap._flat import (SAMPLE_DIMS, check_names, dataset_labels, estimate_values,
                          flat_point, flatten_dataset, posterior_group)
from mlemap._laplace import LaplaceApprox, curvature
from mlemap._model import Model

__all__ = ["compare", "compare_losses", "CompareWarning"]

#: Relative tolerance of the "a draw beats the reported maximum" guard.
MODE_RTOL = 1e-8
#: Absolute tolerance of the same guard (log-density units).
MODE_ATOL = 1e-6


class CompareWarning(UserWarning):
    """A point estimate does not agree with its posterior (a draw beats the reported maximum),
    or a LOO comparison is unreliable (high Pareto-k)."""


# --------------------------------------------------------------------------------------------
# The guard: does a posterior draw beat the reported maximum?
# --------------------------------------------------------------------------------------------


def _draw_log_density(posterior: xr.DataTree, kind: str) -> np.ndarray | None:
    """Per-draw log-density of the kind a fit maximizes, read from the DataTree.

    ``"mle"``: sum of the pointwise log-likelihood; ``"map"``: plus the ``log_prior`` group
    (the ``jacobian=False`` MAP objective); ``"map+jacobian"``: ``sample_stats.lp`` (the
    density NUTS samples). ``None`` when the groups needed are missing.
    """
    groups = posterior.children
    if kind == "map+jacobian":
        if "sample_stats" not in groups or "lp" not in posterior["sample_stats"].data_vars:
            return None
        return posterior["sample_stats"]["lp"].values.reshape(-1)
    if "log_likelihood" not in groups:
        return None
    ll = posterior["log_likelihood"].to_dataset()
    if LOG_LIKELIHOOD_VAR not in ll.data_vars:
        return None
    total = ll[LOG_LIKELIHOOD_VAR].sum([d for d in ll[LOG_LIKELIHOOD_VAR].dims
                                       if d not in SAMPLE_DIMS])
    if kind == "map":
        if "log_prior" not in groups:
            return None
        lp = posterior["log_prior"].to_dataset()
        for name in lp.data_vars:
            total = total + lp[name].sum([d for d in lp[name].dims if d not in SAMPLE_DIMS])
    return total.transpose(*SAMPLE_DIMS).values.reshape(-1)


def _mode_check(label: str, estimate, posterior: xr.DataTree) -> dict | None:
    """Compare the reported maximum with the best posterior draw of the same objective."""
    point = estimate.mode if isinstance(estimate, LaplaceApprox) else estimate
    if not isinstance(point, PointEstimate):
        return None
    kind = point.method if not (point.method == "map" and point.jacobian) else "map+jacobian"
    reported = point.log_likelihood if point.method == "mle" else point.log_density
    draws = _draw_log_density(posterior, kind)
    objective = {"mle": "log-likelihood", "map": "log-likelihood + log-prior",
                 "map+jacobian": "log-likelihood + log-prior + log-Jacobian"}[kind]
    if draws is None:
        return {"objective": objective, "checked": False, "reported": float(reported),
                "best_draw": float("nan"), "num_draws_above": 0}
    tol = MODE_ATOL + MODE_RTOL * abs(float(reported))
    above = int(np.sum(draws > float(reported) + tol))
    return {"objective": objective, "checked": True, "reported": float(reported),
            "best_draw": float(np.max(draws)), "num_draws_above": above}


# --------------------------------------------------------------------------------------------
# Standard errors of the MLE (observed information)
# --------------------------------------------------------------------------------------------


def _mle_standard_errors(model: Model, data, mle: PointEstimate, labels) -> dict[str, float]:
    """The classical standard errors at the MLE, keyed by flat name: statsmodels' ``bse``
    (:func:`mlemap._laplace.curvature` with ``method="mle"``, without laplace's draws)."""
    std_errors = curvature(model, jax.tree.map(jnp.asarray, data), mle.position, "mle").std_errors
    return flat_point(std_errors, list(model.params), labels)


# --------------------------------------------------------------------------------------------
# compare()
# --------------------------------------------------------------------------------------------


def compare(
    posterior: xr.DataTree,
    estimates: Mapping[str, PointEstimate | LaplaceApprox | Mapping[str, Any]],
    *,
    model: Model | None = None,
    data: Any = None,
    ci_prob: float | None = None,
    ci_kind: str = "eti",
    psense: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Point estimates (MLE, MAP) and Laplace approximations beside the NUTS posterior.

    One row per scalar parameter (``intercept``, ``beta[0]``, ``beta[1]``, ..., ``sigma``;
    ``Model.flat_names()``: ``beta[educ]`` where the posterior labels the dim, as ``mm.glm``
    on a DataFrame does), with columns

    - ``mean``, ``median``, ``sd``, ``{ci_kind}{100 ci_prob}_lb``/``_ub``: the posterior's,
      from ``arviz_stats.summary`` (default: the equal-tailed 89% interval, ``eti89``);
    - for each estimate ``K``: ``K`` its value (a Laplace approximation: the mean of its
      constrained draws), ``K_quantile`` the posterior quantile at which it lies,
      :math:`\\hat F(x) = (\\#\\{\\theta_s < x\\} + \\tfrac12\\#\\{\\theta_s = x\\}) / S`
      (``scipy.stats.percentileofscore(kind="mean") / 100``), and ``K_z`` =
      :math:`(x - \\bar\\theta) / \\mathrm{sd}(\\theta)`;
    - for a Laplace approximation ``K``: ``K_sd`` its constrained standard error (delta
      method, ``LaplaceApprox.std_errors``), ``K_sd_ratio`` = ``K_sd / sd``, and
      ``K_wasserstein``, the Wasserstein-1 distance between its draws and the posterior's
      for that parameter (``arviz_stats.wasserstein``, marginal, in the parameter's units);
    - the prior's pull, when the estimates hold exactly one MLE and a ``jacobian=False`` MAP
      ``K``: ``K_pull_sd`` = (MAP - MLE) / posterior sd, and with ``model`` and ``data``
      ``K_pull_se`` = (MAP - MLE) / se(MLE), se the observed-information standard error;
    - ``psense_prior``, ``psense_likelihood``, ``psense_diagnosis``: ArviZ's power-scaling
      prior/likelihood sensitivity (``arviz_stats.psense_summary``), when the posterior has
      ``log_prior`` and ``log_likelihood`` groups and ``psense`` is true.

    The guard: for each :class:`PointEstimate` (and each Laplace approximation's mode), the
    objective it maximized is evaluated at every posterior draw *from the DataTree itself*:
    the summed ``log_likelihood`` group (MLE), plus the ``log_prior`` group (MAP,
    ``jacobian=False``), or ``sample_stats.lp`` (``jacobian=True``). If some draw has a
    higher value than the estimate's reported ``log_density``, the optimizer stopped short
    of the maximum (not converged, or a local mode) and a :class:`CompareWarning` says so.
    This assumes the estimate was fitted with the posterior's model and priors (no
    ``priors=`` override). ``df.attrs["mode_checks"]`` holds the numbers per estimate.

    Parameters
    ----------
    posterior : xarray.DataTree
        From ``mm.sample``: ``posterior`` group (needed), ``log_likelihood``, ``log_prior``,
        ``sample_stats`` (used when present).
    estimates : dict[str, PointEstimate | LaplaceApprox | dict]
        Labelled estimates of the same model, e.g. ``{"MLE": ..., "MAP": ..., "Laplace":
        ...}``. A plain dict of constrained values (e.g. scikit-learn's coefficients) is a
        point too, without a guard.
    model, data : optional
        The model and data behind the posterior: they fix the row order and check the names,
        and give ``K_pull_se``.
    ci_prob, ci_kind : optional
        The posterior interval; ``ci_prob`` defaults to ArviZ's ``rcParams["stats.ci_prob"]``
        (0.89), ``ci_kind`` is ``"eti"`` (equal-tailed) or ``"hdi"``.
    psense : bool
        Add ArviZ's prior-sensitivity columns.
    seed : int
        Seed of the subsampling inside ``arviz_stats.wasserstein``.

    Returns
    -------
    CompareTable
        A pandas DataFrame with all these columns, indexed by the flat parameter names;
        ``attrs``: ``"ci"`` (e.g. ``"eti 89%"``), ``"estimates"`` (the labels),
        ``"mode_checks"`` (per estimate: ``objective``, ``checked``, ``reported``,
        ``best_draw``, ``num_draws_above``). ``print`` shows it short: the posterior's
        mean, sd and interval and each estimate's value, then what psense flags;
        ``table.diagnostics()`` gives the other columns, ``pd.DataFrame(table)`` all.

    Raises
    ------
    ValueError
        Estimates whose parameter names or shapes differ from each other's, the model's or
        the posterior's; an empty ``estimates``; a batched ``PointEstimate``.

    Warns
    -----
    CompareWarning
        When a posterior draw beats an estimate's reported maximum.
    """
    post = posterior_group(posterior)
    if not isinstance(estimates, Mapping) or not estimates:
        raise ValueError(
            "estimates must be a non-empty dict label -> PointEstimate / LaplaceApprox, e.g. "
            '{"MLE": mm.fit(model, data, method="mle"), "MAP": mm.fit(model, data)}.'
        )
    if ci_kind not in ("eti", "hdi"):
        raise ValueError(f"ci_kind must be 'eti' or 'hdi'; got {ci_kind!r}.")
    if ci_prob is None:
        ci_prob = arviz_base.rcParams["stats.ci_prob"]
    if (model is None) != (data is None):
        raise ValueError("Give both model and data (for the standard errors), or neither.")
    values = {label: estimate_values(label, est) for label, est in estimates.items()}
    names = check_names(values, post, model)

    flat_post = flatten_dataset(post, names)
    labels = list(flat_post.data_vars)
    axes = dataset_labels(post, names)  # the posterior's coords name every flat entry
    flat_tree = xr.DataTree.from_dict({"posterior": flat_post})

    # Posterior summaries: ArviZ's.
    table = arviz_stats.summary(flat_tree, kind="stats", ci_prob=ci_prob, ci_kind=ci_kind,
                                round_to="none")
    table = pd.DataFrame(table).loc[labels]
    median = arviz_stats.median(flat_post, dim=list(SAMPLE_DIMS), round_to="none")
    table.insert(1, "median", [float(median[k]) for k in labels])
    draws = {k: flat_post[k].values.reshape(-1) for k in labels}
    mean, sd = table["mean"].to_numpy(), table["sd"].to_numpy()

    for label, estimate in estimates.items():
        point = flat_point(values[label], names, axes)
        x = np.array([point[k] for k in labels])
        table[label] = x
        # No ArviZ function gives the posterior CDF at a given point: the mid-rank empirical
        # CDF (ties count half), what scipy's percentileofscore(kind="mean") computes.
        table[f"{label}_quantile"] = [
            np.mean(draws[k] < point[k]) + 0.5 * np.mean(draws[k] == point[k]) for k in labels
        ]
        table[f"{label}_z"] = (x - mean) / sd
        if isinstance(estimate, LaplaceApprox):
            se = flat_point({k: np.asarray(v) for k, v in estimate.std_errors.items()}, names,
                            axes)
            table[f"{label}_sd"] = [se[k] for k in labels]
            table[f"{label}_sd_ratio"] = table[f"{label}_sd"].to_numpy() / sd
            table[f"{label}_wasserstein"] = _wasserstein(flat_post, estimate, names, labels, seed)

    _prior_pull(table, estimates, values, names, labels, axes, model, data)

    if psense and {"log_prior", "log_likelihood"} <= set(posterior.children):
        sens = _psense(posterior, flat_post, labels)
        for column in ("prior", "likelihood", "diagnosis"):
            table[f"psense_{column}"] = sens[column].loc[labels].to_numpy()

    checks = {}
    for label, estimate in estimates.items():
        check = _mode_check(label, estimate, posterior)
        if check is None:
            continue
        checks[label] = check
        if check["num_draws_above"]:
            total = int(np.prod([post.sizes[d] for d in SAMPLE_DIMS]))
            warnings.warn(
                f"compare: {check['num_draws_above']} of {total} posterior draws have a higher "
                f"{check['objective']} ({check['best_draw']:.6g}) than estimates[{label!r}] "
                f"reports at its maximum ({check['reported']:.6g}): the optimizer stopped "
                "before the maximum (not converged, or a local mode). Refit with a larger "
                "max_steps, a tighter tol, or init at the best draw; check its status.",
                CompareWarning,
                stacklevel=2,
            )
    table = CompareTable(table)
    table.index.name = "parameter"
    table.attrs["ci"] = f"{ci_kind} {round(100 * ci_prob)}%"
    table.attrs["mode_checks"] = checks
    table.attrs["estimates"] = list(estimates)
    return table


def _wasserstein(flat_post, approx: LaplaceApprox, names, labels, seed) -> list[float]:
    """Marginal Wasserstein-1 distance per parameter, ``arviz_stats.wasserstein``."""
    flat_q = flatten_dataset(approx.draws["posterior"].to_dataset(), names)
    size_p = int(np.prod([flat_post.sizes[d] for d in SAMPLE_DIMS]))
    size_q = int(np.prod([flat_q.sizes[d] for d in SAMPLE_DIMS]))
    num = min(size_p, size_q)
    tree_p = xr.DataTree.from_dict({"posterior": flat_post})
    tree_q = xr.DataTree.from_dict({"posterior": flat_q})
    return [
        float(arviz_stats.wasserstein(tree_p, tree_q, var_names=[k], joint=False,
                                      num_samples=num, round_to="none", random_seed=seed))
        for k in labels
    ]


def _prior_pull(table, estimates, values, names, labels, axes, model, data) -> None:
    mles = [k for k, e in estimates.items() if isinstance(e, PointEstimate) and e.method == "mle"]
    maps = [k for k, e in estimates.items()
            if isinstance(e, PointEstimate) and e.method == "map" and not e.jacobian]
    if len(mles) != 1 or not maps:
        return
    mle_label = mles[0]
    mle = flat_point(values[mle_label], names, axes)
    se = None
    if model is not None:
        se = _mle_standard_errors(model, data, estimates[mle_label], axes)
    for label in maps:
        point = flat_point(values[label], names, axes)
        diff = np.array([point[k] - mle[k] for k in labels])
        table[f"{label}_pull_sd"] = diff / table["sd"].to_numpy()
        if se is not None:
            table[f"{label}_pull_se"] = diff / np.array([se[k] for k in labels])


def _psense(posterior, flat_post, labels) -> pd.DataFrame:
    """``arviz_stats.psense_summary`` on the flat view, so that its rows are ``beta[0]``."""
    tree = xr.DataTree.from_dict({
        "posterior": flat_post,
        "log_prior": posterior["log_prior"].to_dataset(),
        "log_likelihood": posterior["log_likelihood"].to_dataset(),
    })
    return arviz_stats.psense_summary(tree, round_to=6)


# --------------------------------------------------------------------------------------------
# compare_losses(): PSIS-LOO across likelihoods
# --------------------------------------------------------------------------------------------

_PARETO_MESSAGE = re.compile(r"Estimated shape parameter of Pareto distribution")


def compare_losses(posteriors: Mapping[str, xr.DataTree]) -> pd.DataFrame:
    """Compare the same data's fits under several likelihoods (losses) by PSIS-LOO.

    ``arviz_stats.loo`` on each posterior's ``log_likelihood`` group, then
    ``arviz_stats.compare`` (ranked by ELPD, stacking weights). The Pareto-k of every
    observation is checked against ArviZ's sample-size threshold ``good_k``
    (:math:`\\min(1 - 1/\\log_{10} S, 0.7)`); the table gets ``pareto_k_max`` and
    ``num_high_k`` columns and a :class:`CompareWarning` names the models whose LOO is
    unreliable.

    Parameters
    ----------
    posteriors : dict[str, xarray.DataTree]
        Label -> ``mm.sample`` output, all on the same observations, e.g. ``{"gaussian (MSE)":
        ..., "laplace (MAE)": ..., "student_t": ...}``.

    Returns
    -------
    pandas.DataFrame
        ``arviz_stats.compare``'s table (``rank``, ``elpd``, ``p``, ``elpd_diff``, ``weight``,
        ``se``, ``dse``, ``warning``, ...) plus ``pareto_k_max`` and ``num_high_k``; what
        ``mm.plots.plot_loss_comparison`` draws.

    Raises
    ------
    ValueError
        Fewer than two posteriors, or a posterior without a ``log_likelihood`` group.
    """
    if not isinstance(posteriors, Mapping) or len(posteriors) < 2:
        raise ValueError("compare_losses needs a dict of at least two labelled posteriors "
                         "(label -> mm.sample output).")
    elpd = {}
    for label, tree in posteriors.items():
        if not isinstance(tree, xr.DataTree):
            raise TypeError(f"posteriors[{label!r}] must be an xarray.DataTree from mm.sample; "
                            f"got {type(tree).__name__}.")
        if "log_likelihood" not in tree.children:
            raise ValueError(
                f"posteriors[{label!r}] has no 'log_likelihood' group (groups: "
                f"{sorted(tree.children)}), which PSIS-LOO needs: the pointwise "
                "log-likelihood of each observation at each draw. Use the DataTree returned by "
                "mm.sample, which always has it."
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            elpd[label] = arviz_stats.loo(tree, pointwise=True, var_name=LOG_LIKELIHOOD_VAR)
        for w in caught:  # ArviZ's own Pareto warning is replaced by the one below
            if not _PARETO_MESSAGE.search(str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = arviz_stats.compare(elpd, round_to="none")
    for w in caught:
        if not _PARETO_MESSAGE.search(str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    table = pd.DataFrame(table)
    k_max = {k: float(np.max(e.pareto_k.values)) for k, e in elpd.items()}
    # NaN k (non-finite ratios) counts as high.
    high = {k: int(np.sum(~(e.pareto_k.values <= e.good_k))) for k, e in elpd.items()}
    table["pareto_k_max"] = [k_max[k] for k in table.index]
    table["num_high_k"] = [high[k] for k in table.index]
    bad = {k: n for k, n in high.items() if n}
    if bad:
        detail = "; ".join(
            f"{k}: {n} observation(s) with k > {elpd[k].good_k:.2f} (max {k_max[k]:.2f})"
            for k, n in bad.items())
        warnings.warn(
            f"compare_losses: PSIS-LOO is unreliable for {detail}. Those observations are "
            "highly influential under that likelihood: trust the ranking only after checking "
            "them (e.g. a heavier-tailed likelihood such as student_t, more draws, or "
            "refitting without them: arviz_stats.reloo / loo_moment_match).",
            CompareWarning,
            stacklevel=2,
        )
    return table
