"""summary(): the frequentist table of a fit, as statsmodels' ``summary()`` shows it.

Per named entry (``Model.flat_names()``): the estimate, its standard error (the delta
method on the inverse negative Hessian, :func:`mlemap._laplace.curvature`), the Wald
statistic :math:`z = \\hat\\theta/\\mathrm{se}`, its two-sided p-value
:math:`2\\,\\Phi(-|z|)` and the interval :math:`\\hat\\theta \\pm z_{1-\\alpha/2}\\,\\mathrm{se}`;
with the log-likelihood, AIC, BIC, the number of observations and the status. For an MLE
these are statsmodels' ``params``, ``bse``, ``tvalues``, ``pvalues``, ``conf_int()``,
``llf``, ``aic``, ``bic``. Under a prior (``method="map"``) the same table is the MAP with
the Laplace approximation's intervals, and it says so.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from mlemap._data import check_data
from numpyro.distributions import Distribution

from mlemap._density import check_log_likelihood, merge_priors
from mlemap._fit import PointEstimate
from mlemap._laplace import LaplaceApprox, curvature
from mlemap._model import Model, axis_labels

__all__ = ["summary", "Summary"]


@dataclasses.dataclass(frozen=True)
class Summary:
    """A fit's table and figures; ``print(summary)`` shows them as statsmodels does.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by ``Model.flat_names()``; columns ``coef``, ``std err``, ``z``, ``P>|z|``
        and the interval's bounds (``[0.025``, ``0.975]`` for ``alpha = 0.05``).
    log_likelihood : float
        :math:`\\sum_i \\log p(y_i \\mid \\hat\\theta)` at the estimate.
    aic, bic : float
        :math:`-2\\ell + 2k` and :math:`-2\\ell + k\\log n`, with :math:`k` the number of
        estimated parameters (``num_params``, nuisance parameters included, as
        statsmodels' discrete models count them) and :math:`n` = ``n_obs``.
    n_obs, num_params : int
        Observations (pointwise log-likelihood terms; rows, also with weights) and
        estimated parameters (the model's unconstrained coordinates).
    method : str
        ``"mle"`` or ``"map"``.
    status : str
        The fit's ``Status`` name; ``message`` says it in words.
    message : str
    note : str
        What the table is: the MLE with observed-information standard errors, or the MAP
        with Laplace intervals.
    """

    table: pd.DataFrame
    log_likelihood: float
    aic: float
    bic: float
    n_obs: int
    num_params: int
    method: str
    status: str
    message: str
    note: str

    def __str__(self) -> str:
        title = "Maximum likelihood" if self.method == "mle" else "Maximum a posteriori"
        head = [
            f"{title} estimate ({self.method}), status {self.status}",
            f"n_obs: {self.n_obs}   parameters: {self.num_params}   log-likelihood: "
            f"{self.log_likelihood:.6g}   AIC: {self.aic:.6g}   BIC: {self.bic:.6g}",
        ]
        with pd.option_context("display.float_format", "{:.4g}".format,
                               "display.width", 120):
            body = self.table.to_string()
        return "\n".join([*head, body, self.note, f"Fit: {self.message}"])

    __repr__ = __str__


_MLE_NOTE = ("Standard errors from the observed information (the inverse negative Hessian of "
             "the log-likelihood at the MLE, delta method for constrained parameters): "
             "statsmodels' bse; z and P>|z| are Wald's.")
_MAP_NOTE = ("MAP under the model's priors, with Laplace intervals: the standard errors are "
             "those of the Laplace (Gaussian) approximation of the posterior at the mode "
             "(Hessian of log-likelihood + log-prior + log-Jacobian, delta method), z and P>|z| "
             "read that Gaussian: not a frequentist test. Priors: {priors}.")


def summary(result: PointEstimate | LaplaceApprox, data: Any = None, *,
            model: Model | None = None, priors: Mapping | None = None,
            alpha: float = 0.05) -> Summary:
    """The coefficient table of a fit, with its log-likelihood, AIC, BIC and status.

    Parameters
    ----------
    result : LaplaceApprox or PointEstimate
        ``mm.laplace(model, data, method="mle")`` (statsmodels' numbers), or its mode's
        method ``"map"``; or a ``mm.fit`` estimate together with ``data``, whose Hessian is
        then computed at the estimate (of the log-likelihood for ``"mle"``; for ``"map"``,
        of the log-posterior with the log-Jacobian, as ``laplace``: the same for real,
        positive and ordered parameters, whose log-Jacobian is linear).
    data : pytree, optional
        The data of the fit; needed with a PointEstimate.
    model : Model, optional
        Default: the one the estimate was fitted on (``PointEstimate.model``).
    priors : dict, optional
        The prior overrides the fit was given (``mm.fit(..., priors=...)``): the Hessian of a
        ``"map"`` PointEstimate is under them, and the note names them.
    alpha : float
        The interval is :math:`1 - \\alpha` (default 95%).

    Returns
    -------
    Summary
        ``print()`` it, or read ``.table`` (a DataFrame) and the figures.

    Raises
    ------
    ValueError
        A batched estimate, a PointEstimate without ``data``, ``alpha`` outside (0, 1).
    """
    mode, std_errors = _mode_and_errors(result, data, model, priors)
    model = model if model is not None else mode.model
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (e.g. 0.05 for a 95% interval); got {alpha!r}.")
    names = model.flat_names()
    coef = _flat(model, mode.params)
    se = _flat(model, std_errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = coef / se
    quantile = scipy.stats.norm.ppf(1.0 - alpha / 2.0)
    low, high = f"[{alpha / 2:.3g}", f"{1 - alpha / 2:.3g}]"
    table = pd.DataFrame({"coef": coef, "std err": se, "z": z,
                          "P>|z|": 2.0 * scipy.stats.norm.sf(np.abs(z)),
                          low: coef - quantile * se, high: coef + quantile * se}, index=names)
    llf, n, k = float(mode.log_likelihood), int(mode.n_obs), int(model.dim)
    note = (_MLE_NOTE if mode.method == "mle"
            else _MAP_NOTE.format(priors=_priors(model, priors)))
    return Summary(table, llf, -2.0 * llf + 2.0 * k, -2.0 * llf + k * np.log(n), n, k,
                   mode.method, mode.result.name, str(mode.message), note)


def _mode_and_errors(result, data, model, priors) -> tuple[PointEstimate, dict]:
    """The point and its constrained standard errors: the approximation's, or computed."""
    if isinstance(result, LaplaceApprox):
        return result.mode, {k: np.asarray(v) for k, v in result.std_errors.items()}
    if not isinstance(result, PointEstimate):
        raise TypeError(f"summary takes a LaplaceApprox (mm.laplace) or a PointEstimate "
                        f"(mm.fit) with its data; got {type(result).__name__}.")
    if np.ndim(result.log_density) != 0:
        raise ValueError("summary takes one fit; this PointEstimate is batched. Index it "
                         "first, or summarize each problem's laplace().")
    model = model if model is not None else result.model
    if data is None or model is None:
        raise ValueError("summary(estimate) needs the data of the fit for the standard errors "
                         "(the Hessian at the estimate): summary(estimate, data), or give it "
                         "mm.laplace(model, data, mode=estimate).")
    data, _ = check_data(data, model)
    check_log_likelihood(model, data)
    priors = merge_priors(model, priors) if priors else None
    curv = curvature(model, data, np.asarray(result.position), result.method, priors)
    return result, curv.std_errors


def _flat(model: Model, values) -> np.ndarray:
    """The entries of each parameter, in ``flat_names`` order."""
    out = []
    for name in model.params:
        array = np.asarray(values[name], dtype=float)
        out.extend(array[index] for index in itertools.product(
            *(range(len(axis)) for axis in axis_labels(model, name))))
    return np.asarray(out, dtype=float)


def _priors(model: Model, priors) -> str:
    """The priors in words, for the MAP note."""
    merged = merge_priors(model, priors or {})
    said = [f"{name} ~ {type(prior).__name__ if isinstance(prior, Distribution) else 'conditional'}"
            for name, prior in merged.items() if prior is not None]
    flat = [name for name, prior in merged.items() if prior is None]
    return ", ".join(said + ([f"flat on {', '.join(flat)}"] if flat else []))
