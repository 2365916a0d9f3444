"""glm(): a design matrix, a likelihood family and a prior, as a Model and its data."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

from mlemap import _checks
from mlemap._model import Model, Param
from mlemap.families import Family

__all__ = ["glm"]


def glm(
    X,
    y,
    *,
    family: Family,
    prior: dist.Distribution | None = None,
    intercept: bool = True,
    intercept_prior: dist.Distribution | None = None,
) -> tuple[Model, dict]:
    """A generalized linear model: :math:`y_i \\sim \\mathrm{family}(\\eta_i)`,
    :math:`\\eta = X\\beta + \\beta_0`.

    Parameters
    ----------
    X : array (n, d)
        Design matrix, finite.
    y : array (n,)
        Response, checked against the family's domain (0/1 for bernoulli, 0..K-1 for
        categorical, non-negative integers for poisson).
    family : mlemap.families.Family
        e.g. ``families.gaussian()`` (learned ``sigma``) or ``families.bernoulli()``.
    prior : numpyro Distribution, optional
        Prior on every entry of ``beta`` (broadcast); ``None`` is flat, giving the MLE.
        ``mlemap.priors`` converts scikit-learn's penalties into these.
    intercept : bool
        Add an intercept ``intercept``.
    intercept_prior : numpyro Distribution, optional
        Prior on the intercept; flat by default, as scikit-learn never penalizes it.

    Returns
    -------
    model : Model
        Parameters, in this order: ``intercept`` (scalar), ``beta`` ``(d,)``, then the
        family's learned nuisance parameters (``sigma``, ``nu``).
    data : dict
        ``{"X": (n, d) float array, "y": (n,) array}`` as JAX arrays.

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
    X, y = _checks.design_and_response(X, y)
    y = family.validate(y)
    d = X.shape[1]

    if family.link == "softmax":
        num_classes = _checks.class_labels(y, family.num_classes)[1]
        beta_columns = num_classes if prior is not None else num_classes - 1
        beta_shape, intercept_shape = (d, beta_columns), (num_classes - 1,)
    else:
        num_classes = None
        beta_shape, intercept_shape = (d,), ()

    params = {}
    if intercept:
        params["intercept"] = Param(shape=intercept_shape, prior=intercept_prior)
    params["beta"] = Param(shape=beta_shape, prior=prior)
    for name, param in family.learned.items():
        params[name] = param

    def log_likelihood(params, data):
        eta = data["X"] @ params["beta"]
        if num_classes is not None:
            eta = _softmax_logits(eta, params.get("intercept"), num_classes)
        elif intercept:
            eta = eta + params["intercept"]
        nuisance = {name: params[name] for name in family.learned}
        return family.log_prob(eta, data["y"], nuisance)

    y_dtype = jnp.int32 if num_classes is not None else float
    data = {"X": jnp.asarray(X, dtype=float), "y": jnp.asarray(y, dtype=y_dtype)}
    return Model(params, log_likelihood), data


def _softmax_logits(eta, intercept, num_classes):
    """Logits ``(n, K)`` from ``X @ beta`` with ``K-1`` or ``K`` columns and a ``(K-1,)``
    intercept, class 0 being the reference of whatever has ``K-1`` columns."""
    n = eta.shape[0]
    if eta.shape[1] == num_classes - 1:
        eta = jnp.concatenate([jnp.zeros((n, 1), eta.dtype), eta], axis=1)
    if intercept is not None:
        full = jnp.concatenate([jnp.zeros((1,), intercept.dtype), intercept])
        eta = eta + full[None, :]
    return eta
