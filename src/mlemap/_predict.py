"""predict(): a glm's mean response at new rows, and posterior predictive draws there.

From a point (``mm.fit``'s estimate, a Laplace approximation's mode, a dict of values):
the mean response :math:`g^{-1}(\\eta)` at :math:`\\eta = X_{new}\\beta + \\beta_0 +
\\mathrm{offset}` (``Family.mean``): the success probability for bernoulli and binomial,
the class probabilities for categorical and ordinal (statsmodels' and scikit-learn's
``predict`` and ``predict_proba``). From a posterior (``mm.sample``'s DataTree, or any with
a ``posterior`` group of the model's parameters, such as a Laplace approximation's draws):
one draw of :math:`y_{new}` from the family at each posterior draw, the posterior
predictive, with the mean response at each draw, as an ArviZ ``predictions`` group.

The model must come from ``mm.glm``: its log-likelihood carries the structure (family,
intercept, shapes; :func:`mlemap._glm.glm_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import arviz_base
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from mlemap import _checks
from mlemap._fit import PointEstimate
from mlemap._flat import SAMPLE_DIMS, posterior_group
from mlemap._glm import GLMSpec, glm_spec, linear_predictor, offset_column
from mlemap._laplace import LaplaceApprox
from mlemap._model import Model
from mlemap._programs import program

__all__ = ["predict"]


def predict(result, X_new, *, model: Model | None = None, offset=None, exposure=None,
            trials=None, seed: int = 0):
    """The mean response at new rows, or posterior predictive draws there.

    Parameters
    ----------
    result : PointEstimate, LaplaceApprox, dict or xarray.DataTree
        A point (``mm.fit``; a Laplace approximation's mode; a dict of constrained values)
        gives the mean response; a posterior DataTree (``mm.sample``, or
        ``LaplaceApprox.draws``) gives predictive draws.
    X_new : array (m, d) or pandas.DataFrame
        New rows. A DataFrame is matched to a named model's columns by name (any order).
    model : Model, optional
        The ``mm.glm`` model; default the estimate's (``PointEstimate.model``). Needed with
        a DataTree or a dict.
    offset, exposure : array (m,), optional
        The new rows' offset and exposure (``log(exposure)`` is added), as in ``mm.glm``;
        required when the model was fitted with either (give ``offset=0`` for none).
    trials : int or array (m,), optional
        Binomial: the new rows' trials, needed for draws (the mean is a probability).
    seed : int
        Seed of the predictive draws.

    Returns
    -------
    numpy.ndarray or xarray.DataTree
        From a point: ``(m,)`` means, or ``(m, K)`` class probabilities. From a posterior: a
        DataTree whose ``predictions`` group holds ``y`` ``(chain, draw, obs)``, one
        predictive draw per posterior draw, and ``mean`` ``(chain, draw, obs[, class])``,
        the mean response (class probabilities) at each draw; ``predictions_constant_data``
        holds ``X``.
    """
    point = not isinstance(result, xr.DataTree)
    model = _model_of(result, model)
    spec = glm_spec(model)
    if spec is None:
        raise TypeError("predict needs a model made by mm.glm (it knows the family, the "
                        "intercept and the columns); for your own Model, write the mean from "
                        "the parameters, or draw with numpyro.infer.Predictive.")
    X = _design(model, spec, X_new)
    data = _new_data(spec, X, offset, exposure, trials, draws=not point)
    if point:
        params = {k: jnp.asarray(v) for k, v in _point_values(result).items()}
        return np.asarray(_mean_at(spec, params, data))
    return _predictive(model, spec, posterior_group(result), data, int(seed))


def _model_of(result, model) -> Model:
    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mlemap.Model; got {type(model).__name__}.")
        return model
    point = result.mode if isinstance(result, LaplaceApprox) else result
    if isinstance(point, PointEstimate) and point.model is not None:
        return point.model
    raise ValueError(f"predict({type(result).__name__}, X_new) needs the model: pass "
                     "model=the mm.glm model (a posterior DataTree or a dict of values does "
                     "not carry it).")


def _point_values(result) -> dict:
    point = result.mode if isinstance(result, LaplaceApprox) else result
    if isinstance(point, PointEstimate):
        if np.ndim(point.log_density) != 0:
            raise ValueError("predict takes one fit; this PointEstimate is batched. Index it "
                             "first (jax.tree.map(lambda a: a[i], estimate)).")
        return point.params
    if isinstance(point, Mapping):
        return dict(point)
    raise TypeError(f"predict takes a PointEstimate, a LaplaceApprox, a dict of parameter "
                    f"values or a posterior DataTree; got {type(result).__name__}.")


def _design(model: Model, spec: GLMSpec, X_new) -> np.ndarray:
    """The new rows as an ``(m, d)`` array; a DataFrame's columns put in the model's order."""
    names = (model.coords or {}).get("coef")
    columns = getattr(X_new, "columns", None)
    if names is not None and columns is not None:
        missing = [name for name in names if name not in set(map(str, columns))]
        if missing:
            raise ValueError(f"X_new lacks the model's columns {missing}; it has "
                             f"{[str(c) for c in columns]}.")
        X_new = X_new[[c for name in names for c in columns if str(c) == name]]
    X = _checks.as_float_array("X_new", X_new, ndim=2)
    if X.shape[1] != spec.beta_shape[0]:
        raise ValueError(f"X_new has {X.shape[1]} columns; the model has {spec.beta_shape[0]} "
                         "coefficients. Give the same columns as in the fit.")
    return X


def _new_data(spec: GLMSpec, X, offset, exposure, trials, *, draws: bool) -> dict:
    """The new rows' data pytree: ``X``, the offset when given, binomial trials for draws."""
    m = X.shape[0]
    data = {"X": jnp.asarray(X, dtype=float)}
    total = offset_column(spec.family, offset, exposure, m)
    if total is not None:
        data["offset"] = jnp.asarray(total, dtype=float)
    elif spec.offset:
        raise ValueError("The model was fitted with an offset (or exposure): give the new "
                         "rows' offset= or exposure= (offset=0 for none).")
    if "trials" in spec.family.data and draws:
        if trials is None:
            raise ValueError("binomial draws need the new rows' numbers of trials: give "
                             "trials= (an int, or one per row).")
        trials = _checks.per_observation("trials", trials, m)
        if np.any((trials < 1) | (trials != np.round(trials))):
            raise ValueError("trials must be positive integers, one per new row (or one int).")
        data["trials"] = jnp.asarray(trials, dtype=float)
    return data


def _with_offset(spec: GLMSpec, data: dict) -> GLMSpec:
    return dataclasses.replace(spec, offset="offset" in data)


def _mean_at(spec: GLMSpec, params, data):
    """The mean response at one point: ``(m,)`` or ``(m, K)``."""
    spec = _with_offset(spec, data)
    eta = linear_predictor(spec, params, data)
    nuisance = {name: params[name] for name in spec.family.learned}
    return spec.family.mean(eta, nuisance, data)


def _predictive(model: Model, spec: GLMSpec, post: xr.Dataset, data: dict, seed: int):
    """One draw of ``y`` and the mean response at each posterior draw, as a DataTree."""
    missing = [name for name in model.params if name not in post.data_vars]
    if missing:
        raise ValueError(f"The posterior has no draws of {missing}: it must be the model's "
                         f"(its variables are {sorted(post.data_vars)}).")
    chains, draws = (post.sizes[d] for d in SAMPLE_DIMS)
    params = {}
    for name, param in model.params.items():
        da = post[name]
        values = da.transpose(*SAMPLE_DIMS, *[d for d in da.dims if d not in SAMPLE_DIMS]).values
        params[name] = jnp.asarray(values.reshape((chains * draws,) + param.shape))
    keys = jax.random.split(jax.random.key(seed), chains * draws)
    y, mean = _predictive_program(model, spec, data)(params, data, keys)
    y = np.asarray(y).reshape((chains, draws) + y.shape[1:])
    mean = np.asarray(mean).reshape((chains, draws) + mean.shape[1:])
    dims = {"y": ["obs"], "mean": ["obs"] + (["class"] if mean.ndim == 4 else []),
            "X": ["obs", "coef"]}
    coords = {"coef": model.coords["coef"]} if "coef" in (model.coords or {}) else None
    return arviz_base.from_dict(
        {"predictions": {"y": y, "mean": mean},
         "predictions_constant_data": {"X": np.asarray(data["X"])}},
        pred_dims=dims, pred_coords=coords, index_origin=0)


def _predictive_program(model: Model, spec: GLMSpec, data: dict):
    """``(params (S, ...), data, keys (S,)) -> (y (S, m), mean (S, m[, K]))``, jitted once
    per structure and layout of the new data (in the model's program store)."""
    spec = _with_offset(spec, data)

    def build(_):  # built from the spec alone
        def one(params, data, rng):
            eta = linear_predictor(spec, params, data)
            nuisance = {name: params[name] for name in spec.family.learned}
            distribution = spec.family.distribution(eta, nuisance, data)
            return distribution.sample(rng), spec.family.mean(eta, nuisance, data)

        return jax.jit(jax.vmap(one, in_axes=(0, None, 0)))

    return program(model, ("predict", "draws", spec.offset, tuple(sorted(data))), build)
