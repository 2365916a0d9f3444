"""NUTS's metric as a linear change of variables, learned from draws *and* gradients.

A metric is an affine map from the coordinates NUTS integrates in, :math:`x`, to the model's
flat unconstrained vector :math:`u`,

.. math::

    u = F(x) = c + s \\odot B x, \\qquad B = I + U\\,\\mathrm{diag}(\\sqrt{\\lambda} - 1)\\,U^\\top,

with a centre :math:`c` and a scale :math:`s` of length :math:`d`, :math:`k` orthonormal
columns :math:`U` (``d x k``) and their eigenvalues :math:`\\lambda`. Its covariance (NUTS's
inverse mass matrix in :math:`u`) is

.. math::

    \\Sigma = \\mathrm{diag}(s)\\,\\big(I + U\\,\\mathrm{diag}(\\lambda - 1)\\,U^\\top\\big)\\,
              \\mathrm{diag}(s).

``k = 0`` is a diagonal metric, ``k = d`` a dense one, ``0 < k < d`` a diagonal plus a
low-rank correction; :math:`F`, :math:`F^{-1}` and the gradient maps cost :math:`O(dk)`.
NUTS with an identity mass matrix on :math:`x \\mapsto -\\log\\pi(F(x))` is NUTS with the
inverse mass matrix :math:`\\Sigma` on :math:`u` (the same trajectories, energies and
U-turns): that is how NumPyro's kernel, whose U-turn test only knows diagonal and dense
matrices, runs a low-rank metric. This is the parameterization of nutpie (nuts-rs'
``LowRankMassMatrix``).

The estimator (:func:`estimate`) is nutpie's (Seyboldt et al., "Preconditioning HMC by
minimizing the Fisher divergence"): from draws :math:`x_i` and gradients
:math:`\\alpha_i = \\nabla\\log\\pi(x_i)`, the diagonal :math:`s_j^2 = \\sqrt{\\mathrm{var}(x_j) /
\\mathrm{var}(\\alpha_j)}`, then, in the rescaled coordinates, the symmetric positive definite
solution of :math:`\\Sigma\\,C_\\alpha\\,\\Sigma = C_x` (the geometric mean of the draws'
covariance and the inverse of the gradients'), restricted to the span of the draws and
gradients when there are fewer of them than dimensions. For a Gaussian target
:math:`\\alpha = -\\Sigma^{-1}(x - \\mu)`, so the estimate is exact from :math:`d + 1` draws,
whatever their autocorrelation. mlemap estimates it in the coordinates :math:`x` of the
current metric (:func:`compose` maps it back), so that directions the draws do not span keep
the current metric: with a metric seeded from the Laplace approximation, a near-Gaussian
posterior gives a correction near the identity, which :func:`spread` measures (the test of
a settled metric). Written here because neither NumPyro nor BlackJAX has this estimator
(BlackJAX's low-rank port measured far below nutpie on a correlated posterior).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Metric", "to_position", "from_position", "to_gradient", "from_gradient",
           "covariance", "spd_mean", "estimate", "compose", "spread", "gaussian_misfit",
           "from_covariance",
           "from_gradient_at", "identity"]

Array = jax.Array

#: Relative regularization of the draws' and gradients' covariances (nutpie's gamma): the
#: directions neither spans keep the current metric.
GAMMA = 1e-5
#: Singular values of the draws below this fraction of the largest do not span a direction.
SPAN_RTOL = 1e-8
#: A low-rank correction whose eigenvalues are within [1 / CUTOFF, CUTOFF] has settled
#: (nutpie's eigval_cutoff, used by :func:`spread` only; the metric keeps them).
CUTOFF = 2.0
#: Bounds of one update of a scale, relative to the current one.
MAX_SCALE_CHANGE = 1e5


class Metric(NamedTuple):
    """``u = center + scale * (x + vecs @ ((sqrt(vals) - 1) * (vecs.T @ x)))``."""

    center: Array  # (d,)
    scale: Array  # (d,)
    vecs: Array  # (d, k) orthonormal columns (or zero columns with vals = 1)
    vals: Array  # (k,) eigenvalues of the rescaled covariance, 1 where unused


def identity(dim: int, rank: int, dtype=None) -> Metric:
    """The identity map with ``rank`` unused low-rank slots."""
    dtype = dtype or jnp.result_type(float)
    return Metric(jnp.zeros(dim, dtype), jnp.ones(dim, dtype), jnp.zeros((dim, rank), dtype),
                  jnp.ones(rank, dtype))


def _low_rank(metric: Metric, v: Array, power: float) -> Array:
    """``v + U ((vals**power - 1) * (U.T v))``: ``B v`` for power 1/2, ``B^-1 v`` for -1/2."""
    factor = metric.vals ** power - 1.0
    return v + metric.vecs @ (factor * (metric.vecs.T @ v))


def to_position(metric: Metric, x: Array) -> Array:
    """:math:`u = F(x)`."""
    return metric.center + metric.scale * _low_rank(metric, x, 0.5)


def from_position(metric: Metric, u: Array) -> Array:
    """:math:`x = F^{-1}(u)`."""
    return _low_rank(metric, (u - metric.center) / metric.scale, -0.5)


def to_gradient(metric: Metric, grad_u: Array) -> Array:
    """The gradient in :math:`x` of a function whose gradient in :math:`u` is ``grad_u``:
    :math:`J_F^\\top \\nabla_u = B\\,(s \\odot \\nabla_u)` (:math:`B` is symmetric)."""
    return _low_rank(metric, metric.scale * grad_u, 0.5)


def from_gradient(metric: Metric, grad_x: Array) -> Array:
    """The inverse of :func:`to_gradient`."""
    return _low_rank(metric, grad_x, -0.5) / metric.scale


def covariance(metric: Metric) -> Array:
    """:math:`\\Sigma`, ``(d, d)`` (for tests and reports; NUTS never forms it)."""
    inner = jnp.eye(metric.scale.shape[0], dtype=metric.scale.dtype)
    inner = inner + (metric.vecs * (metric.vals - 1.0)[None, :]) @ metric.vecs.T
    return metric.scale[:, None] * inner * metric.scale[None, :]


# --------------------------------------------------------------------------------------------
# Estimation from draws and gradients
# --------------------------------------------------------------------------------------------


def _sym_fn(m: Array, fn) -> Array:
    """``fn`` applied to the eigenvalues of a symmetric matrix (floored at a tiny value)."""
    w, v = jnp.linalg.eigh(0.5 * (m + m.T))
    tiny = jnp.finfo(m.dtype).tiny ** 0.5
    return (v * fn(jnp.maximum(w, tiny))[None, :]) @ v.T


def spd_mean(a: Array, b: Array) -> Array:
    """The symmetric positive definite :math:`S` with :math:`S\\,b\\,S = a`:
    :math:`b^{-1/2} (b^{1/2} a\\, b^{1/2})^{1/2} b^{-1/2}` (the geometric mean of :math:`a` and
    :math:`b^{-1}`)."""
    w, v = jnp.linalg.eigh(0.5 * (b + b.T))
    root = jnp.sqrt(jnp.maximum(w, jnp.finfo(b.dtype).tiny ** 0.5))
    b_half, b_inv_half = (v * root[None, :]) @ v.T, (v / root[None, :]) @ v.T
    return b_inv_half @ _sym_fn(b_half @ a @ b_half, jnp.sqrt) @ b_inv_half


def _largest_deviations(vals: Array, vecs: Array, rank: int) -> tuple[Array, Array]:
    """The ``rank`` eigenpairs whose eigenvalues are farthest from 1 (in log); padded with
    eigenvalue 1 and zero vectors when there are fewer."""
    order = jnp.argsort(-jnp.abs(jnp.log(vals)))
    vals, vecs = vals[order], vecs[:, order]
    have = vals.shape[0]
    if have >= rank:
        return vals[:rank], vecs[:, :rank]
    pad = rank - have
    return (jnp.concatenate([vals, jnp.ones(pad, vals.dtype)]),
            jnp.concatenate([vecs, jnp.zeros((vecs.shape[0], pad), vecs.dtype)], axis=1))


def estimate(draws: Array, grads: Array, weights: Array, rank: int) -> Metric:
    """nutpie's metric from draws and gradients of the log-density.

    Parameters
    ----------
    draws, grads : Array (N, d)
        Draws :math:`x_i` and gradients :math:`\\alpha_i = \\nabla \\log\\pi(x_i)`.
    weights : Array (N,)
        Non-negative weights (0 leaves a row out); at least two positive.
    rank : int
        Number of eigenpairs kept (static): ``0`` diagonal, ``d`` dense; in between, the
        ``rank`` farthest from 1 in log, however close. (nutpie also drops eigenvalues within
        [1/2, 2]; for a near-Gaussian posterior the estimate is exact, so those are signal,
        and keeping them raised the ESS per gradient: experiments/BENCHMARKS.md section 4b.)

    Returns
    -------
    Metric
        Centre :math:`\\bar x + \\Sigma \\bar\\alpha` (exact for a Gaussian), scale
        :math:`s_j = (\\mathrm{var}\\,x_j / \\mathrm{var}\\,\\alpha_j)^{1/4}` and the
        eigenpairs of the solution of :math:`S\\,C_\\alpha\\,S = C_x` in the rescaled
        coordinates, both covariances projected on the span of the draws (nutpie projects
        on the span of the draws *and* gradients; with fewer draws than dimensions the two
        spans differ and their union gives spurious eigenvalues, measured up to 2.5 for a
        logistic posterior whose metric was exact). The eigenvalue is 1 in the directions
        the draws do not span. Scales that are not finite (a coordinate that never moved)
        are 1.
    """
    n, dim = draws.shape
    w = weights / jnp.sum(weights)
    mean_x, mean_g = w @ draws, w @ grads
    var_x = w @ (draws - mean_x[None, :]) ** 2
    var_g = w @ (grads - mean_g[None, :]) ** 2
    scale = (var_x / var_g) ** 0.25
    scale = jnp.clip(jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0),
                     1.0 / MAX_SCALE_CHANGE, MAX_SCALE_CHANGE)
    if rank == 0:
        return Metric(mean_x + scale**2 * mean_g, scale, jnp.zeros((dim, 0), draws.dtype),
                      jnp.ones(0, draws.dtype))
    root = jnp.sqrt(w)[:, None]
    xs = root * (draws - mean_x[None, :]) / scale[None, :]
    gs = root * (grads - mean_g[None, :]) * scale[None, :]
    # The span of the draws (right singular vectors), where the Gaussian identity
    # alpha = -Sigma^-1 (x - mu) makes the estimate the inverse of the precision restricted to
    # it; directions the draws do not span (fewer draws than dimensions) keep the identity.
    _, singular, vt = jnp.linalg.svd(xs, full_matrices=False)  # vt (min(N, d), d)
    valid = singular > SPAN_RTOL * singular[0]
    px, pg = xs @ vt.T, gs @ vt.T
    both = valid[:, None] & valid[None, :]
    eye = jnp.eye(px.shape[1], dtype=px.dtype)
    # Relative to the mean variance of the rescaled draws (equal for the gradients).
    ridge = GAMMA * jnp.mean(jnp.sqrt(var_x * var_g))
    cx = jnp.where(both, px.T @ px, eye) + ridge * eye
    cg = jnp.where(both, pg.T @ pg, eye) + ridge * eye
    inner = spd_mean(cx, cg)
    vals, vecs = jnp.linalg.eigh(0.5 * (inner + inner.T))
    vals, vecs = _largest_deviations(jnp.maximum(vals, jnp.finfo(vals.dtype).tiny),
                                     vt.T @ vecs, rank)
    metric = Metric(mean_x, scale, vecs, vals)
    # The mean corrected by the gradients, x + Sigma alpha (exact for a Gaussian).
    return metric._replace(center=mean_x + scale * _low_rank(metric, scale * mean_g, 1.0))


def compose(current: Metric, correction: Metric) -> Metric:
    """The metric of :math:`F_{\\mathrm{current}} \\circ F_{\\mathrm{correction}}`, of the
    current one's rank: covariance :math:`A\\,\\Sigma_{\\mathrm{corr}}\\,A^\\top` with
    :math:`A = \\mathrm{diag}(s) B` (exact when dense; otherwise the eigenpairs of the
    composed correction farthest from 1 are kept).

    With :math:`t` the correction's scale, the composed covariance is
    :math:`\\mathrm{diag}(s t)\\,K\\,\\mathrm{diag}(s t)`, where
    :math:`K = L\\,(I + V \\Delta V^\\top)\\,L^\\top`, :math:`L = I + P \\Gamma Q^\\top`,
    :math:`P = U / t`, :math:`Q = U t`: :math:`K - I` lives in the span of
    :math:`[P, Q, V]`, where it is diagonalized.
    """
    dim, rank = current.vecs.shape
    t = correction.scale
    center = to_position(current, correction.center)
    if rank == 0 and correction.vecs.shape[1] == 0:
        return Metric(center, current.scale * t, current.vecs, current.vals)
    if rank == dim:  # dense: A Sigma_corr A^T, one eigendecomposition
        root = (current.vecs * (jnp.sqrt(current.vals) - 1.0)[None, :]) @ current.vecs.T
        linear = current.scale[:, None] * (jnp.eye(dim, dtype=t.dtype) + root)
        cov = linear @ covariance(correction) @ linear.T
        scale = jnp.sqrt(jnp.diag(cov))
        vals, vecs = jnp.linalg.eigh(cov / scale[:, None] / scale[None, :])
        return Metric(center, scale, vecs, jnp.maximum(vals, jnp.finfo(vals.dtype).tiny))
    gamma = jnp.sqrt(current.vals) - 1.0
    p, q = current.vecs / t[:, None], current.vecs * t[:, None]
    v, delta = correction.vecs, correction.vals - 1.0

    def apply_k(z):  # K z for a (d, m) block
        y = z + q @ (gamma[:, None] * (p.T @ z))  # L^T z
        y = y + v @ (delta[:, None] * (v.T @ y))  # (I + V D V^T) y
        return y + p @ (gamma[:, None] * (q.T @ y))  # L y

    basis = jnp.linalg.qr(jnp.concatenate([p, q, v], axis=1))[0]  # (d, min(d, 2k + k2))
    small = basis.T @ apply_k(basis)
    vals, vecs = jnp.linalg.eigh(0.5 * (small + small.T))
    vals, vecs = _largest_deviations(jnp.maximum(vals, jnp.finfo(vals.dtype).tiny),
                                     basis @ vecs, rank)
    return Metric(center, current.scale * t, vecs, vals)


def gaussian_misfit(metric: Metric, draws: Array, grads: Array, weights: Array) -> Array:
    """How far the gradients are from those of the Gaussian :math:`N(c, \\Sigma)` of
    ``metric``: :math:`\\sum_i w_i \\|\\alpha_i + \\Sigma^{-1}(x_i - c)\\|^2 /
    \\sum_i w_i \\|\\alpha_i - \\bar\\alpha\\|^2`.

    0 for a Gaussian target and its exact metric (:math:`\\alpha = -\\Sigma^{-1}(x - \\mu)`);
    measured 0.01-0.05 on a logistic regression's posterior, where the calibration of the
    step size by its Gaussian model holds.
    """
    w = weights / jnp.sum(weights)

    def precision_times(v):  # Sigma^-1 v = T^-1 K^-1 T^-1 v
        return _low_rank(metric, v / metric.scale, -1.0) / metric.scale

    predicted = -jax.vmap(precision_times)(draws - metric.center[None, :])
    mean_g = w @ grads
    return (w @ jnp.sum((grads - predicted) ** 2, axis=1)
            / (w @ jnp.sum((grads - mean_g[None, :]) ** 2, axis=1)))


def spread(correction: Metric) -> Array:
    """A bound on :math:`\\log(\\mu_{\\max} / \\mu_{\\min})` for the eigenvalues
    :math:`\\mu` of the correction's covariance: 0 when it is a multiple of the identity
    (the current metric was right, up to the step size).

    :math:`\\mathrm{diag}(t)\\,K\\,\\mathrm{diag}(t)` has its eigenvalues in
    :math:`[\\min t^2 \\min(\\lambda, 1), \\max t^2 \\max(\\lambda, 1)]`, with :math:`t`
    its scale and :math:`\\lambda` the eigenvalues of :math:`K` (tight when :math:`t` is near
    constant, as it is for a metric near the right one). For a low-rank correction the
    eigenvalues within ``[1 / CUTOFF, CUTOFF]`` count as 1 (nutpie's cutoff, here in the test
    only): estimated from fewer draws than dimensions they are mostly noise, which would keep
    the test from passing and the warm-up from ending (experiments/BENCHMARKS.md, 4b).
    """
    log_t2 = 2.0 * jnp.log(correction.scale)
    vals = correction.vals
    if vals.shape[0] < correction.scale.shape[0]:
        vals = jnp.where(jnp.abs(jnp.log(vals)) < np.log(CUTOFF), 1.0, vals)
    log_vals = jnp.log(jnp.concatenate([vals, jnp.ones(1, vals.dtype)]))
    return (jnp.max(log_t2) + jnp.max(log_vals)) - (jnp.min(log_t2) + jnp.min(log_vals))


# --------------------------------------------------------------------------------------------
# Starting metrics
# --------------------------------------------------------------------------------------------


def from_covariance(center: np.ndarray, cov: np.ndarray, rank: int) -> Metric:
    """The metric whose covariance is ``cov`` (the Laplace approximation's), exactly when
    ``rank = d``, else its scale and the ``rank`` eigenpairs of the correlation matrix
    farthest from 1 (in log). Computed on the host (NumPy)."""
    cov = 0.5 * (cov + cov.T)
    scale = np.sqrt(np.diag(cov))
    vals, vecs = np.linalg.eigh(cov / scale[:, None] / scale[None, :])
    vals = np.maximum(vals, np.finfo(vals.dtype).tiny)
    order = np.argsort(-np.abs(np.log(vals)))[:rank]
    vals, vecs = vals[order], vecs[:, order]
    return Metric(*(jnp.asarray(a) for a in (center, scale, vecs, vals)))


def from_gradient_at(position: Array, grad: Array, rank: int) -> Metric:
    """nutpie's first metric: the variances :math:`1 / |\\nabla_j \\log\\pi|` at the start
    (clamped to :math:`[10^{-20}, 10^{20}]`), centred there."""
    variance = 1.0 / jnp.clip(jnp.abs(grad), 1e-20, 1e20)
    scale = jnp.where(jnp.isfinite(variance), jnp.sqrt(variance), 1.0)
    dim = position.shape[0]
    return Metric(position, scale, jnp.zeros((dim, rank), position.dtype),
                  jnp.ones(rank, position.dtype))
