"""Where the chains start (mlemap._starts): the MAP under the priors sampled, draws from
them, and the fallback when the MAP cannot be found.

Expected numbers come from the conjugate normal-mean posterior (closed form).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mlemap as mm
from mlemap import SamplingWarning, _starts

SIGMA, M0, S0, M1 = 1.5, 1.0, 2.0, -1.0
FAST = dict(num_warmup=500, num_samples=1000, num_chains=4, progress_bar=False)


@pytest.fixture(scope="module")
def normal_model():
    return mm.Model({"mu": mm.Param(prior=dist.Normal(M0, S0))},
                    lambda p, d: dist.Normal(p["mu"], SIGMA).log_prob(d["y"]))


@pytest.fixture(scope="module")
def normal_data():
    return {"y": np.random.default_rng(1).normal(0.7, SIGMA, size=20)}


def conjugate(y, m, s):
    """Posterior mean and sd of mu for y_i ~ N(mu, SIGMA), mu ~ N(m, s)."""
    precision = 1 / s**2 + y.size / SIGMA**2
    return (m / s**2 + y.sum() / SIGMA**2) / precision, precision**-0.5


@pytest.mark.slow
def test_map_init_falls_back_with_a_warning(monkeypatch, normal_model, normal_data):
    def failing_fit(*args, **kwargs):
        raise RuntimeError("no optimum")

    monkeypatch.setattr(_starts, "fit", failing_fit)
    with pytest.warns(SamplingWarning, match="init='map': mm.fit raised RuntimeError"):
        dt = mm.sample(normal_model, normal_data, **FAST)
    assert dt.attrs["init"] == "prior"


def test_priors_reach_the_starting_points(normal_model, normal_data):
    """init="map" fits with the overriding priors; init="prior" draws from them."""
    data = {"y": jnp.asarray(normal_data["y"])}
    tight = {"mu": dist.Normal(jnp.asarray(M1), jnp.asarray(0.05))}
    key = jax.random.key(0)
    positions, used = _starts.initial_positions(normal_model, data, tight, "map", key, 4)
    mean, _ = conjugate(normal_data["y"], M1, 0.05)  # the MAP of the conjugate posterior
    assert used == "map"
    np.testing.assert_array_less(np.abs(np.asarray(positions)[:, 0] - mean), 0.1 + 1e-6)
    far = {"mu": dist.Normal(jnp.asarray(100.0), jnp.asarray(0.01))}
    positions, used = _starts.initial_positions(normal_model, data, far, "prior", key, 4)
    assert used == "prior"
    np.testing.assert_array_less(np.abs(np.asarray(positions)[:, 0] - 100.0), 0.1)
