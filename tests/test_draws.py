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


def _made_up_draws(energy: np.ndarray):
    """A DataTree with a well-mixed posterior (i.i.d. normal draws) and the given energy
    ``(chain, draw)``, as mm.sample writes them."""
    import arviz_base

    rng = np.random.default_rng(3)
    chains, draws = energy.shape
    return arviz_base.from_dict({
        "posterior": {"mu": rng.normal(size=(chains, draws))},
        "sample_stats": {"energy": energy, "diverging": np.zeros((chains, draws), bool),
                         "tree_depth": np.ones((chains, draws), int)},
    })


def test_low_e_bfmi_is_reported_with_the_chains_numpy_counts():
    """E-BFMI of a chain, sum((E_t - E_{t-1})^2) / sum((E_t - mean E)^2) (Betancourt 2016):
    an i.i.d. energy has about 2, a slowly wandering one (a random walk) far below 0.3."""
    from mlemap._draws import diagnostics

    rng = np.random.default_rng(0)
    iid = rng.normal(size=(2, 1000))
    walk = np.cumsum(rng.normal(size=(2, 1000)), axis=1)
    energy = np.concatenate([iid, walk])
    by_numpy = [np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2) for e in energy]
    assert by_numpy[0] > 1.5 and by_numpy[1] > 1.5 and max(by_numpy[2:]) < 0.3
    messages = diagnostics(_made_up_draws(energy), num_chains=4, max_tree_depth=10)
    [bfmi] = [m for m in messages if "E-BFMI" in m]
    assert "in 2 of 4 chains" in bfmi and f"lowest {min(by_numpy):.2f}" in bfmi
    assert not [m for m in diagnostics(_made_up_draws(iid), num_chains=2, max_tree_depth=10)
                if "E-BFMI" in m]
