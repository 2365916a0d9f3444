"""predict(): the mean response at new rows against statsmodels' and scikit-learn's
predict / predict_proba (at their own estimates, passed as values, and end to end after a
fit), and posterior predictive draws for every glm family against the family's mean."""

import warnings

import arviz_base
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
import scipy.special
import statsmodels.api as sm
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

import mlemap as mm
from mlemap import families, priors


def _split(params):
    """statsmodels' [const, x1..] as mlemap's intercept and beta."""
    params = np.asarray(params, float)
    return {"intercept": params[0], "beta": params[1:]}


# --------------------------------------------------------------------------------------------
# The mean response at given parameter values, against statsmodels' predict there
# --------------------------------------------------------------------------------------------


def test_logit_and_binomial_probabilities_equal_statsmodels():
    ds = sm.datasets.spector.load_pandas()
    model, _ = mm.glm(ds.exog, ds.endog, family=families.bernoulli())
    res = sm.Logit(ds.endog, sm.add_constant(ds.exog)).fit(disp=0)
    new = ds.exog.iloc[::3]
    np.testing.assert_allclose(mm.predict(_split(res.params), new, model=model),
                               res.predict(sm.add_constant(ds.exog).iloc[::3]), rtol=1e-12)
    ds = sm.datasets.star98.load_pandas()
    trials = ds.endog["NABOVE"] + ds.endog["NBELOW"]
    model, _ = mm.glm(ds.exog, ds.endog["NABOVE"], family=families.binomial(trials))
    res = sm.GLM(ds.endog[["NABOVE", "NBELOW"]], sm.add_constant(ds.exog),
                 family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(mm.predict(_split(res.params), ds.exog, model=model),
                               res.predict(sm.add_constant(ds.exog)), rtol=1e-12)


def test_poisson_rates_with_exposure_and_offset_equal_statsmodels(rng):
    n = 80
    X = rng.normal(size=(n, 2))
    exposure, offset = rng.uniform(1, 3, n), rng.normal(size=n) * 0.2
    y = rng.poisson(exposure * np.exp(0.3 + X @ np.array([0.2, -0.4]) + offset))
    model, _ = mm.glm(X, y, family=families.poisson(), exposure=exposure, offset=offset)
    res = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson(), exposure=exposure,
                 offset=offset).fit()
    X_new, e_new, o_new = rng.normal(size=(5, 2)), rng.uniform(1, 3, 5), rng.normal(size=5)
    np.testing.assert_allclose(
        mm.predict(_split(res.params), X_new, model=model, exposure=e_new, offset=o_new),
        res.predict(sm.add_constant(X_new), exposure=e_new, offset=o_new), rtol=1e-12)
    with pytest.raises(ValueError, match="fitted with an offset"):
        mm.predict(_split(res.params), X_new, model=model)


def test_negative_binomial_and_gamma_means_equal_statsmodels():
    ds = sm.datasets.randhie.load_pandas()
    X, y = ds.exog.iloc[:2000], ds.endog.iloc[:2000]
    model, _ = mm.glm(X, y, family=families.negative_binomial())
    res = sm.NegativeBinomial(y, sm.add_constant(X)).fit(disp=0, maxiter=200)
    values = {**_split(res.params[:-1]), "alpha": float(res.params.iloc[-1])}
    np.testing.assert_allclose(mm.predict(values, X.iloc[:50], model=model),
                               res.predict(sm.add_constant(X).iloc[:50]), rtol=1e-12)
    ds = sm.datasets.scotland.load_pandas()
    for link, sm_link in (("log", sm.families.links.Log()),
                          ("inverse", sm.families.links.InversePower())):
        model, _ = mm.glm(ds.exog, ds.endog, family=families.gamma(link))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' DomainWarning on the inverse link
            res = sm.GLM(ds.endog, sm.add_constant(ds.exog),
                         family=sm.families.Gamma(link=sm_link)).fit()
        values = {**_split(res.params), "shape": 1.0 / res.scale}
        np.testing.assert_allclose(mm.predict(values, ds.exog, model=model),
                                   res.predict(sm.add_constant(ds.exog)), rtol=1e-12)


def test_beta_mean_and_ordinal_probabilities_equal_statsmodels(rng):
    from statsmodels.miscmodels.ordinal_model import OrderedModel
    from statsmodels.othermod.betareg import BetaModel

    X = rng.normal(size=(100, 2))
    y = rng.beta(3.0, 4.0, size=100)
    model, _ = mm.glm(X, y, family=families.beta())
    res = BetaModel(y, sm.add_constant(X)).fit(disp=0)
    values = {**_split(res.params[:-1]), "precision": np.exp(res.params[-1])}
    X_new = rng.normal(size=(7, 2))
    np.testing.assert_allclose(mm.predict(values, X_new, model=model),
                               res.predict(sm.add_constant(X_new)), rtol=1e-12)
    ds = sm.datasets.anes96.load_pandas()
    model, _ = mm.glm(ds.exog, ds.endog, family=families.ordinal())
    om = OrderedModel(ds.endog.to_numpy(), ds.exog.to_numpy(), distr="logit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' ConvergenceWarning: not the point here
        res = om.fit(method="bfgs", disp=0, maxiter=2000)
    d = ds.exog.shape[1]
    values = {"beta": np.asarray(res.params[:d]),
              "cutpoints": om.transform_threshold_params(np.asarray(res.params))[1:-1]}
    np.testing.assert_allclose(mm.predict(values, ds.exog.iloc[:40], model=model),
                               res.predict(ds.exog.to_numpy()[:40]), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# End to end: fit, then predict, against scikit-learn
# --------------------------------------------------------------------------------------------


def test_fit_then_predict_equals_sklearn():
    X, y = load_diabetes(return_X_y=True)
    model, data = mm.glm(X, y, family=families.gaussian())
    estimate = mm.fit(model, data, method="mle")
    np.testing.assert_allclose(mm.predict(estimate, X[:20]),
                               LinearRegression().fit(X, y).predict(X[:20]), rtol=1e-8)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model, data = mm.glm(X, y, family=families.categorical(), prior=priors.from_logistic(1.0))
    estimate = mm.fit(model, data)
    sk = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(mm.predict(estimate, X[::10]), sk.predict_proba(X[::10]),
                               rtol=1e-6, atol=1e-10)
    approx = mm.laplace(model, data)
    np.testing.assert_allclose(mm.predict(approx, X[:3]),
                               mm.predict(approx.mode, X[:3]), rtol=1e-15)


# --------------------------------------------------------------------------------------------
# Posterior predictive draws, every family
# --------------------------------------------------------------------------------------------

S = 4000  # predictive draws at one parameter value: means within 5 Monte Carlo errors
ROWS = np.array([[-0.5, 0.3], [0.2, -0.1], [0.8, 0.6]])


def _case(name, rng):
    X = rng.normal(size=(200, 2))
    eta = 0.4 + X @ np.array([0.6, -0.5])
    mu = scipy.special.expit(eta)
    make = {
        "gaussian": (families.gaussian(), eta + rng.normal(size=200)),
        "laplace": (families.laplace(), eta + rng.laplace(size=200)),
        "student_t": (families.student_t(nu=4.0), eta + rng.standard_t(4, size=200)),
        "bernoulli": (families.bernoulli(), (rng.uniform(size=200) < mu).astype(float)),
        "binomial": (families.binomial(5), rng.binomial(5, mu)),
        "poisson": (families.poisson(), rng.poisson(np.exp(eta))),
        "negative_binomial": (families.negative_binomial(),
                              rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta)))),
        "gamma": (families.gamma("log"), rng.gamma(3.0, np.exp(eta) / 3.0)),
        "beta": (families.beta(), rng.beta(mu * 8, (1 - mu) * 8)),
        "categorical": (families.categorical(), rng.integers(0, 3, 200)),
        "ordinal": (families.ordinal(), np.digitize(eta + rng.logistic(size=200), [0.0, 1.0])),
    }
    family, y = make[name]
    return mm.glm(X, y, family=family)


@pytest.mark.parametrize("name", ["gaussian", "laplace", "student_t", "bernoulli", "binomial",
                                  "poisson", "negative_binomial", "gamma", "beta",
                                  "categorical", "ordinal"])
def test_predictive_draws_of_every_family_have_the_predicted_mean(name, rng):
    """A posterior of S identical draws (the MLE): the predictive draws are S independent
    draws of the family at the MLE, whose average must be the point prediction (within 5
    Monte Carlo standard errors); for classes, the frequency of each class its probability."""
    model, data = _case(name, rng)
    with warnings.catch_warnings():
        # Least absolute deviations stop at a kink short of the gradient test: the point is
        # a fine value to predict at all the same.
        warnings.simplefilter("ignore" if name == "laplace" else "error", mm.FitWarning)
        estimate = mm.fit(model, data, method="mle")
    assert estimate.converged or name == "laplace", estimate.message
    point = mm.predict(estimate, ROWS)
    posterior = arviz_base.from_dict({"posterior": {
        k: np.broadcast_to(np.asarray(v), (1, S) + np.shape(v)) for k, v in estimate.params.items()}})
    tree = mm.predict(posterior, ROWS, model=model, trials=5, seed=3)
    y = tree["predictions"]["y"].values.reshape(S, len(ROWS))
    np.testing.assert_allclose(tree["predictions"]["mean"].values[0, 0], point, rtol=1e-12)
    if name in ("categorical", "ordinal"):
        frequency = np.stack([(y == k).mean(0) for k in range(point.shape[1])], axis=1)
        error = np.sqrt(point * (1 - point) / S)
        assert np.all(np.abs(frequency - point) <= 5 * error + 1e-12), (frequency, point)
        return
    scale = 5 if name == "binomial" else 1  # binomial draws are counts of 5 trials
    assert np.all(np.abs(y.mean(0) / scale - point) <= 5 * y.std(0) / scale / np.sqrt(S)), (
        y.mean(0) / scale, point)


def test_predictive_from_a_sampled_posterior(rng):
    ds = sm.datasets.spector.load_pandas()
    X = (ds.exog - ds.exog.mean()) / ds.exog.std()  # standardized columns: quick mixing
    model, data = mm.glm(X, ds.endog, family=families.bernoulli(), prior=dist.Normal(0.0, 5.0))
    posterior = mm.sample(model, data, num_warmup=500, num_samples=500, num_chains=2,
                          progress_bar=False)
    tree = mm.predict(posterior, X.iloc[:4], model=model)
    assert tree["predictions"]["y"].dims == ("chain", "draw", "obs")
    assert tree["predictions"]["y"].shape == (2, 500, 4)
    assert set(np.unique(tree["predictions"]["y"].values)) <= {0, 1}
    draw = posterior["posterior"].isel(chain=1, draw=7)
    values = {k: draw[k].values for k in model.params}
    np.testing.assert_allclose(tree["predictions"]["mean"].values[1, 7],
                               mm.predict(values, X.iloc[:4], model=model), rtol=1e-12)
    assert list(tree["predictions_constant_data"]["coef"].values) == ["GPA", "TUCE", "PSI"]


def test_predict_refuses_what_it_cannot_do(rng):
    X, y = rng.normal(size=(30, 2)), rng.integers(0, 4, 30)
    model, data = mm.glm(X, y, family=families.binomial(3), names=["a", "b"])
    estimate = mm.fit(model, data, method="mle")
    posterior = arviz_base.from_dict({"posterior": {k: np.asarray(v)[None, None] for k, v in
                                                    estimate.params.items()}})
    with pytest.raises(ValueError, match="need the new rows' numbers of trials"):
        mm.predict(posterior, X, model=model)
    with pytest.raises(ValueError, match="needs the model"):
        mm.predict(posterior, X)
    with pytest.raises(ValueError, match=r"X_new lacks the model's columns \['b'\]"):
        mm.predict(estimate, pd.DataFrame({"a": X[:, 0]}))
    with pytest.raises(ValueError, match="X_new has 3 columns"):
        mm.predict(estimate, np.ones((2, 3)))
    own = mm.Model({"m": mm.Param()}, lambda p, d: dist.Normal(p["m"], 1.0).log_prob(d["y"]))
    with pytest.raises(TypeError, match="needs a model made by mm.glm"):
        mm.predict({"m": 0.0}, X, model=own)
