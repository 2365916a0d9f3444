"""summary(): the coefficient table against statsmodels' summary() numbers, at mlemap's
defaults on the raw columns of statsmodels' datasets (spector: Logit; randhie: Poisson;
star98: GLM Binomial with trials); under a prior, the Laplace intervals against the
conjugate Gaussian posterior's closed form."""

import warnings

import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats
import statsmodels.api as sm

import mlemap as mm
from mlemap import families


def _spector():
    ds = sm.datasets.spector.load_pandas()
    model, data = mm.glm(ds.exog, ds.endog, family=families.bernoulli())
    res = sm.Logit(ds.endog, sm.add_constant(ds.exog)).fit(method="newton", tol=1e-14,
                                                           maxiter=100, disp=0)
    return model, data, res, res.bic


def _randhie():
    ds = sm.datasets.randhie.load_pandas()
    model, data = mm.glm(ds.exog, ds.endog, family=families.poisson())
    res = sm.Poisson(ds.endog, sm.add_constant(ds.exog)).fit(method="newton", tol=1e-14,
                                                             maxiter=100, disp=0)
    return model, data, res, res.bic


def _star98():
    ds = sm.datasets.star98.load_pandas()
    successes, failures = ds.endog["NABOVE"], ds.endog["NBELOW"]
    model, data = mm.glm(ds.exog, successes, family=families.binomial(successes + failures))
    res = sm.GLM(ds.endog[["NABOVE", "NBELOW"]], sm.add_constant(ds.exog),
                 family=sm.families.Binomial()).fit(method="newton", tol=1e-14, maxiter=100)
    return model, data, res, res.bic_llf  # GLM's bic is the deviance's; bic_llf the llf's


@pytest.mark.parametrize("case", [_spector, _randhie, _star98], ids=["spector", "randhie",
                                                                       "star98"])
def test_summary_equals_statsmodels(case):
    model, data, res, bic = case()
    approx = mm.laplace(model, data, method="mle")
    table = mm.summary(approx)
    expected_index = ["intercept"] + [f"beta[{c}]" for c in res.params.index[1:]]
    assert list(table.table.index) == expected_index == model.flat_names()
    t = table.table
    se = np.asarray(res.bse)
    # coefficients: relative, or in standard errors where a coefficient is near 0
    error = np.abs(t["coef"].to_numpy() - res.params.to_numpy()) / np.maximum(
        np.abs(res.params.to_numpy()), se)
    assert error.max() <= 1e-6, error
    np.testing.assert_allclose(t["std err"], se, rtol=1e-5)
    np.testing.assert_allclose(t["z"], res.tvalues, rtol=1e-5)
    # p = 2 Phi(-|z|): a relative error dz/z in z is about z^2 dz/z in p
    p_tol = 1e-5 * max(1.0, float(np.max(np.asarray(res.tvalues) ** 2)))
    np.testing.assert_allclose(t["P>|z|"], res.pvalues, rtol=p_tol, atol=1e-300)
    ci = np.asarray(res.conf_int(alpha=0.05))
    np.testing.assert_allclose(t[["[0.025", "0.975]"]].to_numpy(), ci, rtol=1e-5,
                               atol=1e-6 * se.max())
    np.testing.assert_allclose(table.log_likelihood, res.llf, rtol=1e-10)
    np.testing.assert_allclose(table.aic, res.aic, rtol=1e-10)
    np.testing.assert_allclose(table.bic, bic, rtol=1e-10)
    assert table.n_obs == int(res.nobs) and table.num_params == len(res.params)
    assert table.status == "CONVERGED" and table.method == "mle"
    assert "observed information" in table.note
    text = str(table)
    assert "beta[" in text and "CONVERGED" in text


def test_summary_of_a_point_estimate_computes_the_same_standard_errors():
    model, data, _, _ = _spector()
    estimate = mm.fit(model, data, method="mle")
    direct = mm.summary(estimate, data)
    via_laplace = mm.summary(mm.laplace(model, data, method="mle", mode=estimate))
    np.testing.assert_allclose(direct.table.to_numpy(), via_laplace.table.to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="needs the data of the fit"):
        mm.summary(estimate)
    with pytest.raises(ValueError, match="alpha must be in"):
        mm.summary(estimate, data, alpha=1.5)


def test_map_summary_says_so_and_its_intervals_are_the_conjugate_posteriors(rng):
    """Gaussian likelihood with known sigma and Normal(0, tau) priors: the posterior is
    Gaussian with covariance (A'A / sigma^2 + I / tau^2)^-1, and the MAP its mean; the
    Laplace intervals are exact."""
    n, tau, sigma = 40, 0.7, 1.3
    X = rng.normal(size=(n, 2))
    y = 0.3 + X @ np.array([1.0, -0.5]) + sigma * rng.normal(size=n)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=sigma), prior=dist.Normal(0, tau),
                         intercept_prior=dist.Normal(0, tau), names=["a", "b"])
    estimate = mm.fit(model, data)
    table = mm.summary(estimate, data, alpha=0.1)
    A = np.column_stack([np.ones(n), X])
    cov = np.linalg.inv(A.T @ A / sigma**2 + np.eye(3) / tau**2)
    mean = cov @ A.T @ y / sigma**2
    np.testing.assert_allclose(table.table["coef"], mean, rtol=1e-8)
    np.testing.assert_allclose(table.table["std err"], np.sqrt(np.diag(cov)), rtol=1e-10)
    q = scipy.stats.norm.ppf(0.95)
    np.testing.assert_allclose(table.table["0.95]"], mean + q * np.sqrt(np.diag(cov)),
                               rtol=1e-8)
    assert table.method == "map" and "MAP under the model's priors" in table.note
    assert "intercept ~ Normal" in table.note and "beta ~ Normal" in table.note
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "Maximum a posteriori" in str(table)
