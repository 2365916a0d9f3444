"""The log-density builders (mlemap._density), against closed forms and scipy.stats."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.optimize
from numpyro.distributions import constraints

import mlemap as mm
from mlemap._density import check_log_likelihood, log_density_fn, pointwise_log_likelihood_fn


def _binomial_6_of_9():
    return mm.Model(
        {"p": mm.Param(constraint=constraints.unit_interval, prior=dist.Uniform(0.0, 1.0))},
        lambda params, data: dist.Binomial(data["n"], params["p"]).log_prob(data["k"])[None],
    ), {"n": 9, "k": 6}


@pytest.mark.parametrize("jacobian,expected", [(False, 6 / 9), (True, 7 / 11)])
def test_binomial_6_of_9_under_uniform_prior(jacobian, expected):
    """Without the Jacobian the maximum is the mode of Beta(7, 4), (7-1)/(7+4-2) = 6/9; with
    it, the mode of the logit-scale density p^7 (1-p)^4, which is 7/11."""
    model, data = _binomial_6_of_9()
    log_density = jax.jit(log_density_fn(model, prior=True, jacobian=jacobian))
    result = scipy.optimize.minimize_scalar(
        lambda u: -float(log_density(jnp.array([u]), data)), bracket=(-1.0, 1.0), tol=1e-12
    )
    p = model.constrain(jnp.array([result.x]))["p"]
    np.testing.assert_allclose(p, expected, atol=1e-6)


def test_log_density_terms_add_up():
    """log-likelihood, + log-prior, + log|J| equal scipy's Binomial and Beta pieces."""
    import scipy.stats

    model, data = _binomial_6_of_9()
    u = jnp.array([0.3])
    p = 1 / (1 + np.exp(-0.3))
    loglik = scipy.stats.binom.logpmf(6, 9, p)
    np.testing.assert_allclose(log_density_fn(model, prior=False)(u, data), loglik)
    np.testing.assert_allclose(log_density_fn(model)(u, data), loglik + 0.0)
    np.testing.assert_allclose(
        log_density_fn(model, jacobian=True)(u, data), loglik + np.log(p * (1 - p))
    )


def test_log_density_is_traced_once_for_many_datasets(rng):
    traces = []

    def log_likelihood(params, data):
        traces.append(1)
        return dist.Normal(params["mu"], params["sigma"]).log_prob(data["y"])

    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 10.0)),
         "sigma": mm.Param(constraint=constraints.positive, prior=dist.HalfNormal(5.0))},
        log_likelihood,
    )
    log_density = jax.jit(log_density_fn(model, jacobian=True))
    for _ in range(5):
        log_density(jnp.zeros(2), {"y": jnp.asarray(rng.normal(size=30))})
    assert len(traces) == 1
    # Prior scales are arguments too: passing priors explicitly compiles once more (another
    # pytree structure), then a sweep over scales reuses that program.
    for scale in (1.0, 2.0, 3.0):
        log_density(jnp.zeros(2), {"y": jnp.zeros(30)},
                    {"mu": dist.Normal(0.0, scale), "sigma": dist.HalfNormal(scale)})
    assert len(traces) == 2


def test_priors_are_arguments_and_can_be_vmapped(rng):
    model = mm.Model({"w": mm.Param(shape=(3,), prior=dist.Normal(0.0, 1.0))},
                     lambda p, d: jnp.zeros(1))
    taus = jnp.array([0.5, 1.0, 2.0])
    w = jnp.asarray(rng.normal(size=3))
    values = jax.vmap(lambda tau: log_density_fn(model)(w, {}, {"w": dist.Normal(0.0, tau)}))(taus)
    import scipy.stats
    expected = [scipy.stats.norm(0, t).logpdf(np.asarray(w)).sum() for t in taus]
    np.testing.assert_allclose(values, expected)


def test_pointwise_log_likelihood_and_names():
    model = mm.Model(
        {"beta": mm.Param(shape=(2,)), "W": mm.Param(shape=(2, 2)),
         "sigma": mm.Param(constraint=constraints.positive)},
        lambda p, d: dist.Normal(d["x"] * p["beta"][0], p["sigma"]).log_prob(d["y"]),
    )
    assert model.flat_names() == ["beta[0]", "beta[1]", "W[0,0]", "W[0,1]", "W[1,0]",
                                  "W[1,1]", "sigma"]
    assert model.dim == 7
    data = {"x": jnp.arange(4.0), "y": jnp.ones(4)}
    out = pointwise_log_likelihood_fn(model)(jnp.zeros(7), data)
    assert out.shape == (4,)


def test_log_likelihood_must_be_pointwise():
    traces = []

    def summed(params, data):
        traces.append(1)
        return jnp.sum(dist.Normal(params["mu"], 1.0).log_prob(data["y"]))

    data = {"y": jnp.zeros(5)}
    model = mm.Model({"mu": mm.Param()}, summed)
    with pytest.raises(ValueError, match=r"shape \(n_obs,\); it returned \(\)"):
        check_log_likelihood(model, data)
    column = mm.Model({"mu": mm.Param()}, lambda p, d: d["y"][:, None] - p["mu"])
    with pytest.raises(ValueError, match=r"it returned \(5, 1\)"):
        check_log_likelihood(column, data)
    broken = mm.Model({"mu": mm.Param()}, lambda p, d: d["missing"])
    with pytest.raises(TypeError, match="failed on parameters of shapes"):
        check_log_likelihood(broken, data)
    good = mm.Model({"mu": mm.Param()}, lambda p, d: (traces.append(1), d["y"] - p["mu"])[1])
    traces.clear()
    for _ in range(3):
        assert check_log_likelihood(good, {"y": jnp.ones(5)}) == 5
    assert len(traces) == 1  # checked once per data layout
    assert check_log_likelihood(good, {"y": jnp.ones(7)}) == 7
