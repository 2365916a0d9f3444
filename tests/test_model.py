"""Model, Param and the log-density builders, against closed forms and jax.jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.optimize
from numpyro.distributions import constraints

import mlemap as mm
from mlemap._model import log_density_fn, pointwise_log_likelihood_fn

SQUARE_CONSTRAINTS = {
    "real": constraints.real,
    "positive": constraints.positive,
    "unit_interval": constraints.unit_interval,
    "interval": constraints.interval(-2.0, 5.0),
    "greater_than": constraints.greater_than(3.0),
    "ordered": constraints.ordered_vector,
}


def _model_with(constraint, shape):
    return mm.Model(
        {"a": mm.Param(shape=shape, constraint=constraint), "b": mm.Param(shape=(2,))},
        lambda p, d: jnp.zeros(1),
    )


@pytest.mark.parametrize("name", SQUARE_CONSTRAINTS)
def test_jacobian_term_equals_slogdet_of_the_transform(name, rng):
    model = _model_with(SQUARE_CONSTRAINTS[name], (3,))
    position = jnp.asarray(rng.normal(size=model.dim))

    def flat_constrain(u):
        return jnp.concatenate([jnp.ravel(v) for v in model.constrain(u).values()])

    sign, logdet = jnp.linalg.slogdet(jax.jacobian(flat_constrain)(position))
    assert sign == 1.0
    np.testing.assert_allclose(model.log_abs_det_jacobian(position), logdet, rtol=1e-10)


@pytest.mark.parametrize(
    "constraint,shape",
    [*((c, (3,)) for c in SQUARE_CONSTRAINTS.values()), (constraints.simplex, (4,)),
     (constraints.corr_cholesky, (3, 3))],
)
def test_unconstrain_inverts_constrain(constraint, shape, rng):
    model = _model_with(constraint, shape)
    position = jnp.asarray(rng.normal(size=model.dim))
    params = model.constrain(position)
    assert params["a"].shape == shape
    assert bool(jnp.all(constraint(params["a"]))) if constraint is not constraints.corr_cholesky \
        else True
    np.testing.assert_allclose(model.unconstrain(params), position, rtol=1e-9, atol=1e-9)


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


def test_param_rejects_bad_declarations():
    with pytest.raises(ValueError, match="does not cover the parameter's constraint"):
        mm.Param(prior=dist.HalfNormal(1.0))
    with pytest.raises(ValueError, match="does not cover"):
        mm.Param(constraint=constraints.positive, prior=dist.Uniform(0.0, 1.0))
    with pytest.raises(ValueError, match="does not broadcast"):
        mm.Param(shape=(3,), prior=dist.Normal(jnp.zeros(4), 1.0))
    with pytest.raises(TypeError, match="numpyro.distributions.Distribution"):
        mm.Param(prior="normal")
    with pytest.raises(TypeError, match="Constraint"):
        mm.Param(constraint="positive")
    with pytest.raises(TypeError, match="tuple of non-negative ints"):
        mm.Param(shape="abc")
    # Supports that contain the constraint are fine.
    mm.Param(constraint=constraints.positive, prior=dist.Exponential(1.0))
    mm.Param(constraint=constraints.unit_interval, prior=dist.Normal(0.0, 1.0))


def test_model_rejects_bad_declarations():
    with pytest.raises(TypeError, match="must be an mlemap.Param"):
        mm.Model({"a": 1.0}, lambda p, d: d)
    with pytest.raises(ValueError, match="identifiers"):
        mm.Model({"a b": mm.Param()}, lambda p, d: d)
    with pytest.raises(TypeError, match="non-empty dict"):
        mm.Model({}, lambda p, d: d)
    model = mm.Model({"a": mm.Param(shape=(2,))}, lambda p, d: d)
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['b'\]"):
        model.unconstrain({"a": np.zeros(2), "b": 1.0})
    with pytest.raises(ValueError, match=r"shape \(3,\); the model declares \(2,\)"):
        model.unconstrain({"a": np.zeros(3)})


def test_log_likelihood_must_be_pointwise():
    from mlemap._model import check_log_likelihood

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


def test_conditional_prior_is_stans_hierarchical_statement(rng):
    """theta ~ Normal(mu, tau) as a conditional prior: the MAP log-density is scipy's sum
    of the pieces, and MLE leaves it out."""
    import scipy.stats

    model = mm.Model(
        {"theta": mm.Param((3,), prior=lambda p: dist.Normal(p["mu"], p["tau"])),
         "mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
         "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0))},
        lambda p, d: dist.Normal(p["theta"], 1.0).log_prob(d["y"]),
    )
    y = rng.normal(size=3)
    theta, mu, tau = rng.normal(size=3), 0.4, 1.7
    position = model.unconstrain({"theta": theta, "mu": mu, "tau": tau})
    loglik = scipy.stats.norm(theta, 1.0).logpdf(y).sum()
    prior = (scipy.stats.norm(mu, tau).logpdf(theta).sum() + scipy.stats.norm(0, 5).logpdf(mu)
             + scipy.stats.halfcauchy(0, 5).logpdf(tau))
    data = {"y": jnp.asarray(y)}
    np.testing.assert_allclose(log_density_fn(model, prior=False)(position, data), loglik)
    np.testing.assert_allclose(log_density_fn(model)(position, data), loglik + prior)
    np.testing.assert_allclose(log_density_fn(model, jacobian=True)(position, data),
                               loglik + prior + np.log(tau))


def test_conditional_prior_is_checked_when_the_model_is_built():
    with pytest.raises(ValueError, match="does not cover"):
        mm.Model({"s": mm.Param(prior=lambda p: dist.HalfNormal(p["t"])),
                  "t": mm.Param(constraint=constraints.positive)}, lambda p, d: jnp.zeros(1))
    with pytest.raises(TypeError, match="conditional prior of 's' failed"):
        mm.Model({"s": mm.Param(prior=lambda p: dist.Normal(p["missing"], 1.0))},
                 lambda p, d: jnp.zeros(1))
