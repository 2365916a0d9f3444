"""mlemap._metric: the metric as a linear change of variables, and nutpie's estimator.

Expected values are closed forms: for a Gaussian N(mu, Sigma) the gradient of the
log-density is -Sigma^-1 (x - mu), so draws and gradients determine Sigma exactly (the
symmetric positive definite S with S C_grad S = C_draws is Sigma); the diagonal estimator
sqrt(var x / var grad) tends to sqrt(Sigma_jj / (Sigma^-1)_jj). Draws are built with a
sample covariance exactly Sigma, so that the population limit holds for the finite sample.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlemap import _metric


def _spd(rng, dim, condition=50.0):
    """A random covariance with eigenvalues log-spaced over ``condition``."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    vals = np.geomspace(1.0, condition, dim)
    scales = np.exp(rng.uniform(-2.0, 2.0, dim))  # coordinates of very different scales
    return scales[:, None] * (q * vals[None, :]) @ q.T * scales[None, :]


def _exact_draws(rng, mean, cov, num):
    """``num`` draws whose sample mean is ``mean`` and sample covariance (divisor ``num``)
    is ``cov``, exactly: whitened standard normals mapped by the Cholesky factor."""
    z = rng.standard_normal((num, mean.shape[0]))
    z = z - z.mean(axis=0)
    w = np.linalg.cholesky(z.T @ z / num)
    z = np.linalg.solve(w, z.T).T  # sample covariance exactly I
    return mean[None, :] + z @ np.linalg.cholesky(cov).T


def _gaussian_grads(draws, mean, cov):
    return -np.linalg.solve(cov, (draws - mean[None, :]).T).T


@pytest.fixture
def no_ridge(monkeypatch):
    """The estimator's ridge (nutpie's gamma, relative 1e-5) is its only departure from the
    closed form: the exactness tests run without it (the estimator is traced afresh)."""
    monkeypatch.setattr(_metric, "GAMMA", 1e-14)


def _random_metric(rng, dim, rank):
    vecs = np.linalg.qr(rng.standard_normal((dim, rank)))[0] if rank else np.zeros((dim, 0))
    return _metric.Metric(jnp.asarray(rng.standard_normal(dim)),
                          jnp.asarray(np.exp(rng.uniform(-1.0, 1.0, dim))),
                          jnp.asarray(vecs), jnp.asarray(np.exp(rng.uniform(-3.0, 3.0, rank))))


def _linear_map(metric):
    """``A`` of ``u = c + A x``, built densely from the definition diag(s) (I + U (sqrt(l) -
    1) U^T)."""
    dim = metric.center.shape[0]
    vecs, vals = np.asarray(metric.vecs), np.asarray(metric.vals)
    b = np.eye(dim) + (vecs * (np.sqrt(vals) - 1.0)[None, :]) @ vecs.T
    return np.asarray(metric.scale)[:, None] * b


# --------------------------------------------------------------------------------------------
# The estimator against closed forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num", [300, 13])  # more draws than dimensions, and exactly d + 1
def test_dense_estimate_is_the_covariance_of_a_gaussian(rng, num, no_ridge):
    dim = 12
    mean, cov = rng.standard_normal(dim), _spd(rng, dim)
    draws = _exact_draws(rng, mean, cov, num)
    grads = _gaussian_grads(draws, mean, cov)
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(num), rank=dim)
    np.testing.assert_allclose(np.asarray(_metric.covariance(est)), cov, rtol=1e-7,
                               atol=1e-8 * np.abs(cov).max())
    np.testing.assert_allclose(np.asarray(est.center), mean, atol=1e-8 * np.abs(mean).max())


def test_the_ridge_moves_the_estimate_by_little(rng):
    dim, num = 12, 300
    mean, cov = rng.standard_normal(dim), _spd(rng, dim)
    draws = _exact_draws(rng, mean, cov, num)
    grads = _gaussian_grads(draws, mean, cov)
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(num), rank=dim)
    np.testing.assert_allclose(np.asarray(_metric.covariance(est)), cov, rtol=1e-2,
                               atol=1e-2 * np.abs(cov).max())


def test_diagonal_estimate_is_the_ratio_of_variances(rng):
    dim, num = 8, 400
    mean, cov = rng.standard_normal(dim), _spd(rng, dim)
    draws = _exact_draws(rng, mean, cov, num)
    grads = _gaussian_grads(draws, mean, cov)
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(num), rank=0)
    expected = np.sqrt(np.diag(cov) / np.diag(np.linalg.inv(cov)))  # the variances
    np.testing.assert_allclose(np.asarray(est.scale) ** 2, expected, rtol=1e-10)
    assert est.vecs.shape == (dim, 0)


def test_diagonal_estimate_is_exact_for_independent_coordinates(rng):
    dim, num = 6, 50
    sd = np.exp(rng.uniform(-3.0, 3.0, dim))
    mean = rng.standard_normal(dim)
    draws = mean[None, :] + rng.standard_normal((num, dim)) * sd[None, :]  # not whitened
    grads = -(draws - mean[None, :]) / sd[None, :] ** 2
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(num), rank=0)
    np.testing.assert_allclose(np.asarray(est.scale), sd, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(est.center), mean, rtol=1e-10, atol=1e-12)


def test_weights_leave_rows_out(rng, no_ridge):
    dim, num = 5, 40
    mean, cov = np.zeros(dim), _spd(rng, dim)
    draws = _exact_draws(rng, mean, cov, num)
    grads = _gaussian_grads(draws, mean, cov)
    junk = rng.standard_normal((7, dim)) * 100.0
    weights = jnp.concatenate([jnp.ones(num), jnp.zeros(7)])
    full = _metric.estimate(jnp.asarray(np.vstack([draws, junk])),
                            jnp.asarray(np.vstack([grads, junk])), weights, rank=dim)
    np.testing.assert_allclose(np.asarray(_metric.covariance(full)), cov, rtol=1e-7,
                               atol=1e-8 * np.abs(cov).max())


def test_directions_the_draws_do_not_span_keep_the_identity(rng, no_ridge):
    """Fewer draws than dimensions: the estimate is exact on the span of the draws (the
    precision restricted to it, inverted) and leaves the orthogonal complement alone."""
    dim, num = 10, 4
    mean = np.zeros(dim)
    draws = rng.standard_normal((num, dim))
    draws = draws - draws.mean(axis=0)
    grads = -draws  # a standard normal target: the correction is the identity
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(num), rank=dim)
    np.testing.assert_allclose(np.asarray(_metric.covariance(est)), np.eye(dim), atol=1e-8)
    np.testing.assert_allclose(np.asarray(est.center), mean, atol=1e-12)


def test_low_rank_estimate_keeps_the_eigenvalues_far_from_one(rng, no_ridge):
    """An equicorrelated Gaussian (rho = 0.9, equal variances): in the rescaled coordinates
    the covariance has one large eigenvalue along the ones vector and d - 1 equal ones; with
    rank 1 the metric's covariance keeps the ones-vector direction exactly."""
    dim, rho = 20, 0.9
    cov = (1 - rho) * np.eye(dim) + rho * np.ones((dim, dim))
    draws = _exact_draws(rng, np.zeros(dim), cov, 200)
    grads = _gaussian_grads(draws, np.zeros(dim), cov)
    est = _metric.estimate(jnp.asarray(draws), jnp.asarray(grads), jnp.ones(200), rank=1)
    ones = np.ones(dim) / np.sqrt(dim)
    np.testing.assert_allclose(abs(float(np.asarray(est.vecs)[:, 0] @ ones)), 1.0, atol=1e-6)
    # sqrt(Sigma_jj / Sigma^-1_jj) is the same for every j; along the ones vector the metric's
    # variance is then exactly Sigma's.
    sigma = np.asarray(_metric.covariance(est))
    np.testing.assert_allclose(ones @ sigma @ ones, ones @ cov @ ones, rtol=1e-8)


def test_gaussian_misfit_is_zero_for_a_gaussian_and_its_metric(rng):
    dim, num = 6, 100
    mean, cov = rng.standard_normal(dim), _spd(rng, dim)
    draws = _exact_draws(rng, mean, cov, num)
    grads = _gaussian_grads(draws, mean, cov)
    exact = _metric.from_covariance(mean, cov, dim)
    assert float(_metric.gaussian_misfit(exact, jnp.asarray(draws), jnp.asarray(grads),
                                         jnp.ones(num))) < 1e-20
    wrong = _metric.from_covariance(mean, np.diag(np.diag(cov)), dim)
    assert float(_metric.gaussian_misfit(wrong, jnp.asarray(draws), jnp.asarray(grads),
                                         jnp.ones(num))) > 0.01


# --------------------------------------------------------------------------------------------
# The change of variables: O(dk) maps against dense products
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [0, 3, 9])
def test_low_rank_maps_equal_the_dense_products(rng, rank):
    dim = 9
    metric = _random_metric(rng, dim, rank)
    a = _linear_map(metric)
    x, g = rng.standard_normal(dim), rng.standard_normal(dim)
    u = np.asarray(_metric.to_position(metric, jnp.asarray(x)))
    np.testing.assert_allclose(u, np.asarray(metric.center) + a @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(_metric.from_position(metric, jnp.asarray(u))), x,
                               rtol=1e-10, atol=1e-10)
    # The gradient in x of f(F(x)) is A^T grad_u f.
    np.testing.assert_allclose(np.asarray(_metric.to_gradient(metric, jnp.asarray(g))), a.T @ g,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(_metric.from_gradient(metric, jnp.asarray(a.T @ g))), g, rtol=1e-10,
        atol=1e-10)
    np.testing.assert_allclose(np.asarray(_metric.covariance(metric)), a @ a.T, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("rank", [0, 4, 7])
def test_log_determinant_of_the_transform(rng, rank):
    """log|det dF/dx| = sum log s + (1/2) sum log(lambda), from the Jacobian autodiff finds."""
    dim = 7
    metric = _random_metric(rng, dim, rank)
    jac = np.asarray(jax.jacfwd(lambda x: _metric.to_position(metric, x))(jnp.zeros(dim)))
    sign, logdet = np.linalg.slogdet(jac)
    expected = np.sum(np.log(np.asarray(metric.scale))) + 0.5 * np.sum(np.log(metric.vals))
    assert sign == 1.0
    np.testing.assert_allclose(logdet, expected, rtol=1e-12)
    np.testing.assert_allclose(jac, _linear_map(metric), rtol=1e-12, atol=1e-12)


def test_from_covariance_dense_is_exact_and_low_rank_keeps_the_far_eigenvalues(rng):
    dim = 8
    cov = _spd(rng, dim, condition=1000.0)
    dense = _metric.from_covariance(np.zeros(dim), cov, dim)
    np.testing.assert_allclose(np.asarray(_metric.covariance(dense)), cov, rtol=1e-10,
                               atol=1e-12 * np.abs(cov).max())
    low = _metric.from_covariance(np.zeros(dim), cov, 2)
    sd = np.sqrt(np.diag(cov))
    corr_vals = np.linalg.eigvalsh(cov / np.outer(sd, sd))
    far = sorted(corr_vals, key=lambda v: -abs(np.log(v)))[:2]
    np.testing.assert_allclose(sorted(np.asarray(low.vals)), sorted(far), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(low.scale), sd, rtol=1e-12)


def test_compose_dense_is_the_product_of_the_maps(rng):
    dim = 6
    current = _metric.from_covariance(rng.standard_normal(dim), _spd(rng, dim), dim)
    correction = _metric.from_covariance(rng.standard_normal(dim), _spd(rng, dim, 5.0), dim)
    both = _metric.compose(current, correction)
    a, b = _linear_map(current), _linear_map(correction)
    np.testing.assert_allclose(np.asarray(_metric.covariance(both)), a @ b @ b.T @ a.T,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(both.center),
                               np.asarray(_metric.to_position(current, correction.center)),
                               rtol=1e-12)


def test_compose_low_rank_is_exact_when_the_rank_suffices(rng):
    """A rank-2 metric composed with a diagonal correction whose scale is constant (the
    composed covariance is the current one times t^2: still rank 2)."""
    dim = 10
    current = _random_metric(rng, dim, 2)
    t = 1.7
    correction = _metric.Metric(jnp.zeros(dim), jnp.full(dim, t), jnp.zeros((dim, 0)),
                                jnp.ones(0))
    both = _metric.compose(current, correction)
    np.testing.assert_allclose(np.asarray(_metric.covariance(both)),
                               t**2 * np.asarray(_metric.covariance(current)), rtol=1e-9,
                               atol=1e-12)


def test_compose_low_rank_with_a_low_rank_correction(rng):
    """Rank 3 current and a rank-1 correction whose direction lies in the current one's span:
    the product stays of rank 3 and compose is exact."""
    dim = 10
    current = _random_metric(rng, dim, 3)
    direction = np.asarray(current.vecs) @ rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    ones = jnp.ones(dim)
    correction = _metric.Metric(jnp.zeros(dim), ones, jnp.asarray(direction[:, None]),
                                jnp.asarray([4.0]))
    # The scale is constant (1), so P = Q = U and K - I lives in span(U).
    both = _metric.compose(current, correction)
    a, b = _linear_map(current), _linear_map(correction)
    np.testing.assert_allclose(np.asarray(_metric.covariance(both)), a @ b @ b.T @ a.T,
                               rtol=1e-9, atol=1e-12)


def test_spread_is_the_log_condition_number_of_the_correction(rng):
    dim = 5
    assert float(_metric.spread(_metric.identity(dim, 2))) == 0.0
    vecs, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    corr = _metric.Metric(jnp.zeros(dim), jnp.full(dim, 2.0), jnp.asarray(vecs),
                          jnp.asarray([3.0, 0.5]))
    eig = np.linalg.eigvalsh(np.asarray(_metric.covariance(corr)))
    np.testing.assert_allclose(float(_metric.spread(corr)), np.log(eig[-1] / eig[0]),
                               rtol=1e-12)


def test_spread_of_a_low_rank_correction_ignores_eigenvalues_near_one(rng):
    """A low-rank correction within [1/2, 2] of the identity has settled (nutpie's cutoff, in
    the test only); a dense one with the same eigenvalues has not: its spread is the log
    condition number of its covariance (numpy's eigenvalues)."""
    dim = 5
    vecs, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    low = _metric.Metric(jnp.zeros(dim), jnp.full(dim, 2.0), jnp.asarray(vecs[:, :2]),
                         jnp.asarray([1.8, 0.6]))
    assert float(_metric.spread(low)) == 0.0
    np.testing.assert_allclose(np.asarray(low.vals), [1.8, 0.6])  # the metric keeps them
    dense = _metric.Metric(jnp.zeros(dim), jnp.full(dim, 2.0), jnp.asarray(vecs),
                           jnp.asarray([1.8, 0.6, 1.0, 1.0, 1.0]))
    eig = np.linalg.eigvalsh(np.asarray(_metric.covariance(dense)))
    np.testing.assert_allclose(float(_metric.spread(dense)), np.log(eig[-1] / eig[0]),
                               rtol=1e-12)


def test_estimate_is_traceable_under_jit_and_vmap(rng, no_ridge):
    """The estimator runs inside the compiled warm-up, batched over chains."""
    dim, num, chains = 4, 30, 3
    mean, cov = np.zeros(dim), _spd(rng, dim)
    draws = np.stack([_exact_draws(rng, mean, cov, num) for _ in range(chains)])
    grads = np.stack([_gaussian_grads(d, mean, cov) for d in draws])
    est = jax.jit(jax.vmap(lambda x, g: _metric.estimate(x, g, jnp.ones(num), dim)))(
        jnp.asarray(draws), jnp.asarray(grads))
    for c in range(chains):
        one = jax.tree.map(lambda a, c=c: a[c], est)
        np.testing.assert_allclose(np.asarray(_metric.covariance(one)), cov, rtol=1e-7,
                                   atol=1e-8 * np.abs(cov).max())
