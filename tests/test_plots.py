"""mm.plots: every figure is drawn without a display and written as a real PNG.

The posterior is the conjugate Gaussian linear model with known noise (exact Laplace), small
enough to sample in seconds; the loss comparison and the prior sweep are drawn from inputs
built here (their numbers are tested in test_compare.py).
"""

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats
import xarray as xr

import mlemap as mm
from mlemap import families, plots
from mlemap import compare_losses

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_bytes=10_000, min_width=300, min_height=200):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    assert len(data) > min_bytes, f"suspiciously small PNG ({len(data)} bytes)"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, (width, height)
    assert width <= 6000 and height <= 6000, (width, height)
    # Not a blank canvas: some pixels differ from the background.
    assert np.ptp(image[..., :3]) > 0.5


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted():
    assert matplotlib.get_backend().lower() == "agg"  # conftest: MPLBACKEND=Agg, no display
    rng = np.random.default_rng(20261128)
    x = rng.normal(size=(30, 2))
    y = 0.5 + x @ np.array([1.5, -1.0]) + rng.normal(size=30)
    family = families.gaussian(sigma=1.0)
    model, data = mm.glm(x, y, family=family, prior=dist.Normal(0.0, 0.5),
                         intercept_prior=dist.Normal(0.0, 0.5))
    posterior = mm.sample(model, data, num_warmup=400, num_samples=500, num_chains=2, seed=1,
                          progress_bar=False)
    estimates = {
        "MLE": mm.fit(model, data, method="mle"),
        "MAP": mm.fit(model, data),
        "Laplace": mm.laplace(model, data, num_draws=800, seed=2),
    }
    return family, posterior, estimates


def test_plot_estimates(fitted, tmp_path):
    _, posterior, estimates = fitted
    pc = plots.plot_estimates(posterior, estimates)
    path = tmp_path / "estimates.png"
    pc.savefig(path)
    _check_png(path)
    # One panel per scalar parameter, titled with the flat names.
    assert set(pc.data.data_vars) == {"intercept", "beta[0]", "beta[1]"}
    # Each panel has a reference line at each estimate's value.
    axis = pc.get_target("beta[1]", {})
    xs = sorted({round(float(line.get_xdata()[0]), 10) for line in axis.get_lines()
                 if len(set(np.atleast_1d(line.get_xdata()))) == 1})
    expected = sorted(round(float(v), 10) for v in (
        estimates["MLE"].params["beta"][1], estimates["MAP"].params["beta"][1],
        estimates["Laplace"].draws["posterior"]["beta"].values[..., 1].mean()))
    for value in expected:
        assert any(abs(value - x) < 1e-8 for x in xs), (value, xs)


def test_plot_estimates_subset(fitted, tmp_path):
    _, posterior, estimates = fitted
    pc = plots.plot_estimates(posterior, {"MAP": estimates["MAP"]}, var_names=["beta"])
    assert set(pc.data.data_vars) == {"beta[0]", "beta[1]"}
    pc.savefig(tmp_path / "subset.png")
    _check_png(tmp_path / "subset.png", min_bytes=5_000)


def test_plot_pair(fitted, tmp_path):
    _, posterior, estimates = fitted
    pm = plots.plot_pair(posterior, {"MLE": estimates["MLE"], "MAP": estimates["MAP"]},
                         ["intercept", "beta"])
    path = tmp_path / "pair.png"
    pm.savefig(path)
    _check_png(path)


def test_plot_forest(fitted, tmp_path):
    _, posterior, estimates = fitted
    pc = plots.plot_forest(posterior, estimates)
    path = tmp_path / "forest.png"
    pc.savefig(path)
    _check_png(path)


def test_plot_prior_sweep(tmp_path):
    # A hand-made sweep of one coefficient (the layout of mlemap.prior_sweep).
    scales = np.geomspace(0.01, 10.0, 9)
    ols, n = 1.2, 30.0
    path_values = ols * scales**2 * n / (scales**2 * n + 1.0)  # ridge shrinkage, sigma = 1
    nuts = np.array([0.05, 1.0, 10.0])
    nuts_mean = ols * nuts**2 * n / (nuts**2 * n + 1.0)
    half = 1.6 / np.sqrt(n + 1.0 / nuts**2)
    sweep = xr.Dataset(
        {
            "map": (("scale", "parameter"), path_values[:, None]),
            "map_converged": ("scale", np.ones(scales.size, bool)),
            "mle": ("parameter", [ols]),
            "mean": (("nuts_scale", "parameter"), nuts_mean[:, None]),
            "lower": (("nuts_scale", "parameter"), (nuts_mean - half)[:, None]),
            "upper": (("nuts_scale", "parameter"), (nuts_mean + half)[:, None]),
        },
        coords={"scale": scales, "nuts_scale": nuts, "parameter": ["beta[0]"]},
        attrs={"name": "beta", "ci": "eti 89%"},
    )
    pc = plots.plot_prior_sweep(sweep)
    path = tmp_path / "sweep.png"
    pc.savefig(path)
    _check_png(path, min_bytes=8_000, min_width=250)
    with pytest.raises(TypeError, match="prior_sweep"):
        plots.plot_prior_sweep(sweep.drop_vars("mle"))


def _loo_tree(y, mu_draws, scale, family):
    """A DataTree with posterior and pointwise log-likelihood (exact draws, no NUTS)."""
    ll = family(loc=mu_draws[..., None], scale=scale).logpdf(y)
    return xr.DataTree.from_dict({
        "posterior": xr.Dataset({"mu": (("chain", "draw"), mu_draws)}),
        "log_likelihood": xr.Dataset({"log_likelihood": (("chain", "draw", "obs"), ll)}),
    })


def test_plot_loss_comparison(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.normal(size=40)
    mu = rng.normal(np.mean(y), 1 / np.sqrt(40), size=(2, 400))  # exact posterior of the mean
    table = compare_losses({
        "gaussian (MSE)": _loo_tree(y, mu, 1.0, scipy.stats.norm),
        "laplace (MAE)": _loo_tree(y, mu, 1.0, scipy.stats.laplace),
        "student_t": _loo_tree(y, mu, 1.0, lambda loc, scale: scipy.stats.t(4, loc, scale)),
    })
    assert set(table.index) == {"gaussian (MSE)", "laplace (MAE)", "student_t"}
    pc = plots.plot_loss_comparison(table)
    path = tmp_path / "loo.png"
    pc.savefig(path)
    _check_png(path, min_bytes=8_000)
    with pytest.raises(TypeError, match="compare_losses"):
        plots.plot_loss_comparison(table.drop(columns="dse"))


def test_plot_ppc(fitted, tmp_path):
    family, posterior, _ = fitted
    pc = plots.plot_ppc(posterior, family, num_samples=40, seed=0)
    path = tmp_path / "ppc.png"
    pc.savefig(path)
    _check_png(path, min_bytes=8_000)


def test_ppc_bad_input(fitted):
    family, posterior, _ = fitted
    with pytest.raises(ValueError, match="not categorical"):
        plots.plot_ppc(posterior, families.categorical())
    bare = xr.DataTree.from_dict({"posterior": posterior["posterior"].to_dataset()})
    with pytest.raises(ValueError, match="observed_data"):
        plots.plot_ppc(bare, family)
    with pytest.raises(TypeError, match="families"):
        plots.plot_ppc(posterior, "gaussian")


def test_bad_var_names_and_estimates(fitted):
    _, posterior, estimates = fitted
    with pytest.raises(ValueError, match="neither a parameter"):
        plots.plot_estimates(posterior, estimates, var_names=["gamma"])
    with pytest.raises(ValueError, match="two to four"):
        plots.plot_pair(posterior, estimates, ["intercept"])
    with pytest.raises(ValueError, match="no variable for the parameters \\['mu'\\]"):
        plots.plot_forest(posterior, {"point": {"mu": 0.0}})
    with pytest.raises(ValueError, match="at least one estimate"):
        plots.plot_estimates(posterior, {})
