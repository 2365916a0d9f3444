"""fit(): MLE and MAP against scikit-learn, numpy and closed forms; failures reported.

Expected numbers come from scikit-learn 1.9 (run here, with tight tolerances), numpy's
``lstsq`` and closed forms; never from mlemap itself.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import (
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.preprocessing import StandardScaler

import mlemap as mm
from mlemap import FitError, FitWarning, Status

families, priors = mm.families, mm.priors


def _quiet(estimator, X, y):
    """scikit-learn at tolerances tighter than it likes warns; the tests take its answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


# --------------------------------------------------------------------------------------------
# Equal to the peers
# --------------------------------------------------------------------------------------------


def test_ols_mle_equals_lstsq_and_linear_regression(diabetes):
    """OLS: coefficients to 1e-8 relative; the MLE of sigma is sqrt(RSS / n)."""
    X, y = diabetes
    n = X.shape[0]
    model, data = mm.glm(X, y, family=families.gaussian())
    est = mm.fit(model, data, method="mle")
    assert est.converged and est.result == Status.CONVERGED

    design = np.column_stack([np.ones(n), X])
    coef, rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(est.params["intercept"], coef[0], rtol=1e-8)
    np.testing.assert_allclose(est.params["beta"], coef[1:], rtol=1e-8)
    sk = LinearRegression().fit(X, y)
    np.testing.assert_allclose(est.params["beta"], sk.coef_, rtol=1e-8)
    np.testing.assert_allclose(est.params["sigma"], np.sqrt(rss[0] / n), rtol=1e-8)


def test_ridge_path_of_100_equals_sklearn(diabetes):
    """A 100-point regularization path as one vmapped call; each point Ridge(alpha), 1e-7."""
    X, y = diabetes
    alphas = np.logspace(-4, 2, 100)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=1.0), prior=priors.from_ridge(1.0))
    path = mm.fit(model, data, priors={"beta": priors.from_ridge(alphas[:, None])}, batch="priors")
    assert path.params["beta"].shape == (100, X.shape[1])
    assert np.all(path.converged)
    for i in range(0, 100, 9):
        sk = Ridge(alpha=alphas[i], solver="cholesky").fit(X, y)
        np.testing.assert_allclose(path.params["beta"][i], sk.coef_, rtol=1e-7)
        np.testing.assert_allclose(path.params["intercept"][i], sk.intercept_, rtol=1e-7)


def test_lasso_path_of_100_equals_sklearn(diabetes):
    """Lasso(alpha): the same exact zeros and the nonzeros to 1e-5 relative, 100 alphas."""
    X, y = diabetes
    n = X.shape[0]
    alpha_max = np.max(np.abs(X.T @ (y - y.mean()))) / n
    alphas = alpha_max * np.logspace(-3, 0.1, 100)
    model, data = mm.glm(X, y, family=families.gaussian(sigma=1.0),
                         prior=priors.from_lasso(1.0, n))
    path = mm.fit(model, data, priors={"beta": priors.from_lasso(alphas[:, None], n)},
                  batch="priors")
    assert path.solver == "fista"
    assert np.all(path.converged)
    beta = np.asarray(path.params["beta"])
    for i in range(100):
        sk = _quiet(Lasso(alpha=alphas[i], tol=1e-14, max_iter=1_000_000), X, y)
        np.testing.assert_array_equal(beta[i] == 0.0, sk.coef_ == 0.0)
        np.testing.assert_allclose(beta[i], sk.coef_, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(path.params["intercept"][i], sk.intercept_, rtol=1e-6)
    assert np.all(beta[-1] == 0.0)  # alpha > alpha_max: everything exactly zero


@pytest.fixture(scope="module")
def cancer_glm(cancer):
    X, y = cancer
    return mm.glm(X, y, family=families.bernoulli(), prior=priors.from_logistic(1.0))


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_l2_logistic_equals_sklearn(cancer, cancer_glm, C):
    """LogisticRegression(C) = the MAP under Normal(0, sqrt(C)); 1e-6 relative.

    The reference is scikit-learn's newton-cholesky solver at tol=1e-14: its lbfgs solver
    stops on a relative change of 64 eps and is itself only ~1e-5 accurate here.
    """
    X, y = cancer
    model, data = cancer_glm
    est = mm.fit(model, data, priors={"beta": priors.from_logistic(C)})
    sk = _quiet(LogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=1000), X, y)
    assert est.converged
    np.testing.assert_allclose(est.params["beta"], sk.coef_[0], rtol=1e-6)
    np.testing.assert_allclose(est.params["intercept"], sk.intercept_[0], rtol=1e-6)


def test_logistic_mle_equals_sklearn_c_inf(rng):
    """LogisticRegression(C=np.inf) is the MLE: a flat prior; 1e-6 relative."""
    X = rng.normal(size=(400, 4))
    eta = X @ np.array([1.0, -0.5, 0.25, 0.0]) + 0.3
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-eta))).astype(float)
    model, data = mm.glm(X, y, family=families.bernoulli())
    est = mm.fit(model, data, method="mle")
    sk = _quiet(LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-14), X, y)
    np.testing.assert_allclose(est.params["beta"], sk.coef_[0], rtol=1e-6)
    np.testing.assert_allclose(est.params["intercept"], sk.intercept_[0], rtol=1e-6)


def test_multinomial_logistic_equals_sklearn():
    """Multinomial LogisticRegression(C=1) on iris: the symmetric (d, K) form, 1e-6.

    scikit-learn's K intercepts are unpenalized, so only their differences are identified:
    mlemap's (K-1,) intercept is class k's minus class 0's.
    """
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model, data = mm.glm(X, y, family=families.categorical(), prior=priors.from_logistic(1.0))
    est = mm.fit(model, data)
    sk = _quiet(LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-14, max_iter=1000),
                X, y)
    assert est.params["beta"].shape == (4, 3)
    np.testing.assert_allclose(est.params["beta"], sk.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(est.params["intercept"], sk.intercept_[1:] - sk.intercept_[0],
                               rtol=1e-6)


def test_poisson_regressor_equals_sklearn(rng):
    """PoissonRegressor(alpha) = the MAP under Normal(0, 1/sqrt(n alpha)); 1e-6 relative."""
    n = 500
    X = rng.normal(size=(n, 3))
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1]) + 0.5))
    alpha = 0.05
    model, data = mm.glm(X, y, family=families.poisson(), prior=priors.from_poisson(alpha, n))
    est = mm.fit(model, data)
    sk = _quiet(PoissonRegressor(alpha=alpha, solver="newton-cholesky", tol=1e-14,
                                 max_iter=1000), X, y)
    np.testing.assert_allclose(est.params["beta"], sk.coef_, rtol=1e-6)
    np.testing.assert_allclose(est.params["intercept"], sk.intercept_, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Jacobian semantics (closed forms)
# --------------------------------------------------------------------------------------------


def test_binomial_6_of_9_with_and_without_jacobian():
    """Uniform prior: the mode of p is 6/9; of logit(p) it is (6+1)/(9+2) = 7/11."""
    model = mm.Model(
        {"p": mm.Param(constraint=constraints.unit_interval, prior=dist.Uniform(0.0, 1.0))},
        lambda p, d: dist.Binomial(9, p["p"]).log_prob(d["k"]),
    )
    data = {"k": jnp.array([6.0])}
    np.testing.assert_allclose(mm.fit(model, data).params["p"], 6 / 9, rtol=1e-8)
    np.testing.assert_allclose(mm.fit(model, data, jacobian=True).params["p"], 7 / 11, rtol=1e-8)


def test_exponential_prior_mode_on_boundary_without_jacobian():
    """Exponential(1), no data: the mode is 0 (on the boundary, reported) and 1 on log scale."""
    model = mm.Model(
        {"x": mm.Param(constraint=constraints.positive, prior=dist.Exponential(1.0))},
        lambda p, d: jnp.zeros((0,)),
    )
    with pytest.warns(FitWarning, match="boundary of the support of x"):
        est = mm.fit(model, {})
    assert est.result == Status.BOUNDARY and not est.converged
    assert float(est.params["x"]) == 0.0
    est = mm.fit(model, {}, jacobian=True)
    assert est.converged
    np.testing.assert_allclose(est.params["x"], 1.0, rtol=1e-8)


# --------------------------------------------------------------------------------------------
# No maximum: say so
# --------------------------------------------------------------------------------------------


def test_separable_classes_have_no_mle_but_a_map(cancer_glm):
    model, data = cancer_glm  # 30 standardized features: linearly separable
    with pytest.warns(FitWarning, match="separable") as record:
        est = mm.fit(model, data, method="mle")
    assert est.result == Status.NO_MAXIMUM and not est.converged
    assert "prior" in str(record[0].message)
    with pytest.raises(FitError, match="MLE does not exist"):
        mm.fit(model, data, method="mle", throw=True)
    est = mm.fit(model, data, priors={"beta": priors.from_logistic(1.0)})  # the MAP exists
    assert est.converged


def test_eight_schools_centered_map_is_unbounded():
    """Centered eight schools: as tau -> 0 the MAP density grows without bound."""
    y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    model = mm.Model(
        {
            "mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
            "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0)),
            "theta": mm.Param((8,)),
        },
        lambda p, d: dist.Normal(p["theta"], d["sigma"]).log_prob(d["y"])
        + dist.Normal(p["mu"], p["tau"]).log_prob(p["theta"]),
    )
    # L-BFGS's line search runs far along the funnel: the log-density keeps growing there.
    with pytest.warns(FitWarning, match="grows without bound as tau"):
        est = mm.fit(model, {"y": y, "sigma": sigma}, solver="lbfgs")
    assert est.result == Status.UNBOUNDED
    with pytest.raises(FitError, match="grows without bound"):
        mm.fit(model, {"y": y, "sigma": sigma}, solver="lbfgs", throw=True)
    # Newton creeps down the curved funnel (its curvature grows as 1/tau^2), where no
    # straight ray from the start stays in it: it says that it did not converge.
    with pytest.warns(FitWarning, match="did not converge in 1000 steps|grows without bound"):
        est = mm.fit(model, {"y": y, "sigma": sigma})
    assert est.result in (Status.MAX_STEPS, Status.UNBOUNDED) and float(est.params["tau"]) < 1e-6


def test_max_steps_reported(diabetes):
    X, y = diabetes
    model, data = mm.glm(X, y, family=families.gaussian())
    start = {"intercept": 0.0, "beta": np.zeros(X.shape[1]), "sigma": 1.0}  # not glm's own
    with pytest.warns(FitWarning, match="Increase max_steps"):
        est = mm.fit(model, data, method="mle", optimizer=optax.sgd(1e-3), max_steps=3,
                     init=start)
    assert est.result == Status.MAX_STEPS and est.num_steps == 3


# --------------------------------------------------------------------------------------------
# Compilation and batches
# --------------------------------------------------------------------------------------------


def _counting_model(d, counter):
    def log_likelihood(params, data):
        counter.append(1)
        eta = data["X"] @ params["beta"] + params["intercept"]
        return dist.Bernoulli(logits=eta).log_prob(data["y"])

    return mm.Model(
        {"intercept": mm.Param(), "beta": mm.Param((d,), prior=dist.Normal(0.0, 1.0))},
        log_likelihood,
    )


def test_one_compiled_function_serves_every_dataset(rng):
    """Three datasets of the same shapes: the log-likelihood is traced for the first only."""
    counter = []
    model = _counting_model(3, counter)
    estimates = []
    for i in range(3):
        X = rng.normal(size=(200, 3))
        y = (rng.uniform(size=200) < 0.5).astype(float)
        estimates.append(mm.fit(model, {"X": X, "y": y}))
        if i == 0:
            traced = len(counter)
    assert traced > 0 and len(counter) == traced
    assert all(e.converged for e in estimates)


def test_a_model_and_its_programs_are_freed_with_it(rng):
    """fit and laplace keep their compiled programs on the model: once the user drops the
    model, the garbage collector frees both (a module-level cache keyed by the model, whose
    programs refer to it, kept every model of a loop over datasets alive)."""
    import gc
    import weakref

    X, y = rng.normal(size=(6, 40, 2)), rng.normal(size=(6, 40))
    model, data = mm.glm(X[0], y[0], family=mm.families.gaussian(), prior=dist.Normal(0, 1))
    mm.fit(model, data)
    mm.fit(model, {"X": X, "y": y}, batch="data")
    mm.laplace(model, data)
    assert {key[0] for key in model._programs} == {"checked layouts", "fit", "laplace"}
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_batched_datasets_equal_separate_fits(rng):
    B, n, d = 6, 150, 3
    X = rng.normal(size=(B, n, d))
    y = (rng.uniform(size=(B, n)) < 0.5).astype(float)
    counter = []
    model = _counting_model(d, counter)
    batched = mm.fit(model, {"X": X, "y": y}, batch="data")
    assert batched.params["beta"].shape == (B, d) and batched.log_density.shape == (B,)
    assert len(batched.message) == B and np.all(batched.converged)
    assert batched.solver == "newton"  # batched small fits: exact-Hessian Newton
    assert mm.fit(model, {"X": X[0], "y": y[0]}).solver == "newton"  # small: Newton too
    for b in (0, B - 1):
        one = mm.fit(model, {"X": X[b], "y": y[b]}, solver="lbfgs")
        assert one.solver == "lbfgs"
        # Two solvers, each stopped at |grad F|_inf <= 1e-9 of the mean loss: they agree to
        # about tol / (smallest Hessian eigenvalue ~ 0.2) = 5e-9.
        np.testing.assert_allclose(batched.params["beta"][b], one.params["beta"], atol=1e-8)


def test_any_optax_optimizer(diabetes):
    """A given optax transformation is used as is (here Adam on standardized OLS)."""
    X, y = diabetes
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    model, data = mm.glm(X, y, family=families.gaussian(sigma=1.0))
    est = mm.fit(model, data, method="mle", optimizer=optax.adam(0.05), max_steps=20_000,
                 tol=1e-7)
    assert est.solver == "optax" and est.converged
    coef = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    np.testing.assert_allclose(est.params["beta"], coef[1:], atol=1e-4)


# --------------------------------------------------------------------------------------------
# Bad input: clear errors before tracing
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_glm():
    X = np.random.default_rng(0).normal(size=(20, 2))
    return mm.glm(X, X[:, 0] + 0.1, family=families.gaussian())


@pytest.mark.parametrize(
    ("init", "match"),
    [
        ({"intercept": 0.0, "beta": np.zeros(2)}, r"missing \['sigma'\]"),
        ({"intercept": 0.0, "beta": np.zeros(2), "sigma": 1.0, "nu": 3.0}, r"unknown \['nu'\]"),
        ({"intercept": 0.0, "beta": np.zeros(3), "sigma": 1.0}, r"init\['beta'\] has shape"),
        ({"intercept": 0.0, "beta": np.zeros(2), "sigma": -1.0}, "outside the parameter's support"),
    ],
)
def test_bad_init(small_glm, init, match):
    model, data = small_glm
    with pytest.raises(ValueError, match=match):
        mm.fit(model, data, init=init)


def test_nonfinite_start_is_an_error():
    model = mm.Model(
        {"rate": mm.Param(constraint=constraints.positive)},
        lambda p, d: dist.Poisson(p["rate"] * d["x"]).log_prob(d["y"]),
    )
    data = {"x": jnp.array([0.0, 1.0]), "y": jnp.array([1.0, 2.0])}  # rate * 0 = 0, y = 1
    with pytest.raises(ValueError, match="initial point is -inf"):
        mm.fit(model, data)
    # Once the solver has run on these shapes, the check is its own value at the start: the
    # same error, single and batched.
    good = {"x": jnp.array([0.5, 1.0]), "y": jnp.array([1.0, 2.0])}
    assert mm.fit(model, good).converged
    with pytest.raises(ValueError, match="initial point is -inf"):
        mm.fit(model, data)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b, a]), good, data)
    for _ in range(2):  # cold, then warm
        with pytest.raises(ValueError, match="initial point is -inf"):
            mm.fit(model, stacked, batch="data")
    assert np.all(mm.fit(model, jax.tree.map(lambda a: jnp.stack([a, a, a]), good),
                         batch="data").converged)
    with pytest.raises(ValueError, match="initial point is -inf"):
        mm.fit(model, stacked, batch="data")


def test_bad_data_and_arguments(small_glm):
    model, data = small_glm
    bad = {"X": np.asarray(data["X"]).copy(), "y": np.asarray(data["y"])}
    bad["X"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"data\['X'\] has 1 NaN"):
        mm.fit(model, bad)
    with pytest.raises(ValueError, match="method must be"):
        mm.fit(model, data, method="ml")
    with pytest.raises(ValueError, match="jacobian=True needs method='map'"):
        mm.fit(model, data, method="mle", jacobian=True)
    with pytest.raises(ValueError, match="unknown parameter name"):
        mm.fit(model, data, priors={"gamma": dist.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match="batch must be"):
        mm.fit(model, data, batch="rows")
    with pytest.raises(ValueError, match="batch axis must be its leading axis"):
        mm.fit(model, data, priors={"beta": dist.Normal(0.0, 1.0)}, batch="priors")
    with pytest.raises(ValueError, match="0/1|binary|0 and 1|labels"):
        mm.glm(np.zeros((3, 1)), np.array([0.0, 2.0, 1.0]), family=families.bernoulli())


def test_centered_eight_schools_in_stans_order_is_not_called_converged():
    """With theta declared before (mu, tau), L-BFGS follows the curved ridge theta -> mu as
    tau -> 0 and stops on the relative change with a gradient of ~1e34: a stall, not a
    maximum (posteriordb's centered eight schools has no MAP)."""
    import json

    from conftest import POSTERIORDB

    folder = POSTERIORDB / "eight_schools-eight_schools_centered"
    if not folder.exists():
        pytest.skip(f"posteriordb references not found at {folder} (../shared is missing)")
    raw = json.loads((folder / "data.json").read_text())
    model = mm.Model(
        {"theta": mm.Param((8,), prior=lambda p: dist.Normal(p["mu"], p["tau"])),
         "mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
         "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0))},
        lambda p, d: dist.Normal(p["theta"], d["sigma"]).log_prob(d["y"]),
    )
    data = {"y": np.asarray(raw["y"], float), "sigma": np.asarray(raw["sigma"], float)}
    with pytest.warns(mm.FitWarning, match="stalled|grows without bound"):
        estimate = mm.fit(model, data)
    assert not estimate.converged
    assert estimate.result in (mm.Status.STALLED, mm.Status.UNBOUNDED)


# --------------------------------------------------------------------------------------------
# Truthful statuses (a stopped solver is not a model without a maximum; result is a Status)
# --------------------------------------------------------------------------------------------


def test_a_stopped_optimizer_is_not_a_model_without_a_maximum(cancer):
    """SGD stopped after 2 steps on a Bernoulli glm with a Normal(0, 1) prior: the maximum
    exists (the prior is proper), so the status is MAX_STEPS, not NO_MAXIMUM, and the message
    says nothing about separable classes."""
    X, y = cancer
    model, data = mm.glm(X, y, family=families.bernoulli(), prior=dist.Normal(0.0, 1.0))
    with pytest.warns(FitWarning, match="did not converge in 2 steps") as caught:
        est = mm.fit(model, data, optimizer=optax.sgd(1e-4), max_steps=2)
    assert est.result == Status.MAX_STEPS
    assert "separable" not in str(caught[0].message)


def test_result_is_always_a_status_member(rng):
    """A converged fit's result is Status.CONVERGED itself (.name works); a batch's is an
    array of members, failures included."""
    X = rng.normal(size=(40, 2))
    noisy = (X[:, 0] + rng.normal(size=40) > 0).astype(float)
    model, data = mm.glm(X, noisy, family=families.bernoulli())
    est = mm.fit(model, data, method="mle")
    assert isinstance(est.result, Status) and est.result.name == "CONVERGED"
    separable = (X[:, 0] > 0).astype(float)  # no MLE: the coefficient of X[:, 0] runs off
    stacked = {"X": np.stack([X, X]), "y": np.stack([noisy, separable])}
    with pytest.warns(FitWarning, match="1 of 2 fits"):
        batch = mm.fit(model, stacked, method="mle", batch="data")
    assert all(isinstance(r, Status) for r in batch.result)
    assert [r.name for r in batch.result] == ["CONVERGED", "NO_MAXIMUM"]
    np.testing.assert_array_equal(batch.converged, [True, False])


def test_gaussian_data_run_a_student_ts_nu_off_and_it_says_so(rng):
    """Student-t MLE on Gaussian data: the likelihood keeps rising as nu grows (the t tends to
    the Gaussian), so there is no finite maximum; the message speaks of nu and the Gaussian,
    and the reported log-likelihood is the true one there (scipy.stats.t), not rounding noise."""
    import scipy.stats

    X = rng.normal(size=(200, 1))
    y = 1.0 + 2.0 * X[:, 0] + rng.normal(size=200)
    model, data = mm.glm(X, y, family=families.student_t())
    with pytest.warns(FitWarning, match="nu has no finite maximum: the data look Gaussian"):
        est = mm.fit(model, data, method="mle")
    # nu = infinity is the Gaussian: a maximum on the boundary of nu's support, or none.
    assert est.result in (Status.BOUNDARY, Status.NO_MAXIMUM)
    p = {k: np.asarray(v) for k, v in model.constrain(jnp.asarray(est.position)).items()}
    expected = scipy.stats.t(p["nu"], p["intercept"] + X @ p["beta"], p["sigma"]).logpdf(y).sum()
    np.testing.assert_allclose(est.log_likelihood, expected, rtol=1e-10)


def test_lbfgs_on_raw_columns_hands_over_to_newton(rng):
    """A logistic regression with columns in units from 1e-2 to 1e4 (and offsets of five
    times that): L-BFGS alone crawls (1000 steps there); after its share of the steps the
    polish's Newton finishes, to statsmodels' answer. n is large enough that the Hessian is
    not cheap, so L-BFGS is the default."""
    import statsmodels.api as sm

    n, d = 30_000, 30
    scales = 10.0 ** rng.uniform(-2, 4, size=d)
    Z = rng.normal(size=(n, d))
    X = Z * scales + 5 * scales
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(Z @ (0.3 * rng.normal(size=d)))))) * 1.0
    model, data = mm.glm(X, y, family=families.bernoulli())
    est = mm.fit(model, data, method="mle")
    assert est.solver == "lbfgs" and est.converged and est.num_steps < 1000
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-12)
    error = np.abs(np.asarray(est.params["beta"]) - ref.params[1:])
    assert np.all(error <= 1e-7 * np.maximum(np.abs(ref.params[1:]), ref.bse[1:]))
