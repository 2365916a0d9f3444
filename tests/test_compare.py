"""compare(), compare_losses(), prior_sweep(): numbers checked against closed forms and numpy.

The model for most tests is the conjugate Gaussian linear model with known noise,
``y = a + b x + e``, ``e ~ N(0, 1)``, ``a, b ~ N(0, tau)``: its posterior is exactly Gaussian
with precision ``A'A + I / tau^2`` (``A = [1, x]``) and mean the ridge solution, so the
Laplace approximation is exact and every expected number has a closed form.
"""

import numpy as np
import optax
import numpyro.distributions as dist
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

import mlemap as mm
from mlemap import families
from mlemap import CompareWarning, FitWarning, compare, compare_losses, prior_sweep

TAU = 0.3
N = 30
NUTS = dict(num_warmup=400, num_samples=500, num_chains=2, progress_bar=False)
#: The conjugate fixture's settings (see ``conjugate`` for why 1000 draws a chain).
CONJUGATE_NUTS = {**NUTS, "num_samples": 1000}


def _conjugate_data(rng, n=N):
    x = rng.normal(size=(n, 1))
    y = 0.5 + 1.5 * x[:, 0] + rng.normal(size=n)
    return x, y


def _closed_form(x, y, tau):
    """Posterior (= ridge) mean and covariance, OLS and its standard errors (sigma = 1)."""
    A = np.column_stack([np.ones(len(y)), x])
    precision = A.T @ A + np.eye(A.shape[1]) / tau**2
    cov = np.linalg.inv(precision)
    ols = np.linalg.solve(A.T @ A, A.T @ y)
    return {
        "mean": cov @ A.T @ y,
        "cov": cov,
        "ols": ols,
        "ols_se": np.sqrt(np.diag(np.linalg.inv(A.T @ A))),
    }


@pytest.fixture(scope="module")
def conjugate():
    rng = np.random.default_rng(20261128)
    x, y = _conjugate_data(rng)
    model, data = mm.glm(x, y, family=families.gaussian(sigma=1.0), prior=dist.Normal(0.0, TAU),
                         intercept_prior=dist.Normal(0.0, TAU))
    # 1000 draws a chain: at 500, R-hat (rank-normalized, folded) over seeds 1-8 was
    # 1.0007-1.013 with the metric learned from draws and gradients and 0.999-1.007 with
    # NumPyro's, whose tail ESS per draw is the same (5100-5600 of 8000 draws for both): two
    # chains of 500 draws sit at the 1.01 limit either way.
    posterior = mm.sample(model, data, seed=1, **CONJUGATE_NUTS)
    estimates = {
        "MLE": mm.fit(model, data, method="mle"),
        "MAP": mm.fit(model, data),
        "Laplace": mm.laplace(model, data, num_draws=1000, seed=2),
    }
    return model, data, posterior, estimates, _closed_form(x, y, TAU)


@pytest.fixture(scope="module")
def table(conjugate):
    model, data, posterior, estimates, _ = conjugate
    return compare(posterior, estimates, model=model, data=data)


def _draws(posterior, label):
    """The posterior draws of a flat label (``beta[0]``), flattened over chain and draw."""
    name, _, index = label.partition("[")
    da = posterior["posterior"][name]
    if index:
        da = da.isel({f"{name}_dim_0": int(index.rstrip("]"))})
    return da.values.reshape(-1)


def test_rows_and_columns(conjugate, table):
    model = conjugate[0]
    assert list(table.index) == model.flat_names() == ["intercept", "beta[0]"]
    for column in ["mean", "median", "sd", "eti89_lb", "eti89_ub", "MLE", "MLE_quantile", "MLE_z",
                   "MAP", "MAP_quantile", "MAP_z", "Laplace", "Laplace_sd", "Laplace_sd_ratio",
                   "Laplace_wasserstein", "MAP_pull_sd", "MAP_pull_se", "psense_prior",
                   "psense_likelihood", "psense_diagnosis"]:
        assert column in table.columns, column
    assert table.attrs["ci"] == "eti 89%"


def test_named_coefficients_name_the_rows_and_the_posterior(conjugate, table):
    """The same model with its column named: the posterior carries the dim and its label
    (ArviZ dims and coords), every row is named by it (Model.flat_names' convention) and
    every number is the unnamed model's (the same draws: names change nothing else)."""
    import arviz_stats

    model, data, posterior, _, _ = conjugate
    named, _ = mm.glm(np.asarray(data["X"]), np.asarray(data["y"]),
                      family=families.gaussian(sigma=1.0), prior=dist.Normal(0.0, TAU),
                      intercept_prior=dist.Normal(0.0, TAU), names=["x"])
    named_posterior = mm.sample(named, data, seed=1, **CONJUGATE_NUTS)  # the fixture's draws
    beta = named_posterior["posterior"]["beta"]
    assert beta.dims == ("chain", "draw", "coef") and list(beta["coef"].values) == ["x"]
    assert "beta[x]" in arviz_stats.summary(named_posterior, kind="stats").index
    estimates = {"MLE": mm.fit(named, data, method="mle"), "MAP": mm.fit(named, data),
                 "Laplace": mm.laplace(named, data, num_draws=1000, seed=2)}
    named_table = compare(named_posterior, estimates, model=named, data=data)
    assert list(named_table.index) == named.flat_names() == ["intercept", "beta[x]"]
    numeric = [c for c in table.columns if c != "psense_diagnosis"]
    np.testing.assert_allclose(named_table[numeric].to_numpy(float),
                               table[numeric].to_numpy(float), rtol=1e-12)


def test_posterior_summaries_match_numpy(conjugate, table):
    posterior = conjugate[2]
    for label in table.index:
        draws = _draws(posterior, label)
        row = table.loc[label]
        np.testing.assert_allclose(row["mean"], np.mean(draws), rtol=1e-12)
        np.testing.assert_allclose(row["median"], np.median(draws), rtol=1e-12)
        np.testing.assert_allclose(row["sd"], np.std(draws, ddof=1), rtol=1e-12)
        np.testing.assert_allclose([row["eti89_lb"], row["eti89_ub"]],
                                   np.quantile(draws, [0.055, 0.945]), rtol=1e-12)


def test_quantile_and_z_match_scipy_and_numpy(conjugate, table):
    posterior = conjugate[2]
    for label in table.index:
        draws = _draws(posterior, label)
        for est in ("MLE", "MAP", "Laplace"):
            point = table.loc[label, est]
            expected_q = scipy.stats.percentileofscore(draws, point, kind="mean") / 100
            np.testing.assert_allclose(table.loc[label, f"{est}_quantile"], expected_q, rtol=1e-12)
            expected_z = (point - np.mean(draws)) / np.std(draws, ddof=1)
            np.testing.assert_allclose(table.loc[label, f"{est}_z"], expected_z, rtol=1e-10)


def test_point_values_are_the_estimates(conjugate, table):
    _, _, _, estimates, exact = conjugate
    # The MAP is the ridge solution, the MLE is OLS (closed forms).
    np.testing.assert_allclose(table["MAP"].to_numpy(), exact["mean"], rtol=1e-7)
    np.testing.assert_allclose(table["MLE"].to_numpy(), exact["ols"], rtol=1e-7)
    laplace_mean = [float(estimates["Laplace"].draws["posterior"][k].mean())
                    for k in ("intercept", "beta")]
    np.testing.assert_allclose(table["Laplace"].to_numpy(), laplace_mean, rtol=1e-12)


def test_laplace_sd_ratio_on_conjugate_model(table, conjugate):
    exact = conjugate[4]
    exact_sd = np.sqrt(np.diag(exact["cov"]))
    # The Laplace approximation is exact here: its sd is the closed-form posterior sd ...
    np.testing.assert_allclose(table["Laplace_sd"].to_numpy(), exact_sd, rtol=1e-8)
    # ... and its ratio to NUTS is 1 up to Monte Carlo error (sd of an sd estimate from
    # ~600 draws is ~3%; 15% leaves room for autocorrelation).
    np.testing.assert_allclose(table["Laplace_sd_ratio"].to_numpy(), 1.0, atol=0.15)
    np.testing.assert_allclose(table["sd"].to_numpy(), exact_sd, rtol=0.15)
    # Wasserstein-1 between two samples of the same Gaussian: small against its sd.
    assert np.all(table["Laplace_wasserstein"].to_numpy() < 0.25 * exact_sd)
    assert np.all(table["Laplace_wasserstein"].to_numpy() > 0)


def test_prior_pull_matches_ridge_closed_form(table, conjugate):
    exact = conjugate[4]
    expected_se = (exact["mean"] - exact["ols"]) / exact["ols_se"]
    np.testing.assert_allclose(table["MAP_pull_se"].to_numpy(), expected_se, rtol=1e-6)
    expected_sd = (table["MAP"] - table["MLE"]) / table["sd"]
    np.testing.assert_allclose(table["MAP_pull_sd"].to_numpy(), expected_sd.to_numpy(),
                               rtol=1e-12)
    # tau = 0.3 is a strong prior on a slope of ~1.4: it pulls it by more than one standard
    # error, towards 0.
    assert table.loc["beta[0]", "MAP_pull_se"] < -1.0


def test_psense_columns_are_arviz(table):
    assert set(table["psense_diagnosis"]) <= {
        "✓", "potential prior-data conflict", "potential strong prior / weak likelihood"}
    assert np.all(table["psense_prior"].to_numpy() >= 0)


def test_converged_estimates_pass_the_guard(table):
    checks = table.attrs["mode_checks"]
    assert set(checks) == {"MLE", "MAP", "Laplace"}
    for check in checks.values():
        assert check["checked"]
        assert check["num_draws_above"] == 0
        assert check["best_draw"] <= check["reported"] + 1e-6


def test_draw_beats_unconverged_map(conjugate):
    model, data, posterior, _, _ = conjugate
    # One small gradient step from the origin (L-BFGS would solve this near-isotropic
    # quadratic in one step).
    with pytest.warns(FitWarning, match="did not converge"):
        stopped = mm.fit(model, data, optimizer=optax.sgd(1e-3), max_steps=1)
    with pytest.warns(CompareWarning, match="higher log-likelihood \\+ log-prior"):
        table = compare(posterior, {"MAP (1 step)": stopped})
    check = table.attrs["mode_checks"]["MAP (1 step)"]
    assert check["num_draws_above"] > 0
    assert check["best_draw"] > check["reported"]
    # Without model/data the pull columns need an MLE: absent here.
    assert not any("pull" in c for c in table.columns)


def test_without_model_rows_follow_the_estimates(conjugate):
    _, _, posterior, estimates, _ = conjugate
    table = compare(posterior, {"MAP": estimates["MAP"], "MLE": estimates["MLE"]}, psense=False)
    assert set(table.index) == {"intercept", "beta[0]"}
    assert "MAP_pull_sd" in table.columns and "MAP_pull_se" not in table.columns
    assert not any(c.startswith("psense") for c in table.columns)


def test_plain_dict_is_a_point(conjugate):
    _, _, posterior, _, exact = conjugate
    table = compare(posterior, {"closed form": {"intercept": exact["mean"][0],
                                                "beta": exact["mean"][1:]}})
    np.testing.assert_allclose(table["closed form"].to_numpy(), exact["mean"])
    assert table.attrs["mode_checks"] == {}


# -- printing ---------------------------------------------------------------------------------


def _five_estimates(conjugate):
    """MLE, MAP, Laplace and two plain points with long labels: five estimate columns."""
    _, _, posterior, estimates, exact = conjugate
    points = {"closed form": {"intercept": exact["mean"][0], "beta": exact["mean"][1:]},
              "least squares": {"intercept": exact["ols"][0], "beta": exact["ols"][1:]}}
    return posterior, {**estimates, **points}


def test_print_shows_the_estimates_first_and_whole(conjugate, table):
    text = str(table)
    assert repr(table) == text
    header = text.splitlines()[0].split()
    assert header == ["mean", "sd", "eti89_lb", "eti89_ub", "MLE", "MAP", "Laplace"]
    for label in table.index:
        row = next(line for line in text.splitlines() if line.startswith(label))
        # Each printed number is the table's, to four significant digits.
        shown = [float(v) for v in row.split()[1:]]
        expected = table.loc[label, header].to_numpy(dtype=float)
        np.testing.assert_allclose(shown, expected, rtol=5e-4)
    assert "table.diagnostics()" in text and "pd.DataFrame(table)" in text
    assert "[2 rows x" not in text and "..." not in text.splitlines()[0]


def test_print_fits_80_columns_with_five_estimates(conjugate):
    posterior, five = _five_estimates(conjugate)
    table = compare(posterior, five)
    text = table.to_text(width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for column in ["mean", "sd", "eti89_lb", "eti89_ub", *five]:
        for word in column.split():
            assert word in text, column  # wrapped into blocks, never hidden
    # Each estimate's value is there, to four significant digits.
    for label, point in (("closed form", conjugate[4]["mean"]),
                         ("least squares", conjugate[4]["ols"])):
        for value in point:
            assert f"{value:.4g}" in text, (label, value)


def test_full_table_stays_available(conjugate, table):
    full = pd.DataFrame(table)
    assert type(full) is pd.DataFrame
    assert list(full.columns) == list(table.columns)
    assert set(table.estimates().columns) | set(table.diagnostics().columns) == set(full.columns)
    assert "MAP_z" in table.diagnostics() and "psense_diagnosis" in table.diagnostics()
    # A selection is a plain DataFrame, printed by pandas.
    assert type(table[["mean", "MAP_z"]]) is pd.DataFrame
    assert table.attrs["estimates"] == ["MLE", "MAP", "Laplace"]


def test_print_names_what_psense_flags(conjugate, table):
    text = str(table)
    flagged = table.index[table["psense_diagnosis"].str.startswith("potential")]
    for name in flagged:
        diagnosis = table.loc[name, "psense_diagnosis"]
        line = next(line for line in text.splitlines() if line.startswith(f"psense: {diagnosis}"))
        assert name in line
    if not len(flagged):
        assert "psense:" not in text


# -- bad input -------------------------------------------------------------------------------


def test_names_that_do_not_match_the_posterior(conjugate):
    _, _, posterior, estimates, _ = conjugate
    with pytest.raises(ValueError, match="no variable for the parameters \\['mu'\\]"):
        compare(posterior, {"point": {"mu": 0.0}})
    with pytest.raises(ValueError, match="do not match.*missing \\['beta'\\]"):
        compare(posterior, {"MAP": estimates["MAP"], "other": {"intercept": 0.0}})
    with pytest.raises(ValueError, match="has shape \\(3,\\)"):
        compare(posterior, {"point": {"intercept": 0.0, "beta": np.zeros(3)}})


def test_names_that_do_not_match_the_model(conjugate):
    model, data, posterior, _, _ = conjugate
    with pytest.raises(ValueError, match="the model's"):
        compare(posterior, {"point": {"intercept": 0.0}}, model=model, data=data)


def test_other_bad_input(conjugate):
    model, data, posterior, estimates, _ = conjugate
    with pytest.raises(ValueError, match="non-empty dict"):
        compare(posterior, {})
    with pytest.raises(TypeError, match="xarray.DataTree"):
        compare(posterior["posterior"].to_dataset(), estimates)
    with pytest.raises(ValueError, match="both model and data"):
        compare(posterior, estimates, model=model)
    with pytest.raises(TypeError, match="PointEstimate"):
        compare(posterior, {"x": 1.0})
    with pytest.raises(ValueError, match="ci_kind"):
        compare(posterior, estimates, ci_kind="quantile")


def test_batched_point_estimate_is_refused(conjugate):
    _, _, posterior, estimates, _ = conjugate
    # A PointEstimate with a leading batch axis, as fit(..., batch=...) returns.
    single = estimates["MAP"]
    path = single._replace(
        params={k: np.stack([v, v]) for k, v in single.params.items()},
        log_density=np.array([single.log_density] * 2))
    with pytest.raises(ValueError, match="batched PointEstimate"):
        compare(posterior, {"path": path})


# -- compare_losses ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def losses():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 1))
    y = 0.5 + 1.5 * x[:, 0] + 0.5 * rng.standard_t(df=3, size=40)
    fits = {}
    for label, family in [("gaussian (MSE)", families.gaussian(sigma_prior=dist.HalfNormal(2.0))),
                          ("laplace (MAE)", families.laplace(scale_prior=dist.HalfNormal(2.0))),
                          ("student_t", families.student_t(nu=4.0,
                                                           sigma_prior=dist.HalfNormal(2.0)))]:
        model, data = mm.glm(x, y, family=family, prior=dist.Normal(0.0, 5.0))
        # 1000 draws: at 500, the Laplace likelihood's chains sat at R-hat 1.010 (the limit).
        fits[label] = mm.sample(model, data, seed=3, **{**NUTS, "num_samples": 1000})
    return fits


def test_compare_losses_is_arviz_compare(losses):
    table = compare_losses(losses)
    assert set(table.index) == set(losses)
    assert list(table["rank"]) == list(range(len(losses)))
    for column in ("elpd", "elpd_diff", "se", "dse", "weight", "pareto_k_max", "num_high_k"):
        assert column in table.columns
    np.testing.assert_allclose(table["weight"].sum(), 1.0, rtol=1e-6)
    # Pareto-k columns agree with arviz_stats.loo on each posterior.
    import arviz_stats

    for label, tree in losses.items():
        loo = arviz_stats.loo(tree, pointwise=True)
        np.testing.assert_allclose(table.loc[label, "elpd"], loo.elpd, rtol=1e-10)
        np.testing.assert_allclose(table.loc[label, "pareto_k_max"],
                                   float(loo.pareto_k.max()), rtol=1e-10)


def test_compare_losses_warns_on_high_pareto_k(losses):
    # Doctor one posterior so that one observation's importance ratios 1/p(y_0 | theta_s)
    # = exp(1.5 E_s), E_s ~ Exp(1), are Pareto with tail shape k = 1.5 > 0.7.
    tree = losses["gaussian (MSE)"].copy()
    ll = tree["log_likelihood"]["log_likelihood"].values.copy()
    rng = np.random.default_rng(0)
    ll[..., 0] = -1.5 * rng.exponential(size=ll.shape[:2])
    tree["log_likelihood"] = xr.DataTree(xr.Dataset(
        {"log_likelihood": (("chain", "draw", "obs"), ll)},
        coords=tree["log_likelihood"].to_dataset().coords))
    with pytest.warns(CompareWarning, match="PSIS-LOO is unreliable for gaussian \\(MSE\\)"):
        table = compare_losses({"gaussian (MSE)": tree, "student_t": losses["student_t"]})
    assert table.loc["gaussian (MSE)", "num_high_k"] >= 1


def test_compare_losses_without_log_likelihood(losses):
    tree = xr.DataTree.from_dict({"posterior": losses["student_t"]["posterior"].to_dataset()})
    with pytest.raises(ValueError, match="no 'log_likelihood' group"):
        compare_losses({"a": tree, "b": losses["student_t"]})
    with pytest.raises(ValueError, match="at least two"):
        compare_losses({"a": losses["student_t"]})


# -- prior_sweep ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep():
    rng = np.random.default_rng(20261128)
    x, y = _conjugate_data(rng)
    model, data = mm.glm(x, y, family=families.gaussian(sigma=1.0), prior=dist.Normal(0.0, 1.0),
                         intercept_prior=dist.Normal(0.0, 1.0))
    scales = np.geomspace(0.01, 10.0, 7)
    result = prior_sweep(model, data, "beta", lambda s: dist.Normal(0.0, s), scales,
                         nuts_scales=[0.05, 10.0], seed=5, num_warmup=400, num_samples=500)
    return x, y, result


def _ridge(x, y, tau_beta, tau_intercept=1.0):
    A = np.column_stack([np.ones(len(y)), x])
    penalty = np.diag([1 / tau_intercept**2] + [1 / tau_beta**2] * x.shape[1])
    cov = np.linalg.inv(A.T @ A + penalty)
    return cov @ A.T @ y, cov


def test_prior_sweep_map_path_is_ridge(sweep):
    x, y, result = sweep
    assert list(result["parameter"].values) == ["intercept", "beta[0]"]
    assert bool(result["map_converged"].all())
    for i, tau in enumerate(result["scale"].values):
        np.testing.assert_allclose(result["map"].values[i], _ridge(x, y, tau)[0], rtol=1e-6,
                                   atol=1e-9)
    A = np.column_stack([np.ones(len(y)), x])
    np.testing.assert_allclose(result["mle"].values, np.linalg.lstsq(A, y)[0], rtol=1e-7)
    # The prior pulls beta to 0 when tight, and releases it to the MLE when flat.
    beta_path = result["map"].sel(parameter="beta[0]").values
    assert abs(beta_path[0]) < 0.1 * abs(result["mle"].sel(parameter="beta[0]").item())
    np.testing.assert_allclose(beta_path[-1], result["mle"].sel(parameter="beta[0]").item(),
                               rtol=0.01)


def test_prior_sweep_posterior_matches_closed_form(sweep):
    x, y, result = sweep
    for i, tau in enumerate(result["nuts_scale"].values):
        mean, cov = _ridge(x, y, tau)
        sd = np.sqrt(np.diag(cov))
        # NUTS mean within 5 Monte Carlo standard errors (1000 draws, ESS >= 200 assumed).
        assert np.all(np.abs(result["mean"].values[i] - mean) < 5 * sd / np.sqrt(200))
        assert np.all(result["lower"].values[i] < result["mean"].values[i])
        assert np.all(result["upper"].values[i] > result["mean"].values[i])


def test_prior_sweep_bad_input(sweep):
    model, data = mm.glm(np.ones((5, 1)), np.arange(5.0), family=families.gaussian(sigma=1.0))
    with pytest.raises(ValueError, match="not a parameter"):
        prior_sweep(model, data, "gamma", lambda s: dist.Normal(0.0, s), [0.1, 1.0])
    with pytest.raises(ValueError, match="positive prior scales"):
        prior_sweep(model, data, "beta", lambda s: dist.Normal(0.0, s), [1.0])
