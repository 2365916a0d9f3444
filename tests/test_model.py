"""Model and Param: transforms against jax.jacobian, declarations, conditional priors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import mlemap as mm
from mlemap import log_density_fn

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


def test_named_axes_name_the_entries():
    """Param.dims and Model.coords (ArviZ's dims and coords) name the entries; an unlabelled
    or unnamed axis is numbered."""
    model = mm.Model(
        {"beta": mm.Param((2,), dims=("coef",)),
         "W": mm.Param((2, 2), dims=("coef", "k")),
         "p": mm.Param((3,), constraints.simplex, dims=("cls",)),
         "sigma": mm.Param((), constraints.positive)},
        lambda p, d: jnp.zeros(1), coords={"coef": ["educ", "age"], "cls": ["a", "b", "c"]})
    assert model.flat_names() == ["beta[educ]", "beta[age]", "W[educ,0]", "W[educ,1]",
                                  "W[age,0]", "W[age,1]", "p[a]", "p[b]", "p[c]", "sigma"]
    # A simplex has 2 coordinates for 3 entries: numbered, not labelled.
    assert model.unconstrained_names() == ["beta[educ]", "beta[age]", "W[educ,0]", "W[educ,1]",
                                           "W[age,0]", "W[age,1]", "p[0]", "p[1]", "sigma"]
    unnamed = mm.Model({"beta": mm.Param((2,))}, lambda p, d: jnp.zeros(1))
    assert unnamed.flat_names() == ["beta[0]", "beta[1]"] and unnamed.coords == {}


@pytest.mark.parametrize("make,error,message", [
    (lambda: mm.Param((2,), dims=("a", "b")), ValueError, r"must name every axis of the shape"),
    (lambda: mm.Model({"b": mm.Param((2,), dims=("coef",))}, lambda p, d: jnp.zeros(1),
                      coords={"coef": ["x", "y", "z"]}), ValueError, r"has 3 labels but"),
    (lambda: mm.Model({"b": mm.Param((2,), dims=("coef",))}, lambda p, d: jnp.zeros(1),
                      coords={"coef": ["x", "x"]}), ValueError, r"repeated labels"),
    (lambda: mm.Model({"b": mm.Param((2,))}, lambda p, d: jnp.zeros(1), coords=["x"]),
     TypeError, r"coords must be a dict"),
])
def test_bad_names_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()
