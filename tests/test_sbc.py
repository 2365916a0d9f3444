"""Simulation-based calibration of mm.sample, reduced for CI (experiments/sbc.py).

The full study is ``python experiments/sbc.py --replications 100`` (10 bins, p > 0.01). Here:
40 replications per model, 390 draws thinned by 10 to L = 39 (40 possible ranks) in 4 bins
(10 expected per bin), and the looser p > 0.001 for each scalar parameter. The reference
is the theorem itself (Talts et al. 2018, arXiv:1804.06788): with exact posterior draws the
rank of the prior-drawn truth is uniform on 0..L. A deliberately wrong sampler shows that the
test has the power to see a miscalibration at this size.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import numpyro.distributions as dist
import pytest

import mlemap as mm

ROOT = Path(__file__).resolve().parents[1]
CI = dict(num_replications=40, num_warmup=300, num_samples=390, thin=10, seed=0)
CI_BINS = 4
CI_ALPHA = 1e-3


def _load_sbc():
    spec = importlib.util.spec_from_file_location("mlemap_experiments_sbc",
                                                  ROOT / "experiments" / "sbc.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sbc = _load_sbc()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear_regression", "logistic_regression"])
def test_nuts_ranks_are_uniform(name):
    result = sbc.run_sbc(sbc.MODELS[name](), **CI)
    assert result.num_draws == 39
    for ranks in result.ranks.values():
        assert ranks.shape == (40,) and ranks.min() >= 0 and ranks.max() <= 39
    tests = sbc.rank_p_values(result, CI_BINS)
    expected = {"linear_regression": ["intercept", "beta[0]", "beta[1]", "sigma"],
                "logistic_regression": ["intercept", "beta[0]", "beta[1]"]}[name]
    assert list(tests) == expected
    for param, test in tests.items():
        assert sum(test["counts"]) == 40
        assert test["p_value"] > CI_ALPHA, (param, test)
    # The replications ran without divergent transitions.
    assert int(result.divergences.sum()) == 0


def _normal_mean(tempering: float):
    """y_i ~ N(mu, 1), mu ~ N(0, 1), 5 observations; the sampled model multiplies the
    log-likelihood by ``tempering`` (1: correct; 4: a posterior twice too narrow)."""
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 1.0))},
        lambda p, d: tempering * dist.Normal(p["mu"], 1.0).log_prob(d["y"]),
    )

    def simulate(rng):
        mu = rng.normal()
        return {"mu": mu}, {"y": mu + rng.normal(size=5)}

    return sbc.SBCModel(f"normal_mean_x{tempering:g}", model, simulate)


@pytest.mark.slow
def test_a_miscalibrated_sampler_is_caught():
    """The same test at the full study's size (100 replications, 10 bins) rejects a
    posterior that is twice too narrow, and accepts the correct one."""
    settings = dict(num_replications=100, num_warmup=200, num_samples=190, thin=10, seed=1)
    wrong = sbc.rank_p_values(sbc.run_sbc(_normal_mean(4.0), **settings), 10)["mu"]
    right = sbc.rank_p_values(sbc.run_sbc(_normal_mean(1.0), **settings), 10)["mu"]
    assert wrong["p_value"] < 1e-4, wrong  # far below both the CI (1e-3) and full (1e-2) levels
    # Too narrow: the truth falls in the outer bins far more often than 1/10 of the time.
    assert wrong["counts"][0] + wrong["counts"][-1] > 40
    assert right["p_value"] > 0.01, right


def test_ranks_and_bins_are_checked():
    result = sbc.SBCResult("m", {"x": np.array([0, 1, 2, 3])}, 3, np.zeros(4), [[]] * 4,
                           0.0, 0.0)
    assert sbc.rank_p_values(result, 2)["x"]["counts"] == [2, 2]
    assert sbc.rank_p_values(result, 4)["x"]["p_value"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must divide the number of possible ranks"):
        sbc.rank_p_values(result, 3)
    with pytest.raises(ValueError, match="multiple of thin"):
        sbc.run_sbc(_normal_mean(1.0), num_replications=2, num_samples=15, thin=10)


def test_command_line_writes_json_and_png(tmp_path):
    """Two replications, tiny chains: the files are complete, nothing temporary is left."""
    import json

    code = sbc.main(["--replications", "2", "--models", "logistic_regression",
                     "--num-warmup", "50", "--num-samples", "30", "--thin", "10",
                     "--bins", "2", "--alpha", "0", "--out", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "sbc.json").read_text())
    assert set(summary["models"]) == {"logistic_regression"}
    assert summary["models"]["logistic_regression"]["num_draws"] == 3
    assert (tmp_path / "out" / "sbc_ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sbc.json",
                                                                     "sbc_ranks.png"]
