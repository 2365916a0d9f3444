"""Input validation that runs on concrete values, before anything is traced.

Every message says what was expected, what was found and what to do.
"""

from __future__ import annotations

import numpy as np


def _describe_values(values: np.ndarray, limit: int = 8) -> str:
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
            f"bernoulli labels must be 0 or 1; found the values {_describe_values(y)}. "
            "Recode them, e.g. y = (y == positive_class).astype(int) for labels {1, 2} or "
            "(y + 1) / 2 for labels {-1, 1}."
        )
    return y


def class_labels(y, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Categorical labels: integers 0..K-1. Returns the labels as int32 and K."""
    y = as_float_array("y", y, ndim=1)
    integer = np.all(y == np.round(y))
    if not integer or (y.size and y.min() < 0):
        raise ValueError(
            "categorical labels must be integers 0..K-1; found the values "
            f"{_describe_values(y)}. Encode classes with e.g. "
            "sklearn.preprocessing.LabelEncoder or numpy.unique(y, return_inverse=True)[1]."
        )
    observed = int(y.max()) + 1 if y.size else 0
    k = observed if num_classes is None else int(num_classes)
    if k < 2:
        raise ValueError(
            f"categorical needs at least 2 classes; found {k}. Use bernoulli for two classes "
            "or check the labels."
        )
    if observed > k:
        raise ValueError(
            f"categorical(num_classes={k}) got labels up to {observed - 1}; labels must lie "
            f"in 0..{k - 1}. Raise num_classes or recode the labels."
        )
    return y.astype(np.int32), k


def count_labels(y) -> np.ndarray:
    """Poisson counts: non-negative integers."""
    y = as_float_array("y", y, ndim=1)
    bad = (y < 0) | (y != np.round(y))
    if bad.any():
        raise ValueError(
            "poisson counts must be non-negative integers; found the values "
            f"{_describe_values(y[bad])} among them. Model rates with an exposure offset, "
            "or use a gaussian family for continuous responses."
        )
    return y


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
