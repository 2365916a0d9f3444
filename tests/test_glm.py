"""glm(): parameter layout, log-likelihoods equal to statsmodels', and input validation."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import statsmodels.api as sm

import mlemap as mm
from mlemap import families, priors

N, D = 50, 3


def _loglik(model, data, values):
    return float(jnp.sum(model.log_likelihood({k: jnp.asarray(v) for k, v in values.items()}, data)))


def test_gaussian_layout_and_loglik_equal_statsmodels(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    model, data = mm.glm(X, y, family=families.gaussian())
    assert list(model.params) == ["intercept", "beta", "sigma"]
    assert model.params["beta"].shape == (D,)
    assert data["X"].shape == (N, D) and data["y"].shape == (N,)
    b, w, sigma = 0.3, rng.normal(size=D), 1.4
    # statsmodels' OLS log-likelihood profiles sigma out; GLM(Gaussian) takes scale = sigma^2.
    reference = sm.GLM(y, sm.add_constant(X), family=sm.families.Gaussian()).loglike(
        np.r_[b, w], scale=sigma**2)
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w, "sigma": sigma}),
                               reference, rtol=1e-10)


def test_bernoulli_and_poisson_loglik_equal_statsmodels(rng):
    X = rng.normal(size=(N, D))
    b, w = -0.2, rng.normal(size=D) * 0.5
    y01 = rng.integers(0, 2, size=N)
    model, data = mm.glm(X, y01, family=families.bernoulli())
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w}),
                               sm.Logit(y01, sm.add_constant(X)).loglike(np.r_[b, w]), rtol=1e-10)
    counts = rng.poisson(2.0, size=N)
    model, data = mm.glm(X, counts, family=families.poisson())
    reference = sm.GLM(counts, sm.add_constant(X), family=sm.families.Poisson()).loglike(np.r_[b, w])
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w}), reference,
                               rtol=1e-10)


def test_categorical_reference_class_equals_statsmodels_mnlogit(rng):
    """Under a flat prior class 0 is the reference, statsmodels MNLogit's convention."""
    X, y = rng.normal(size=(N, D)), rng.integers(0, 3, size=N)
    model, data = mm.glm(X, y, family=families.categorical())
    assert model.params["beta"].shape == (D, 2)
    assert model.params["intercept"].shape == (2,)
    coef = rng.normal(size=(D + 1, 2))  # statsmodels: rows const, x1..; columns classes 1, 2
    reference = sm.MNLogit(y, sm.add_constant(X)).loglike(coef.ravel(order="F"))
    values = {"intercept": coef[0], "beta": coef[1:]}
    np.testing.assert_allclose(_loglik(model, data, values), reference, rtol=1e-10)


def test_categorical_symmetric_under_a_proper_prior(rng):
    X, y = rng.normal(size=(N, D)), rng.integers(0, 3, size=N)
    model, _ = mm.glm(X, y, family=families.categorical(), prior=priors.from_logistic(1.0))
    assert model.params["beta"].shape == (D, 3)
    assert model.params["intercept"].shape == (2,)


def test_learned_nuisance_and_no_intercept(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    model, _ = mm.glm(X, y, family=families.student_t(), intercept=False,
                      prior=dist.Normal(0.0, 2.0))
    assert list(model.params) == ["beta", "nu", "sigma"]
    assert model.flat_names() == ["beta[0]", "beta[1]", "beta[2]", "nu", "sigma"]


BAD = [
    (dict(X=np.array([[1.0, np.nan]] * 3), y=[0.0, 1, 2]), ValueError, r"X holds 3 non-finite .* index \(0, 1\): nan"),
    (dict(X=np.ones((3, 2)), y=[0.0, np.inf, 2]), ValueError, r"y holds 1 non-finite"),
    (dict(X=np.ones(3), y=[0.0, 1, 2]), ValueError, r"X must be 2-D .* got shape \(3,\)"),
    (dict(X=np.ones((3, 2)), y=[0.0, 1]), ValueError, r"X has 3 rows, y has 2 entries"),
    (dict(X=np.ones((0, 2)), y=[]), ValueError, r"zero rows"),
    (dict(X=np.ones((3, 2)), y=np.ones((3, 1))), ValueError, r"y must be 1-D"),
    (dict(X=np.ones((3, 2)), y=[1, 2, 1], family=families.bernoulli()), ValueError,
     r"found the values \{1.0, 2.0\}"),
    (dict(X=np.ones((3, 2)), y=[-1, 1, 1], family=families.bernoulli()), ValueError,
     r"found the values \{-1.0, 1.0\}"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 0.5], family=families.categorical()), ValueError,
     r"integers 0..K-1"),
    (dict(X=np.ones((3, 2)), y=[0, -2, 1], family=families.poisson()), ValueError,
     r"non-negative integers"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 2], prior=dist.HalfNormal(1.0)), ValueError,
     r"does not cover the parameter's constraint"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 2], family="gaussian"), TypeError,
     r"family must be an mlemap.families family"),
    (dict(X=[["a", "b"]] * 3, y=[0, 1, 2]), TypeError, r"X must be numeric"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD)
def test_bad_input_is_refused_with_a_clear_message(kwargs, error, message):
    kwargs = {"family": families.gaussian(), **kwargs}
    with pytest.raises(error, match=message):
        mm.glm(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
