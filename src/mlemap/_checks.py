"""Input validation that runs on concrete values, before anything is traced.

The arguments of ``glm`` (design, response, labels), ``fit`` and ``sample``. Every message
says what was expected, what was found and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions import Distribution

from mlemap._model import Model, check_param_names


def describe_values(values: np.ndarray, limit: int = 8) -> str:
    unique = np.unique(values)
    shown = ", ".join(repr(v.item()) for v in unique[:limit])
    more = f", ... ({unique.size} distinct)" if unique.size > limit else ""
    return "{" + shown + more + "}"


def as_float_array(name: str, value, *, ndim: int | None = None) -> np.ndarray:
    """Convert to a float NumPy array, checking the number of dimensions and finiteness."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be numeric (an array of numbers); got {type(value).__name__}. "
            "Convert categorical columns to numbers (e.g. one-hot) first."
        ) from None
    if ndim is not None and array.ndim != ndim:
        shapes = {1: "(n_obs,)", 2: "(n_obs, n_features)"}
        hint = " Reshape a single feature with X.reshape(-1, 1)." if ndim == 2 else ""
        raise ValueError(
            f"{name} must be {ndim}-D with shape {shapes.get(ndim, '')}; got shape "
            f"{array.shape}.{hint}"
        )
    check_finite(name, array)
    return array


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise when an array holds NaN or +-inf, saying how many and where the first is."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf), the first at "
            f"index {first}: {array[first].item()!r}. Remove or impute those rows before fitting."
        )


def design_and_response(X, y) -> tuple[np.ndarray, np.ndarray]:
    """Check a design matrix ``X (n, d)`` and a response ``y (n,)`` against each other."""
    X = as_float_array("X", X, ndim=2)
    y_raw = np.asarray(y)
    if y_raw.ndim != 1:
        raise ValueError(
            f"y must be 1-D with shape (n_obs,); got shape {y_raw.shape}. For class labels "
            "give integer codes, not one-hot rows."
        )
    if X.shape[0] == 0:
        raise ValueError("X has zero rows: there is nothing to fit. Pass at least one observation.")
    if len(y_raw) != X.shape[0]:
        raise ValueError(
            f"X and y disagree on the number of observations: X has {X.shape[0]} rows, y has "
            f"{len(y_raw)} entries. Give one response per row of X."
        )
    return X, y_raw


def real_response(y) -> np.ndarray:
    """A real-valued response: numeric and finite."""
    return as_float_array("y", y, ndim=1)


def binary_labels(y) -> np.ndarray:
    """Bernoulli labels: every value 0 or 1 (bools allowed)."""
    y = as_float_array("y", y, ndim=1)
    ok = (y == 0) | (y == 1)
    if not ok.all():
        raise ValueError(
            f"bernoulli labels must be 0 or 1; found the values {describe_values(y)}. "
            "Recode them, e.g. y = (y == positive_class).astype(int) for labels {1, 2} or "
            "(y + 1) / 2 for labels {-1, 1}."
        )
    return y


def class_labels(y, num_classes: int | None, what: str = "categorical"
                 ) -> tuple[np.ndarray, int]:
    """Class labels (categorical, ordinal): integers 0..K-1. Returns them as int32 and K."""
    y = as_float_array("y", y, ndim=1)
    integer = np.all(y == np.round(y))
    if not integer or (y.size and y.min() < 0):
        raise ValueError(
            f"{what} labels must be integers 0..K-1; found the values "
            f"{describe_values(y)}. Encode classes with e.g. "
            "sklearn.preprocessing.LabelEncoder or numpy.unique(y, return_inverse=True)[1]."
        )
    observed = int(y.max()) + 1 if y.size else 0
    k = observed if num_classes is None else int(num_classes)
    if k < 2:
        raise ValueError(
            f"{what} needs at least 2 classes; found {k}. Check the labels."
        )
    if observed > k:
        raise ValueError(
            f"{what}(num_classes={k}) got labels up to {observed - 1}; labels must lie "
            f"in 0..{k - 1}. Raise num_classes or recode the labels."
        )
    if num_classes is None:
        every_class_present(y[None, :], k, what)
    return y.astype(np.int32), k


def every_class_present(y, num_classes: int, what: str = "categorical") -> None:
    """Every class ``0..K-1`` observed in each row of ``y`` ``(B, n)`` (one row: one dataset)."""
    present = np.zeros((y.shape[0], num_classes), bool)
    present[np.repeat(np.arange(y.shape[0]), y.shape[1]), y.reshape(-1).astype(int)] = True
    if not present.all():
        row, missing = np.nonzero(~present)
        where = f" in dataset {row[0]}" if y.shape[0] > 1 else ""
        raise ValueError(
            f"{what} labels must be 0..K-1 with every class observed; class "
            f"{missing[0]} has no observation{where} (labels found: "
            f"{describe_values(y[row[0]])}). The number of classes is taken from the largest "
            "label, so labels 1..K read as K+1 classes with class 0 empty. Encode the classes "
            "as 0..K-1 with numpy.unique(y, return_inverse=True)[1] (or sklearn's "
            f"LabelEncoder), or give {what}(num_classes=K) to keep an empty class."
        )


def positive_response(y) -> np.ndarray:
    """A positive response (Gamma): every value > 0."""
    y = as_float_array("y", y, ndim=1)
    bad = ~(y > 0)
    if bad.any():
        raise ValueError(
            f"gamma responses must be positive; found {int(bad.sum())} value(s) <= 0, e.g. "
            f"{describe_values(y[bad])}. Drop or shift them, or use a family whose support "
            "includes them (gaussian, poisson for counts)."
        )
    return y


def count_labels(y, what: str = "poisson") -> np.ndarray:
    """Counts (poisson, negative_binomial): non-negative integers."""
    y = as_float_array("y", y, ndim=1)
    bad = (y < 0) | (y != np.round(y))
    if bad.any():
        raise ValueError(
            f"{what} counts must be non-negative integers; found the values "
            f"{describe_values(y[bad])} among them. Model rates with an exposure offset, "
            "or use a gaussian family for continuous responses."
        )
    return y


def per_observation(name: str, value, n: int) -> np.ndarray:
    """An array of one finite number per observation, ``(n,)`` (a scalar is broadcast)."""
    array = as_float_array(name, value)
    if array.ndim == 0:
        return np.full(n, float(array))
    if array.shape != (n,):
        raise ValueError(f"{name} must hold one value per observation, shape ({n},); got "
                         f"shape {array.shape}.")
    return array


def observation_weights(weights) -> np.ndarray:
    """Frequency weights: finite, non-negative, not all zero."""
    weights = np.asarray(weights, dtype=float)
    bad = ~(weights >= 0)
    if bad.any():
        raise ValueError(f"weights must be non-negative (a weight is the number of times a row "
                         f"is observed); found {describe_values(weights[bad])}.")
    if weights.size and not weights.any():
        raise ValueError("weights are all zero: no observation counts. Give positive weights.")
    return weights


def positive_scalar(name: str, value) -> float:
    """A fixed scale (sigma, b, nu): a finite number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number or None (learned); got {value!r}.") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(
            f"{name} must be a finite number > 0, or None to learn it; got {value!r}."
        )
    return number


# --------------------------------------------------------------------------------------------
# fit's arguments
# --------------------------------------------------------------------------------------------


def fit_settings(method, jacobian, optimizer, max_steps, tol, rtol) -> None:
    """The settings of ``fit``, each checked on its own."""
    if method not in ("map", "mle"):
        raise ValueError(f"method must be 'map' or 'mle'; got {method!r}.")
    if method == "mle" and jacobian:
        raise ValueError("jacobian=True needs method='map': the MLE does not depend on the "
                         "parameterization. Use method='map', jacobian=True for the mode of the "
                         "unconstrained posterior.")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation (e.g. "
                        f"optax.adam(1e-2)); got {type(optimizer).__name__}.")
    if max_steps is not None and (not _is_int(max_steps) or max_steps < 0):
        raise ValueError(f"max_steps must be an integer >= 0 (or None for the default); got "
                         f"{max_steps!r}.")
    for name, value in (("tol", tol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, int | float | np.floating)
                                      and np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 (or None for the default); "
                             f"got {value!r}.")


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def parse_batch(batch) -> tuple[bool, bool]:
    """``fit``'s ``batch=`` as ``(batch_data, batch_priors)``."""
    if batch is None:
        return False, False
    parts = (batch,) if isinstance(batch, str) else tuple(batch)
    bad = [p for p in parts if p not in ("data", "priors")]
    if bad:
        raise ValueError(f"batch must be None, 'data', 'priors' or ('data', 'priors'); got "
                         f"{batch!r}.")
    return "data" in parts, "priors" in parts


def priors_override(model: Model, priors, batch_priors: bool) -> tuple[dict, int | None]:
    """``fit``'s and ``sample``'s ``priors=``: name -> distribution or None; with
    ``batch_priors``, each with a leading batch axis. Returns the dict and the batch size."""
    if priors is None:
        if batch_priors:
            raise ValueError("batch='priors' needs priors=: a dict name -> distribution whose "
                             "parameters have a leading batch axis.")
        return {}, None
    if not isinstance(priors, Mapping):
        raise TypeError(f"priors must be a dict name -> numpyro distribution or None; got "
                        f"{type(priors).__name__}.")
    unknown = sorted(set(priors) - set(model.params))
    if unknown:
        raise ValueError(f"priors has unknown parameter name(s) {unknown}; the model's "
                         f"parameters are {sorted(model.params)}.")
    for name, prior in priors.items():
        if prior is not None and not isinstance(prior, Distribution):
            raise TypeError(f"priors[{name!r}] must be a numpyro distribution or None (flat); "
                            f"got {type(prior).__name__}.")
    if not batch_priors:
        return dict(priors), None
    return _batched_priors(priors)


def _batched_priors(priors: Mapping) -> tuple[dict, int]:
    """The priors with a leading batch axis of one size ``B`` on every parameter.

    Every parameter of every batched prior gets a leading axis of the batch size B: leaves
    with a leading axis of 1, and scalars, are broadcast. NumPyro stores a distribution's
    parameters as its pytree leaves, so ``jax.vmap(..., in_axes=0)`` then slices them.
    """
    sizes = set()
    for name, prior in priors.items():
        if prior is None:
            raise ValueError(f"batch='priors': priors[{name!r}] is None (flat); a batched prior "
                             "must be a distribution. Leave flat parameters out of priors=.")
        if len(prior.batch_shape) == 0:
            raise ValueError(
                f"batch='priors': priors[{name!r}] has batch shape (); the batch axis must be "
                "its leading axis, e.g. Normal(0.0, scales[:, None]) for a vector parameter."
            )
        sizes.add(prior.batch_shape[0])
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"batch='priors': the priors have different batch sizes {sorted(sizes)}.")
    size = sizes.pop() if sizes else 1
    out = {}
    for name, prior in priors.items():
        leaves, treedef = jax.tree_util.tree_flatten(prior)
        new = []
        for leaf in leaves:
            leaf = jnp.asarray(leaf)
            if leaf.ndim == 0:
                leaf = jnp.broadcast_to(leaf, (size,))
            elif leaf.shape[0] in (1, size):
                leaf = jnp.broadcast_to(leaf, (size,) + leaf.shape[1:])
            else:
                raise ValueError(
                    f"batch='priors': a parameter of priors[{name!r}] has shape {leaf.shape}, "
                    f"whose leading axis is neither 1 nor the batch size {size}."
                )
            new.append(leaf)
        out[name] = jax.tree_util.tree_unflatten(treedef, new)
    return out, size


def initial_position(model: Model, init) -> np.ndarray | jax.Array:
    """``fit``'s ``init=`` (constrained values of every parameter) as the flat unconstrained
    start ``(dim,)``; ``None``: unconstrained zeros."""
    if init is None:  # numpy: a jit argument without a dispatch of its own
        return np.zeros((model.dim,), jnp.result_type(float))
    if not isinstance(init, Mapping):
        raise TypeError(f"init must be a dict name -> constrained value; got "
                        f"{type(init).__name__}.")
    check_param_names(model, init, "init's names", f"Give a value for each of "
                      f"{sorted(model.params)} (or init=None for the default).")
    for name, param in model.params.items():
        shape = tuple(np.shape(init[name]))
        if shape != param.shape:
            raise ValueError(f"init[{name!r}] has shape {shape}; the model declares {param.shape}.")
        value = np.asarray(init[name], dtype=float)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"init[{name!r}] is not finite.")
        inside = np.asarray(param.constraint(jnp.asarray(value)))
        if not np.all(inside):
            raise ValueError(f"init[{name!r}] = {value} lies outside the parameter's support "
                             f"{param.constraint}.")
    return model.unconstrain(init)


# --------------------------------------------------------------------------------------------
# sample's arguments
# --------------------------------------------------------------------------------------------

CHAIN_METHODS = ("parallel", "vectorized", "sequential")


def sample_settings(num_warmup, num_samples, num_chains, target_accept, max_tree_depth,
                    chain_method, init, seed, log_likelihood) -> None:
    """The settings of ``sample``, each checked on its own."""
    for name, value, least in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                               ("num_warmup", num_warmup, 0)):
        if not _is_int(value) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value!r}.")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(
            f"target_accept must be strictly between 0 and 1 (e.g. 0.8, or 0.95 for hard "
            f"posteriors); got {target_accept!r}."
        )
    depths = max_tree_depth if isinstance(max_tree_depth, tuple) else (max_tree_depth,)
    if not all(_is_int(d) and d >= 1 for d in depths):
        raise ValueError(
            f"max_tree_depth must be an integer >= 1 (or a (warm-up, sampling) pair); "
            f"got {max_tree_depth!r}."
        )
    if chain_method is not None and chain_method not in CHAIN_METHODS:
        raise ValueError(
            f"chain_method must be None (automatic) or one of {CHAIN_METHODS}; "
            f"got {chain_method!r}."
        )
    if chain_method == "parallel" and num_chains % min(num_chains, jax.local_device_count()):
        raise ValueError(
            f"chain_method='parallel' needs num_chains ({num_chains}) to be a multiple of the "
            f"devices used ({jax.local_device_count()} available)."
        )
    if not isinstance(init, Mapping) and init not in ("map", "prior", "uniform"):
        raise ValueError(
            f"init must be 'map', 'prior', 'uniform' or a dict of parameter values; got {init!r}."
        )
    if not _is_int(seed):
        raise TypeError(f"seed must be an integer; got {seed!r}.")
    if not isinstance(log_likelihood, bool | np.bool_):
        raise TypeError(f"log_likelihood must be True or False; got {log_likelihood!r}.")
