"""Likelihood families, and the loss that each one's negative log-likelihood is.

A family turns a linear predictor ``eta`` into a NumPyro distribution for the response. Its
negative log-likelihood is an exact *affine* function of a familiar loss, observation by
observation:

.. math::

    -\\log p(y_i \\mid \\eta_i, \\phi) = a(\\phi)\\, L(\\eta_i, y_i) + c_i(y_i, \\phi)

so minimizing the loss and maximizing the likelihood give the same point whenever the
nuisance parameters :math:`\\phi` are fixed.

=============  ========  =========================================  ============  ==========================================
family         link      loss :math:`L`                             slope a       constant :math:`c_i`
=============  ========  =========================================  ============  ==========================================
gaussian(s)    identity  squared error :math:`(y-\\eta)^2`         1/(2 s^2)     :math:`\\log s + \\tfrac12\\log 2\\pi`
laplace(b)     identity  absolute error :math:`|y-\\eta|`          1/b           :math:`\\log 2b`
student_t      identity  :math:`\\tfrac{\\nu+1}{2}\\log(1+r^2/\\nu s^2)` 1       :math:`\\log s + \\tfrac12\\log\\nu\\pi + \\log\\Gamma(\\tfrac\\nu2) - \\log\\Gamma(\\tfrac{\\nu+1}2)`
bernoulli      logit     binary cross-entropy (log loss)            1             0
categorical    softmax   softmax cross-entropy                      1             0
poisson        log       half Poisson deviance :math:`y\\log(y/\\mu) - (y-\\mu)`  1   :math:`\\log y! - y\\log y + y`
=============  ========  =========================================  ============  ==========================================

Each family's ``loss`` is optax's where optax has it (``squared_error``,
``sigmoid_binary_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``); the
log-probabilities are NumPyro's (Bernoulli's with one fix, see :class:`_BernoulliLogits`). A nuisance parameter passed as a number is fixed; left as
``None`` it becomes a learned parameter of the model (a positive :class:`~mlemap.Param`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.scipy.special import gammaln, xlogy
from numpyro.distributions import constraints

from mlemap import _checks
from mlemap._model import Param

__all__ = [
    "Family",
    "gaussian",
    "laplace",
    "student_t",
    "bernoulli",
    "categorical",
    "poisson",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """A likelihood family: link, distribution, loss and label checks.

    Attributes
    ----------
    name : str
    link : str
        ``"identity"``, ``"logit"``, ``"softmax"`` or ``"log"``: how ``eta`` maps to the mean.
    loss_name : str
        The loss that the negative log-likelihood is, in words.
    fixed : dict[str, float]
        Nuisance parameters held fixed.
    learned : dict[str, Param]
        Nuisance parameters to be estimated, as model parameters.
    num_classes : int or None
        Categorical only: the number of classes, ``None`` to infer it from the labels.
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
    num_classes: int | None = None

    def _nuisance(self, nuisance: Mapping | None) -> dict:
        values = dict(self.fixed)
        values.update({k: nuisance[k] for k in self.learned} if self.learned else {})
        return values

    def distribution(self, eta, nuisance: Mapping | None = None) -> dist.Distribution:
        """The NumPyro distribution of ``y`` given the linear predictor ``eta``.

        ``eta`` is ``(n,)``, or ``(n, K)`` logits for categorical; ``nuisance`` holds the
        learned nuisance values (e.g. ``{"sigma": 1.3}``).
        """
        return self._distribution(eta, **self._nuisance(nuisance))

    def log_prob(self, eta, y, nuisance: Mapping | None = None):
        """Pointwise log-likelihood :math:`\\log p(y_i \\mid \\eta_i)`, shape ``(n,)``."""
        return self.distribution(eta, nuisance).log_prob(y)

    def loss(self, eta, y, nuisance: Mapping | None = None):
        """Pointwise loss :math:`L(\\eta_i, y_i)`, shape ``(n,)`` (see the module's table)."""
        return self._loss(eta, y, **self._nuisance(nuisance))

    def loss_affine(self, y, nuisance: Mapping | None = None):
        """``(slope, constant)`` with ``-log_prob = slope * loss + constant`` pointwise.

        ``slope`` is a scalar, ``constant`` broadcasts to ``(n,)``; neither depends on
        ``eta``, which is what makes the loss and the likelihood share their optimum.
        """
        return self._affine(y, **self._nuisance(nuisance))

    def validate(self, y) -> np.ndarray:
        """Check the response's domain; return it as the array the likelihood expects."""
        return self._validate(y)

    def __repr__(self):
        parts = [f"{k}={v:g}" for k, v in self.fixed.items()]
        parts += [f"{k}=<learned>" for k in self.learned]
        return f"{self.name}({', '.join(parts)})"


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


def gaussian(sigma: float | None = None, *, sigma_prior: dist.Distribution | None = None) -> Family:
    """Gaussian noise, identity link: the negative log-likelihood is the squared error.

    .. math:: -\\log N(y \\mid \\eta, \\sigma) = \\frac{(y-\\eta)^2}{2\\sigma^2}
              + \\log\\sigma + \\tfrac12\\log 2\\pi

    Parameters
    ----------
    sigma : float or None
        Fixed noise scale, or ``None`` to learn it (parameter ``sigma``, positive).
    sigma_prior : Distribution, optional
        Prior on a learned ``sigma`` (default flat on the positive line).
    """
    fixed, learned = _scale_param("sigma", sigma, sigma_prior)
    return Family(
        name="gaussian",
        link="identity",
        loss_name="squared error",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, sigma: dist.Normal(eta, sigma),
        _loss=lambda eta, y, sigma: optax.losses.squared_error(eta, y),
        _affine=lambda y, sigma: (
            1.0 / (2.0 * sigma**2),
            jnp.log(sigma) + 0.5 * jnp.log(2.0 * jnp.pi),
        ),
        _validate=_checks.real_response,
    )


def laplace(scale: float | None = None, *, scale_prior: dist.Distribution | None = None) -> Family:
    """Laplace noise, identity link: the negative log-likelihood is the absolute error.

    .. math:: -\\log \\mathrm{Laplace}(y \\mid \\eta, b) = \\frac{|y-\\eta|}{b} + \\log 2b

    The learned scale is named ``sigma`` in the model, like every location-scale family.
    """
    fixed, learned = _scale_param("sigma", scale, scale_prior)
    return Family(
        name="laplace",
        link="identity",
        loss_name="absolute error",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, sigma: dist.Laplace(eta, sigma),
        _loss=lambda eta, y, sigma: jnp.abs(y - eta),
        _affine=lambda y, sigma: (1.0 / sigma, jnp.log(2.0 * sigma)),
        _validate=_checks.real_response,
    )


def _student_t_loss(eta, y, nu, sigma):
    """The bounded-influence loss :math:`\\frac{\\nu+1}{2}\\log(1 + r^2/(\\nu\\sigma^2))`.

    Written by hand: optax has no Student-t loss.
    """
    r = (y - eta) / sigma
    return 0.5 * (nu + 1.0) * jnp.log1p(r**2 / nu)


def student_t(
    nu: float | None = None,
    sigma: float | None = None,
    *,
    nu_prior: dist.Distribution | None = dist.Gamma(2.0, 0.1),
    sigma_prior: dist.Distribution | None = None,
) -> Family:
    """Student-t noise, identity link: a robust, bounded-influence loss.

    .. math:: -\\log t_\\nu(y \\mid \\eta, \\sigma) = \\frac{\\nu+1}{2}
              \\log\\Big(1 + \\frac{(y-\\eta)^2}{\\nu\\sigma^2}\\Big)
              + \\log\\sigma + \\tfrac12\\log\\nu\\pi
              + \\log\\Gamma(\\tfrac\\nu2) - \\log\\Gamma(\\tfrac{\\nu+1}2)

    Parameters
    ----------
    nu, sigma : float or None
        Fixed degrees of freedom and scale, or ``None`` to learn them (``nu``, ``sigma``).
    nu_prior : Distribution or None
        Prior on a learned ``nu``; default Gamma(2, 0.1) (Juárez and Steel, 2010), because
        under a flat prior the posterior of ``nu`` is improper (the likelihood stays bounded
        away from zero as ``nu`` goes to infinity). Ignored when ``nu`` is fixed.
    sigma_prior : Distribution or None
        Prior on a learned ``sigma`` (default flat).
    """
    fixed, learned = _scale_param("nu", nu, nu_prior if nu is None else None)
    fixed_s, learned_s = _scale_param("sigma", sigma, sigma_prior)
    fixed.update(fixed_s)
    learned.update(learned_s)
    return Family(
        name="student_t",
        link="identity",
        loss_name="Student-t (bounded-influence) loss",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, nu, sigma: dist.StudentT(nu, eta, sigma),
        _loss=_student_t_loss,
        _affine=lambda y, nu, sigma: (
            1.0,
            jnp.log(sigma)
            + 0.5 * jnp.log(nu * jnp.pi)
            + gammaln(0.5 * nu)
            - gammaln(0.5 * (nu + 1.0)),
        ),
        _validate=_checks.real_response,
    )


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
        num_classes=None if num_classes is None else int(num_classes),
    )


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
    )
