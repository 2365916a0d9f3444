"""The Family type, and what the families share: nuisance parameters, starts, hints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from mlemap import _checks
from mlemap._model import Param

__all__ = ["Family"]


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """A likelihood family: link, distribution, loss and label checks.

    Attributes
    ----------
    name : str
    link : str
        ``"identity"``, ``"logit"``, ``"softmax"``, ``"log"``, ``"inverse"`` or
        ``"cumulative logit"``: how ``eta`` maps to the mean.
    loss_name : str
        The loss that the negative log-likelihood is, in words.
    fixed : dict[str, float]
        Nuisance parameters held fixed.
    learned : dict[str, Param]
        Nuisance parameters to be estimated, as model parameters.
    num_classes : int or None
        Categorical and ordinal only: the number of classes, ``None`` to infer it from the
        labels (:meth:`resolve`).
    data : dict[str, array]
        Per-observation arrays that the likelihood needs besides the response (binomial:
        ``{"trials": ...}``). They are *data*: ``glm`` puts each in the data pytree under its
        name, and the log-likelihood reads them from there, never from the family.
    runaway_hints : dict[str, str]
        What it means when the log-density keeps increasing as a parameter runs off:
        ``"coefficients"`` for the intercept and ``beta``, else a nuisance parameter's name.
    least_squares_start : bool
        ``glm`` starts the location by least squares (a robust loss, started far from the
        data, can settle where it is flat: a Student-t's nu running off); else at the link
        of the mean response, which Newton leaves in a few steps.

    Notes
    -----
    The private callables take the linear predictor, the response, the nuisance values and
    the family's data arrays as keywords: ``_distribution(eta, **nuisance, **data)``,
    ``_loss(eta, y, **nuisance, **data)``, ``_affine(y, **nuisance, **data)``,
    ``_validate(y, **data)``, ``_mean_link(y, **data)``, ``_mean(eta, **nuisance, **data)``.
    """

    name: str
    link: str
    loss_name: str
    fixed: Mapping[str, float]
    learned: Mapping[str, Param]
    _distribution: Callable = dataclasses.field(repr=False)
    _loss: Callable = dataclasses.field(repr=False)
    _affine: Callable = dataclasses.field(repr=False)
    _validate: Callable = dataclasses.field(repr=False)
    _mean_link: Callable = dataclasses.field(repr=False)
    _nuisance_start: Callable = dataclasses.field(default=lambda y, mean: {}, repr=False)
    num_classes: int | None = None
    runaway_hints: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    least_squares_start: bool = False
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    _mean: Callable | None = dataclasses.field(default=None, repr=False)
    _resolve: Callable | None = dataclasses.field(default=None, repr=False)

    def _nuisance(self, nuisance: Mapping | None) -> dict:
        values = dict(self.fixed)
        values.update({k: nuisance[k] for k in self.learned} if self.learned else {})
        return values

    def _extra(self, data: Mapping | None) -> dict:
        """The family's data arrays: from ``data`` (a model's data pytree) when given."""
        if not self.data:
            return {}
        source = self.data if data is None else data
        return {k: source[k] for k in self.data if k in source}

    def distribution(self, eta, nuisance: Mapping | None = None,
                     data: Mapping | None = None) -> dist.Distribution:
        """The NumPyro distribution of ``y`` given the linear predictor ``eta``.

        ``eta`` is ``(n,)``, or ``(n, K)`` logits for categorical; ``nuisance`` holds the
        learned nuisance values (e.g. ``{"sigma": 1.3}``); ``data`` the family's data arrays
        (e.g. ``{"trials": ...}``; default: those the family was built with).
        """
        return self._distribution(eta, **self._nuisance(nuisance), **self._extra(data))

    def log_prob(self, eta, y, nuisance: Mapping | None = None, data: Mapping | None = None):
        """Pointwise log-likelihood :math:`\\log p(y_i \\mid \\eta_i)`, shape ``(n,)``."""
        return self.distribution(eta, nuisance, data).log_prob(y)

    def loss(self, eta, y, nuisance: Mapping | None = None, data: Mapping | None = None):
        """Pointwise loss :math:`L(\\eta_i, y_i)`, shape ``(n,)`` (see the module's table)."""
        return self._loss(eta, y, **self._nuisance(nuisance), **self._extra(data))

    def loss_affine(self, y, nuisance: Mapping | None = None, data: Mapping | None = None):
        """``(slope, constant)`` with ``-log_prob = slope * loss + constant`` pointwise.

        ``slope`` is a scalar (an array ``(n,)`` for binomial: the trials), ``constant``
        broadcasts to ``(n,)``; neither depends on ``eta``, which is what makes the loss and
        the likelihood share their optimum.
        """
        return self._affine(y, **self._nuisance(nuisance), **self._extra(data))

    def mean(self, eta, nuisance: Mapping | None = None, data: Mapping | None = None):
        """The mean response at ``eta``: ``(n,)``, the success probability for bernoulli and
        binomial (statsmodels' and scikit-learn's ``predict``), the class probabilities
        ``(n, K)`` for categorical and ordinal (``predict_proba``)."""
        if self._mean is None:
            return self.distribution(eta, nuisance, data).mean
        return self._mean(eta, **self._nuisance(nuisance), **self._extra(data))

    def validate(self, y, data: Mapping | None = None) -> np.ndarray:
        """Check the response's domain (against the family's data arrays, e.g. ``y <=
        trials``); return it as the array the likelihood expects."""
        return self._validate(y, **self._extra(data))

    def mean_link(self, y, data: Mapping | None = None):
        """The link of the mean response, :math:`g(\\bar y)`: the linear predictor of a
        model with an intercept only, for a start. JAX, any ``(n,)``."""
        return self._mean_link(y, **self._extra(data))

    def nuisance_start(self, y, mean):
        """A start of each learned nuisance parameter given the response ``y`` ``(n,)`` and
        the mean ``(n,)`` of a start's fit (least squares, or the mean response): the residual
        scale for ``sigma``, a moderate 5 for ``nu``, the moments' shape for ``gamma``. JAX."""
        if not self.learned:
            return {}
        dtype = jnp.asarray(mean).dtype  # float, also for integer labels
        return {name: jnp.asarray(value, dtype)
                for name, value in self._nuisance_start(y, mean).items() if name in self.learned}

    def resolve(self, y) -> Family:
        """The family with what the response fixes filled in: the number of classes (and the
        ordinal cut points' shape) from the labels. Others are returned as they are."""
        return self if self._resolve is None else self._resolve(self, y)

    def with_data(self, data: Mapping[str, Any]) -> Family:
        """The same family with other data arrays (e.g. the trials of new observations)."""
        return dataclasses.replace(self, data=dict(data))

    def key(self) -> tuple:
        """What makes two families the same likelihood, for sharing compiled programs: name,
        link, fixed values, number of classes, learned parameters (names, shapes, supports)
        and the *names* of the data arrays (their values are data, not structure)."""
        learned = tuple((name, p.shape, str(p.constraint)) for name, p in self.learned.items())
        fixed = tuple(sorted((k, float(v)) for k, v in self.fixed.items()))
        return (self.name, self.link, fixed, self.num_classes, learned, tuple(sorted(self.data)))

    def __repr__(self):
        parts = [f"{k}={v:g}" for k, v in self.fixed.items()]
        parts += [f"{k}=<learned>" for k in self.learned]
        return f"{self.name}({', '.join(parts)})"


_EXACT_FIT = (
    "A scale going to 0: the fit is exact (as many coefficients as observations, or a "
    "response that is a linear function of the columns), so there is no noise to estimate. "
    "Fix the scale (e.g. gaussian(sigma=...)) or give it a prior.")
_SEPARABLE = (
    "With a Bernoulli or categorical likelihood this means the classes are (quasi-)"
    "separable: a combination of the columns predicts them perfectly, and the MLE does not "
    "exist. Fix: add a proper prior (method='map' with e.g. prior=Normal(0, s) on the "
    "coefficients, mm.priors.from_logistic(C)); the MAP exists.")


def _scale(value, y):
    """A start's scale, kept off 0 by a thousandth of the response's spread (an exact fit
    would start on the boundary, where the solver cannot move)."""
    spread = jnp.std(y)
    return jnp.maximum(value, 1e-3 * jnp.where(spread > 0, spread, 1.0))


def _logit(p):
    """The log-odds of ``p``, kept finite for a start at p = 0 or 1."""
    p = jnp.clip(p, 1e-6, 1.0 - 1e-6)
    return jnp.log(p) - jnp.log1p(-p)


#: A prior argument left out: the family's documented default (``None`` means flat).
DEFAULT = object()


def _scale_param(name: str, value, prior) -> tuple[dict, dict]:
    """Split a nuisance scale into (fixed, learned) according to whether it is given."""
    if value is None:
        return {}, {name: Param(constraint=constraints.positive, prior=prior)}
    if prior is not None:
        raise ValueError(
            f"{name} is fixed at {value!r} and also given a prior; pass {name}=None to learn "
            f"it under the prior, or drop the prior."
        )
    return {name: _checks.positive_scalar(name, value)}, {}
