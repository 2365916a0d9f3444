"""Second order: is a converged point a saddle, or one of a ridge of maxima?

The gradient test says that a point is stationary; the Hessian there, and the objective a
little and a long way along its flattest direction, say what kind of stationary point it is
(:func:`second_order`).
"""

from __future__ import annotations

import numpy as np

from mlemap._model import Model

__all__ = ["second_order", "SADDLE", "RIDGE"]

#: The two kinds of :func:`second_order`'s findings.
SADDLE, RIDGE = "saddle", "ridge"




def second_order(model: Model, end, probe) -> dict[int, tuple[str, str]]:
    """``{batch index: (kind, message)}`` for the end points (an ``EndPoint`` of a batch,
    numpy) that are saddles (``SADDLE``) or on a ridge of maxima, not unique (``RIDGE``);
    empty for most batches. ``probe(points (B, k, dim)) -> (B, k)`` evaluates :math:`F`.

    From the Hessian :math:`H` of the per-observation objective :math:`F` at the end point
    (for the Newton solver, the Hessian of its last step, where that step began), with
    :math:`\\lambda_{\\min}, v` its smallest eigenvalue and eigenvector and :math:`\\epsilon`
    the float's machine epsilon:

    - a *saddle* when :math:`\\lambda_{\\min} < -\\sqrt{\\epsilon}\\max|\\lambda|` and
      :math:`F` is lower, beyond its rounding noise, at :math:`x + t v` or :math:`x - t v`
      for the step :math:`t` at which the quadratic model predicts a decrease of 1000 times
      the noise: the gradient vanishes, but the log-density increases along :math:`v`;
    - *not unique* when :math:`|\\lambda_{\\min}| \\le \\sqrt{\\epsilon}\\max|\\lambda|`
      (numerically rank-deficient) and :math:`F` changes by no more than its rounding noise,
      :math:`10^3 \\epsilon \\max(|F(x)|, 1)`, a long way along :math:`v`, at
      :math:`x \\pm s v` with :math:`s = \\max(1, \\|x\\|)`. This tells an exactly flat ridge
      (collinear columns, a parameter the likelihood ignores) from a merely ill-conditioned
      but unique maximum, where :math:`F` rises by :math:`\\tfrac12\\lambda_{\\min} s^2`;
      the Hessian's own rounding never decides alone.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a Hessian of a run-off: inf, NaN
        return _second_order(model, end, probe)


def _second_order(model: Model, end, probe) -> dict[int, tuple[str, str]]:
    x, hessian = end.position, end.hessian
    value = -end.log_density / np.maximum(end.n_obs, 1)
    eps = float(np.finfo(x.dtype).eps)
    finite = np.all(np.isfinite(hessian), axis=(-1, -2))
    # The screen reads the lower triangle only, so the Hessians (symmetric to round-off) are
    # symmetrized only for the eigen-decompositions that follow when it fails.
    if np.all(finite) and _clearly_nonsingular(hessian, np.sqrt(eps)):
        return {}
    hessian = 0.5 * (hessian + np.swapaxes(hessian, -1, -2))
    eig, vec = np.linalg.eigh(np.where(finite[:, None, None], hessian, 0.0))
    scale = np.max(np.abs(eig), axis=-1)
    candidate = finite & (eig[:, 0] <= np.sqrt(eps) * scale)
    if not candidate.any():
        return {}
    v = vec[:, :, 0]  # (B, dim), the eigenvector of the smallest eigenvalue
    noise = 1e3 * eps * np.maximum(np.abs(value), 1.0)
    far = np.maximum(1.0, np.linalg.norm(x, axis=-1))[:, None]
    near = np.minimum(far, np.sqrt(2e3 * noise / np.maximum(np.abs(eig[:, 0]), 1e-300))[:, None])
    points = np.stack([x + far * v, x - far * v, x + near * v, x - near * v], axis=1)
    probed = probe(np.where(candidate[:, None, None], points, x[:, None, :]))  # (B, 4)
    usable = candidate & np.all(np.isfinite(probed), axis=-1)
    change = np.max(np.abs(probed[:, :2] - value[:, None]), axis=-1)
    dip = value - np.min(probed[:, 2:], axis=-1)
    labels = model.unconstrained_names()
    out = {}
    for i in np.flatnonzero(usable & (eig[:, 0] < -np.sqrt(eps) * scale) & (dip > 10 * noise)):
        out[i] = (SADDLE, _saddle_message(labels, v[i], eig[i, 0], scale[i], dip[i],
                                                 float(near[i, 0]), int(end.n_obs[i])))
    for i in np.flatnonzero(usable & (change <= noise)):
        out.setdefault(i, (RIDGE, _not_unique_message(
            labels, v[i], eig[i, 0], scale[i], change[i], float(far[i, 0]))))
    return out


def _direction_words(labels, v) -> tuple[str, str]:
    big = np.flatnonzero(np.abs(v) >= 0.1 * np.max(np.abs(v)))
    combination = " ".join(f"{v[j]:+.3g}*{labels[j]}" for j in big[:6])
    return combination + (" ..." if len(big) > 6 else ""), ", ".join(labels[j] for j in big[:6])


def _saddle_message(labels, v, smallest, largest, dip, step, n_obs) -> str:
    combination, _ = _direction_words(labels, v)
    return (
        f"a saddle point, not a maximum: the gradient vanishes, but the Hessian has a negative "
        f"curvature ({smallest:.2g}, against a largest of {largest:.2g}) along {combination}, "
        f"and the log-density is higher by {dip * n_obs:.2g} a step of {step:.2g} along it. "
        "Give another init (e.g. the point plus a step along that direction), or a prior "
        "that makes the problem better posed."
    )


def _not_unique_message(labels, v, smallest, largest, change, step) -> str:
    combination, names = _direction_words(labels, v)
    return (
        f"the maximum is not unique: the objective is flat along the direction {combination} "
        f"(the Hessian's smallest eigenvalue is {smallest:.2g} against a largest of "
        f"{largest:.2g}, and the log-density changes by {change:.2g} per observation over a "
        f"step of {step:.3g} along it). The data cannot tell {names} apart: collinear design "
        "columns (e.g. one dummy per level plus an intercept, or a column that is a sum of "
        "others) or a parameter the likelihood does not use. The point returned is one of "
        "infinitely many maxima. Fix: drop the redundant column(s), or give these parameters "
        "a proper prior (method='map' with e.g. prior=Normal(0, s)), which makes the MAP "
        "unique."
    )


def _clearly_nonsingular(hessian, ratio) -> bool:
    """True when every Hessian of the batch ``(B, dim, dim)`` has
    :math:`\\lambda_{\\min} > \\text{ratio} \\cdot \\max|\\lambda|`: a Cholesky factorization of
    :math:`H - \\tau I` with :math:`\\tau = \\text{ratio}\\,\\|H\\|_F \\ge \\text{ratio} \\max|\\lambda|`
    exists. One batched Cholesky costs a fraction of the eigen-decompositions, which are then
    needed only when it fails.
    """
    tau = ratio * np.linalg.norm(hessian, axis=(-1, -2))
    if not np.all(np.isfinite(tau)):
        return False
    shifted = np.array(hessian)  # H - tau I, through a view of the diagonals
    dim = shifted.shape[-1]
    shifted.reshape(len(shifted), dim * dim)[:, :: dim + 1] -= tau[:, None]
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        return False
    return True
