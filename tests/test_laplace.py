"""laplace(): standard errors equal statsmodels' at the MLE; draws, Pareto-k, warnings.

Expected numbers come from statsmodels 0.15 (run here) and closed forms.
"""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import statsmodels.api as sm
from sklearn.datasets import load_diabetes

import mlemap as mm
from mlemap import LaplaceWarning

families = mm.families


@pytest.fixture(scope="module")
def logit_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    eta = X @ np.array([1.0, -0.5, 0.2]) + 0.3
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y


def test_logit_standard_errors_equal_statsmodels(logit_data):
    """statsmodels Logit: bse = sqrt(diag((X'WX)^-1)) at the MLE; 1e-6 relative."""
    X, y = logit_data
    model, data = mm.glm(X, y, family=families.bernoulli())
    approx = mm.laplace(model, data, method="mle")
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-14)
    np.testing.assert_allclose(approx.mode.params["beta"], ref.params[1:], rtol=1e-7)
    np.testing.assert_allclose(approx.std_errors["intercept"], ref.bse[0], rtol=1e-6)
    np.testing.assert_allclose(approx.std_errors["beta"], ref.bse[1:], rtol=1e-6)


def test_poisson_glm_standard_errors_equal_statsmodels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 2))
    y = rng.poisson(np.exp(X @ np.array([0.4, -0.3]) + 0.2))
    model, data = mm.glm(X, y, family=families.poisson())
    approx = mm.laplace(model, data, method="mle")
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-14)
    np.testing.assert_allclose(approx.mode.params["beta"], ref.params[1:], rtol=1e-7)
    np.testing.assert_allclose(approx.std_errors["intercept"], ref.bse[0], rtol=1e-6)
    np.testing.assert_allclose(approx.std_errors["beta"], ref.bse[1:], rtol=1e-6)


def test_ols_standard_errors_differ_from_statsmodels_by_n_over_n_minus_p():
    """OLS: statsmodels uses s^2 = RSS/(n-p), the MLE sigma^2 = RSS/n, so
    se_statsmodels / se_laplace = sqrt(n / (n - p)) exactly (p counts the intercept).
    The delta-method SE of the MLE of sigma is sigma / sqrt(2n)."""
    X, y = load_diabetes(return_X_y=True)
    n, p = X.shape[0], X.shape[1] + 1
    model, data = mm.glm(X, y, family=families.gaussian())
    approx = mm.laplace(model, data, method="mle")
    ref = sm.OLS(y, sm.add_constant(X)).fit()
    ratio = np.sqrt(n / (n - p))
    np.testing.assert_allclose(approx.std_errors["beta"] * ratio, ref.bse[1:], rtol=1e-6)
    np.testing.assert_allclose(approx.std_errors["intercept"] * ratio, ref.bse[0], rtol=1e-6)
    sigma = float(approx.mode.params["sigma"])
    np.testing.assert_allclose(approx.std_errors["sigma"], sigma / np.sqrt(2 * n), rtol=1e-6)


def test_draws_are_a_datatree_like_nuts(logit_data):
    """Normal model with known posterior; draws in the posterior group, good Pareto-k."""
    X, y = logit_data
    model, data = mm.glm(X, y, family=families.bernoulli(), prior=dist.Normal(0.0, 2.0))
    approx = mm.laplace(model, data, num_draws=2000, seed=3)
    assert approx.mode.jacobian and approx.mode.converged
    post = approx.draws["posterior"]
    assert dict(post["beta"].sizes) == {"chain": 1, "draw": 2000, "beta_dim_0": 3}
    assert dict(post["intercept"].sizes) == {"chain": 1, "draw": 2000}
    np.testing.assert_allclose(post["beta"].mean(("chain", "draw")), approx.mode.params["beta"],
                               atol=4 * float(np.max(approx.std_errors["beta"])) / np.sqrt(2000))
    assert approx.pareto_k < 0.5  # near-Gaussian posterior (n = 300, d = 3)
    again = mm.laplace(model, data, num_draws=2000, seed=3)
    np.testing.assert_array_equal(post["beta"], again.draws["posterior"]["beta"])


def test_positive_parameter_draws_stay_positive():
    """A Gaussian in log sigma: constrained draws positive, SE by the delta method."""
    y = jnp.asarray(np.random.default_rng(4).normal(1.0, 2.0, size=50))
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 10.0)),
         "sigma": mm.Param(constraint=dist.constraints.positive, prior=dist.HalfNormal(5.0))},
        lambda p, d: dist.Normal(p["mu"], p["sigma"]).log_prob(d["y"]),
    )
    approx = mm.laplace(model, {"y": y})
    assert float(approx.draws["posterior"]["sigma"].min()) > 0
    sigma = float(approx.mode.params["sigma"])
    se_log_sigma = float(np.sqrt(approx.cov[1, 1]))
    np.testing.assert_allclose(approx.std_errors["sigma"], sigma * se_log_sigma, rtol=1e-10)


def test_singular_hessian_warns_with_a_fix():
    """y ~ Normal(a + b, 1), flat priors: only a + b is identified."""
    model = mm.Model(
        {"a": mm.Param(), "b": mm.Param()},
        lambda p, d: dist.Normal(p["a"] + p["b"], 1.0).log_prob(d["y"]),
    )
    with (pytest.warns(mm.FitWarning, match="not unique"),
          pytest.warns(LaplaceWarning, match="not positive definite.*proper prior")):
        approx = mm.laplace(model, {"y": jnp.array([0.5, 1.5, 1.0])})
    assert not approx.is_positive_definite and approx.draws is None
    assert np.isnan(approx.std_errors["a"])


def test_a_given_modes_method_is_the_approximations(logit_data):
    """laplace(mode=an MLE) is the MLE's approximation (statsmodels' standard errors), with
    no method= needed; a contradicting method= is refused."""
    X, y = logit_data
    model, data = mm.glm(X, y, family=families.bernoulli())
    mle = mm.fit(model, data, method="mle")
    approx = mm.laplace(model, data, mode=mle)
    assert approx.mode is mle and approx.method == "mle"
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-14)
    np.testing.assert_allclose(approx.std_errors["beta"], ref.bse[1:], rtol=1e-6)
    with pytest.raises(ValueError, match="method='mle'"):
        mm.laplace(model, data, mode=mle, method="map")


@pytest.mark.parametrize("case", ["normal mean", "ridge, sigma fixed"])
def test_an_exact_gaussian_has_pareto_k_minus_inf_and_no_warning(case):
    """A Gaussian likelihood with a Gaussian prior on its mean, sigma fixed: the posterior is
    Gaussian, the importance ratios are constant up to rounding, and PSIS would fit a
    Pareto tail to rounding noise (k came out NaN). Reported as exact, k = -inf."""
    rng = np.random.default_rng(5)
    if case == "normal mean":
        model = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 2.0))},
                         lambda p, d: dist.Normal(p["mu"], 1.5).log_prob(d["y"]))
        data = {"y": rng.normal(0.7, 1.5, size=25)}
    else:
        X = rng.normal(size=(60, 3))
        model, data = mm.glm(X, X @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=60),
                             family=families.gaussian(sigma=1.0),
                             prior=mm.priors.from_ridge(3.0))
    approx = mm.laplace(model, data)  # warnings are errors: none raised
    assert approx.pareto_k == -np.inf
    assert np.ptp(np.asarray(approx.log_ratios)) < 1e-6


def test_parameters_in_very_different_units_keep_their_standard_errors():
    """OLS with one column in millions: -H has a condition number ~1e13 from the units alone,
    which the old check (smallest eigenvalue > 1e3 eps largest) refused. Scaled to unit
    diagonal it is well conditioned; the standard errors are the closed form
    sqrt(diag(sigma^2 (X'X)^-1)) at the MLE of sigma, to 1e-8."""
    rng = np.random.default_rng(6)
    X = np.column_stack([rng.normal(size=80) * 1e6, rng.normal(size=80)])
    y = X @ np.array([2e-6, -1.0]) + 3.0 + rng.normal(size=80)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=1.3))
    approx = mm.laplace(model, data, method="mle")
    design = np.column_stack([np.ones(80), X])
    se = 1.3 * np.sqrt(np.diag(np.linalg.inv(design.T @ design)))
    assert approx.is_positive_definite and approx.condition_number < 10
    np.testing.assert_allclose(approx.std_errors["intercept"], se[0], rtol=1e-8)
    np.testing.assert_allclose(approx.std_errors["beta"], se[1:], rtol=1e-8)


def test_nearly_collinear_columns_warn_that_few_digits_are_left():
    """Two columns equal to 1e-7: positive definite, so the standard errors are given, with
    a warning that says how many digits they have; and they are as accurate as it says
    (against sqrt(diag((X'X)^-1)) from the SVD of X, accurate to cond(X) eps ~ 1e-9, where
    forming X'X would itself lose 14 digits)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=100)
    X = np.column_stack([x, x + 1e-7 * rng.normal(size=100)])
    y = x + rng.normal(size=100)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=1.0), intercept=False)
    with pytest.warns(LaplaceWarning, match=r"ill-conditioned \(condition number .* correct "
                                            r"digits"):
        approx = mm.laplace(model, data, method="mle")
    assert approx.is_positive_definite and 1e12 < approx.condition_number < 1e17
    _, singular, vt = np.linalg.svd(X, full_matrices=False)
    se = np.sqrt(np.sum((vt.T / singular) ** 2, axis=1))
    error = np.max(np.abs(np.asarray(approx.std_errors["beta"]) / se - 1))
    assert error <= 10 * approx.condition_number * np.finfo(float).eps, error


def test_pareto_k_sees_a_heavy_tailed_posterior():
    """A Cauchy posterior under its Gaussian approximation: the importance ratios p/q are
    unbounded in the tails, so k must exceed 0.7 (a Gaussian posterior is tested above at
    k < 0.5). Reference: scipy's maximum-likelihood generalized Pareto fit to the largest
    M = 3 sqrt(S) weights above the cutoff (PSIS's tail, Vehtari et al. 2024), which agrees
    with arviz's Zhang-Stephens estimate to sampling error."""
    import scipy.stats

    model = mm.Model({"mu": mm.Param()},
                     lambda p, d: dist.Cauchy(p["mu"], 1.0).log_prob(d["y"]))
    data = {"y": jnp.zeros(1)}
    with pytest.warns(mm.LaplaceWarning, match="Pareto-k"):
        approx = mm.laplace(model, data, num_draws=4000, seed=1)
    weights = np.sort(np.exp(approx.log_ratios - approx.log_ratios.max()))
    tail = int(3 * np.sqrt(weights.size))
    cutoff = weights[-tail - 1]
    reference, _, _ = scipy.stats.genpareto.fit(weights[-tail:] - cutoff, floc=0.0)
    assert approx.pareto_k > 0.7
    np.testing.assert_allclose(approx.pareto_k, reference, atol=0.15)
