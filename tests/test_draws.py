"""From draws to what they say (mlemap._draws): the drift criterion of an improper
posterior, on chains made up so that the answer is known."""

import numpy as np

import mlemap as mm
from mlemap import families
from mlemap._draws import drift_messages


def test_drift_criterion_on_made_up_chains():
    """The two marks of draws that run off (mlemap._draws.drift_messages), on chains made up
    so that the answer is known: stationary draws of a proper posterior (no message), chains
    growing geometrically, and chains wandering where the log-density is exactly flat (what
    NUTS does once separable classes make every probability exactly 1). A single chain that
    has stopped growing while the others grow does not hide the drift."""
    model, _ = mm.glm(np.zeros((4, 2)), np.zeros(4), family=families.gaussian(sigma=1.0))
    rng = np.random.default_rng(0)
    chains, draws, dim = 4, 400, model.dim
    stationary = rng.normal(size=(chains, draws, dim))
    assert drift_messages(model, stationary, -0.5 * np.sum(stationary**2, axis=-1)) == []

    growing = np.exp(np.linspace(0.0, 8.0, draws))[None, :, None] * (1.0 + stationary**2)
    drift = drift_messages(model, growing, rng.normal(size=(chains, draws)))
    assert len(drift) == 1 and "keep growing;" in drift[0], drift
    assert "posterior is probably improper" in drift[0]

    wander = 1e25 + 1e23 * np.cumsum(rng.normal(size=(chains, draws, dim)), axis=1)  # not growing
    wander[:2] = growing[:2]  # two chains still growing, two wandering on the flat density
    log_density = rng.normal(size=(chains, draws))
    log_density[2:] = 0.0
    drift = drift_messages(model, wander, log_density)
    assert len(drift) == 1 and "exactly flat (chain 2: 0 at each" in drift[0], drift
    log_density[3, -1] = -1e-300  # one chain's density not flat after all: no drift claimed
    assert drift_messages(model, wander, log_density) == []

    overflowed = stationary.copy()  # unmixed chains, one run off to inf, none flat: said
    overflowed[2:] += 10.0
    overflowed[1, -1, 0] = np.inf
    drift = drift_messages(model, overflowed, rng.normal(size=(chains, draws)))
    assert len(drift) == 1 and "keep growing;" in drift[0], drift
