"""fit's compiled programs (mlemap._solve): a batch mapped with vmap, as on an accelerator,
equals the lax.map form used on a CPU."""

import numpy as np
import numpyro.distributions as dist

import mlemap as mm
from mlemap import _solve


def _counting_model(d, counter):
    def log_likelihood(params, data):
        counter.append(1)
        eta = data["X"] @ params["beta"] + params["intercept"]
        return dist.Bernoulli(logits=eta).log_prob(data["y"])

    return mm.Model(
        {"intercept": mm.Param(), "beta": mm.Param((d,), prior=dist.Normal(0.0, 1.0))},
        log_likelihood,
    )


def test_batched_fit_maps_alike_with_vmap_as_on_an_accelerator(rng, monkeypatch):
    """On an accelerator a batch is mapped with vmap (and Newton's line search computes the
    derivatives at every trial); on a CPU with lax.map. Forcing the vmap form here, on a
    CPU, gives the lax.map results to round-off: the accelerator path is exercised in CI."""
    B, n, d = 5, 120, 3
    X = rng.normal(size=(B, n, d))
    y = (rng.uniform(size=(B, n)) < 1 / (1 + np.exp(-3 * X[..., 0]))).astype(float)
    looped = mm.fit(_counting_model(d, []), {"X": X, "y": y}, batch="data")
    monkeypatch.setattr(_solve, "_maps_with_vmap", lambda: True)
    mapped = mm.fit(_counting_model(d, []), {"X": X, "y": y}, batch="data")
    assert looped.solver == mapped.solver == "newton"
    assert np.all(looped.converged) and np.all(mapped.converged)
    np.testing.assert_array_equal(looped.num_steps, mapped.num_steps)
    np.testing.assert_allclose(mapped.params["beta"], looped.params["beta"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(mapped.log_density, looped.log_density, rtol=1e-13)
