"""Priors are penalties: each scikit-learn objective is an affine function of mlemap's
negative log-posterior, evaluated on random parameters (the fit itself is tested in
test_fit.py). The scikit-learn objectives are written from scikit-learn's documentation,
with scikit-learn's own metrics for the data terms."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from sklearn.metrics import log_loss, mean_poisson_deviance

import mlemap as mm
from mlemap import families, priors
from mlemap import log_density_fn

N, D = 60, 4


def _negative_log_posterior(model, data, intercept, w):
    position = model.unconstrain({"intercept": intercept, "beta": w})
    return -float(log_density_fn(model)(position, data))


def _assert_affine(sklearn_objective, model, data, factor, rng):
    """sklearn_objective(b, w) == factor * nlp(b, w) + constant, over random (b, w)."""
    residuals = []
    for _ in range(6):
        b, w = rng.normal(), rng.normal(size=D)
        residuals.append(sklearn_objective(b, w) - factor * _negative_log_posterior(
            model, data, b, w))
    np.testing.assert_allclose(residuals, residuals[0], rtol=1e-10, atol=1e-8)


def test_ridge_alpha_is_sigma2_over_tau2(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    alpha, sigma = 3.0, 0.7
    model, data = mm.glm(X, y, family=families.gaussian(sigma=sigma),
                         prior=priors.from_ridge(alpha, sigma=sigma))
    ridge = lambda b, w: np.sum((y - X @ w - b) ** 2) + alpha * np.sum(w**2)  # noqa: E731
    _assert_affine(ridge, model, data, 2 * sigma**2, rng)
    np.testing.assert_allclose(priors.to_ridge(priors.from_ridge(alpha, sigma), sigma), alpha)


def test_lasso_alpha_is_sigma2_over_n_b(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    alpha, sigma = 0.05, 1.3
    prior = priors.from_lasso(alpha, n=N, sigma=sigma)
    assert isinstance(prior, dist.Laplace)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=sigma), prior=prior)
    lasso = lambda b, w: np.sum((y - X @ w - b) ** 2) / (2 * N) + alpha * np.abs(w).sum()  # noqa: E731
    _assert_affine(lasso, model, data, sigma**2 / N, rng)
    np.testing.assert_allclose(priors.to_lasso(prior, n=N, sigma=sigma), alpha)


def test_logistic_C_is_tau2(rng):
    X, y = rng.normal(size=(N, D)), rng.integers(0, 2, size=N)
    C = 0.4
    model, data = mm.glm(X, y, family=families.bernoulli(), prior=priors.from_logistic(C))

    def logistic(b, w):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        return 0.5 * np.sum(w**2) + C * log_loss(y, p, normalize=False)

    _assert_affine(logistic, model, data, C, rng)
    np.testing.assert_allclose(priors.to_logistic(priors.from_logistic(C)), C)


def test_l1_logistic_C_is_b(rng):
    """LogisticRegression(C, l1_ratio=1): ||w||_1 + C sum logloss = C * (nlp) + constant with
    a Laplace(0, C) prior."""
    X, y = rng.normal(size=(N, D)), rng.integers(0, 2, size=N)
    C = 0.4
    prior = priors.from_logistic(C, penalty="l1")
    assert isinstance(prior, dist.Laplace) and float(prior.scale) == C
    model, data = mm.glm(X, y, family=families.bernoulli(), prior=prior)

    def logistic(b, w):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        return np.sum(np.abs(w)) + C * log_loss(y, p, normalize=False)

    _assert_affine(logistic, model, data, C, rng)
    np.testing.assert_allclose(priors.to_logistic(prior), C)
    with pytest.raises(ValueError, match="penalty must be 'l2'"):
        priors.from_logistic(C, penalty="elasticnet")


def test_poisson_alpha_is_one_over_n_tau2(rng):
    X, y = rng.normal(size=(N, D)) * 0.3, rng.poisson(2.0, size=N)
    alpha = 0.02
    model, data = mm.glm(X, y, family=families.poisson(), prior=priors.from_poisson(alpha, n=N))

    def poisson(b, w):
        return 0.5 * mean_poisson_deviance(y, np.exp(X @ w + b)) + 0.5 * alpha * np.sum(w**2)

    _assert_affine(poisson, model, data, 1 / N, rng)
    np.testing.assert_allclose(priors.to_poisson(priors.from_poisson(alpha, N), N), alpha)


def test_paths_broadcast_over_alpha():
    alphas = np.logspace(-2, 2, 5)
    prior = priors.from_ridge(alphas)
    np.testing.assert_allclose(priors.to_ridge(prior), alphas)
    assert prior.batch_shape == (5,)


def test_conversion_errors():
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        priors.from_ridge(0.0)
    with pytest.raises(ValueError, match="MLE"):
        priors.from_logistic(np.inf)
    with pytest.raises(TypeError, match="Lasso corresponds to a Laplace prior; got Normal"):
        priors.to_lasso(dist.Normal(0.0, 1.0), n=10)
    with pytest.raises(ValueError, match="not 0"):
        priors.to_ridge(dist.Normal(1.0, 1.0))
    with pytest.raises(ValueError, match="positive integer"):
        priors.from_lasso(1.0, n=0)
    assert jnp.isfinite(priors.from_ridge(1.0).log_prob(0.0))
