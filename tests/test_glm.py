"""glm(): parameter layout, log-likelihoods and estimates equal to statsmodels' (offsets,
exposure, frequency weights, binomial trials, negative binomial, beta, ordinal), and input
validation."""

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.special
import scipy.stats
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import mlemap as mm
from mlemap import families, priors

N, D = 50, 3


def _loglik(model, data, values):
    return float(jnp.sum(model.log_likelihood({k: jnp.asarray(v) for k, v in values.items()}, data)))


def test_gaussian_layout_and_loglik_equal_statsmodels(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    model, data = mm.glm(X, y, family=families.gaussian())
    assert list(model.params) == ["intercept", "beta", "sigma"]
    assert model.params["beta"].shape == (D,)
    assert data["X"].shape == (N, D) and data["y"].shape == (N,)
    b, w, sigma = 0.3, rng.normal(size=D), 1.4
    # statsmodels' OLS log-likelihood profiles sigma out; GLM(Gaussian) takes scale = sigma^2.
    reference = sm.GLM(y, sm.add_constant(X), family=sm.families.Gaussian()).loglike(
        np.r_[b, w], scale=sigma**2)
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w, "sigma": sigma}),
                               reference, rtol=1e-10)


def test_bernoulli_and_poisson_loglik_equal_statsmodels(rng):
    X = rng.normal(size=(N, D))
    b, w = -0.2, rng.normal(size=D) * 0.5
    y01 = rng.integers(0, 2, size=N)
    model, data = mm.glm(X, y01, family=families.bernoulli())
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w}),
                               sm.Logit(y01, sm.add_constant(X)).loglike(np.r_[b, w]), rtol=1e-10)
    counts = rng.poisson(2.0, size=N)
    model, data = mm.glm(X, counts, family=families.poisson())
    reference = sm.GLM(counts, sm.add_constant(X), family=sm.families.Poisson()).loglike(np.r_[b, w])
    np.testing.assert_allclose(_loglik(model, data, {"intercept": b, "beta": w}), reference,
                               rtol=1e-10)


def test_categorical_reference_class_equals_statsmodels_mnlogit(rng):
    """Under a flat prior class 0 is the reference, statsmodels MNLogit's convention."""
    X, y = rng.normal(size=(N, D)), rng.integers(0, 3, size=N)
    model, data = mm.glm(X, y, family=families.categorical())
    assert model.params["beta"].shape == (D, 2)
    assert model.params["intercept"].shape == (2,)
    coef = rng.normal(size=(D + 1, 2))  # statsmodels: rows const, x1..; columns classes 1, 2
    reference = sm.MNLogit(y, sm.add_constant(X)).loglike(coef.ravel(order="F"))
    values = {"intercept": coef[0], "beta": coef[1:]}
    np.testing.assert_allclose(_loglik(model, data, values), reference, rtol=1e-10)


def test_categorical_symmetric_under_a_proper_prior(rng):
    X, y = rng.normal(size=(N, D)), rng.integers(0, 3, size=N)
    model, _ = mm.glm(X, y, family=families.categorical(), prior=priors.from_logistic(1.0))
    assert model.params["beta"].shape == (D, 3)
    assert model.params["intercept"].shape == (2,)


def test_learned_nuisance_and_no_intercept(rng):
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    model, _ = mm.glm(X, y, family=families.student_t(), intercept=False,
                      prior=dist.Normal(0.0, 2.0))
    assert list(model.params) == ["beta", "nu", "sigma"]
    assert model.flat_names() == ["beta[0]", "beta[1]", "beta[2]", "nu", "sigma"]


BAD = [
    (dict(X=np.array([[1.0, np.nan]] * 3), y=[0.0, 1, 2]), ValueError, r"X holds 3 non-finite .* index \(0, 1\): nan"),
    (dict(X=np.ones((3, 2)), y=[0.0, np.inf, 2]), ValueError, r"y holds 1 non-finite"),
    (dict(X=np.ones(3), y=[0.0, 1, 2]), ValueError, r"X must be 2-D .* got shape \(3,\)"),
    (dict(X=np.ones((3, 2)), y=[0.0, 1]), ValueError, r"X has 3 rows, y has 2 entries"),
    (dict(X=np.ones((0, 2)), y=[]), ValueError, r"zero rows"),
    (dict(X=np.ones((3, 2)), y=np.ones((3, 1))), ValueError, r"y must be 1-D"),
    (dict(X=np.ones((3, 2)), y=[1, 2, 1], family=families.bernoulli()), ValueError,
     r"found the values \{1.0, 2.0\}"),
    (dict(X=np.ones((3, 2)), y=[-1, 1, 1], family=families.bernoulli()), ValueError,
     r"found the values \{-1.0, 1.0\}"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 0.5], family=families.categorical()), ValueError,
     r"integers 0..K-1"),
    (dict(X=np.ones((3, 2)), y=[0, -2, 1], family=families.poisson()), ValueError,
     r"non-negative integers"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 2], prior=dist.HalfNormal(1.0)), ValueError,
     r"does not cover the parameter's constraint"),
    (dict(X=np.ones((3, 2)), y=[0, 1, 2], family="gaussian"), TypeError,
     r"family must be an mlemap.families family"),
    (dict(X=[["a", "b"]] * 3, y=[0, 1, 2]), TypeError, r"X must be numeric"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD)
def test_bad_input_is_refused_with_a_clear_message(kwargs, error, message):
    kwargs = {"family": families.gaussian(), **kwargs}
    with pytest.raises(error, match=message):
        mm.glm(kwargs.pop("X"), kwargs.pop("y"), **kwargs)


# --------------------------------------------------------------------------------------------
# Offsets, exposure, weights; binomial trials; negative binomial, beta, ordinal
# --------------------------------------------------------------------------------------------


def _mle(model, data):
    est = mm.fit(model, data, method="mle")
    assert est.converged, est.message
    return est, mm.laplace(model, data, method="mle", mode=est)


def test_poisson_offset_exposure_and_frequency_weights_equal_statsmodels(rng):
    """``offset``, ``exposure`` and ``weights`` are statsmodels' ``offset``, ``exposure`` and
    ``freq_weights``: the same estimate, standard errors and log-likelihood."""
    n = 200
    X = rng.normal(size=(n, D))
    exposure, offset = rng.uniform(0.5, 3.0, n), rng.normal(size=n) * 0.3
    weights = rng.integers(0, 4, n).astype(float)
    y = rng.poisson(exposure * np.exp(0.2 + X @ np.array([0.3, -0.2, 0.1]) + offset))
    model, data = mm.glm(X, y, family=families.poisson(), offset=offset, exposure=exposure,
                         weights=weights)
    assert set(data) == {"X", "y", "offset", "weights"}
    np.testing.assert_allclose(data["offset"], offset + np.log(exposure), rtol=1e-15)
    est, approx = _mle(model, data)
    kept = weights > 0  # statsmodels' observed information divides by the weights
    res = sm.GLM(y[kept], sm.add_constant(X[kept]), family=sm.families.Poisson(),
                 offset=offset[kept], exposure=exposure[kept],
                 freq_weights=weights[kept]).fit(method="newton", tol=1e-14)
    np.testing.assert_allclose(np.r_[est.params["intercept"], est.params["beta"]], res.params,
                               rtol=1e-8)
    np.testing.assert_allclose(np.r_[approx.std_errors["intercept"], approx.std_errors["beta"]],
                               res.bse, rtol=1e-7)
    np.testing.assert_allclose(est.log_likelihood, res.llf, rtol=1e-10)
    # A weight of 2 is the row twice.
    twice = np.repeat(np.arange(n), weights.astype(int))
    copied, copied_data = mm.glm(X[twice], y[twice], family=families.poisson(),
                                 offset=(offset + np.log(exposure))[twice])
    np.testing.assert_allclose(mm.fit(copied, copied_data, method="mle").params["beta"],
                               est.params["beta"], rtol=1e-9)


def test_negative_binomial_fixed_alpha_with_exposure_equals_statsmodels_glm(rng):
    n = 300
    X = rng.normal(size=(n, D))
    exposure = rng.uniform(1.0, 4.0, n)
    mu = exposure * np.exp(0.5 + X @ np.array([0.4, -0.3, 0.0]))
    y = rng.negative_binomial(1 / 0.6, 1 / (1 + 0.6 * mu))
    model, data = mm.glm(X, y, family=families.negative_binomial(alpha=0.6), exposure=exposure)
    assert list(model.params) == ["intercept", "beta"]
    est, approx = _mle(model, data)
    res = sm.GLM(y, sm.add_constant(X), family=sm.families.NegativeBinomial(alpha=0.6),
                 exposure=exposure).fit(method="newton", tol=1e-14)
    np.testing.assert_allclose(np.r_[est.params["intercept"], est.params["beta"]], res.params,
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.r_[approx.std_errors["intercept"], approx.std_errors["beta"]],
                               res.bse, rtol=1e-6)
    np.testing.assert_allclose(est.log_likelihood, res.llf, rtol=1e-10)


def test_negative_binomial_learns_alpha_under_its_default_prior(rng):
    """alpha is learned with an Exponential(1) prior by default; method='mle' switches it
    off (the MLE equals statsmodels' NegativeBinomial, checked on randhie in
    test_real_data), method='map' adds log Exponential(1) = -alpha to the objective."""
    family = families.negative_binomial()
    assert isinstance(family.learned["alpha"].prior, dist.Exponential)
    assert families.negative_binomial(alpha_prior=None).learned["alpha"].prior is None
    X = rng.normal(size=(150, 2))
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(1.0 + X[:, 0])))
    model, data = mm.glm(X, y, family=family)
    mle, map_ = mm.fit(model, data, method="mle"), mm.fit(model, data)
    assert mle.converged and map_.converged
    assert map_.params["alpha"] < mle.params["alpha"]  # the prior pulls alpha towards 0
    np.testing.assert_allclose(map_.log_density - map_.log_likelihood,
                               scipy.stats.expon.logpdf(float(map_.params["alpha"])),
                               rtol=1e-12)


def test_binomial_trials_are_data_and_checked(rng):
    n = 60
    X = rng.normal(size=(n, 2))
    trials = rng.integers(1, 9, n)
    y = rng.binomial(trials, scipy.special.expit(X @ np.array([0.7, -0.4])))
    model, data = mm.glm(X, y, family=families.binomial(trials))
    np.testing.assert_array_equal(data["trials"], trials)
    est, _ = _mle(model, data)
    res = sm.GLM(np.column_stack([y, trials - y]), sm.add_constant(X),
                 family=sm.families.Binomial()).fit(method="newton", tol=1e-14)
    np.testing.assert_allclose(np.r_[est.params["intercept"], est.params["beta"]], res.params,
                               rtol=1e-8)
    np.testing.assert_allclose(est.log_likelihood, res.llf, rtol=1e-10)
    # The trials of the data given to fit are the ones used, and checked against y.
    other = dict(data, trials=jnp.asarray(trials + 3.0))
    assert mm.fit(model, other, method="mle").log_likelihood != est.log_likelihood
    with pytest.raises(ValueError, match="integers in 0..trials"):
        mm.fit(model, dict(data, trials=jnp.ones(n)))
    # A scalar number of trials is broadcast to the observations.
    _, data3 = mm.glm(X, np.minimum(y, 3), family=families.binomial(3))
    assert data3["trials"].shape == (n,)


def test_beta_regression_equals_statsmodels_betamodel_and_scipy(rng):
    """statsmodels' BetaModel (mean logit link, constant precision with a log link) by
    Newton; the log-likelihood is scipy's beta.logpdf summed at its estimate."""
    from statsmodels.othermod.betareg import BetaModel

    n = 300
    X = rng.normal(size=(n, D))
    mu = scipy.special.expit(0.3 + X @ np.array([0.5, -0.3, 0.1]))
    y = rng.beta(mu * 12, (1 - mu) * 12)
    model, data = mm.glm(X, y, family=families.beta())
    est, approx = _mle(model, data)
    sm_model = BetaModel(y, sm.add_constant(X))
    res = sm_model.fit(method="newton", start_params=sm_model.fit(disp=0).params,
                       maxiter=100, disp=0)
    coef, log_phi = np.asarray(res.params[:-1]), float(res.params[-1])
    np.testing.assert_allclose(np.r_[est.params["intercept"], est.params["beta"]], coef,
                               rtol=1e-7)
    np.testing.assert_allclose(est.params["precision"], np.exp(log_phi), rtol=1e-7)
    mean = scipy.special.expit(sm.add_constant(X) @ coef)
    llf = scipy.stats.beta(mean * np.exp(log_phi), (1 - mean) * np.exp(log_phi)).logpdf(y).sum()
    np.testing.assert_allclose(est.log_likelihood, llf, rtol=1e-10)
    np.testing.assert_allclose(np.r_[approx.std_errors["intercept"], approx.std_errors["beta"]],
                               np.asarray(res.bse[:-1]), rtol=1e-6)
    # the precision's standard error: statsmodels' for log(phi), by the delta method
    np.testing.assert_allclose(approx.std_errors["precision"], np.exp(log_phi) * res.bse[-1],
                               rtol=1e-6)


def test_ordinal_equals_statsmodels_ordered_model_on_anes96():
    """Party identification (7 ordered classes) in anes96: statsmodels' OrderedModel(distr=
    "logit"), BFGS then Newton (statsmodels' derivatives are numerical: its estimate is good
    to about 1e-8, the tolerances below). Its thresholds are the first cut point and the log
    increments; the cut points and their standard errors follow by the delta method."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    ds = sm.datasets.anes96.load_pandas()
    X, y = ds.exog.to_numpy(float), ds.endog.to_numpy(float)
    model, data = mm.glm(X, y, family=families.ordinal())
    assert list(model.params) == ["beta", "cutpoints"]
    assert model.params["cutpoints"].shape == (6,)
    est, approx = _mle(model, data)
    sm_model = OrderedModel(y, X, distr="logit")
    with warnings.catch_warnings():
        # statsmodels' fits with numerical derivatives stop on its own tolerance
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = sm_model.fit(method="bfgs", maxiter=5000, gtol=1e-10, disp=0).params
        res = sm_model.fit(method="newton", start_params=start, maxiter=100, disp=0)
    d = X.shape[1]
    params = np.asarray(res.params)
    cuts = sm_model.transform_threshold_params(params)[1:-1]
    np.testing.assert_allclose(est.params["beta"], params[:d], rtol=1e-6)
    np.testing.assert_allclose(est.params["cutpoints"], cuts, rtol=1e-7)
    np.testing.assert_allclose(est.log_likelihood, res.llf, rtol=1e-11)
    np.testing.assert_allclose(approx.std_errors["beta"], np.asarray(res.bse)[:d], rtol=1e-5)
    jacobian = np.zeros((6, 6))  # d cuts / d (c0, log increments)
    jacobian[:, 0] = 1.0
    for k in range(1, 6):
        jacobian[k:, k] = np.exp(params[d + k])
    cov = jacobian @ np.asarray(res.cov_params())[d:, d:] @ jacobian.T
    np.testing.assert_allclose(approx.std_errors["cutpoints"], np.sqrt(np.diag(cov)), rtol=1e-5)


def test_binomial_trials_must_be_positive_integers():
    with pytest.raises(ValueError, match=r"trials must be positive integers; found \{0.5\}"):
        families.binomial([1, 2, 2, 0.5])


def test_ordinal_refuses_an_intercept(rng):
    X, y = rng.normal(size=(30, 2)), np.arange(30) % 3
    with pytest.raises(ValueError, match="ordinal models have no intercept"):
        mm.glm(X, y, family=families.ordinal(), intercept=True)
    model, _ = mm.glm(X, y, family=families.ordinal(), intercept=False)
    assert "intercept" not in model.params


BAD_GLM = [
    (dict(family=families.categorical(), offset=np.zeros(4)), r"categorical models take no offset"),
    (dict(family=families.poisson(), exposure=[1.0, 0.0, 1.0, 1.0]), r"exposure must be positive"),
    (dict(family=families.poisson(), weights=[1.0, -1.0, 1.0, 1.0]), r"weights must be non-negative"),
    (dict(family=families.poisson(), weights=np.ones(3)), r"weights must hold one value per obs"),
    (dict(family=families.poisson(), offset=[0.0, np.nan, 0, 0]), r"offset holds 1 non-finite"),
    (dict(family=families.binomial(1)), r"integers in 0..trials; 1 of 4 are not, the first at index 2: y = 2 with trials = 1"),
    (dict(family=families.negative_binomial(), y=[0, 1, -1, 2]), r"negative_binomial counts"),
    (dict(family=families.beta(), y=[0.1, 0.5, 1.0, 0.2]), r"strictly between 0 and 1"),
    (dict(family=families.ordinal(), y=[0, 1, 3, 1]), r"ordinal labels must be 0..K-1 with every"),
]


@pytest.mark.parametrize("kwargs,message", BAD_GLM)
def test_bad_glm_input_says_what_was_found(kwargs, message):
    y = kwargs.pop("y", [0, 1, 2, 1])
    with pytest.raises(ValueError, match=message):
        mm.glm(np.arange(8.0).reshape(4, 2), y, **kwargs)


# --------------------------------------------------------------------------------------------
# Named coefficients
# --------------------------------------------------------------------------------------------


def test_dataframe_columns_name_the_coefficients_everywhere():
    """spector as a DataFrame: beta's entries are named by the columns in flat_names, in the
    Laplace draws (ArviZ dims and coords) and in arviz_stats.summary's rows; the numbers are
    those of the unnamed model on the same arrays."""
    import arviz_stats

    ds = sm.datasets.spector.load_pandas()
    model, data = mm.glm(ds.exog, ds.endog, family=families.bernoulli())
    assert model.flat_names() == ["intercept", "beta[GPA]", "beta[TUCE]", "beta[PSI]"]
    assert model.params["beta"].dims == ("coef",)
    assert model.coords == {"coef": ["GPA", "TUCE", "PSI"]}
    approx = mm.laplace(model, data, method="mle")
    beta = approx.draws["posterior"]["beta"]
    assert beta.dims == ("chain", "draw", "coef")
    assert list(beta["coef"].values) == ["GPA", "TUCE", "PSI"]
    rows = list(arviz_stats.summary(approx.draws, kind="stats").index)
    assert sorted(rows) == sorted(model.flat_names())
    unnamed, unnamed_data = mm.glm(ds.exog.to_numpy(), ds.endog.to_numpy(),
                                   family=families.bernoulli())
    assert unnamed.params["beta"].dims is None and unnamed.coords == {}
    assert unnamed.flat_names() == ["intercept", "beta[0]", "beta[1]", "beta[2]"]
    other = mm.laplace(unnamed, unnamed_data, method="mle")
    np.testing.assert_array_equal(approx.std_errors["beta"], other.std_errors["beta"])
    named, _ = mm.glm(ds.exog.to_numpy(), ds.endog.to_numpy(), family=families.bernoulli(),
                      names=["gpa", "tuce", "psi"])
    assert named.flat_names() == ["intercept", "beta[gpa]", "beta[tuce]", "beta[psi]"]


def test_class_and_cut_point_axes_are_named(rng):
    X = rng.normal(size=(60, 2))
    y = np.arange(60) % 3
    model, _ = mm.glm(X, y, family=families.categorical(), names=["a", "b"])
    assert model.params["beta"].dims == ("coef", "class")
    assert model.flat_names()[:4] == ["intercept[1]", "intercept[2]", "beta[a,1]", "beta[a,2]"]
    model, _ = mm.glm(X, y, family=families.categorical(), names=["a", "b"],
                      prior=dist.Normal(0.0, 1.0))
    assert model.params["beta"].dims == ("coef", "class_all")
    assert "beta[b,0]" in model.flat_names()
    model, _ = mm.glm(X, y, family=families.ordinal(), names=["a", "b"])
    assert model.flat_names() == ["beta[a]", "beta[b]", "cutpoints[0/1]", "cutpoints[1/2]"]


@pytest.mark.parametrize("names,message", [
    (["a"], r"names has 1 entries but X has 3 columns"),
    (["a", "a", "b"], r"names must be unique; \['a'\]"),
    ("abc", r"names must be a sequence of strings"),
])
def test_bad_names(rng, names, message):
    with pytest.raises((ValueError, TypeError), match=message):
        mm.glm(rng.normal(size=(10, 3)), rng.normal(size=10), family=families.gaussian(),
               names=names)
