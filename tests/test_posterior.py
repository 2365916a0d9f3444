"""mm.posterior: Laplace + PSIS where Pareto-k passes, NUTS from the mode where it does not.

Expected numbers: conjugate closed forms (a Gaussian mean; scipy.stats' Beta), and, for a
heavy-tailed posterior, its CDF by scipy's quadrature. The PSIS threshold is Vehtari et al.
(2024)'s min(1 - 1/log10 S, 0.7).
"""

import arviz_stats
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.integrate
import scipy.stats
from numpyro.distributions import constraints

import mlemap as mm
from mlemap import _posterior


def test_threshold_is_vehtaris():
    assert _posterior.pareto_k_threshold(4000) == pytest.approx(0.7)
    assert _posterior.pareto_k_threshold(1000) == pytest.approx(2 / 3)
    assert _posterior.pareto_k_threshold(100) == pytest.approx(0.5)


def test_psis_weights_are_normalized_and_shift_invariant(rng):
    log_ratios = rng.standard_normal(500)
    w = _posterior.psis_weights(log_ratios)
    np.testing.assert_allclose(np.sum(w), 1.0, rtol=1e-12)
    np.testing.assert_allclose(_posterior.psis_weights(log_ratios + 123.0), w, rtol=1e-10)
    # Only the tail (the largest 3 sqrt(S) ratios) is smoothed: the others keep their
    # proportions.
    body = np.argsort(log_ratios)[:400]
    proportion = w[body] / np.exp(log_ratios[body])
    np.testing.assert_allclose(proportion, proportion[0], rtol=1e-10)


def test_an_exact_laplace_approximation_is_returned_as_it_is():
    """y_i ~ N(mu, 1.5), mu ~ N(1, 2): the posterior is Gaussian, the ratios constant."""
    y = np.random.default_rng(1).normal(0.7, 1.5, size=20)
    model = mm.Model({"mu": mm.Param(prior=dist.Normal(1.0, 2.0))},
                     lambda p, d: dist.Normal(p["mu"], 1.5).log_prob(d["y"]))
    dt = mm.posterior(model, {"y": y}, num_draws=4000, seed=3)
    assert dt.attrs["posterior_method"] == "laplace_psis"
    assert dt.attrs["pareto_k"] == -np.inf and "exact" in dt.attrs["posterior_reason"]
    precision = 1 / 2.0**2 + y.size / 1.5**2
    mean, sd = (1.0 / 2.0**2 + y.sum() / 1.5**2) / precision, precision**-0.5
    draws = dt.posterior["mu"].values
    assert draws.shape == (1, 4000)
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(4000)
    assert abs(draws.std(ddof=1) / sd - 1) < 4 / np.sqrt(2 * 4000)


def test_psis_corrects_a_skewed_posterior():
    """theta ~ Beta(1, 1), 1 success in 10 trials: Beta(2, 10). The Gaussian on logit(theta)
    is off (its draws' mean 14 Monte Carlo errors from Beta(2, 10)'s); k passes, and the
    resampled draws have Beta(2, 10)'s mean and sd within their Monte Carlo error (the
    importance ESS, plus the resampling's)."""
    model = mm.Model(
        {"theta": mm.Param(constraint=constraints.unit_interval, prior=dist.Beta(1.0, 1.0))},
        lambda p, d: dist.Binomial(d["n"], probs=p["theta"]).log_prob(d["k"])[None],
    )
    data = {"k": 1.0, "n": 10.0}
    dt = mm.posterior(model, data, num_draws=4000, seed=4)
    attrs = dt.attrs
    assert attrs["posterior_method"] == "laplace_psis", attrs["posterior_reason"]
    assert -np.inf < attrs["pareto_k"] < attrs["pareto_k_threshold"]
    ess = attrs["importance_ess"]
    assert 1000 < ess < 4000
    truth = scipy.stats.beta(2, 10)
    error = truth.std() * np.sqrt(1 / ess + 1 / 4000)
    draws = dt.posterior["theta"].values.ravel()
    assert abs(draws.mean() - truth.mean()) < 4 * error
    assert abs(draws.std(ddof=1) / truth.std() - 1) < 4 * np.sqrt(1 / (2 * ess) + 1 / 8000)
    # The uncorrected draws of the same Gaussian fail the same test.
    raw = mm.laplace(model, data, num_draws=4000, seed=4).draws.posterior["theta"].values
    assert abs(raw.mean() - truth.mean()) > 6 * error


def test_psis_draws_have_samples_groups_and_loo_reads_them():
    """The PSIS tree has mm.sample's layout: derived quantities in ``posterior``, the
    pointwise log-likelihood (scipy.stats' log-pdf at each draw) for LOO, the log-prior of
    each parameter (scipy.stats'), the observed data; no sample_stats (no sampler ran)."""
    rng = np.random.default_rng(5)
    y = rng.normal(2.0, 1.3, size=30)
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 10.0)),
         "sigma": mm.Param(constraint=constraints.positive, prior=dist.HalfNormal(5.0))},
        lambda p, d: dist.Normal(p["mu"], p["sigma"]).log_prob(d["y"]),
        derived=lambda p, d: {"precision": p["sigma"] ** -2},
    )
    dt = mm.posterior(model, {"y": y}, num_draws=1000, seed=6)
    assert dt.attrs["posterior_method"] == "laplace_psis", dt.attrs["posterior_reason"]
    assert set(dt.children) == {"posterior", "log_likelihood", "log_prior", "observed_data"}
    mu, sigma = dt.posterior["mu"].values, dt.posterior["sigma"].values
    np.testing.assert_allclose(dt.posterior["precision"].values, sigma**-2, rtol=1e-12)
    expected = scipy.stats.norm.logpdf(y, mu[..., None], sigma[..., None])
    np.testing.assert_allclose(dt.log_likelihood["log_likelihood"].values, expected, rtol=1e-10)
    np.testing.assert_allclose(dt.log_prior["sigma"].values,
                               scipy.stats.halfnorm.logpdf(sigma, scale=5.0), rtol=1e-10)
    np.testing.assert_array_equal(dt.observed_data["y"].values, y)
    loo = arviz_stats.loo(dt)
    assert loo.n_data_points == 30 and np.isfinite(loo.elpd)
    lean = mm.posterior(model, {"y": y}, num_draws=1000, seed=6, log_likelihood=False)
    assert "log_likelihood" not in lean.children
    np.testing.assert_array_equal(lean.posterior["mu"].values, mu)


@pytest.mark.slow
def test_a_heavy_tailed_posterior_runs_nuts():
    """One Cauchy observation, mu ~ N(0, 10): the posterior has Cauchy-like tails the Gaussian
    at the mode misses (k high), so NUTS runs; its draws follow the posterior's CDF (scipy
    quadrature) within Monte Carlo error."""
    model = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 10.0))},
                     lambda p, d: dist.Cauchy(p["mu"], 1.0).log_prob(d["y"]))
    dt = mm.posterior(model, {"y": np.array([0.0])}, num_draws=4000, seed=5, num_warmup=500,
                      num_samples=2000, progress_bar=False)
    attrs = dt.attrs
    assert attrs["posterior_method"] == "nuts"
    assert attrs["pareto_k"] >= attrs["pareto_k_threshold"]
    assert "Pareto-k" in attrs["posterior_reason"] and "NUTS ran" in attrs["posterior_reason"]
    assert attrs["metric_init"] == "laplace" and attrs["init"] == "map"

    def density(m):
        return scipy.stats.cauchy.pdf(0.0, loc=m) * scipy.stats.norm.pdf(m, scale=10.0)

    total = scipy.integrate.quad(density, -np.inf, np.inf)[0]
    draws = dt.posterior["mu"].values
    for point in (-3.0, -1.0, 0.5, 2.0):
        cdf = scipy.integrate.quad(density, -np.inf, point)[0] / total
        below = (draws <= point).astype(float)
        ess = float(arviz_stats.ess(below, method="bulk"))
        assert abs(below.mean() - cdf) < 4 * np.sqrt(cdf * (1 - cdf) / ess), (point, cdf)


def test_init_cannot_be_given():
    model = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 1.0))},
                     lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]))
    with pytest.raises(TypeError, match="init cannot be given"):
        mm.posterior(model, {"y": np.zeros(3)}, init="prior")
