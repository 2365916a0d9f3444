"""Counts with a size or an overdispersion: binomial (successes of a number of trials, the
trials-weighted log loss) and the NB2 negative binomial (the negative binomial deviance)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.scipy.special import gammaln, xlogy

from mlemap import _checks
from mlemap.families._family import DEFAULT, _SEPARABLE, Family, _logit, _scale_param

__all__ = ["binomial", "negative_binomial"]


# --------------------------------------------------------------------------------------------
# binomial
# --------------------------------------------------------------------------------------------


class _BinomialLogits(dist.BinomialLogits):
    """NumPyro's ``BinomialLogits`` with the log-probability written as
    :math:`y\\eta - n\\,\\mathrm{softplus}(\\eta) + \\log\\binom{n}{y}`.

    NumPyro's form, :math:`n\\max(\\eta, 0) + n\\log(1 + e^{-|\\eta|})`, has the wrong JAX
    derivative at exactly :math:`\\eta = 0` (see ``_BernoulliLogits``); this one is the same
    number with the exact derivative :math:`y - n\\sigma(\\eta)` everywhere.
    """

    def log_prob(self, value):
        n = jnp.asarray(self.total_count, jnp.result_type(float))
        return value * self.logits - n * jax.nn.softplus(self.logits) + _log_choose(n, value)

    def sample(self, key, sample_shape=()):
        # The trials are data, stored as floats; NumPyro's sampler counts them as integers.
        n = jnp.asarray(self.total_count).astype(jnp.result_type(int))
        return dist.BinomialLogits(self.logits, n).sample(key, sample_shape)


def _log_choose(n, k):
    """:math:`\\log\\binom{n}{k}` by log-gamma functions."""
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def _trials(trials) -> np.ndarray:
    """The number of trials, a scalar or one per observation: positive integers."""
    try:
        array = np.asarray(trials, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"binomial's trials must be a positive integer or an array of them "
                        f"(one per observation); got {type(trials).__name__}.") from None
    if array.ndim > 1:
        raise ValueError(f"binomial's trials must be a scalar or 1-D (one per observation); "
                         f"got shape {array.shape}.")
    _checks.check_finite("trials", array)
    bad = (array < 1) | (array != np.round(array))
    if bad.any():
        raise ValueError(f"binomial's trials must be positive integers; found "
                         f"{_checks.describe_values(array[bad])}. A row with no trial carries "
                         "no information: drop it.")
    return array


def _successes(y, trials) -> np.ndarray:
    """Successes: integers in ``0..trials``, elementwise (the trials checked first)."""
    y = _checks.as_float_array("y", y, ndim=1)
    trials = np.broadcast_to(_trials(trials), y.shape)
    bad = (y < 0) | (y != np.round(y)) | (y > trials)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"binomial responses must be numbers of successes, integers in 0..trials; "
            f"{int(bad.sum())} of {y.size} are not, the first at index {first}: y = "
            f"{y[first]:g} with trials = {trials[first]:g}. Give the successes (not the "
            "proportions: y = proportion * trials) and the trials of each row.")
    return y


def binomial(trials) -> Family:
    """Successes ``y`` out of ``trials``, logit link: the negative log-likelihood is the
    trials times the log loss of the observed proportion :math:`y/n`.

    .. math:: -\\log \\mathrm{Binomial}(y \\mid n, \\sigma(\\eta))
              = n\\,\\ell(\\eta, y/n) - \\log\\binom{n}{y},\\qquad
              \\ell(\\eta, p) = -p\\log\\sigma(\\eta) - (1-p)\\log(1-\\sigma(\\eta))

    (``optax.losses.sigmoid_binary_cross_entropy(eta, y / n)``; slope :math:`n_i`, one per
    observation). statsmodels' ``GLM(family=Binomial())`` on ``[successes, failures]``.

    Parameters
    ----------
    trials : int or array (n,)
        The number of trials :math:`n_i` of each observation (or one for all), positive
        integers. They are *data*: ``glm`` puts them in the data pytree as
        ``data["trials"]`` ``(n,)``, an argument of every compiled program (a new dataset
        with other trials reuses them), and ``fit``, ``laplace`` and ``sample`` check each
        response against its row's trials.
    """
    return Family(
        name="binomial",
        link="logit",
        loss_name="trials x log loss of the proportion",
        fixed={},
        learned={},
        _distribution=lambda eta, trials: _BinomialLogits(eta, trials),
        _loss=lambda eta, y, trials: optax.losses.sigmoid_binary_cross_entropy(eta, y / trials),
        _affine=lambda y, trials: (trials, -_log_choose(trials, y)),
        _validate=_successes,
        _mean_link=lambda y, trials: _logit(jnp.sum(y) / jnp.sum(jnp.broadcast_to(trials,
                                                                                 y.shape))),
        _mean=lambda eta, **trials: jax.nn.sigmoid(eta),  # the probability: no trials
        data={"trials": _trials(trials)},
        runaway_hints={"coefficients": _SEPARABLE},
    )


# --------------------------------------------------------------------------------------------
# negative binomial (NB2)
# --------------------------------------------------------------------------------------------


class _NegativeBinomial2(dist.NegativeBinomial2):
    """NumPyro's ``NegativeBinomial2`` (mean :math:`\\mu`, concentration :math:`r = 1/\\alpha`)
    with the log-probability written with log-gamma functions, as statsmodels writes it:

    .. math:: \\log p(y) = \\log\\Gamma(y + r) - \\log\\Gamma(r) - \\log\\Gamma(y + 1)
              + r\\log\\frac{r}{r+\\mu} + y\\log\\frac{\\mu}{r+\\mu}

    NumPyro's goes through ``jax.scipy.special.betaln``, which is off by up to ~1e-6 for a
    concentration below 1 and counts of 7 or more (e.g. ``betaln(0.773, 8)``); the
    log-gamma functions are exact there. The logarithms are taken as ``logaddexp`` so that a
    large mean does not overflow.
    """

    def log_prob(self, value):
        r = self.concentration
        log_r = jnp.log(r)
        log_mu = log_r - jnp.log(self.rate)
        log_total = jnp.logaddexp(log_r, log_mu)
        return (gammaln(value + r) - gammaln(r) - gammaln(value + 1.0)
                + r * (log_r - log_total) + value * (log_mu - log_total))


def _half_nb_deviance(eta, y, alpha):
    """:math:`y\\log(y/\\mu) - (y + r)\\log\\frac{y + r}{\\mu + r}`, half the NB2 unit
    deviance (statsmodels' ``families.NegativeBinomial(alpha).deviance``), :math:`r = 1/\\alpha`.

    Written by hand: optax has no negative binomial deviance.
    """
    r = 1.0 / alpha
    log_r_mu = jnp.logaddexp(jnp.log(r), eta)
    return xlogy(y, y) - y * eta - (y + r) * (jnp.log(y + r) - log_r_mu)


def _nb_constant(y, alpha):
    """The terms of :math:`-\\log p` that do not depend on :math:`\\mu`."""
    r = 1.0 / alpha
    return (gammaln(y + 1.0) + gammaln(r) - gammaln(y + r) - r * jnp.log(r) - xlogy(y, y)
            + (y + r) * jnp.log(y + r))


def _nb_alpha_start(y, mu):
    """The method of moments, :math:`\\mathrm{Var}\\,y = \\mu + \\alpha\\mu^2`, kept in
    [0.01, 100] (underdispersed counts start at 0.01)."""
    alpha = jnp.mean((y - mu) ** 2 - mu) / jnp.maximum(jnp.mean(mu**2), 1e-300)
    return jnp.clip(alpha, 0.01, 100.0)


def negative_binomial(alpha: float | None = None, *, alpha_prior=DEFAULT) -> Family:
    """Overdispersed counts (NB2), log link: mean :math:`\\mu = e^\\eta`, variance
    :math:`\\mu + \\alpha\\mu^2`; the negative log-likelihood is half the NB2 deviance.

    .. math:: -\\log \\mathrm{NB2}(y \\mid \\mu, \\alpha) = \\tfrac12 D_\\alpha(y, \\mu)
              + c(y, \\alpha),\\qquad
              \\tfrac12 D_\\alpha = y\\log\\frac y\\mu - (y + r)\\log\\frac{y + r}{\\mu + r},
              \\quad r = 1/\\alpha

    with :math:`c = \\log y! + \\log\\Gamma(r) - \\log\\Gamma(y + r) - r\\log r - y\\log y +
    (y + r)\\log(y + r)` (slope 1). statsmodels' ``NegativeBinomial(loglike_method="nb2")``
    and ``GLM(family=NegativeBinomial(alpha))``; NumPyro's ``NegativeBinomial2(mu, 1/alpha)``.

    Parameters
    ----------
    alpha : float or None
        Fixed dispersion :math:`\\alpha > 0`, or ``None`` to learn it (parameter ``alpha``,
        statsmodels' ``alpha``).
    alpha_prior : Distribution or None
        Prior on a learned ``alpha``. Default ``Exponential(1.0)``, weakly informative: mean 1
        (at a mean count of 10 the variance may be anywhere from 10 to about 300), density
        finite at 0 so that the Poisson limit stays open. ``None`` is flat. Priors act only
        for ``method="map"`` and ``sample``; ``method="mle"`` is statsmodels' MLE.
    """
    if alpha_prior is DEFAULT:
        alpha_prior = dist.Exponential(1.0) if alpha is None else None
    fixed, learned = _scale_param("alpha", alpha, alpha_prior)
    return Family(
        name="negative_binomial",
        link="log",
        loss_name="half NB2 deviance",
        fixed=fixed,
        learned=learned,
        _distribution=lambda eta, alpha: _NegativeBinomial2(jnp.exp(eta), 1.0 / alpha),
        _loss=_half_nb_deviance,
        _affine=lambda y, alpha: (1.0, _nb_constant(y, alpha)),
        _validate=lambda y: _checks.count_labels(y, "negative_binomial"),
        _mean_link=lambda y: jnp.log(jnp.maximum(jnp.mean(y), 1e-10)),
        _nuisance_start=lambda y, mu: {"alpha": _nb_alpha_start(y, mu)},
        _mean=lambda eta, alpha: jnp.exp(eta),
        runaway_hints={
            "alpha": (
                "alpha going to 0: the counts are not overdispersed (their variance is about "
                "their mean), and the negative binomial's limit is the Poisson. Use "
                "families.poisson(), or fix alpha (negative_binomial(alpha=...))."),
            "coefficients": (
                "With counts this means a group of observations whose counts are all 0: "
                "their mean's MLE is 0 and its log is -infinity. Fix: add a proper prior on "
                "the coefficients (method='map', prior=Normal(0, s)), or drop that group."),
        },
    )
