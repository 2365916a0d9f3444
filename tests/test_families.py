"""Likelihood families against scipy.stats, and each NLL as an affine function of its loss.

The losses come from optax (squared error, sigmoid binary and softmax cross-entropy, the
binomial's log loss of the proportion), scikit-learn (Poisson and Gamma deviances, the log
loss of ordinal class probabilities), statsmodels (the negative binomial deviance) and scipy
(the beta log-loss, from ``betaln``); the log-densities from scipy.stats.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats
import statsmodels.api as sm
from sklearn.metrics import log_loss, mean_gamma_deviance, mean_poisson_deviance

from mlemap import families

N = 40
TRIALS = np.arange(N) % 7 + 1.0  # binomial trials, 1..7
CUTS = np.array([-1.2, 0.3, 1.9])  # ordinal cut points, 4 classes


def _ordinal_probs(eta, cuts=CUTS):
    """Class probabilities of the cumulative logit, by scipy: diff of expit(c_k - eta)."""
    cumulative = scipy.special.expit(cuts[None, :] - np.asarray(eta)[:, None])
    padded = np.concatenate([np.zeros((len(eta), 1)), cumulative, np.ones((len(eta), 1))], 1)
    return np.diff(padded, axis=1)


def _data(rng, name, link=None):
    if name == "binomial":
        eta = rng.normal(size=N) * 2
        return eta, rng.binomial(TRIALS.astype(int), scipy.special.expit(eta)).astype(float)
    if name == "negative_binomial":
        eta = rng.normal(size=N)
        return eta, rng.negative_binomial(1 / 0.7, 1 / (1 + 0.7 * np.exp(eta))).astype(float)
    if name == "beta":
        eta = rng.normal(size=N)
        mu = scipy.special.expit(eta)
        return eta, rng.beta(mu * 4.5, (1 - mu) * 4.5)
    if name == "ordinal":
        eta = rng.normal(size=N) * 2
        return eta, np.array([rng.choice(4, p=p) for p in _ordinal_probs(eta)])
    if name == "gamma":  # means in (1, 5); the inverse link's eta = 1 / mu is positive
        mu = rng.uniform(1.0, 5.0, size=N)
        eta = 1.0 / mu if link == "inverse" else np.log(mu)
        return eta, rng.gamma(2.5, mu / 2.5)
    eta = rng.normal(size=N) * 2
    if name in ("gaussian", "laplace", "student_t"):
        return eta, eta + rng.normal(size=N) * 1.5
    if name == "bernoulli":
        return eta, rng.integers(0, 2, size=N).astype(float)
    if name == "poisson":
        return eta, rng.poisson(3.0, size=N).astype(float)
    eta = rng.normal(size=(N, 4)) * 2
    return eta, rng.integers(0, 4, size=N)


CASES = {
    # name: (family, nuisance values, scipy log-density of (eta, y))
    "gaussian": (families.gaussian(), {"sigma": 1.7},
                 lambda eta, y: scipy.stats.norm(eta, 1.7).logpdf(y)),
    "gaussian_fixed": (families.gaussian(sigma=0.6), {},
                       lambda eta, y: scipy.stats.norm(eta, 0.6).logpdf(y)),
    "laplace": (families.laplace(), {"sigma": 0.8},
                lambda eta, y: scipy.stats.laplace(eta, 0.8).logpdf(y)),
    "student_t": (families.student_t(), {"nu": 3.5, "sigma": 1.2},
                  lambda eta, y: scipy.stats.t(3.5, eta, 1.2).logpdf(y)),
    "student_t_fixed": (families.student_t(nu=5.0, sigma=2.0), {},
                        lambda eta, y: scipy.stats.t(5.0, eta, 2.0).logpdf(y)),
    "bernoulli": (families.bernoulli(), {},
                  lambda eta, y: scipy.stats.bernoulli(scipy.special.expit(eta)).logpmf(y)),
    "categorical": (families.categorical(), {},
                    lambda eta, y: np.log(scipy.special.softmax(eta, axis=1)[np.arange(N), y])),
    "poisson": (families.poisson(), {},
                lambda eta, y: scipy.stats.poisson(np.exp(eta)).logpmf(y)),
    "gamma_inverse": (families.gamma("inverse"), {"shape": 2.5},
                      lambda eta, y: scipy.stats.gamma(a=2.5, scale=1.0 / eta / 2.5).logpdf(y)),
    "gamma_log": (families.gamma("log"), {"shape": 2.5},
                  lambda eta, y: scipy.stats.gamma(a=2.5, scale=np.exp(eta) / 2.5).logpdf(y)),
    "gamma_fixed": (families.gamma("log", shape=0.7), {},
                    lambda eta, y: scipy.stats.gamma(a=0.7, scale=np.exp(eta) / 0.7).logpdf(y)),
    "binomial": (families.binomial(TRIALS), {},
                 lambda eta, y: scipy.stats.binom(TRIALS, scipy.special.expit(eta)).logpmf(y)),
    # NB2: scipy's nbinom(n, p) with n = 1/alpha, p = n / (n + mu)
    "negative_binomial": (families.negative_binomial(), {"alpha": 0.7},
                          lambda eta, y: scipy.stats.nbinom(
                              1 / 0.7, (1 / 0.7) / (1 / 0.7 + np.exp(eta))).logpmf(y)),
    "negative_binomial_fixed": (families.negative_binomial(alpha=0.7), {},
                                lambda eta, y: scipy.stats.nbinom(
                                    1 / 0.7, (1 / 0.7) / (1 / 0.7 + np.exp(eta))).logpmf(y)),
    "beta": (families.beta(), {"precision": 4.5},
             lambda eta, y: scipy.stats.beta(scipy.special.expit(eta) * 4.5,
                                             scipy.special.expit(-eta) * 4.5).logpdf(y)),
    "ordinal": (families.ordinal(), {"cutpoints": CUTS},
                lambda eta, y: np.log(_ordinal_probs(eta)[np.arange(N), y])),
}


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", CASES)
def test_log_prob_equals_scipy(case, use_jit, rng):
    family, nuisance, reference = CASES[case]
    eta, y = _data(rng, family.name, family.link)
    f = lambda e, t, nu: family.log_prob(e, t, nu)  # noqa: E731
    f = jax.jit(f) if use_jit else f
    np.testing.assert_allclose(f(jnp.asarray(eta), jnp.asarray(y), nuisance),
                               reference(eta, y), rtol=1e-10)


def _student_t_loss(eta, y, nu, sigma):
    return (nu + 1) / 2 * np.log1p(((y - eta) / sigma) ** 2 / nu)


# name: (family, nuisance, outside loss (eta, y), slope, constant (y)) — slope and constant
# as written in the families module's docstring.
AFFINE = {
    "gaussian": (families.gaussian(), {"sigma": 1.7},
                 lambda eta, y: optax.losses.squared_error(eta, y),
                 1 / (2 * 1.7**2), lambda y: np.log(1.7) + 0.5 * np.log(2 * np.pi)),
    "laplace": (families.laplace(), {"sigma": 0.8}, lambda eta, y: np.abs(y - eta),
                1 / 0.8, lambda y: np.log(2 * 0.8)),
    "student_t": (families.student_t(), {"nu": 3.5, "sigma": 1.2},
                  lambda eta, y: _student_t_loss(eta, y, 3.5, 1.2), 1.0,
                  lambda y: np.log(1.2) + 0.5 * np.log(3.5 * np.pi)
                  + scipy.special.gammaln(1.75) - scipy.special.gammaln(2.25)),
    "bernoulli": (families.bernoulli(), {},
                  lambda eta, y: optax.losses.sigmoid_binary_cross_entropy(eta, y), 1.0,
                  lambda y: 0.0),
    "categorical": (families.categorical(), {},
                    lambda eta, y: optax.losses.softmax_cross_entropy_with_integer_labels(eta, y),
                    1.0, lambda y: 0.0),
    "poisson": (families.poisson(), {},
                # half of scikit-learn's unit Poisson deviance, observation by observation
                lambda eta, y: np.array([
                    mean_poisson_deviance([yi], [np.exp(ei)]) / 2 for ei, yi in zip(eta, y)]),
                1.0, lambda y: scipy.special.gammaln(y + 1) - scipy.special.xlogy(y, y) + y),
    "gamma": (families.gamma("log"), {"shape": 2.5},
              # half of scikit-learn's unit Gamma deviance, observation by observation
              lambda eta, y: np.array([
                  mean_gamma_deviance([yi], [np.exp(ei)]) / 2 for ei, yi in zip(eta, y)]),
              2.5, lambda y: scipy.special.gammaln(2.5) - 2.5 * np.log(2.5) + 2.5 + np.log(y)),
    "binomial": (families.binomial(TRIALS), {},
                 # optax's log loss of the observed proportion, times the trials
                 lambda eta, y: optax.losses.sigmoid_binary_cross_entropy(eta, y / TRIALS),
                 TRIALS, lambda y: -np.log(scipy.special.comb(TRIALS, y))),
    "negative_binomial": (families.negative_binomial(), {"alpha": 0.7},
                          # half of statsmodels' NB2 unit deviance (its resid_dev squared)
                          lambda eta, y: sm.families.NegativeBinomial(alpha=0.7).resid_dev(
                              np.asarray(y), np.exp(np.asarray(eta))) ** 2 / 2,
                          1.0, lambda y: (scipy.special.gammaln(y + 1)
                                          + scipy.special.gammaln(1 / 0.7)
                                          - scipy.special.gammaln(y + 1 / 0.7)
                                          - np.log(1 / 0.7) / 0.7 - scipy.special.xlogy(y, y)
                                          + (y + 1 / 0.7) * np.log(y + 1 / 0.7))),
    "beta": (families.beta(), {"precision": 4.5},
             # log B(mu phi, (1 - mu) phi) - mu phi logit(y), by scipy
             lambda eta, y: (scipy.special.betaln(scipy.special.expit(eta) * 4.5,
                                                  scipy.special.expit(-eta) * 4.5)
                             - scipy.special.expit(eta) * 4.5 * scipy.special.logit(y)),
             1.0, lambda y: np.log(y) + np.log1p(-y) - 4.5 * np.log1p(-y)),
    "ordinal": (families.ordinal(), {"cutpoints": CUTS},
                # scikit-learn's log loss of the class probabilities, observation by observation
                lambda eta, y: np.array([
                    log_loss([yi], [p], labels=range(4)) for p, yi in
                    zip(_ordinal_probs(np.asarray(eta)), np.asarray(y))]),
                1.0, lambda y: 0.0),
}


@pytest.mark.parametrize("case", AFFINE)
def test_negative_log_likelihood_is_affine_in_the_loss(case, rng):
    family, nuisance, outside_loss, slope, constant = AFFINE[case]
    eta, y = _data(rng, family.name, family.link)
    nll = -np.asarray(family.log_prob(jnp.asarray(eta), jnp.asarray(y), nuisance))
    loss = np.asarray(outside_loss(jnp.asarray(eta), jnp.asarray(y)))
    np.testing.assert_allclose(nll, slope * loss + constant(y), rtol=1e-9, atol=1e-12)
    # The family's own loss and its (slope, constant) are the same.
    np.testing.assert_allclose(family.loss(jnp.asarray(eta), jnp.asarray(y), nuisance), loss,
                               rtol=1e-9, atol=1e-12)
    own_slope, own_constant = family.loss_affine(jnp.asarray(y), nuisance)
    np.testing.assert_allclose(own_slope, slope, rtol=1e-12)
    np.testing.assert_allclose(np.broadcast_to(own_constant, y.shape),
                               np.broadcast_to(constant(y), y.shape), rtol=1e-10)


def test_fixed_and_learned_nuisance_parameters():
    assert set(families.gaussian().learned) == {"sigma"}
    assert families.gaussian(sigma=1.0).learned == {}
    assert set(families.laplace().learned) == {"sigma"}
    assert set(families.student_t().learned) == {"nu", "sigma"}
    assert set(families.student_t(nu=4.0).learned) == {"sigma"}
    assert families.student_t(nu=4.0, sigma=1.0).fixed == {"nu": 4.0, "sigma": 1.0}
    assert families.bernoulli().link == "logit"
    assert families.categorical().link == "softmax"
    assert families.poisson().link == "log"
    assert repr(families.gaussian(sigma=2.0)) == "gaussian(sigma=2)"


@pytest.mark.parametrize("make", [
    lambda: families.gaussian(sigma=0.0),
    lambda: families.gaussian(sigma=-1.0),
    lambda: families.laplace(scale=float("nan")),
    lambda: families.student_t(nu=-2.0),
])
def test_fixed_scale_must_be_positive(make):
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        make()


def test_fixed_scale_with_a_prior_is_ambiguous():
    import numpyro.distributions as dist
    with pytest.raises(ValueError, match="fixed at 1.0 and also given a prior"):
        families.gaussian(sigma=1.0, sigma_prior=dist.HalfNormal(1.0))


@pytest.mark.parametrize("family,y,message", [
    (families.bernoulli(), [1, 2, 2, 1], r"0 or 1; found the values \{1.0, 2.0\}"),
    (families.bernoulli(), [-1, 1, 1], r"0 or 1; found the values \{-1.0, 1.0\}"),
    (families.categorical(), [0, 1, 2.5], r"integers 0..K-1; found the values"),
    (families.categorical(), [0, -1, 2], r"integers 0..K-1"),
    (families.categorical(num_classes=3), [0, 1, 3], r"labels up to 3"),
    (families.categorical(), [0, 0, 0], r"at least 2 classes"),
    (families.poisson(), [0, 3, -1], r"non-negative integers; found the values \{-1.0\}"),
    (families.poisson(), [0, 1.5, 2], r"non-negative integers; found the values \{1.5\}"),
    (families.gaussian(), [0.0, np.nan], r"non-finite"),
    (families.binomial(2), [0, 3, 1], r"integers in 0..trials; 1 of 3 are not"),
    (families.negative_binomial(), [0, 1.5], r"negative_binomial counts must be non-negative"),
    (families.beta(), [0.0, 0.5], r"strictly between 0 and 1; found 1 value"),
    (families.ordinal(), [0, 1, 3], r"ordinal labels must be 0..K-1 with every class"),
    (families.ordinal(num_classes=3), [0, 1, 3], r"labels up to 3"),
])
def test_label_validation_says_what_was_found(family, y, message):
    with pytest.raises(ValueError, match=message):
        family.validate(np.asarray(y, dtype=float))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_logits_stay_finite(dtype):
    """|eta| = 1e3: the log-likelihood is the exact -|eta| (or 0) and its gradient is finite,
    in float32 as in float64 (no log(sigmoid) underflow)."""
    eta = jnp.array([-1e3, 1e3, -1e3, 1e3], dtype)
    y = jnp.array([0, 0, 1, 1], dtype)
    bern = families.bernoulli()
    value = bern.log_prob(eta, y)
    assert value.dtype == dtype
    np.testing.assert_allclose(value, [0.0, -1e3, -1e3, 0.0])
    grad = jax.grad(lambda e: bern.log_prob(e, y).sum())(eta)
    np.testing.assert_allclose(grad, [0.0, -1.0, 1.0, 0.0])
    logits = jnp.stack([eta, -eta], axis=1)
    labels = jnp.array([0, 1, 1, 0])
    cat = families.categorical().log_prob(logits, labels)
    np.testing.assert_allclose(cat, [-2e3, -2e3, 0.0, 0.0])
    assert np.all(np.isfinite(jax.grad(lambda z: families.categorical().log_prob(z, labels).sum())(
        logits)))


def test_bernoulli_gradient_is_exact_at_logit_zero():
    """d log p / d eta = y - sigmoid(eta), also at eta = 0 exactly (1/2's sake): every fit
    starts there. NumPyro's own BernoulliLogits gives y there, the sum of two kinks' one-sided
    derivatives; the expected numbers are the closed form and optax's log loss gradient.
    The second derivative, -sigmoid(eta) sigmoid(-eta), is Newton's Hessian: checked at
    0, -0, the tiniest logits and past exp's overflow too."""
    eta = jnp.array([0.0, -0.0, 0.3, -2.0, 1e-300, -1e-300, 40.0, -40.0, 800.0, -800.0])
    y = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    log_prob = families.bernoulli().log_prob
    grad = jax.grad(lambda e: log_prob(e, y).sum())(eta)
    sigmoid = scipy.special.expit(np.asarray(eta))
    np.testing.assert_allclose(grad, y - sigmoid, rtol=1e-15, atol=1e-300)
    optax_grad = jax.grad(lambda e: -optax.losses.sigmoid_binary_cross_entropy(e, y).sum())(eta)
    np.testing.assert_allclose(grad, optax_grad, rtol=1e-15, atol=1e-300)
    second = jax.vmap(jax.grad(jax.grad(log_prob)))(eta, y)
    curvature = sigmoid * scipy.special.expit(-np.asarray(eta))  # 1 - sigmoid rounds to 0 at 40
    # JAX's derivative of softplus' derivative exp(eta - softplus(eta)) carries a 1 - sigmoid:
    # exact to eps next to the largest curvature, 1/4, not relative to e^-40 at eta = 40.
    np.testing.assert_allclose(second, -curvature, rtol=1e-14, atol=0.25 * 2.3e-16)
    expected = np.asarray(y) * np.asarray(eta) - np.logaddexp(0.0, np.asarray(eta))  # numpy's
    np.testing.assert_allclose(log_prob(eta, y), expected, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_large_poisson_counts_stay_finite(dtype):
    y = np.array([3e6, 4e8, 0.0])
    eta = np.log(y + 1.0)
    value = families.poisson().log_prob(jnp.asarray(eta, dtype), jnp.asarray(y, dtype))
    # log p = y log mu - mu - log y! cancels terms of size ~ y log y: accuracy is relative to
    # that size (the problem's condition), not to the small result.
    size = y * np.abs(eta) + np.exp(eta) + scipy.special.gammaln(y + 1)
    eps = float(jnp.finfo(dtype).eps)
    reference = scipy.stats.poisson(np.exp(eta)).logpmf(y)
    assert np.all(np.isfinite(value))
    assert np.all(np.abs(np.asarray(value, float) - reference) <= 8 * eps * size)
    grad = jax.grad(lambda e: families.poisson().log_prob(e, jnp.asarray(y, dtype)).sum())(
        jnp.asarray(eta, dtype))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("nu", [0.3, 3.0, 49.9, 50.1, 1e3, 1e8, 1e12, 1e16])
def test_student_t_stays_exact_as_nu_grows(nu):
    """scipy.stats.t (whose normalizing constant goes through the Pochhammer symbol) at nu up
    to 1e16: NumPyro's difference of log-gammas loses every digit there (at nu = 1e14 a fit
    followed that noise to a log-likelihood above the maximum)."""
    y = np.array([-30.0, -3.0, 0.2, 1.3, 40.0])
    family = families.student_t()
    got = np.asarray(family.log_prob(jnp.zeros(5), jnp.asarray(y), {"nu": nu, "sigma": 1.7}))
    # scipy's own error is up to 3e-13 relative at nu = 1e3 (checked against mpmath).
    np.testing.assert_allclose(got, scipy.stats.t(nu, 0.0, 1.7).logpdf(y), rtol=1e-12)


def test_gamma_checks_its_response_and_link():
    with pytest.raises(ValueError, match="gamma responses must be positive"):
        families.gamma().validate(np.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="link must be 'inverse' or 'log'"):
        families.gamma("identity")


def test_ordinal_log_probabilities_stay_exact_in_the_tails():
    """Far from the cut points the class probabilities are tiny differences of numbers near
    0 or 1; the reference takes each difference on the side where it is not a cancellation
    (scipy's expit of the arguments, or of their negatives; log_expit for the end classes).
    NumPyro's OrderedLogistic gives log(1) = 0 for the first class at eta = -40."""
    cuts = np.array([-1.0, 0.5, 2.0])
    eta = np.array([-60.0, -40.0, -3.0, 0.0, 3.0, 40.0, 60.0])
    family = families.ordinal()
    for k in range(4):
        got = np.asarray(family.log_prob(jnp.asarray(eta), jnp.full(eta.shape, k),
                                         {"cutpoints": jnp.asarray(cuts)}))
        a = np.r_[-np.inf, cuts][k] - eta
        b = np.r_[cuts, np.inf][k] - eta
        if k == 0:
            expected = scipy.special.log_expit(b)
        elif k == 3:
            expected = scipy.special.log_expit(-a)
        else:
            upper_tail = a > 0  # both near 1: 1 - F(a) and 1 - F(b) are the small numbers
            with np.errstate(divide="ignore"):  # np.where evaluates both sides
                expected = np.where(upper_tail,
                                    np.log(scipy.special.expit(-a) - scipy.special.expit(-b)),
                                    np.log(scipy.special.expit(b) - scipy.special.expit(a)))
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"class {k}")
        grad = jax.grad(lambda e: family.log_prob(e, jnp.full(eta.shape, k),
                                                  {"cutpoints": jnp.asarray(cuts)}).sum())(
            jnp.asarray(eta))
        assert np.all(np.isfinite(grad))


def test_binomial_gradient_is_exact_at_logit_zero():
    """d log p / d eta = y - n sigmoid(eta), also at eta = 0 exactly (NumPyro's
    BinomialLogits has a kink there, as its BernoulliLogits)."""
    trials = np.array([1.0, 4.0, 7.0, 7.0])
    y = np.array([0.0, 1.0, 7.0, 3.0])
    eta = jnp.zeros(4)
    grad = jax.grad(lambda e: families.binomial(trials).log_prob(e, jnp.asarray(y)).sum())(eta)
    np.testing.assert_allclose(grad, y - trials / 2, rtol=1e-15)


def test_mean_response_and_class_probabilities(rng):
    """Family.mean: the inverse link (scipy's expit, exp, 1/eta), the success probability of
    a binomial, softmax and cumulative-logit class probabilities."""
    eta = rng.normal(size=N)
    expit = scipy.special.expit(eta)
    np.testing.assert_allclose(families.bernoulli().mean(eta), expit, rtol=1e-14)
    np.testing.assert_allclose(families.binomial(TRIALS).mean(eta), expit, rtol=1e-14)
    np.testing.assert_allclose(families.beta().mean(eta, {"precision": 3.0}), expit, rtol=1e-14)
    np.testing.assert_allclose(families.poisson().mean(eta), np.exp(eta), rtol=1e-14)
    np.testing.assert_allclose(families.negative_binomial().mean(eta, {"alpha": 0.3}),
                               np.exp(eta), rtol=1e-14)
    np.testing.assert_allclose(families.gamma("inverse").mean(eta + 3, {"shape": 2.0}),
                               1 / (eta + 3), rtol=1e-14)
    np.testing.assert_allclose(families.student_t().mean(eta, {"nu": 0.5, "sigma": 1.0}), eta)
    logits = rng.normal(size=(N, 3))
    np.testing.assert_allclose(families.categorical().mean(logits),
                               scipy.special.softmax(logits, axis=1), rtol=1e-14)
    np.testing.assert_allclose(families.ordinal().mean(eta, {"cutpoints": CUTS}),
                               _ordinal_probs(eta), rtol=1e-12)
