"""Tests of mm.sample: exact conjugate posteriors, the DataTree, compilation, diagnostics,
bad input.

Expected numbers come from closed forms (conjugate updates; scipy.stats for the Beta). A
Monte Carlo estimate is accepted when it is within 4 Monte Carlo standard errors, computed
from the bulk ESS: ``|mean - truth| < 4 sd / sqrt(ess)``; for a standard deviation of a
near-Gaussian posterior the MC standard error is about ``sd / sqrt(2 ess_sd)``, with the ESS
of the sd (``arviz_stats.ess(method="sd")``).
"""

import os
import subprocess
import sys
import textwrap
import warnings

import arviz_plots
import arviz_stats

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats
import xarray as xr
from numpyro.distributions import constraints

import mlemap as mm


FAST = dict(num_warmup=500, num_samples=1000, num_chains=4, progress_bar=False)


def within_mc_error(draws, truth_mean, truth_sd):
    """Assert the posterior mean and sd of draws (chain, draw) against the truth."""
    ess = float(arviz_stats.ess(np.asarray(draws), method="bulk"))
    # The sd's own ESS: NUTS's draws are often antithetic, with a bulk ESS above the number of
    # draws, while the squared deviations are not (ESS for the sd measured at a quarter of
    # the bulk ESS on a correlated Gaussian).
    ess_sd = float(arviz_stats.ess(np.asarray(draws), method="sd"))
    mean, sd = float(np.mean(draws)), float(np.std(draws, ddof=1))
    assert abs(mean - truth_mean) < 4 * truth_sd / np.sqrt(ess), (mean, truth_mean, ess)
    assert abs(sd / truth_sd - 1) < 4 / np.sqrt(2 * ess_sd), (sd, truth_sd, ess_sd)


def recorded(fn):
    """Run fn, return (result, list of warning messages); nothing is turned into an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

SIGMA = 1.5
M0, S0 = 1.0, 2.0


def normal_mean_model(counter=None):
    """y_i ~ N(mu, 1.5), mu ~ N(1, 2)."""

    def log_likelihood(p, d):
        if counter is not None:
            counter.append(1)  # runs once per trace, never per evaluation
        return dist.Normal(p["mu"], SIGMA).log_prob(d["y"])

    return mm.Model({"mu": mm.Param(prior=dist.Normal(M0, S0))}, log_likelihood)


@pytest.fixture(scope="module")
def normal_model():
    """One instance shared by the tests below: same settings reuse its compiled program."""
    return normal_mean_model()


@pytest.fixture(scope="module")
def normal_data():
    return {"y": np.random.default_rng(1).normal(0.7, SIGMA, size=20)}


@pytest.fixture(scope="module")
def regression():
    """A model with a vector, a positive parameter and a derived quantity, and its draws."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 2))
    y = X @ np.array([1.0, -0.5]) + 0.3 + rng.normal(scale=0.8, size=30)
    model = mm.Model(
        {
            "intercept": mm.Param(),
            "beta": mm.Param((2,), prior=dist.Normal(0.0, 5.0)),
            "sigma": mm.Param(constraint=constraints.positive, prior=dist.HalfNormal(2.0)),
        },
        lambda p, d: dist.Normal(p["intercept"] + d["X"] @ p["beta"], p["sigma"]).log_prob(
            d["y"]
        ),
        derived=lambda p, d: {"sigma2": p["sigma"] ** 2},
    )
    data = {"X": X, "y": y}
    dt = mm.sample(model, data, init="prior", seed=3, **FAST)
    return model, data, dt


# --------------------------------------------------------------------------------------------
# Exact conjugate posteriors
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_normal_mean_known_sigma(normal_model, normal_data):
    y = normal_data["y"]
    precision = 1 / S0**2 + y.size / SIGMA**2
    mean = (M0 / S0**2 + y.sum() / SIGMA**2) / precision
    dt = mm.sample(normal_model, normal_data, init="prior", **FAST)
    within_mc_error(dt.posterior["mu"].values, mean, precision**-0.5)


@pytest.mark.slow
def test_beta_binomial():
    """theta ~ Beta(2, 3), 6 successes in 9 trials -> Beta(8, 6) (scipy.stats)."""
    model = mm.Model(
        {"theta": mm.Param(constraint=constraints.unit_interval, prior=dist.Beta(2.0, 3.0))},
        lambda p, d: dist.Binomial(d["n"], probs=p["theta"]).log_prob(d["k"])[None],
    )
    dt = mm.sample(model, {"k": 6.0, "n": 9.0}, init="map", **FAST)
    assert dt.attrs["init"] == "map"
    truth = scipy.stats.beta(8, 6)
    within_mc_error(dt.posterior["theta"].values, truth.mean(), truth.std())


@pytest.mark.slow
def test_bayesian_linear_regression_known_sigma():
    """beta ~ N(0, tau^2 I), y ~ N(X beta, sigma^2): N(S X'y / sigma^2, S),
    S = (X'X / sigma^2 + I / tau^2)^-1."""
    rng = np.random.default_rng(4)
    n, d, sigma, tau = 40, 3, 0.7, 2.0
    X = rng.normal(size=(n, d))
    y = X @ np.array([0.5, -1.0, 2.0]) + rng.normal(scale=sigma, size=n)
    model = mm.Model(
        {"beta": mm.Param((d,), prior=dist.Normal(0.0, tau))},
        lambda p, dd: dist.Normal(dd["X"] @ p["beta"], sigma).log_prob(dd["y"]),
    )
    cov = np.linalg.inv(X.T @ X / sigma**2 + np.eye(d) / tau**2)
    mean = cov @ X.T @ y / sigma**2
    dt = mm.sample(model, {"X": X, "y": y}, **FAST)  # default init="map"
    for j in range(d):
        within_mc_error(dt.posterior["beta"].values[..., j], mean[j], np.sqrt(cov[j, j]))


def correlated_regression():
    """beta ~ N(0, tau^2 I), y ~ N(X beta, sigma^2) with equicorrelated columns (rho = 0.9):
    a Gaussian posterior with strong correlations, N(S X'y / sigma^2, S)."""
    rng = np.random.default_rng(5)
    n, d, sigma, tau, rho = 50, 6, 1.0, 3.0, 0.9
    corr = (1 - rho) * np.eye(d) + rho * np.ones((d, d))
    X = rng.normal(size=(n, d)) @ np.linalg.cholesky(corr).T
    y = X @ np.linspace(-1.0, 1.0, d) + rng.normal(scale=sigma, size=n)
    model = mm.Model(
        {"beta": mm.Param((d,), prior=dist.Normal(0.0, tau))},
        lambda p, dd: dist.Normal(dd["X"] @ p["beta"], sigma).log_prob(dd["y"]),
    )
    cov = np.linalg.inv(X.T @ X / sigma**2 + np.eye(d) / tau**2)
    return model, {"X": X, "y": y}, cov @ X.T @ y / sigma**2, cov


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "init", "rank"), [
    ("auto", "map", 6), ("low_rank", "map", 5), ("diag", "map", 0), ("auto", "prior", 6),
    ("numpyro", "map", 0),
])
def test_every_metric_finds_a_correlated_gaussian_posterior(metric, init, rank):
    model, data, mean, cov = correlated_regression()
    dt = mm.sample(model, data, metric=metric, init=init, seed=6, **FAST)
    for j in range(mean.shape[0]):
        within_mc_error(dt.posterior["beta"].values[..., j], mean[j], np.sqrt(cov[j, j]))
    attrs, stats = dt.attrs, dt.sample_stats
    assert attrs["metric"] == ("dense" if metric == "auto" else
                               "numpyro_diag" if metric == "numpyro" else metric)
    assert attrs["metric_rank"] == rank
    assert attrs["adaptation"] == ("numpyro" if metric == "numpyro" else "mlemap")
    assert attrs["metric_init"] == ("identity" if metric == "numpyro" else
                                    "laplace" if init == "map" else "gradient")
    np.testing.assert_array_equal(attrs["sampling_gradients"],
                                  stats["n_steps"].sum("draw").values)
    np.testing.assert_array_equal(attrs["divergences"], stats["diverging"].sum("draw").values)
    assert np.all(attrs["warmup_gradients"] >= attrs["warmup_iterations"])
    assert np.all((attrs["warmup_iterations"] > 0)
                  & (attrs["warmup_iterations"] <= FAST["num_warmup"]))


@pytest.mark.slow
def test_a_gaussian_posterior_settles_the_seeded_metric_early():
    """The Laplace approximation of a Gaussian posterior is exact: the metric passes its
    settled test at the first window and the warm-up ends well before num_warmup."""
    model, data, _, _ = correlated_regression()
    dt = mm.sample(model, data, seed=7, **FAST)
    assert np.all(dt.attrs["metric_settled"] == 1)
    assert np.all(dt.attrs["metric_updates"] == 0)
    assert np.all(dt.attrs["warmup_iterations"] < FAST["num_warmup"])


@pytest.mark.slow
def test_a_kinked_likelihood_whose_mode_seeds_nothing_does_not_stall():
    """Absolute-error regression: the Hessian at the MAP is singular (the kinks), so nothing
    is seeded, and the gradient at the MAP is ~0, so nutpie's 1 / |gradient| first metric
    would be 1e20 (it stalled a chain at step size 1e-12, or at 0 with every transition
    divergent). The identity starts it instead: no warning (R-hat, divergences, ESS)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 1))
    y = 0.5 + 1.5 * x[:, 0] + 0.5 * rng.standard_t(df=3, size=40)
    model, data = mm.glm(x, y, family=mm.families.laplace(scale_prior=dist.HalfNormal(2.0)),
                         prior=dist.Normal(0.0, 5.0))
    dt = mm.sample(model, data, seed=3, **dict(FAST, num_warmup=400, num_chains=2))
    assert dt.attrs["metric_init"] == "identity"
    assert np.all(dt.attrs["divergences"] == 0)
    steps = dt.sample_stats["step_size"].values[:, 0]
    assert steps.max() / steps.min() < 3, steps


def test_bad_metric_arguments(normal_data):
    with pytest.raises(ValueError, match="metric must be one of"):
        mm.sample(normal_mean_model(), normal_data, metric="full")
    with pytest.raises(ValueError, match="dense_mass=True asks for a dense metric"):
        mm.sample(normal_mean_model(), normal_data, metric="diag", dense_mass=True)
    with pytest.raises(TypeError, match="dense_mass must be True or False"):
        mm.sample(normal_mean_model(), normal_data, dense_mass="yes")


# --------------------------------------------------------------------------------------------
# The DataTree
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_datatree_layout(regression):
    model, data, dt = regression
    assert {"posterior", "log_likelihood", "sample_stats", "log_prior", "observed_data"} <= set(
        dt.children
    )
    post = dt.posterior
    assert post["beta"].dims == ("chain", "draw", "beta_dim_0")
    assert post["intercept"].dims == ("chain", "draw")
    assert post["sigma2"].shape == (4, 1000)
    assert bool((post["sigma"] > 0).all())
    np.testing.assert_allclose(post["sigma2"], post["sigma"] ** 2)

    log_lik = dt.log_likelihood["log_likelihood"]
    assert log_lik.dims == ("chain", "draw", "obs") and log_lik.shape == (4, 1000, 30)
    draw = {k: post[k].values[1, 7] for k in model.params}
    np.testing.assert_allclose(log_lik.values[1, 7], model.log_likelihood(draw, data), rtol=1e-10)

    stats = dt.sample_stats
    for name in ("diverging", "lp", "energy", "tree_depth", "n_steps", "acceptance_rate",
                 "step_size"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(
        stats["tree_depth"], np.floor(np.log2(stats["n_steps"])) + 1
    )

    np.testing.assert_allclose(dt.log_prior["intercept"], 0.0)  # flat
    np.testing.assert_allclose(
        dt.log_prior["beta"].values[2, 5],
        dist.Normal(0.0, 5.0).log_prob(post["beta"].values[2, 5]).sum(),
    )
    np.testing.assert_allclose(dt.observed_data["y"], data["y"])

    attrs = dt.attrs
    assert attrs["seed"] == 3 and attrs["num_chains"] == 4 and attrs["init"] == "prior"
    assert attrs["compile_seconds"] >= 0 and attrs["sampling_seconds"] > 0
    for package in ("mlemap", "jax", "numpyro", "arviz"):
        assert isinstance(attrs[f"{package}_version"], str)


@pytest.mark.slow
def test_arviz_functions_work_unchanged(regression):
    _, _, dt = regression
    summary = arviz_stats.summary(dt)
    assert {"intercept", "beta[0]", "beta[1]", "sigma", "sigma2"} <= set(summary.index)
    loo = arviz_stats.loo(dt)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 30
    sensitivity = arviz_stats.psense_summary(dt)
    assert len(sensitivity) > 0
    arviz_plots.plot_dist(dt, backend="none")
    arviz_plots.plot_trace(dt, backend="none")
    arviz_plots.plot_energy(dt, backend="none")


def netcdf_engine():
    """xarray's netCDF-4 engines: netcdf4 (package netCDF4), or h5netcdf with h5py."""
    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5py")):
        try:
            __import__(module)
        except ImportError:
            continue
        return engine
    pytest.fail(
        "No netCDF-4 engine: h5netcdf needs h5py, and netCDF4 is not installed. "
        "pyproject.toml must depend on netCDF4 (or h5py) for DataTree.to_netcdf."
    )


@pytest.mark.slow
def test_netcdf_round_trip(regression, tmp_path):
    _, _, dt = regression
    path = tmp_path / "posterior.nc"
    engine = netcdf_engine()
    dt.to_netcdf(path, engine=engine)
    back = xr.open_datatree(path, engine=engine)
    assert set(back.children) == set(dt.children)
    xr.testing.assert_allclose(back.posterior.ds, dt.posterior.ds)
    xr.testing.assert_equal(back.sample_stats.ds, dt.sample_stats.ds)
    assert back.attrs["seed"] == 3 and back.attrs["chain_method"] == dt.attrs["chain_method"]


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("chain_method, init", [("vectorized", "prior"), ("sequential", "map")])
def test_same_shapes_do_not_recompile(chain_method, init, normal_data):
    """Counts traces of the model's log-likelihood (a Python side effect runs only when JAX
    traces it): a second call on new data of the same shapes traces nothing, fit included."""
    traces = []
    model = normal_mean_model(counter=traces)
    settings = dict(FAST, num_warmup=200, num_samples=300, chain_method=chain_method)
    first, _ = recorded(lambda: mm.sample(model, normal_data, init=init, **settings))
    assert first.attrs["compile_seconds"] > 0 and first.attrs["init"] == init
    count = len(traces)
    other = {"y": normal_data["y"] + 3.0}  # new data, same shapes
    second, _ = recorded(lambda: mm.sample(model, other, init=init, seed=5, **settings))
    assert len(traces) == count, "sample() traced the model again"
    assert second.attrs["compile_seconds"] == 0
    shift = float(second.posterior["mu"].mean() - first.posterior["mu"].mean())
    assert 2.0 < shift < 3.1  # the new data is used: the posterior moved with it


def test_five_glms_of_the_same_structure_sample_with_one_compilation(compiles):
    """A user's loop over five prior scales (or folds), a new mm.glm each time: the first
    glm + sample compiles (its MAP start included), the next four run the same executables.
    Each posterior is still its own: the conjugate Gaussian posterior of a known-sigma linear
    regression under a N(0, tau^2) prior on beta and a flat intercept, within MC error."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 2))
    settings = dict(FAST, num_warmup=200, num_samples=300, num_chains=2,
                    chain_method="vectorized")
    counts = []
    for fold, tau in enumerate((0.1, 0.3, 1.0, 3.0, 10.0)):
        y = X @ np.array([1.0, -0.5]) + 0.3 + rng.normal(size=40)  # new data, same shapes
        before = compiles()
        model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=1.0),
                             prior=dist.Normal(0.0, tau))
        dt, _ = recorded(lambda: mm.sample(model, data, seed=fold, **settings))
        counts.append(compiles() - before)
        design = np.column_stack([np.ones(40), X])
        precision = design.T @ design + np.diag([0.0, tau**-2, tau**-2])
        cov = np.linalg.inv(precision)
        mean = cov @ design.T @ y
        beta = dt.posterior["beta"].values
        for j in range(2):
            within_mc_error(beta[..., j], mean[j + 1], np.sqrt(cov[j + 1, j + 1]))
        if fold:
            assert dt.attrs["compile_seconds"] == 0
    assert counts[0] > 0 and counts[1:] == [0, 0, 0, 0], counts


@pytest.mark.slow
def test_same_seed_same_draws_and_progress(normal_model, normal_data, capsys):
    a = mm.sample(normal_model, normal_data, init="prior", seed=7, **FAST)
    b = mm.sample(normal_model, normal_data, init="prior", seed=7, **dict(FAST, progress_bar=True))
    np.testing.assert_array_equal(a.posterior["mu"], b.posterior["mu"])
    assert "mlemap.sample:" in capsys.readouterr().err


@pytest.mark.slow
def test_log_likelihood_false_leaves_out_the_pointwise_group(normal_model, normal_data):
    """The same draws without the (chain, draw, obs) group; compare_losses then says why it
    cannot use the posterior."""
    full = mm.sample(normal_model, normal_data, init="prior", seed=7, **FAST)
    lean = mm.sample(normal_model, normal_data, init="prior", seed=7, log_likelihood=False,
                     **FAST)
    assert "log_likelihood" in full.children and "log_likelihood" not in lean.children
    np.testing.assert_array_equal(lean.posterior["mu"], full.posterior["mu"])
    np.testing.assert_array_equal(lean.log_prior["mu"], full.log_prior["mu"])
    with pytest.raises(ValueError, match="has no 'log_likelihood' group"):
        mm.compare_losses({"full": full, "lean": lean})
    with pytest.raises(TypeError, match="log_likelihood must be True or False"):
        mm.sample(normal_model, normal_data, log_likelihood="no", **FAST)


@pytest.mark.slow
def test_parallel_chains_on_host_devices():
    """With 4 host devices the default is one chain per device (shard_map), with priors=."""
    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np, numpyro.distributions as dist, mlemap as mm
        model = mm.Model({"mu": mm.Param(prior=dist.Normal(5.0, 0.1))},
                         lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]))
        y = np.linspace(-1.0, 3.0, 25)
        # priors= overrides the model's N(5, 0.1): an argument of the shard_map program too
        dt = mm.sample(model, {"y": y}, init="prior", num_warmup=300, num_samples=500,
                       priors={"mu": dist.Normal(0.0, 10.0)}, progress_bar=False)
        post_mean = y.sum() / (y.size + 1e-2)
        assert dt.attrs["chain_method"] == "parallel", dt.attrs["chain_method"]
        assert abs(float(dt.posterior["mu"].mean()) - post_mean) < 0.05
        print("ok")
        """
    )
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def funnel():
    """Neal's funnel: v ~ N(0, 3), x_k ~ N(0, exp(v / 2)): NUTS diverges in its neck."""
    return mm.Model(
        {"v": mm.Param(prior=dist.Normal(0.0, 3.0)), "x": mm.Param((5,))},
        lambda p, d: dist.Normal(0.0, jnp.exp(p["v"] / 2)).log_prob(p["x"]),
    )


@pytest.mark.slow
def test_divergences_are_reported():
    dt, messages = recorded(
        lambda: mm.sample(funnel(), {}, init="prior", seed=1, **dict(FAST, num_warmup=300))
    )
    divergent = int(dt.sample_stats["diverging"].sum())
    assert divergent > 0
    matching = [m for m in messages if "diverged" in m]
    assert len(matching) == 1 and matching[0].startswith(f"{divergent} of 4000 transitions")


@pytest.mark.slow
def test_rhat_is_reported_for_chains_in_different_modes():
    """Two well-separated modes, two chains started in each: R-hat is far above 1.01."""
    model = mm.Model(
        {"mu": mm.Param()},
        lambda p, d: jnp.logaddexp(
            dist.Normal(-10.0, 1.0).log_prob(p["mu"]), dist.Normal(10.0, 1.0).log_prob(p["mu"])
        )[None],
    )
    init = {"mu": np.array([-10.0, -10.0, 10.0, 10.0])}
    _, messages = recorded(lambda: mm.sample(model, {}, init=init, **FAST))
    rhat = [m for m in messages if m.startswith("R-hat > 1.01")]
    assert len(rhat) == 1 and "1 of 1 quantities" in rhat[0]


@pytest.mark.slow
def test_low_ess_and_max_tree_depth_are_reported(normal_data):
    """Few draws: low bulk ESS; max_tree_depth=1: every trajectory stops at the maximum."""
    settings = dict(FAST, num_warmup=100, num_samples=20, max_tree_depth=1)
    _, messages = recorded(
        lambda: mm.sample(normal_mean_model(), normal_data, init="prior", **settings)
    )
    assert sum(m.startswith("Bulk ESS < 400 (100 per chain)") for m in messages) == 1
    assert sum("80 of 80 trajectories stopped at the maximum tree depth (1" in m
               for m in messages) == 1


# --------------------------------------------------------------------------------------------
# priors=: overrides of the model's priors, as in mm.fit
# --------------------------------------------------------------------------------------------

M1 = -1.0  # the overriding prior N(M1, s) on mu, far from the model's own N(1, 2)


def conjugate(y, m, s):
    """Posterior mean and sd of mu for y_i ~ N(mu, SIGMA), mu ~ N(m, s)."""
    precision = 1 / s**2 + y.size / SIGMA**2
    return (m / s**2 + y.sum() / SIGMA**2) / precision, precision**-0.5


@pytest.mark.slow
def test_priors_override_the_model_prior(normal_model, normal_data):
    """mu ~ N(-1, 0.5) given as priors= replaces the model's N(1, 2): the draws match the
    conjugate posterior under N(-1, 0.5) (default init="map") and the log_prior group holds
    N(-1, 0.5)'s log-density of the draws."""
    override = dist.Normal(M1, 0.5)
    dt = mm.sample(normal_model, normal_data, priors={"mu": override}, **FAST)
    assert dt.attrs["init"] == "map"
    mean, sd = conjugate(normal_data["y"], M1, 0.5)
    own_mean, _ = conjugate(normal_data["y"], M0, S0)
    assert abs(mean - own_mean) > 10 * sd / np.sqrt(4000)  # the two posteriors are told apart
    mu = dt.posterior["mu"].values
    within_mc_error(mu, mean, sd)
    np.testing.assert_allclose(dt.log_prior["mu"].values, override.log_prob(mu), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("chain_method, init", [("vectorized", "prior"), ("sequential", "map")])
def test_other_prior_scale_does_not_retrace(chain_method, init, normal_data):
    """Priors are an argument of every compiled program (NUTS, start check, post-processing,
    the MAP start): another scale of the same structure traces nothing."""
    traces = []
    model = normal_mean_model(counter=traces)
    settings = dict(FAST, num_warmup=200, num_samples=300, chain_method=chain_method, init=init)
    first, _ = recorded(
        lambda: mm.sample(model, normal_data, priors={"mu": dist.Normal(M1, 0.1)}, **settings))
    assert first.attrs["compile_seconds"] > 0
    count = len(traces)
    second, _ = recorded(
        lambda: mm.sample(model, normal_data, priors={"mu": dist.Normal(M1, 5.0)}, **settings))
    assert len(traces) == count, "sample() traced the model again for a new prior scale"
    assert second.attrs["compile_seconds"] == 0
    for dt, s in ((first, 0.1), (second, 5.0)):  # each run used its own scale
        mean, sd = conjugate(normal_data["y"], M1, s)
        assert abs(float(dt.posterior["mu"].mean()) - mean) < 0.25 * sd
        np.testing.assert_allclose(dt.log_prior["mu"].values,
                                   dist.Normal(M1, s).log_prob(dt.posterior["mu"].values),
                                   rtol=1e-12)


@pytest.mark.parametrize("fn", [mm.fit, mm.sample])
@pytest.mark.parametrize(
    "priors, error, match",
    [
        ({"nu": dist.Normal(0.0, 1.0)}, ValueError,
         r"priors has unknown parameter name\(s\) \['nu'\]; the model's parameters are "
         r"\['mu'\]"),
        ({"mu": 1.0}, TypeError,
         r"priors\['mu'\] must be a numpyro distribution or None \(flat\); got float"),
        ([dist.Normal(0.0, 1.0)], TypeError,
         "priors must be a dict name -> numpyro distribution or None; got list"),
    ],
)
def test_bad_priors_give_fits_errors(fn, priors, error, match, normal_data):
    """The same messages from fit and sample; sample raises before anything is traced."""
    traces = []
    with pytest.raises(error, match=match):
        fn(normal_mean_model(counter=traces), normal_data, priors=priors)
    if fn is mm.sample:
        assert traces == []


# --------------------------------------------------------------------------------------------
# Bad input (raised before anything is traced)
# --------------------------------------------------------------------------------------------


def test_num_chains_below_one(normal_data):
    with pytest.raises(ValueError, match="num_chains must be an integer >= 1; got 0"):
        mm.sample(normal_mean_model(), normal_data, num_chains=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_accept=1.0), "target_accept must be strictly between 0 and 1"),
        (dict(num_samples=0), "num_samples must be an integer >= 1"),
        (dict(chain_method="threads"), "chain_method must be None"),
        (dict(init="zeros"), "init must be 'map', 'prior', 'uniform' or a dict"),
        (dict(max_tree_depth=0), "max_tree_depth must be an integer >= 1"),
    ],
)
def test_bad_settings(kwargs, match, normal_data):
    with pytest.raises(ValueError, match=match):
        mm.sample(normal_mean_model(), normal_data, **kwargs)


def test_init_with_wrong_names(normal_data):
    with pytest.raises(ValueError, match=r"missing \['mu'\], unknown \['nu'\]"):
        mm.sample(normal_mean_model(), normal_data, init={"nu": 0.0}, progress_bar=False)


def test_init_with_wrong_shape(normal_data):
    with pytest.raises(ValueError, match=r"init\['mu'\] has shape \(3,\); expected \(\) .* "
                                         r"or \(4,\) \(one per chain\)"):
        mm.sample(normal_mean_model(), normal_data, init={"mu": np.zeros(3)},
                  progress_bar=False)


def test_init_outside_the_support(normal_data):
    model = mm.Model(
        {"s": mm.Param(constraint=constraints.positive)},
        lambda p, d: dist.Normal(0.0, p["s"]).log_prob(d["y"]),
    )
    with pytest.raises(ValueError, match="outside a parameter's support"):
        mm.sample(model, normal_data, init={"s": -1.0}, progress_bar=False)


def test_non_finite_log_likelihood_everywhere_names_it():
    """A likelihood that is zero everywhere (a rate of the wrong sign for every mu): the error
    names the term. NaN in the data is refused before that, as in fit."""
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 1.0))},
        lambda p, d: jnp.log(jnp.zeros_like(d["y"]) * p["mu"] ** 2),
    )
    with pytest.raises(ValueError, match="not finite at any of 20 random starting points.*"
                                         "log_likelihood = (nan|-inf)"):
        mm.sample(model, {"y": np.array([0.1, 0.2, 0.3])}, init="prior", progress_bar=False)
    with pytest.raises(ValueError, match=r"data\['y'\] has 1 NaN or infinite value"):
        mm.sample(model, {"y": np.array([0.1, np.nan, 0.3])}, init="prior", progress_bar=False)


def test_non_finite_log_prior_at_the_given_init_names_it():
    """nu = 1e200 is finite, its N(0, 1) log-density overflows to -inf."""
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 1.0)), "nu": mm.Param(prior=dist.Normal(0.0, 1.0))},
        lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]),
    )
    with pytest.raises(ValueError, match="chain 0: log_prior of 'nu' = -inf"):
        mm.sample(model, {"y": np.zeros(3)}, init={"mu": 0.0, "nu": 1e200}, progress_bar=False)
