"""Degenerate models: no unique MLE, an improper posterior, a log-likelihood of the wrong shape.

- Collinear design columns under a flat prior: the log-likelihood is constant along a
  direction, so ``fit`` reaches *a* maximum but not *the* maximum: ``Status.NOT_UNIQUE`` and a
  ``FitWarning`` naming the columns (criterion in ``mlemap._diagnose.flat_directions``). The
  reference for "rank deficient" is ``numpy.linalg.matrix_rank`` of the design; for "unique"
  ``numpy.linalg.lstsq``. ``laplace`` then refuses the singular Hessian
  (``tests/test_laplace.py::test_singular_hessian_warns_with_a_fix`` is the a + b case).
- Flat prior and separable classes: the posterior is improper; ``sample`` warns that the
  draws drift without bound (besides R-hat and ESS), instead of returning them quietly.
  ``fit`` on the same data reports no MLE (``tests/test_fit.py::
  test_separable_classes_have_no_mle_but_a_map``).
- A log-likelihood of the wrong shape: refused by ``fit``, ``laplace`` and ``sample`` before
  tracing (``tests/test_bad_input.py::test_crossed_bad_input``, the summed and ``(n, 1)``
  cases; ``tests/test_model.py::test_log_likelihood_must_be_pointwise`` for the check).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mlemap as mm
from mlemap import SamplingWarning, families


@pytest.fixture(scope="module")
def collinear():
    """x2 = x0 + x1 exactly: rank 3 of 4 with the intercept."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(60, 2))
    X = np.column_stack([X, X[:, 0] + X[:, 1]])
    y = 0.5 + X[:, 0] - X[:, 1] + rng.normal(size=60)
    design = np.column_stack([np.ones(60), X])
    assert np.linalg.matrix_rank(design) == 3
    return X, y


@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
def test_collinear_columns_have_no_unique_mle(collinear, family):
    X, y = collinear
    if family == "bernoulli":
        y = (y > np.median(y)).astype(float)
    model, data = mm.glm(X, y, family=getattr(families, family)())
    with pytest.warns(mm.FitWarning, match=r"maximum is not unique.*beta\[0\].*beta\[1\].*"
                                           r"beta\[2\].*drop the redundant column"):
        est = mm.fit(model, data, method="mle")
    assert est.result == mm.Status.NOT_UNIQUE and not est.converged
    with pytest.raises(mm.FitError, match="not unique"):
        mm.fit(model, data, method="mle", throw=True)
    # A proper prior makes the MAP unique: no warning (warnings are errors here).
    model, data = mm.glm(X, y, family=getattr(families, family)(), prior=dist.Normal(0.0, 1.0))
    assert mm.fit(model, data).result == mm.Status.CONVERGED


def test_dummy_trap_is_not_unique():
    """One dummy per level plus an intercept: the classic rank deficiency."""
    rng = np.random.default_rng(3)
    level = rng.integers(0, 3, size=45)
    X = np.eye(3)[level]
    y = np.array([1.0, 2.0, 3.0])[level] + rng.normal(size=45)
    model, data = mm.glm(X, y, family=families.gaussian())
    with pytest.warns(mm.FitWarning, match="not unique.*intercept"):
        est = mm.fit(model, data, method="mle")
    assert est.result == mm.Status.NOT_UNIQUE
    # Without the intercept the MLE is unique and equals least squares.
    model, data = mm.glm(X, y, family=families.gaussian(), intercept=False)
    est = mm.fit(model, data, method="mle")
    np.testing.assert_allclose(est.params["beta"], np.linalg.lstsq(X, y, rcond=None)[0],
                               rtol=1e-8)


def test_nearly_collinear_but_unique_is_not_flagged(collinear):
    """A 1e-6 perturbation keeps the design of full rank: a unique (ill-conditioned) MLE,
    equal to least squares; no warning."""
    X, y = collinear
    X = X.copy()
    X[:, 2] += 1e-6 * np.random.default_rng(5).normal(size=len(X))
    model, data = mm.glm(X, y, family=families.gaussian())
    est = mm.fit(model, data, method="mle")
    assert est.result == mm.Status.CONVERGED
    design = np.column_stack([np.ones(len(X)), X])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(est.params["intercept"], coef[0], rtol=1e-6)


def test_batched_fits_flag_only_the_degenerate_dataset(collinear):
    X, y = collinear
    rng = np.random.default_rng(8)
    Xs = np.stack([rng.normal(size=X.shape), X, rng.normal(size=X.shape)])
    ys = np.stack([y, y, y])
    model, _ = mm.glm(X, y, family=families.gaussian())
    with pytest.warns(mm.FitWarning, match="1 of 3 fits.*batch index 1: the maximum is not "
                                           "unique"):
        est = mm.fit(model, {"X": Xs, "y": ys}, method="mle", batch="data")
    assert list(est.result) == [mm.Status.CONVERGED, mm.Status.NOT_UNIQUE, mm.Status.CONVERGED]


def test_laplace_at_a_non_unique_mle_is_refused(collinear):
    X, y = collinear
    model, data = mm.glm(X, y, family=families.gaussian())
    with (pytest.warns(mm.FitWarning, match="not unique"),
          pytest.warns(mm.LaplaceWarning, match="not positive definite: the mode is not unique")):
        approx = mm.laplace(model, data, method="mle")
    assert not approx.is_positive_definite and approx.draws is None


@pytest.mark.slow
def test_improper_posterior_is_reported_not_returned_quietly():
    """Flat priors and perfectly separated classes: the likelihood tends to 1 as beta grows
    along the separating direction, so the posterior does not integrate."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(float)
    model, data = mm.glm(X, y, family=families.bernoulli())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dt = mm.sample(model, data, num_warmup=300, num_samples=300, num_chains=4,
                       max_tree_depth=8, progress_bar=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    assert any(m.startswith("init='map': the MAP optimization found no interior point to "
                            "start from (no maximum")
               for m in messages), messages
    drift = [m for m in messages if m.startswith("The draws drift without bound")]
    assert len(drift) == 1 and "posterior is probably improper" in drift[0], messages
    assert any(m.startswith("R-hat > 1.01") for m in messages)
    # The draws are indeed far out: the coefficient magnitudes are astronomical.
    assert float(np.max(np.abs(dt.posterior["beta"]))) > 1e6

    # The same data under a proper prior: a proper posterior, sampled without any warning.
    model, data = mm.glm(X, y, family=families.bernoulli(), prior=dist.Normal(0.0, 2.0))
    mm.sample(model, data, num_warmup=300, num_samples=300, num_chains=4, progress_bar=False)


def test_a_step_limit_on_the_way_up_is_told_by_the_long_ray():
    """A solver stopped by the step limit may be anywhere on its way up; a long ray along the
    way it went (to 1024 steps) says whether the log-density rises without end. Three
    models, each stopped after 3 small SGD steps, with closed-form answers: the unbounded
    log-density n log(1/sigma) of an exact fit (UNBOUNDED), separable classes under a flat
    prior (the log-likelihood rises to 0: NO_MAXIMUM), and the same under a Normal(0, 1)
    prior (a maximum exists: MAX_STEPS)."""
    import optax

    exact = mm.Model({"log_sigma": mm.Param()},
                     lambda p, d: -p["log_sigma"] * jnp.ones_like(d["y"]))
    with pytest.warns(mm.FitWarning, match="grows without bound as log_sigma diverge"):
        est = mm.fit(exact, {"y": np.zeros(5)}, method="mle", optimizer=optax.sgd(0.1),
                     max_steps=3)
    assert est.result == mm.Status.UNBOUNDED

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1))
    y = (X[:, 0] > 0).astype(float)
    flat, data = mm.glm(X, y, family=families.bernoulli(), intercept=False)
    with pytest.warns(mm.FitWarning, match="no maximum.*separable"):
        est = mm.fit(flat, data, method="mle", optimizer=optax.sgd(0.1), max_steps=3)
    assert est.result == mm.Status.NO_MAXIMUM

    proper, data = mm.glm(X, y, family=families.bernoulli(), intercept=False,
                          prior=dist.Normal(0.0, 1.0))
    with pytest.warns(mm.FitWarning, match="did not converge in 3 steps"):
        est = mm.fit(proper, data, optimizer=optax.sgd(0.1), max_steps=3)
    assert est.result == mm.Status.MAX_STEPS
