"""mm.from_numpyro: NumPyro models as they are.

References: the same model written by hand as an mm.Model (the MAP, the MLE and the
pointwise log-likelihood must be the same, to 1e-6), NumPyro's own ``log_density`` (the joint
log-density at a point), and NumPyro's own MCMC (NUTS) on the same model function (posterior
means within Monte Carlo error of mm.sample's).
"""

import warnings

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density

import mlemap as mm

# --------------------------------------------------------------------------------------------
# Models: each as a NumPyro function and by hand
# --------------------------------------------------------------------------------------------

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Non-centred eight schools, as in NumPyro's own examples."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_by_hand():
    return mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
         "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0)),
         "theta_tilde": mm.Param((8,), prior=dist.Normal(0.0, 1.0))},
        lambda p, d: dist.Normal(p["mu"] + p["tau"] * p["theta_tilde"], d["sigma"]).log_prob(
            d["y"]),
    )


def logistic(X, y=None):
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("n", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + X @ beta), obs=y)


def logistic_by_hand(d):
    return mm.Model(
        {"intercept": mm.Param(prior=dist.Normal(0.0, 5.0)),
         "beta": mm.Param((d,), prior=dist.Normal(0.0, 1.0))},
        lambda p, data: dist.Bernoulli(logits=p["intercept"] + data["X"] @ p["beta"]).log_prob(
            data["y"]),
    )


@pytest.fixture(scope="module")
def logistic_data():
    rng = np.random.default_rng(17)
    X = rng.normal(size=(150, 3))
    y = (rng.uniform(size=150) < 1 / (1 + np.exp(-(0.3 + X @ np.array([1.0, -1.0, 0.5])))))
    return X, y.astype(float)


# --------------------------------------------------------------------------------------------
# The model read from the trace
# --------------------------------------------------------------------------------------------


def test_sites_become_params_likelihood_and_derived():
    model, data = mm.from_numpyro(eight_schools, SIGMA, y=Y)
    assert list(model.params) == ["mu", "tau", "theta_tilde"]
    assert model.params["theta_tilde"].shape == (8,)
    assert model.params["tau"].constraint is constraints.positive
    assert data["args"][0] is not None and set(data["kwargs"]) == {"y"}
    params = {"mu": jnp.asarray(1.0), "tau": jnp.asarray(2.0),
              "theta_tilde": jnp.linspace(-1.0, 1.0, 8)}
    theta = 1.0 + 2.0 * np.linspace(-1.0, 1.0, 8)
    pointwise = model.log_likelihood(params, data)
    np.testing.assert_allclose(pointwise, dist.Normal(theta, SIGMA).log_prob(Y), rtol=1e-12)
    np.testing.assert_allclose(model.derived(params, data)["theta"], theta, rtol=1e-12)


def test_joint_log_density_is_numpyros(logistic_data):
    """Likelihood + priors, at a point, equal NumPyro's own log_density of the model."""
    X, y = logistic_data
    model, data = mm.from_numpyro(logistic, X, y=y)
    params = {"intercept": jnp.asarray(0.2), "beta": jnp.asarray([0.5, -0.3, 1.0])}
    ours = jnp.sum(model.log_likelihood(params, data)) + sum(
        jnp.sum(p.prior(params).log_prob(params[name])) for name, p in model.params.items())
    reference, _ = log_density(logistic, (X,), {"y": y}, params)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_a_site_with_event_axes_sums_them_per_observation():
    """An observed (n, 2) site with a to_event(1): one term per row."""

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with numpyro.plate("n", 5):
            numpyro.sample("y", dist.Normal(jnp.broadcast_to(mu, (5, 2)), 1.0).to_event(1), obs=y)

    y = np.arange(10.0).reshape(5, 2)
    mlemap_model, data = mm.from_numpyro(model, y=y)
    params = {"mu": jnp.asarray([0.5, 1.5])}
    expected = dist.Normal(np.broadcast_to([0.5, 1.5], (5, 2)), 1.0).log_prob(y).sum(-1)
    np.testing.assert_allclose(mlemap_model.log_likelihood(params, data), expected, rtol=1e-12)


def test_param_sites_are_parameters_without_a_prior():
    """numpyro.param sites (with their constraint) are fitted as flat-prior parameters: the
    MLE of a Normal's mean and scale is the sample mean and the ddof=0 sd (closed form)."""

    def model(y=None):
        mu = numpyro.param("mu", 0.0)
        sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
        with numpyro.plate("n", 20):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    y = np.random.default_rng(3).normal(2.0, 3.0, size=20)
    mlemap_model, data = mm.from_numpyro(model, y=y)
    assert mlemap_model.params["sigma"].constraint is constraints.positive
    assert all(p.prior is None for p in mlemap_model.params.values())
    estimate = mm.fit(mlemap_model, data, method="mle")
    assert estimate.converged
    np.testing.assert_allclose(estimate.params["mu"], y.mean(), rtol=1e-7)
    np.testing.assert_allclose(estimate.params["sigma"], y.std(), rtol=1e-7)


# --------------------------------------------------------------------------------------------
# MAP and MLE: the hand-written model's
# --------------------------------------------------------------------------------------------


def test_eight_schools_map_is_the_hand_written_models():
    """MAP in the unconstrained coordinates (jacobian=True: an interior mode in log tau)."""
    model, data = mm.from_numpyro(eight_schools, SIGMA, y=Y)
    ours = mm.fit(model, data, jacobian=True)
    hand = mm.fit(eight_schools_by_hand(), {"sigma": SIGMA, "y": Y}, jacobian=True)
    assert ours.converged and hand.converged
    for name in hand.params:
        np.testing.assert_allclose(ours.params[name], hand.params[name], rtol=1e-6, atol=1e-9)


def test_logistic_map_and_mle_are_the_hand_written_models(logistic_data):
    X, y = logistic_data
    model, data = mm.from_numpyro(logistic, X, y=y)
    hand = logistic_by_hand(3)
    for method in ("map", "mle"):
        ours = mm.fit(model, data, method=method)
        theirs = mm.fit(hand, {"X": X, "y": y}, method=method)
        assert ours.converged and theirs.converged
        for name in theirs.params:
            np.testing.assert_allclose(ours.params[name], theirs.params[name], rtol=1e-6)
    # New data of the same shapes: the data are arguments, not constants of the model.
    y2 = 1.0 - y
    ours = mm.fit(model, {"args": (X,), "kwargs": {"y": y2}})
    theirs = mm.fit(hand, {"X": X, "y": y2})
    np.testing.assert_allclose(ours.params["beta"], theirs.params["beta"], rtol=1e-6)


def test_laplace_is_the_hand_written_models(logistic_data):
    X, y = logistic_data
    model, data = mm.from_numpyro(logistic, X, y=y)
    approx = mm.laplace(model, data)
    hand = mm.laplace(logistic_by_hand(3), {"X": X, "y": y})
    np.testing.assert_allclose(approx.cov, hand.cov, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# The posterior: NumPyro's own MCMC's
# --------------------------------------------------------------------------------------------


def _numpyro_mcmc(model_fn, *args, **kwargs):
    mcmc = MCMC(NUTS(model_fn, target_accept_prob=0.9), num_warmup=1000, num_samples=2000,
                num_chains=1, progress_bar=False)
    mcmc.run(jax.random.key(11), *args, **kwargs)
    return mcmc.get_samples(group_by_chain=True)


def _same_mean(ours, theirs, name):
    """Means within 4.5 combined Monte Carlo standard errors (bulk ESS), entry by entry."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    for idx in np.ndindex(ours.shape[2:]):
        a, b = ours[(..., *idx)], theirs[(..., *idx)]
        mcse = [np.std(x, ddof=1) / np.sqrt(float(arviz_stats.ess(x, method="bulk")))
                for x in (a, b)]
        assert abs(a.mean() - b.mean()) < 4.5 * np.hypot(*mcse), (name, idx, a.mean(), b.mean())


@pytest.mark.slow
@pytest.mark.parametrize("case", ["eight_schools", "logistic"])
def test_sample_equals_numpyros_mcmc(case, logistic_data):
    if case == "eight_schools":
        fn, args, kwargs = eight_schools, (SIGMA,), {"y": Y}
    else:
        fn, args, kwargs = logistic, (logistic_data[0],), {"y": logistic_data[1]}
    model, data = mm.from_numpyro(fn, *args, **kwargs)
    with warnings.catch_warnings():  # a few divergences in eight schools are reported
        warnings.simplefilter("ignore", mm.SamplingWarning)
        dt = mm.sample(model, data, num_warmup=1000, num_samples=1000, num_chains=4, seed=3,
                       target_accept=0.9, progress_bar=False)
    theirs = _numpyro_mcmc(fn, *args, **kwargs)
    for name in model.params:
        _same_mean(dt.posterior[name].values, theirs[name], name)
    if case == "eight_schools":
        _same_mean(dt.posterior["theta"].values, theirs["theta"], "theta")
    else:  # compare works unchanged: the MAP's row is the fit's
        estimate = mm.fit(model, data)
        table = mm.compare(dt, {"MAP": estimate, "MLE": mm.fit(model, data, method="mle")},
                           model=model, data=data)
        np.testing.assert_allclose(table.loc["beta[1]", "MAP"], estimate.params["beta"][1],
                                   rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def test_discrete_latent_sites_are_refused():
    def mixture(y=None):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + z, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"discrete latent site\(s\) \['z'\].*Marginalize"):
        mm.from_numpyro(mixture, y=np.array(0.3))


def test_no_observed_site_and_factors_are_refused():
    def prior_only():
        numpyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="no observed site"):
        mm.from_numpyro(prior_only)

    def with_factor(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.factor("penalty", -(mu**2))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"numpyro.factor site\(s\) \['penalty'\]"):
        mm.from_numpyro(with_factor, y=np.array([0.1]))


def test_a_failing_model_is_reported():
    def broken(X, y=None):
        numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(X @ np.ones(7), 1.0), obs=y)

    with pytest.raises(TypeError, match="The NumPyro model 'broken' failed on the given"):
        mm.from_numpyro(broken, np.ones((3, 2)), y=np.zeros(3))
    with pytest.raises(TypeError, match="must be a NumPyro model function"):
        mm.from_numpyro("model")
