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
gamma(k)       inv, log  half Gamma deviance :math:`y/\\mu - \\log(y/\\mu) - 1`   k   :math:`\\log\\Gamma(k) - k\\log k + k + \\log y`
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
    "gamma",
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
    runaway_hints : dict[str, str]
        What it means when the log-density keeps increasing as a parameter runs off:
        ``"coefficients"`` for the intercept and ``beta``, else a nuisance parameter's name.
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

    def mean_link(self, y):
        """The link of the mean response, :math:`g(\bar y)`: the linear predictor of a
        model with an intercept only (``(K-1,)`` log-odds against class 0 for categorical,
        from ``K = y``'s classes given as ``num_classes``), for a start. JAX, any
        ``(n,)``."""
        return self._mean_link(y)

    def nuisance_start(self, y, mean):
        """A start of each learned nuisance parameter given the response ``y`` ``(n,)`` and
        the mean ``(n,)`` of a start's fit (least squares, or the mean response): the residual
        scale for ``sigma``, a moderate 5 for ``nu``, the moments' shape for ``gamma``. JAX."""
        if not self.learned:
            return {}
        return {name: jnp.asarray(value, y.dtype)
                for name, value in self._nuisance_start(y, mean).items() if name in self.learned}


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
        _mean_link=jnp.mean,
        _nuisance_start=lambda y, mean: {"sigma": _scale(jnp.sqrt(jnp.mean((y - mean) ** 2)), y)},
        runaway_hints={"sigma": _EXACT_FIT},
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
        _mean_link=jnp.median,
        _nuisance_start=lambda y, mean: {"sigma": _scale(jnp.mean(jnp.abs(y - mean)), y)},
        runaway_hints={"sigma": _EXACT_FIT},
    )


class _StudentT(dist.StudentT):
    """NumPyro's ``StudentT`` with a log-density that stays exact as ``df`` grows.

    NumPyro computes :math:`\\log\\Gamma(\\tfrac{\\nu+1}2) - \\log\\Gamma(\\tfrac\\nu2)` and
    :math:`\\tfrac12\\log\\nu` separately; at :math:`\\nu = 10^{14}` each is about 16 and their
    difference loses every digit, so a fit running ``nu`` off to infinity followed rounding
    noise and reported a log-likelihood higher than the maximum. :func:`_log_t_normalizer`
    takes the difference analytically; the kernel's ``log1p`` is already exact.
    """

    def log_prob(self, value):
        y = (value - self.loc) / self.scale
        return (-0.5 * (self.df + 1.0) * jnp.log1p(y * y / self.df)
                - jnp.log(self.scale) - _log_t_normalizer(self.df))


#: From df / 2 = 25 on, the asymptotic series of _log_t_normalizer is exact to 4e-16.
_SERIES_FROM = 25.0


def _log_t_normalizer(df):
    """:math:`\\tfrac12\\log(\\nu\\pi) + \\log\\Gamma(\\tfrac\\nu2) - \\log\\Gamma(\\tfrac{\\nu+1}2)`,
    the log of the Student-t's normalizing constant, exact for every :math:`\\nu > 0`.

    With :math:`x = \\nu/2`, :math:`\\log\\Gamma(x+\\tfrac12) - \\log\\Gamma(x) = \\tfrac12\\log x -
    \\tfrac1{8x} + \\tfrac1{192x^3} - \\tfrac1{640x^5} + \\tfrac{17}{14336x^7} + O(x^{-9})`
    (the asymptotic series of the ratio of gamma functions), so for large :math:`\\nu` the
    constant is :math:`\\tfrac12\\log 2\\pi` (the Gaussian's) plus that series' tail, with no
    cancellation. Below ``2 * _SERIES_FROM`` the gamma functions are small enough to subtract.
    """
    x = 0.5 * df
    big = x >= _SERIES_FROM
    xs = jnp.where(big, x, _SERIES_FROM)  # both branches are evaluated: keep each in range
    inv = 1.0 / xs
    series = (0.5 * jnp.log(2.0 * jnp.pi) + inv / 8.0 - inv**3 / 192.0 + inv**5 / 640.0
              - 17.0 * inv**7 / 14336.0)
    xd = jnp.where(big, _SERIES_FROM, x)
    direct = 0.5 * jnp.log(2.0 * xd * jnp.pi) + gammaln(xd) - gammaln(xd + 0.5)
    return jnp.where(big, series, direct)


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
        _distribution=lambda eta, nu, sigma: _StudentT(nu, eta, sigma),
        _loss=_student_t_loss,
        _affine=lambda y, nu, sigma: (1.0, jnp.log(sigma) + _log_t_normalizer(nu)),
        _validate=_checks.real_response,
        _mean_link=jnp.median,
        _nuisance_start=lambda y, mean: {"sigma": _scale(jnp.sqrt(jnp.mean((y - mean) ** 2)), y),
                                         "nu": 5.0},
        runaway_hints={"sigma": _EXACT_FIT, "nu": (
            "nu has no finite maximum: the data look Gaussian (a Student-t whose nu grows "
            "without bound is the Gaussian). Put a prior on nu (method='map' with the "
            "default nu_prior), fix it (student_t(nu=...)), or use families.gaussian().")},
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
        num_classes=None if num_classes is None else int(num_classes),
        runaway_hints={"coefficients": _SEPARABLE},
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
        _mean_link=lambda y: jnp.log(jnp.maximum(jnp.mean(y), 1e-10)),
        runaway_hints={"coefficients": (
            "With counts this means a group of observations (a level of a dummy column, or "
            "the extreme values of a column) whose counts are all 0: their mean's MLE is 0 and "
            "its log is -infinity. Fix: add a proper prior (method='map' with e.g. "
            "prior=Normal(0, s), mm.priors.from_poisson(alpha, n)), or drop that group.")},
    )


def _gamma_mean(link: str) -> Callable:
    return {"inverse": lambda eta: 1.0 / eta, "log": jnp.exp}[link]


def _half_gamma_deviance(eta, y, shape, link):
    """:math:`y/\\mu - \\log(y/\\mu) - 1`, half the Gamma unit deviance.

    Written by hand: optax has no Gamma deviance.
    """
    ratio = y / _gamma_mean(link)(eta)
    return ratio - jnp.log(ratio) - 1.0


def gamma(link: str = "inverse", shape: float | None = None, *,
          shape_prior: dist.Distribution | None = None) -> Family:
    """Gamma responses (positive, skewed), mean :math:`\\mu = g^{-1}(\\eta)`, shape
    :math:`k`: the negative log-likelihood is :math:`k` times half the Gamma deviance.

    .. math:: -\\log \\mathrm{Gamma}(y \\mid k, k/\\mu)
              = k\\Big(\\frac y\\mu - \\log\\frac y\\mu - 1\\Big)
              + \\log\\Gamma(k) - k\\log k + k + \\log y

    Parameters
    ----------
    link : {"inverse", "log"}
        ``"inverse"`` (:math:`\\mu = 1/\\eta`, canonical, statsmodels' default; the linear
        predictor must stay positive) or ``"log"`` (:math:`\\mu = e^\\eta`).
    shape : float or None
        Fixed shape :math:`k` (the dispersion is :math:`1/k`), or ``None`` to learn it
        (parameter ``shape``).
    shape_prior : Distribution, optional
        Prior on a learned ``shape`` (default flat).
    """
    if link not in ("inverse", "log"):
        raise ValueError(f"gamma's link must be 'inverse' or 'log'; got {link!r}.")
    fixed, learned = _scale_param("shape", shape, shape_prior)
    mean = _gamma_mean(link)
    return Family(
        name="gamma",
        link=link,
        loss_name="half Gamma deviance",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, shape: dist.Gamma(shape, shape / mean(eta)),
        _loss=lambda eta, y, shape: _half_gamma_deviance(eta, y, shape, link),
        _affine=lambda y, shape: (shape, gammaln(shape) - shape * jnp.log(shape) + shape
                                  + jnp.log(y)),
        _validate=_checks.positive_response,
        _mean_link=(lambda y: 1.0 / jnp.mean(y)) if link == "inverse" else (
            lambda y: jnp.log(jnp.mean(y))),
        # The method of moments: k = mean^2 / variance around the start's mean, at most 1e6.
        _nuisance_start=lambda y, mu: {"shape": jnp.minimum(
            1.0 / jnp.maximum(jnp.mean(((y - mu) / mu) ** 2), 1e-300), 1e6)},
        runaway_hints={"shape": (
            "shape has no finite maximum: the response is an exact function of the columns "
            "(no noise around the mean). Fix the shape (gamma(shape=...)) or give it a prior.")},
    )
