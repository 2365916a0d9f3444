"""Labels and counts: bernoulli (log loss), categorical (softmax cross-entropy), poisson
(the Poisson deviance)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.scipy.special import gammaln, xlogy

from mlemap import _checks
from mlemap.families._family import _SEPARABLE, Family, _logit

__all__ = ["bernoulli", "categorical", "poisson"]


class _BernoulliLogits(dist.BernoulliLogits):
    """NumPyro's ``BernoulliLogits`` with a log-probability whose gradient is right at 0.

    NumPyro writes :math:`-\\log p = \\max(\\eta, 0) + \\log(1 + e^{-|\\eta|}) - y\\eta`,
    whose JAX derivative at exactly :math:`\\eta = 0` is :math:`-y` instead of
    :math:`\\tfrac12 - y`: the one-sided derivatives JAX picks at the two kinks do not cancel.
    A fit that starts at ``beta = 0``, where all logits are 0, would get a wrong first gradient
    (e.g. the intercept's would be :math:`-\\bar y` instead of :math:`\\tfrac12 - \\bar y`),
    and take more L-BFGS iterations.
    :math:`y\\eta - \\mathrm{softplus}(\\eta)` is the same number with JAX's exact softplus
    derivative :math:`\\sigma(\\eta)` everywhere, and as stable for large :math:`|\\eta|`.
    """

    def log_prob(self, value):
        return value * self.logits - jax.nn.softplus(self.logits)


def bernoulli() -> Family:
    """Bernoulli labels 0/1, logit link: the negative log-likelihood is the log loss.

    .. math:: -\\log p(y \\mid \\eta) = -y\\log\\sigma(\\eta) - (1-y)\\log(1-\\sigma(\\eta))

    exactly optax's ``sigmoid_binary_cross_entropy(eta, y)`` (slope 1, constant 0).
    """
    return Family(
        name="bernoulli",
        link="logit",
        loss_name="binary cross-entropy (log loss)",
        fixed={},
        learned={},
        _distribution=lambda eta: _BernoulliLogits(eta),
        _loss=lambda eta, y: optax.losses.sigmoid_binary_cross_entropy(eta, y),
        _affine=lambda y: (1.0, 0.0),
        _validate=_checks.binary_labels,
        _mean_link=lambda y: _logit(jnp.mean(y)),
        runaway_hints={"coefficients": _SEPARABLE},
    )


def categorical(num_classes: int | None = None) -> Family:
    """Class labels 0..K-1, softmax link: the negative log-likelihood is the cross-entropy.

    .. math:: -\\log p(y \\mid \\eta) = -\\eta_y + \\log\\sum_k e^{\\eta_k}

    exactly optax's ``softmax_cross_entropy_with_integer_labels(eta, y)``; ``eta`` has shape
    ``(n, K)``. ``num_classes=None`` takes K from the largest label.
    """
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got {num_classes!r}.")
    return Family(
        name="categorical",
        link="softmax",
        loss_name="softmax cross-entropy",
        fixed={},
        learned={},
        _distribution=lambda eta: dist.CategoricalLogits(eta),
        _loss=lambda eta, y: optax.losses.softmax_cross_entropy_with_integer_labels(eta, y),
        _affine=lambda y: (1.0, 0.0),
        _validate=lambda y: _checks.class_labels(y, num_classes)[0],
        _mean_link=None,  # glm gives the number of classes: see glm's start
        _mean=lambda eta: jax.nn.softmax(eta, axis=-1),
        num_classes=None if num_classes is None else int(num_classes),
        _resolve=_resolve_classes,
        runaway_hints={"coefficients": _SEPARABLE},
    )


def _resolve_classes(family: Family, y) -> Family:
    """The number of classes from the labels (every class observed when it is inferred)."""
    return dataclasses.replace(family, num_classes=_checks.class_labels(
        np.asarray(y), family.num_classes)[1], _resolve=None)


def _half_poisson_deviance(eta, y):
    """:math:`y\\log(y/\\mu) - (y - \\mu)` with :math:`\\mu = e^\\eta`, half the unit deviance.

    Written by hand: optax has no Poisson deviance (its Poisson loss drops the terms in y).
    """
    return xlogy(y, y) - y * eta - (y - jnp.exp(eta))


def poisson() -> Family:
    """Poisson counts, log link: the negative log-likelihood is half the Poisson deviance.

    .. math:: -\\log \\mathrm{Poisson}(y \\mid e^\\eta) = e^\\eta - y\\eta + \\log y!
              = \\tfrac12 D(y, e^\\eta) + (\\log y! - y\\log y + y)
    """
    return Family(
        name="poisson",
        link="log",
        loss_name="half Poisson deviance",
        fixed={},
        learned={},
        _distribution=lambda eta: dist.Poisson(jnp.exp(eta)),
        _loss=_half_poisson_deviance,
        _affine=lambda y: (1.0, gammaln(y + 1.0) - xlogy(y, y) + y),
        _validate=_checks.count_labels,
        _mean_link=lambda y: jnp.log(jnp.maximum(jnp.mean(y), 1e-10)),
        runaway_hints={"coefficients": (
            "With counts this means a group of observations (a level of a dummy column, or "
            "the extreme values of a column) whose counts are all 0: their mean's MLE is 0 and "
            "its log is -infinity. Fix: add a proper prior (method='map' with e.g. "
            "prior=Normal(0, s), mm.priors.from_poisson(alpha, n)), or drop that group.")},
    )
