"""Priors are penalties: scikit-learn's regularization strengths as NumPyro priors, and back.

The negative log-posterior of a model with a zero-mean prior on the weights ``w`` is the
loss plus a penalty; matching it, term by term, with scikit-learn's objective gives:

==============================  ==============================================  ==========================
scikit-learn objective          mlemap model                                    mapping
==============================  ==============================================  ==========================
Ridge:                          gaussian(sigma), prior Normal(0, tau)           alpha = sigma^2 / tau^2
``||y - Xw||^2 + alpha||w||^2``
Lasso:                          gaussian(sigma), prior Laplace(0, b)            alpha = sigma^2 / (n b)
``||y-Xw||^2/(2n) + alpha||w||_1``
LogisticRegression(C):          bernoulli / categorical, prior Normal(0, tau)   C = tau^2
``||w||^2/2 + C sum logloss``
LogisticRegression(C, L1):      bernoulli / categorical, prior Laplace(0, b)    C = b
``||w||_1 + C sum logloss``
PoissonRegressor(alpha):        poisson, prior Normal(0, tau)                   alpha = 1 / (n tau^2)
``sum D/(2n) + alpha||w||^2/2``
==============================  ==============================================  ==========================

Derivation for ridge: :math:`-\\log p(w \\mid y) = \\|y - Xw\\|^2/(2\\sigma^2) +
\\|w\\|^2/(2\\tau^2) + c`; multiplying by :math:`2\\sigma^2` gives ridge's objective with
:math:`\\alpha = \\sigma^2/\\tau^2`. The others follow the same way (multiply by
:math:`\\sigma^2/n`, :math:`1/C`, :math:`1/n`). scikit-learn never penalizes the intercept:
leave the intercept's prior flat (``glm``'s default) to reproduce it.
"""

from __future__ import annotations

import numpy as np
import numpyro.distributions as dist

__all__ = [
    "from_ridge",
    "to_ridge",
    "from_lasso",
    "to_lasso",
    "from_logistic",
    "to_logistic",
    "from_poisson",
    "to_poisson",
]


def _positive(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be finite and > 0; got {value!r}.")
    return array


def _zero_mean(prior, kind: type, what: str) -> None:
    if not isinstance(prior, kind):
        raise TypeError(
            f"{what} corresponds to a {kind.__name__} prior; got {type(prior).__name__}."
        )
    if not np.all(np.asarray(prior.loc) == 0):
        raise ValueError(
            f"{what} penalizes towards zero; the prior's mean is {np.asarray(prior.loc)!r}, "
            "not 0. Center the prior, or shift the weights by its mean."
        )


def from_ridge(alpha, sigma: float = 1.0) -> dist.Normal:
    """The Normal(0, tau) prior that makes the MAP equal ``Ridge(alpha)``.

    :math:`\\tau = \\sigma / \\sqrt{\\alpha}`, with ``sigma`` the Gaussian noise scale.
    ``alpha`` may be an array (a regularization path): the prior then has that batch shape.
    """
    alpha = _positive("alpha", alpha)
    return dist.Normal(0.0, _positive("sigma", sigma) / np.sqrt(alpha))


def to_ridge(prior: dist.Normal, sigma: float = 1.0):
    """``Ridge``'s ``alpha = sigma^2 / tau^2`` for a Normal(0, tau) prior."""
    _zero_mean(prior, dist.Normal, "Ridge")
    return _positive("sigma", sigma) ** 2 / np.asarray(prior.scale) ** 2


def from_lasso(alpha, n: int, sigma: float = 1.0) -> dist.Laplace:
    """The Laplace(0, b) prior that makes the MAP equal ``Lasso(alpha)`` on ``n`` rows.

    :math:`b = \\sigma^2 / (n\\alpha)`.
    """
    alpha = _positive("alpha", alpha)
    return dist.Laplace(0.0, _positive("sigma", sigma) ** 2 / (_count(n) * alpha))


def to_lasso(prior: dist.Laplace, n: int, sigma: float = 1.0):
    """``Lasso``'s ``alpha = sigma^2 / (n b)`` for a Laplace(0, b) prior."""
    _zero_mean(prior, dist.Laplace, "Lasso")
    return _positive("sigma", sigma) ** 2 / (_count(n) * np.asarray(prior.scale))


def from_logistic(C, penalty: str = "l2") -> dist.Normal | dist.Laplace:
    """The prior that makes the MAP equal ``LogisticRegression(C=C)`` with that penalty.

    ``penalty="l2"`` (scikit-learn's default, ``l1_ratio=0``): Normal(0, tau) with
    :math:`\\tau = \\sqrt{C}`, for the binary and the multinomial (symmetric) forms.
    ``penalty="l1"`` (``l1_ratio=1``, solvers ``"saga"`` or ``"liblinear"``): Laplace(0, b)
    with :math:`b = C`. Derivation: the negative log-posterior is
    :math:`\\sum \\mathrm{logloss} + \\|w\\|_1/b + c`; times :math:`C` it is scikit-learn's
    :math:`\\|w\\|_1 + C\\sum\\mathrm{logloss}` when :math:`C/b = 1`. ``mm.fit`` then solves
    it by FISTA, whose zeros are exact. (``liblinear`` also penalizes the intercept; compare
    with ``saga``, which does not, as mlemap's flat intercept prior.) ``C = inf`` is the
    MLE: use no prior (``prior=None``) instead.
    """
    if penalty not in ("l2", "l1"):
        raise ValueError(f"penalty must be 'l2' (Normal prior) or 'l1' (Laplace prior); got "
                         f"{penalty!r}.")
    C = np.asarray(C, dtype=float)
    if np.any(np.isinf(C)):
        raise ValueError("C = inf is no penalty: the MLE. Fit with prior=None (flat) instead.")
    C = _positive("C", C)
    return dist.Normal(0.0, np.sqrt(C)) if penalty == "l2" else dist.Laplace(0.0, C)


def to_logistic(prior: dist.Normal | dist.Laplace):
    """``LogisticRegression``'s ``C``: ``tau^2`` for a Normal(0, tau) prior (L2), ``b`` for a
    Laplace(0, b) prior (L1)."""
    if isinstance(prior, dist.Laplace):
        _zero_mean(prior, dist.Laplace, "LogisticRegression(penalty='l1')")
        return np.asarray(prior.scale)
    _zero_mean(prior, dist.Normal, "LogisticRegression")
    return np.asarray(prior.scale) ** 2


def from_poisson(alpha, n: int) -> dist.Normal:
    """The Normal(0, tau) prior that makes the MAP equal ``PoissonRegressor(alpha)``.

    :math:`\\tau = 1/\\sqrt{n\\alpha}`.
    """
    alpha = _positive("alpha", alpha)
    return dist.Normal(0.0, 1.0 / np.sqrt(_count(n) * alpha))


def to_poisson(prior: dist.Normal, n: int):
    """``PoissonRegressor``'s ``alpha = 1 / (n tau^2)`` for a Normal(0, tau) prior."""
    _zero_mean(prior, dist.Normal, "PoissonRegressor")
    return 1.0 / (_count(n) * np.asarray(prior.scale) ** 2)


def _count(n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n, the number of observations, must be a positive integer; got {n!r}.")
    return int(n)

