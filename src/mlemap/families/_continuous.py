"""Continuous responses: gaussian (squared error), laplace (absolute error), student_t
(a robust loss), gamma (the Gamma deviance), beta (proportions in (0, 1))."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.scipy.special import gammaln

from mlemap import _checks
from mlemap.families._family import _EXACT_FIT, Family, _logit, _scale, _scale_param

__all__ = ["gaussian", "laplace", "student_t", "gamma", "beta"]


def _location(eta, **nuisance):
    """The mean response of an identity link: the linear predictor (a Student-t's location,
    its median, whatever its nu)."""
    return eta


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
        _mean=_location,
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
        _mean=_location,
        runaway_hints={"sigma": _EXACT_FIT},
        least_squares_start=True,
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
        _mean=_location,
        runaway_hints={"sigma": _EXACT_FIT, "nu": (
            "nu has no finite maximum: the data look Gaussian (a Student-t whose nu grows "
            "without bound is the Gaussian). Put a prior on nu (method='map' with the "
            "default nu_prior), fix it (student_t(nu=...)), or use families.gaussian().")},
        least_squares_start=True,
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


# --------------------------------------------------------------------------------------------
# beta
# --------------------------------------------------------------------------------------------


class _BetaMean(dist.Beta):
    """NumPyro's ``Beta`` in the mean-precision form of beta regression, :math:`a = \\mu\\phi`,
    :math:`b = (1 - \\mu)\\phi`, :math:`\\mu = \\sigma(\\eta)`, with the log-density written
    with log-gamma functions as statsmodels' ``BetaModel`` writes it:

    .. math:: \\log p(y) = \\log\\Gamma(\\phi) - \\log\\Gamma(a) - \\log\\Gamma(b)
              + (a - 1)\\log y + (b - 1)\\log(1 - y)

    NumPyro's goes through ``jax.scipy.special.betaln``, which loses about 1e-6 for a small
    and a large argument; :math:`1 - \\mu` is taken as :math:`\\sigma(-\\eta)`, exact where
    :math:`\\mu` rounds to 1.
    """

    def __init__(self, eta, precision):
        super().__init__(jax.nn.sigmoid(eta) * precision, jax.nn.sigmoid(-eta) * precision)

    def log_prob(self, value):
        a, b = self.concentration1, self.concentration0
        return (gammaln(a + b) - gammaln(a) - gammaln(b)
                + (a - 1.0) * jnp.log(value) + (b - 1.0) * jnp.log1p(-value))


def _beta_loss(eta, y, precision):
    """:math:`\\log B(\\mu\\phi, (1-\\mu)\\phi) - \\mu\\phi\\,\\mathrm{logit}(y)`: the part of
    :math:`-\\log p` that depends on :math:`\\eta` (the beta log-loss; no standard loss
    exists, and optax has none)."""
    a = jax.nn.sigmoid(eta) * precision
    b = jax.nn.sigmoid(-eta) * precision
    return (gammaln(a) + gammaln(b) - gammaln(precision)
            - a * (jnp.log(y) - jnp.log1p(-y)))


def _proportions(y) -> np.ndarray:
    """Beta responses: every value strictly inside (0, 1)."""
    y = _checks.as_float_array("y", y, ndim=1)
    bad = ~((y > 0) & (y < 1))
    if bad.any():
        raise ValueError(
            f"beta responses must be proportions strictly between 0 and 1; found "
            f"{int(bad.sum())} value(s) outside, e.g. {_checks.describe_values(y[bad])}. "
            "Squeeze them in, e.g. (y * (n - 1) + 0.5) / n (Smithson and Verkuilen), or model "
            "counts of successes with families.binomial(trials).")
    return y


def beta(precision: float | None = None, *,
         precision_prior: dist.Distribution | None = None) -> Family:
    """Proportions in (0, 1), logit link: beta regression with mean :math:`\\mu = \\sigma(\\eta)`
    and precision :math:`\\phi` (variance :math:`\\mu(1-\\mu)/(1+\\phi)`), statsmodels'
    ``BetaModel`` and R's ``betareg``.

    .. math:: -\\log \\mathrm{Beta}(y \\mid \\mu\\phi, (1-\\mu)\\phi) = L(\\eta, y)
              + \\log y + \\log(1-y) - \\phi\\log(1-y),\\qquad
              L = \\log B(\\mu\\phi, (1-\\mu)\\phi) - \\mu\\phi\\,\\mathrm{logit}(y)

    (slope 1). There is no standard loss for it: :math:`L`, the beta log-loss, is the part
    that depends on :math:`\\eta`.

    Parameters
    ----------
    precision : float or None
        Fixed precision :math:`\\phi > 0`, or ``None`` to learn it (parameter
        ``precision``, statsmodels' ``exp(precision-const)``).
    precision_prior : Distribution, optional
        Prior on a learned ``precision`` (default flat).
    """
    fixed, learned = _scale_param("precision", precision, precision_prior)
    return Family(
        name="beta",
        link="logit",
        loss_name="beta log-loss",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, precision: _BetaMean(eta, precision),
        _loss=_beta_loss,
        _affine=lambda y, precision: (1.0, jnp.log(y) + jnp.log1p(-y)
                                      - precision * jnp.log1p(-y)),
        _validate=_proportions,
        _mean_link=lambda y: _logit(jnp.mean(y)),
        # The method of moments: phi = mu (1 - mu) / variance - 1, kept in [0.1, 1e6].
        _nuisance_start=lambda y, mu: {"precision": jnp.clip(
            jnp.mean(mu * (1.0 - mu)) / jnp.maximum(jnp.mean((y - mu) ** 2), 1e-300) - 1.0,
            0.1, 1e6)},
        _mean=lambda eta, precision: jax.nn.sigmoid(eta),
        runaway_hints={"precision": (
            "precision has no finite maximum: the proportions are an exact function of the "
            "columns (no noise around the mean). Fix the precision (beta(precision=...)) or "
            "give it a prior.")},
    )
