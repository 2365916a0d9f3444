"""The structure of a generalized linear model, and the functions built from it.

A :class:`GLMSpec` is what makes two ``mm.glm`` models the same model: the family (its
:meth:`~mlemap.families.Family.key`: name, link, fixed values, classes), the intercept, the
coefficients' shape and which of offset and weights the data carry. :func:`glm_likelihood`
builds the model's functions (the pointwise log-likelihood, the start from the data, the
check of the response) once per structure and hands the same objects to every structurally
equal glm, so that their models share their compiled programs (:mod:`mlemap._programs`):
the functions close over the structure only, never over data or prior values.

The likelihood object carries its spec, which is how ``mm.predict`` and ``mm.summary`` know
a glm's family and layout (:func:`glm_spec`) without a field on ``Model``.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from mlemap import _checks
from mlemap.families import Family

__all__ = ["GLMSpec", "GLMLikelihood", "glm_likelihood", "glm_spec", "linear_predictor",
           "offset_column"]


@dataclasses.dataclass(frozen=True, eq=False)
class GLMSpec:
    """A glm's structure.

    Attributes
    ----------
    family : Family
        Resolved (number of classes fixed), without its data arrays (they are data).
    intercept : bool
    beta_shape : tuple
        ``(d,)``, or ``(d, K-1)`` / ``(d, K)`` for categorical.
    intercept_shape : tuple
        ``()``, or ``(K-1,)`` for categorical.
    offset, weights : bool
        Whether the data carry ``"offset"`` ``(n,)`` and ``"weights"`` ``(n,)``.
    """

    family: Family
    intercept: bool
    beta_shape: tuple[int, ...]
    intercept_shape: tuple[int, ...]
    offset: bool
    weights: bool

    def key(self) -> tuple:
        return (self.family.key(), self.intercept, self.beta_shape, self.intercept_shape,
                self.offset, self.weights)

    @property
    def num_classes(self) -> int | None:
        return self.family.num_classes if self.family.link == "softmax" else None


def linear_predictor(spec: GLMSpec, params, data):
    """:math:`\\eta = X\\beta + \\beta_0 + \\mathrm{offset}`: ``(n,)``, or the ``(n, K)``
    logits for categorical (class 0 the reference of whatever has ``K-1`` columns)."""
    eta = data["X"] @ params["beta"]
    if spec.num_classes is not None:
        return _softmax_logits(eta, params.get("intercept"), spec.num_classes)
    if spec.intercept:
        eta = eta + params["intercept"]
    if spec.offset:
        eta = eta + data["offset"]
    return eta


def _softmax_logits(eta, intercept, num_classes):
    """Logits ``(n, K)`` from ``X @ beta`` with ``K-1`` or ``K`` columns and a ``(K-1,)``
    intercept, class 0 being the reference of whatever has ``K-1`` columns."""
    n = eta.shape[0]
    if eta.shape[1] == num_classes - 1:
        eta = jnp.concatenate([jnp.zeros((n, 1), eta.dtype), eta], axis=1)
    if intercept is not None:
        full = jnp.concatenate([jnp.zeros((1,), intercept.dtype), intercept])
        eta = eta + full[None, :]
    return eta


class GLMLikelihood:
    """``log_likelihood(params, data) -> (n,)`` of a glm: :math:`w_i \\log p(y_i \\mid
    \\eta_i)` (:math:`w_i = 1` without weights), with ``init`` (``Model.init``) and
    ``check_data`` (``Model.check_data``) as attributes built with it.

    One object per structure (:func:`glm_likelihood`); it closes over its spec only.
    """

    def __init__(self, spec: GLMSpec):
        self.spec = spec
        self.init = _start(spec)
        self.check_data = _response_check(spec)

    def __call__(self, params, data):
        spec = self.spec
        eta = linear_predictor(spec, params, data)
        nuisance = {name: params[name] for name in spec.family.learned}
        log_p = spec.family.log_prob(eta, data["y"], nuisance, data)
        return log_p * data["weights"] if spec.weights else log_p

    def __repr__(self):
        return f"GLMLikelihood({self.spec.family!r}, intercept={self.spec.intercept})"


_LIKELIHOODS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def glm_likelihood(spec: GLMSpec) -> GLMLikelihood:
    """The one :class:`GLMLikelihood` of a structure: the same object for every spec of the
    same :meth:`GLMSpec.key` while a model holds it (a ``WeakValueDictionary``: freed with the
    last model of the structure)."""
    key = spec.key()
    with _LOCK:
        likelihood = _LIKELIHOODS.get(key)
        if likelihood is None:
            likelihood = GLMLikelihood(spec)
            _LIKELIHOODS[key] = likelihood
    return likelihood


def glm_spec(model) -> GLMSpec | None:
    """The structure of a model made by ``mm.glm``, else None."""
    likelihood = getattr(model, "log_likelihood", None)
    return likelihood.spec if isinstance(likelihood, GLMLikelihood) else None


def _response_check(spec: GLMSpec):
    """``Model.check_data``: the family's domain, elementwise (so that a batch of stacked
    datasets is checked at once); for class labels inferred from the data, every class
    present in each dataset; weights non-negative."""
    family = spec.family
    classes = family.link in ("softmax", "cumulative logit")

    def check_data(data):
        y = np.asarray(data["y"])
        extra = {k: np.asarray(data[k]).reshape(-1) for k in family.data}
        if spec.weights:
            _checks.observation_weights(np.asarray(data["weights"]).reshape(-1))
        if not classes:
            family.validate(y.reshape(-1), extra)
            return
        _checks.class_labels(y.reshape(-1), family.num_classes, family.name)
        _checks.every_class_present(y.reshape(-1, y.shape[-1]), family.num_classes,
                                    family.name)

    return check_data


def _start(spec: GLMSpec):
    """``Model.init``: least squares (on centred columns, with a ridge of 1e-10 of the mean
    diagonal against exact collinearity) and the residual scale for a robust family
    (``Family.least_squares_start``); for any other, the link of the mean response as the
    intercept, zero coefficients, and the scale around the mean; the offset's mean taken
    off the intercept (and added to ordinal cut points)."""
    family, intercept = spec.family, spec.intercept

    def init(data):
        X, y = data["X"], data["y"]
        offset = data["offset"] if spec.offset else jnp.zeros(X.shape[0], X.dtype)
        if family.least_squares_start:
            start = _least_squares(X, y - offset, intercept)
            start.update(family.nuisance_start(y, y - start.pop("residual")))
        elif spec.num_classes is not None:  # log-odds of each class against class 0
            counts = jnp.sum(jax.nn.one_hot(y, spec.num_classes, dtype=X.dtype), axis=0) + 0.5
            start = {"intercept": jnp.log(counts[1:]) - jnp.log(counts[0]),
                     "beta": jnp.zeros(spec.beta_shape, X.dtype)}
        else:
            mean = jnp.full(y.shape, jnp.mean(y), X.dtype)
            start = {"beta": jnp.zeros(spec.beta_shape, X.dtype)}
            if intercept:
                start["intercept"] = family.mean_link(y, data) - jnp.mean(offset)
            start.update(family.nuisance_start(y, mean))
            if "cutpoints" in start:
                start["cutpoints"] = start["cutpoints"] + jnp.mean(offset)
        return {k: v for k, v in start.items() if k != "intercept" or intercept}

    return init


def _least_squares(X, y, intercept: bool) -> dict:
    """Least squares of ``y`` on ``X`` (and a constant), and the residual ``(n,)``."""
    mean_x = jnp.mean(X, axis=0) if intercept else jnp.zeros(X.shape[1], X.dtype)
    mean_y = jnp.mean(y) if intercept else jnp.zeros((), X.dtype)
    Xc, yc = X - mean_x[None, :], y - mean_y
    gram = Xc.T @ Xc
    ridge = 1e-10 * jnp.trace(gram) / max(X.shape[1], 1) + jnp.finfo(X.dtype).tiny
    beta = jnp.linalg.solve(gram + ridge * jnp.eye(X.shape[1], dtype=X.dtype), Xc.T @ yc)
    return {"intercept": mean_y - mean_x @ beta, "beta": beta, "residual": yc - Xc @ beta}


def offset_column(family: Family, offset, exposure, n: int) -> np.ndarray | None:
    """The offset added to the linear predictor, ``offset + log(exposure)`` ``(n,)``, checked;
    None when neither is given (mm.glm, and mm.predict for new rows)."""
    if offset is None and exposure is None:
        return None
    if family.link == "softmax":
        raise ValueError("categorical models take no offset or exposure: there is one linear "
                         "predictor per class. Leave them out.")
    total = np.zeros(n)
    if offset is not None:
        total = total + _checks.per_observation("offset", offset, n)
    if exposure is not None:
        exposure = _checks.per_observation("exposure", exposure, n)
        if not np.all(exposure > 0):
            raise ValueError(f"exposure must be positive (its log is the offset); found "
                             f"{_checks.describe_values(exposure[~(exposure > 0)])}.")
        total = total + np.log(exposure)
    return total
