"""glm(): a design matrix, a likelihood family and a prior, as a Model and its data."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpyro.distributions as dist

from mlemap import _checks
from mlemap._glm import GLMSpec, glm_likelihood, offset_column
from mlemap._model import Model, Param
from mlemap.families import Family

__all__ = ["glm"]


def glm(
    X,
    y,
    *,
    family: Family,
    prior: dist.Distribution | None = None,
    intercept: bool | None = None,
    intercept_prior: dist.Distribution | None = None,
    offset=None,
    exposure=None,
    weights=None,
    names=None,
) -> tuple[Model, dict]:
    """A generalized linear model: :math:`y_i \\sim \\mathrm{family}(\\eta_i)`,
    :math:`\\eta = X\\beta + \\beta_0 + \\mathrm{offset}`.

    Parameters
    ----------
    X : array (n, d) or pandas.DataFrame
        Design matrix, finite. A DataFrame's column names name the coefficients (see
        ``names``).
    y : array (n,) or pandas.Series
        Response, checked against the family's domain (0/1 for bernoulli, 0..K-1 for
        categorical and ordinal, non-negative integers for poisson and negative_binomial,
        0..trials for binomial, (0, 1) for beta, positive for gamma).
    family : mlemap.families.Family
        e.g. ``families.gaussian()`` (learned ``sigma``) or ``families.bernoulli()``.
    prior : numpyro Distribution, optional
        Prior on every entry of ``beta`` (broadcast); ``None`` is flat, giving the MLE.
        ``mlemap.priors`` converts scikit-learn's penalties into these.
    intercept : bool, optional
        Add an intercept ``intercept``. Default: yes, except for ``families.ordinal()``,
        whose cut points are the intercepts (an intercept beside them is not identified:
        ``intercept=True`` with ordinal is refused).
    intercept_prior : numpyro Distribution, optional
        Prior on the intercept; flat by default, as scikit-learn never penalizes it.
    offset : array (n,), optional
        Added to the linear predictor with a coefficient fixed at 1 (statsmodels'
        ``offset``). Not for categorical.
    exposure : array (n,), optional
        Positive; ``log(exposure)`` is added to the linear predictor (statsmodels'
        ``exposure``): with a log link the mean is ``exposure * exp(X beta + b0)``, a
        rate model. Given with ``offset``, both are added.
    weights : array (n,), optional
        Frequency (replication) weights, non-negative: the log-likelihood is
        :math:`\\sum_i w_i \\log p(y_i \\mid \\eta_i)`, as if row :math:`i` were observed
        :math:`w_i` times (statsmodels' ``GLM(freq_weights=w)``: the same estimate, standard
        errors and log-likelihood). The pointwise log-likelihood (``sample``'s
        ``log_likelihood`` group) holds the weighted terms :math:`w_i \\log p(y_i)`; PSIS-LOO
        on them leaves out one *row* (all its :math:`w_i` replicates) at a time, which is not
        the standard LOO of the replicated data: compare weighted models by LOO with care.
    names : sequence of str, optional
        A name for each column of ``X`` (default: a DataFrame's columns; none for an array).
        Named, ``beta`` gets the dim ``"coef"`` labelled by them (``Param.dims``,
        ``Model.coords``), so that every view names its entries ``beta[educ]``:
        ``Model.flat_names()``, ``mm.compare``'s rows, ``mm.summary``, and the DataTrees of
        ``mm.sample`` and ``mm.laplace`` (ArviZ dims and coords, which ``arviz_stats.summary``
        and ``arviz_plots`` label). Categorical class axes are then the dims ``"class"``
        (classes 1..K-1 against class 0; the intercept's) and ``"class_all"`` (0..K-1, under
        a proper prior), ordinal cut points ``"cut"`` (``"0/1"``, ``"1/2"``, ...). Without
        names the entries are numbered, ``beta[0]``.

    Returns
    -------
    model : Model
        Parameters, in this order: ``intercept`` (scalar), ``beta`` ``(d,)``, then the
        family's learned nuisance parameters (``sigma``, ``nu``, ``alpha``, ``shape``,
        ``precision``, ``cutpoints``), each with the family's prior (flat, except
        negative_binomial's ``alpha``). It checks the response of any data given to
        ``fit``, ``laplace`` or ``sample`` against the family (``Model.check_data``), starts a
        fit from the data (``Model.init``: for an identity link, least squares and the
        residual scale, ``nu = 5``; else the link of the mean response as the intercept, zero
        coefficients, moments for the nuisance parameters), and says what a coefficient or a
        nuisance parameter running off means for this family (``Model.runaway_hints``).
        Structurally equal models (same family, intercept, shapes, offset and weights) share
        one log-likelihood function, and so their compiled programs.
    data : dict
        ``{"X": (n, d) float, "y": (n,)}`` as JAX arrays, plus ``"offset"`` ``(n,)`` (the
        offset and ``log(exposure)`` summed) and ``"weights"`` ``(n,)`` when given, and the
        family's data arrays: ``"trials"`` ``(n,)`` for binomial. Every one is an argument of
        the compiled programs, none is closed over.

    Notes
    -----
    **Categorical identifiability.** Softmax logits are unchanged by adding a constant to
    every class, so a flat prior leaves the MLE undetermined. mlemap fixes class 0 as the
    reference (its logit is 0), as statsmodels' ``MNLogit`` does: under a flat prior
    ``beta`` has shape ``(d, K-1)``. Under a proper prior the symmetric form is identified by
    the prior itself and is what scikit-learn's multinomial ``LogisticRegression`` fits, so
    ``beta`` has shape ``(d, K)``. The intercept, flat by default, always has shape
    ``(K-1,)``: class 0's intercept is 0 (an unpenalized shift common to all classes
    changes nothing).

    Examples
    --------
    >>> import numpy as np
    >>> from mlemap import families, priors
    >>> X, y = np.random.default_rng(0).normal(size=(50, 3)), np.arange(50) % 2
    >>> model, data = glm(X, y, family=families.bernoulli(), prior=priors.from_logistic(1.0))
    """
    if not isinstance(family, Family):
        raise TypeError(
            "family must be an mlemap.families family, e.g. families.gaussian() or "
            f"families.bernoulli(); got {family!r}."
        )
    names = _column_names(X, names)
    X, y = _checks.design_and_response(X, y)
    if names is not None and len(names) != X.shape[1]:
        raise ValueError(f"names has {len(names)} entries but X has {X.shape[1]} columns; give "
                         "one name per column.")
    n = X.shape[0]
    extra = {k: _checks.per_observation(k, v, n) for k, v in family.data.items()}
    y = family.validate(y, extra)
    family = family.resolve(y)
    intercept = _intercept(family, intercept)
    offset = offset_column(family, offset, exposure, n)
    spec = _spec(family, intercept, X.shape[1], prior, offset is not None, weights is not None)
    likelihood = glm_likelihood(spec)
    params = _params(spec, prior, intercept_prior, family)
    data = {"X": jnp.asarray(X, dtype=float), "y": jnp.asarray(y, dtype=_y_dtype(family))}
    data.update({k: jnp.asarray(v, dtype=float) for k, v in extra.items()})
    if offset is not None:
        data["offset"] = jnp.asarray(offset, dtype=float)
    if weights is not None:
        w = _checks.observation_weights(_checks.per_observation("weights", weights, n))
        data["weights"] = jnp.asarray(w, dtype=float)
    coefficients = [name for name in ("intercept", "beta") if name in params]
    hints = {name: family.runaway_hints[key] for key in family.runaway_hints
             for name in (coefficients if key == "coefficients" else [key]) if name in params}
    coords = None
    if names is not None:
        params, coords = _named(params, spec, names)
    model = Model(params, likelihood, check_data=likelihood.check_data, init=likelihood.init,
                  runaway_hints=hints, coords=coords)
    return model, data


def _column_names(X, names) -> list[str] | None:
    """The coefficients' names: ``names``, else a DataFrame's columns, else None."""
    if names is None:
        columns = getattr(X, "columns", None)
        if columns is None or not hasattr(X, "to_numpy"):
            return None
        names = columns
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of strings, one per column; got {names!r}.")
    names = [str(name) for name in names]
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"names must be unique; {repeated} appear more than once.")
    return names


def _named(params: dict[str, Param], spec: GLMSpec, names: list[str]):
    """The parameters with their axes named (``Param.dims``) and the labels (``coords``)."""
    dims = {"beta": ("coef",)}
    coords = {"coef": names}
    k = spec.family.num_classes
    if spec.num_classes is not None:
        dims["beta"] = ("coef", "class" if spec.beta_shape[1] == k - 1 else "class_all")
        dims["intercept"] = ("class",)
        coords.update({"class": list(range(1, k)), "class_all": list(range(k))})
    if "cutpoints" in params:
        dims["cutpoints"] = ("cut",)
        coords["cut"] = [f"{j}/{j + 1}" for j in range(k - 1)]
    named = {name: dataclasses.replace(param, dims=dims[name]) if name in dims else param
             for name, param in params.items()}
    used = {d for name, axes in dims.items() if name in params for d in axes}
    return named, {d: labels for d, labels in coords.items() if d in used}


def _intercept(family: Family, intercept: bool | None) -> bool:
    if family.link != "cumulative logit":
        return True if intercept is None else bool(intercept)
    if intercept:
        raise ValueError(
            "ordinal models have no intercept: the cut points are the intercepts (one per "
            "boundary between classes), and a shift of the linear predictor is a shift of "
            "every cut point, so an intercept beside them is not identified (statsmodels' "
            "OrderedModel refuses a constant too). Leave intercept out (or False).")
    return False


def _spec(family: Family, intercept: bool, d: int, prior, offset: bool, weights: bool
          ) -> GLMSpec:
    if family.link == "softmax":
        k = family.num_classes
        beta_shape, intercept_shape = (d, k if prior is not None else k - 1), (k - 1,)
    else:
        beta_shape, intercept_shape = (d,), ()
    structure = family.with_data(dict.fromkeys(family.data))  # data live in the data pytree
    return GLMSpec(structure, intercept, beta_shape, intercept_shape, offset, weights)


def _params(spec: GLMSpec, prior, intercept_prior, family: Family) -> dict[str, Param]:
    params = {}
    if spec.intercept:
        params["intercept"] = Param(shape=spec.intercept_shape, prior=intercept_prior)
    params["beta"] = Param(shape=spec.beta_shape, prior=prior)
    params.update(family.learned)
    return params


def _y_dtype(family: Family):
    return jnp.int32 if family.link in ("softmax", "cumulative logit") else float
