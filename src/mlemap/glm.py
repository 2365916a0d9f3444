"""glm(): a design matrix, a likelihood family and a prior, as a Model and its data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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
        family's learned nuisance parameters (``sigma``, ``nu``). It checks the response of
        any data given to ``fit``, ``laplace`` or ``sample`` against the family
        (``Model.check_data``), starts a fit from the data (``Model.init``: for an identity
        link, least squares and the residual scale, ``nu = 5``; else the link of the mean
        response as the intercept and zero coefficients), and says what a coefficient or
        scale running off means for this family (``Model.runaway_hints``).
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
    coefficients = [name for name in ("intercept", "beta") if name in params]
    hints = {name: family.runaway_hints[key] for key in family.runaway_hints
             for name in (coefficients if key == "coefficients" else [key]) if name in params}
    model = Model(params, log_likelihood, check_data=_response_check(family, num_classes),
                  init=_start(family, intercept, beta_shape, num_classes), runaway_hints=hints)
    return model, data


def _response_check(family: Family, num_classes: int | None):
    """``Model.check_data``: the family's domain, elementwise (so that a batch of stacked
    datasets is checked at once); for categorical labels inferred from the data, every class
    present in each dataset."""

    def check_data(data):
        y = np.asarray(data["y"])
        if num_classes is None:
            family.validate(y.reshape(-1))
            return
        _checks.class_labels(y.reshape(-1), num_classes)
        if family.num_classes is None:
            _checks.every_class_present(y.reshape(-1, y.shape[-1]), num_classes)

    return check_data


def _start(family: Family, intercept: bool, beta_shape, num_classes):
    """``Model.init``: least squares (on centred columns, with a ridge of 1e-10 of the mean
    diagonal against exact collinearity) and the residual scale for a robust family
    (``Family.least_squares_start``); for any other, the link of the mean response as the
    intercept, zero coefficients, and the scale around the mean."""

    def init(data):
        X, y = data["X"], data["y"]
        if family.least_squares_start:
            mean_x = jnp.mean(X, axis=0) if intercept else jnp.zeros(X.shape[1], X.dtype)
            mean_y = jnp.mean(y) if intercept else jnp.zeros((), X.dtype)
            Xc, yc = X - mean_x[None, :], y - mean_y
            gram = Xc.T @ Xc
            ridge = 1e-10 * jnp.trace(gram) / max(X.shape[1], 1) + jnp.finfo(X.dtype).tiny
            beta = jnp.linalg.solve(gram + ridge * jnp.eye(X.shape[1], dtype=X.dtype), Xc.T @ yc)
            start = {"intercept": mean_y - mean_x @ beta, "beta": beta}
            start.update(family.nuisance_start(y, y - (yc - Xc @ beta)))
        else:
            if num_classes is not None:  # log-odds of each class against class 0
                counts = jnp.sum(jax.nn.one_hot(y, num_classes, dtype=X.dtype), axis=0) + 0.5
                mean_eta = jnp.log(counts[1:]) - jnp.log(counts[0])
            else:
                mean_eta = family.mean_link(y)
            start = {"intercept": mean_eta, "beta": jnp.zeros(beta_shape, X.dtype)}
            start.update(family.nuisance_start(y, jnp.full(y.shape, jnp.mean(y), X.dtype)))
        return {k: v for k, v in start.items() if k != "intercept" or intercept}

    return init


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
