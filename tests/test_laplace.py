"""laplace(): standard errors equal statsmodels' at the MLE; draws, Pareto-k, warnings.

Expected numbers come from statsmodels 0.15 (run here) and closed forms.
"""

import warnings

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


# --- Pareto-k from a first batch of draws (log p evaluated at fewer than num_draws) ---------


def _scipy_pareto_k(log_ratios: np.ndarray) -> float:
    """Maximum-likelihood generalized Pareto shape (scipy) of the largest
    M = floor(min(S/5, 3 sqrt(S))) importance weights above the cutoff: PSIS's tail
    (Vehtari et al. 2024)."""
    import scipy.stats

    weights = np.sort(np.exp(log_ratios - np.max(log_ratios)))
    tail = int(np.floor(min(weights.size / 5, 3 * np.sqrt(weights.size))))
    shape, _, _ = scipy.stats.genpareto.fit(weights[-tail:] - weights[-tail - 1], floc=0.0)
    return float(shape)


def _independent_cauchy(dim: int):
    """y_j = 0 ~ Cauchy(mu_j, 1), flat prior: mode 0, -H = 2 I, so q = N(0, I/2) and
    log p(u) - log q(u) = sum_j (u_j^2 - log(1 + u_j^2)) + const."""
    model = mm.Model({"mu": mm.Param((dim,)) if dim > 1 else mm.Param()},
                     lambda p, d: dist.Cauchy(p["mu"], 1.0).log_prob(d["y"]))
    return model, {"y": jnp.zeros(dim) if dim > 1 else jnp.zeros(1)}


def _cauchy_log_ratios(approx) -> np.ndarray:
    mu = approx.draws["posterior"]["mu"]
    u = np.asarray(mu).reshape(mu.sizes["draw"], -1)  # (draws, dim)
    np.testing.assert_allclose(approx.mean, 0.0, atol=1e-8)
    np.testing.assert_allclose(approx.cov, 0.5 * np.eye(u.shape[1]), atol=1e-8)
    return np.sum(u**2 - np.log1p(u**2), axis=1)


def _same_up_to_a_constant(a, b, rtol=1e-8):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a - a.mean(), b - b.mean(), atol=rtol * np.ptp(b) + 1e-12)


@pytest.mark.parametrize(("k", "decided"), [(0.26, True), (0.28, False), (1.12, False),
                                            (1.14, True), (np.nan, False), (-np.inf, True),
                                            (np.inf, True)])
def test_pareto_k_is_decided_two_standard_errors_from_0_7(k, decided):
    """S = 200: M = floor(min(40, 42.4)) = 40 tail draws, sd(k-hat) at k = 0.7 is
    sqrt(40) 1.7 / 50 = 0.2150, so k-hat is decided outside 0.7 -+ 0.430 = (0.270, 1.130)."""
    from mlemap._laplace import pareto_k_is_decided

    assert pareto_k_is_decided(k, 200) is decided


def test_an_exact_gaussian_stops_after_the_first_batch():
    """Normal mean, sigma = 1.5 known, prior N(0, 2^2): the posterior is
    N(m, 1/P) with P = 1/4 + n/1.5^2, m = sum(y)/1.5^2 / P (closed form), which q equals,
    so every draw's ratio is the same (the full evaluation's k is -inf too): log p is
    evaluated at the first 200 of the 1000 draws only."""
    y = np.random.default_rng(5).normal(0.7, 1.5, size=25)
    model = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 2.0))},
                     lambda p, d: dist.Normal(p["mu"], 1.5).log_prob(d["y"]))
    approx = mm.laplace(model, {"y": y}, num_draws=1000)
    precision = 1 / 4 + y.size / 1.5**2
    np.testing.assert_allclose(approx.mean, [np.sum(y) / 1.5**2 / precision], rtol=1e-8)
    np.testing.assert_allclose(approx.cov, [[1 / precision]], rtol=1e-8)
    assert approx.pareto_k == -np.inf
    assert approx.pareto_k_draws == 200 and approx.log_ratios.shape == (200,)
    assert approx.draws["posterior"].sizes["draw"] == 1000


def test_a_clearly_heavy_tail_is_decided_from_the_first_batch():
    """100 independent Cauchy posteriors under q = N(0, I/2): the first 200 ratios give
    k-hat above 1.13, decided; they are the closed-form ratios of the first 200 draws, and
    scipy's fit to all 1000 closed-form ratios (what the full evaluation sees) is also
    above 0.7."""
    model, data = _independent_cauchy(100)
    with pytest.warns(LaplaceWarning, match="Pareto-k"):
        approx = mm.laplace(model, data, num_draws=1000, seed=0)
    ratios = _cauchy_log_ratios(approx)
    assert approx.pareto_k_draws == 200 and approx.pareto_k > 1.13
    _same_up_to_a_constant(approx.log_ratios, ratios[:200])
    assert _scipy_pareto_k(ratios) > 0.7


def test_a_clearly_light_tail_is_decided_from_the_first_batch():
    """Logistic regression, n = 2000, d = 20, N(0, 1) prior: near-Gaussian, the first 200
    ratios give k-hat below 0.27, decided, with no warning. The ratios are the closed form
    sum(y eta - log(1 + e^eta)) - |beta|^2/2 - log N(beta | mean, cov) (scipy) of the first
    200 draws, and scipy's fit to all 1000 is also below 0.7."""
    import scipy.stats

    rng = np.random.default_rng(8)
    X = rng.normal(size=(2000, 20))
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-X @ (0.3 * rng.normal(size=20))))).astype(float)
    model = mm.Model({"beta": mm.Param((20,), prior=dist.Normal(0.0, 1.0))},
                     lambda p, d: dist.Bernoulli(logits=d["X"] @ p["beta"]).log_prob(d["y"]))
    approx = mm.laplace(model, {"X": X, "y": y}, num_draws=1000, seed=4)
    beta = np.asarray(approx.draws["posterior"]["beta"])[0]  # (1000, 20)
    eta = beta @ X.T
    log_p = np.sum(y * eta - np.logaddexp(0.0, eta), axis=1) - 0.5 * np.sum(beta**2, axis=1)
    log_q = scipy.stats.multivariate_normal(np.asarray(approx.mean),
                                            np.asarray(approx.cov)).logpdf(beta)
    assert approx.pareto_k_draws == 200 and approx.pareto_k < 0.27
    _same_up_to_a_constant(approx.log_ratios, (log_p - log_q)[:200], rtol=1e-6)
    assert _scipy_pareto_k(log_p - log_q) < 0.7


def test_a_borderline_k_evaluates_every_draw():
    """One Cauchy posterior under q = N(0, 1/2): k near 0.7, so the first 200 ratios leave
    it undecided (scipy's fit to them, with arviz's prior weight, (40 k + 5) / 50, is inside
    (0.27, 1.13) too) and log p is evaluated at all 1000 draws, whose ratios are the closed
    form's. Whether k lands above 0.7, and warns, is the borderline itself: not tested."""
    model, data = _independent_cauchy(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "laplace: Pareto-k", LaplaceWarning)
        approx = mm.laplace(model, data, num_draws=1000, seed=0)
    ratios = _cauchy_log_ratios(approx)
    assert approx.pareto_k_draws == 1000 and approx.log_ratios.shape == (1000,)
    _same_up_to_a_constant(approx.log_ratios, ratios)
    assert 0.27 < (40 * _scipy_pareto_k(ratios[:200]) + 5) / 50 < 1.13


def test_laplace_at_every_draw_extends_the_first_batch():
    """What mm.posterior calls: log p at all draws, whose first 200 ratios are laplace's."""
    from mlemap._laplace import laplace_at_every_draw

    model, data = _independent_cauchy(100)
    with pytest.warns(LaplaceWarning, match="Pareto-k"):
        early = mm.laplace(model, data, num_draws=1000, seed=0)
    with pytest.warns(LaplaceWarning, match="Pareto-k"):
        every = laplace_at_every_draw(model, data, num_draws=1000, seed=0)
    assert every.pareto_k_draws == 1000 and every.log_ratios.shape == (1000,)
    np.testing.assert_allclose(every.log_ratios[:200], early.log_ratios, rtol=1e-12)
    assert every.pareto_k > 0.7
