"""The one check of the data that reaches ``fit``, ``laplace`` and ``sample``.

It runs on concrete values, before anything is traced: every leaf numeric and finite, a
leading batch axis of one size when the data are batched, and the model's own check of its
data (a glm's family checks the response's domain). What passes is returned as JAX arrays
of the default float dtype, so that one compiled program serves every call with the same
shapes. Arrays already on devices (``mm.shard``) stay where they are.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlemap._shard import count_nonfinite, spans_processes

__all__ = ["check_data", "as_arrays"]


def check_data(data: Any, model=None, *, batch: bool = False) -> tuple[Any, int | None]:
    """Check and convert a data pytree.

    Parameters
    ----------
    data : pytree of arrays
        Python lists are taken as arrays (``np.asarray``).
    model : Model, optional
        Its ``check_data`` hook runs on the data once they pass (a glm's family checks the
        response's domain); with ``batch``, on the stacked arrays. Skipped for data that span
        other processes (no host has them; ``glm`` checked them where they were built).
    batch : bool
        Every array has a leading axis of ``B`` datasets (``fit(..., batch="data")``).

    Returns
    -------
    data : pytree of jax.Array
        Floating leaves in the default float dtype (float64 under ``jax_enable_x64``).
    size : int or None
        ``B`` when ``batch``.

    Raises
    ------
    TypeError
        A leaf that is not numeric (strings, objects).
    ValueError
        NaN or infinite values; a scalar or mismatched leading sizes under ``batch``; what
        the model's own check refuses.
    """
    leaves = jax.tree_util.tree_flatten_with_path(data, is_leaf=_is_list)[0]
    sizes = set()
    for path, leaf in leaves:
        name = "data" + jax.tree_util.keystr(path)
        array = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
        _check_leaf(name, array)
        if batch:
            if array.ndim == 0:
                raise ValueError(
                    f"batch='data' needs a leading batch axis on every data array; {name} is "
                    "a scalar. Stack the datasets: np.stack([d1, d2, ...])."
                )
            sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise ValueError(
            f"batch='data': the data arrays have different leading (batch) sizes {sorted(sizes)}; "
            "every array needs the same number of datasets along axis 0."
        )
    hook = getattr(model, "check_data", None)
    if hook is not None and not any(spans_processes(leaf) for _, leaf in leaves):
        hook(jax.tree.map(np.asarray, data, is_leaf=_is_list))
    return jax.tree.map(_as_jax, data, is_leaf=_is_list), (sizes.pop() if sizes else None)


def as_arrays(tree: Any) -> Any:
    """Every leaf as a JAX array (floating leaves in the default float dtype), unchecked:
    e.g. the parameters of a dict of prior distributions."""
    return jax.tree.map(_as_jax, tree, is_leaf=_is_list)


def _is_list(x) -> bool:
    return isinstance(x, list)


def _check_leaf(name: str, array) -> None:
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise TypeError(
            f"{name} must be a numeric array; got dtype {dtype}. Encode categories as integers "
            "and pass only arrays (put constants in the model)."
        )
    if not np.issubdtype(dtype, np.floating):
        return
    # An array spanning other processes (multi-host) has no host copy: it is counted on its
    # devices, into a number that every process reads (and so raises on).
    if spans_processes(array):
        bad = count_nonfinite(array)
    else:
        host = np.asarray(array)
        bad = host.size - int(np.count_nonzero(np.isfinite(host)))
    if bad:
        raise ValueError(
            f"{name} has {bad} NaN or infinite value(s). Remove or impute them before fitting."
        )


def _as_jax(leaf) -> jax.Array:
    float_dtype = jnp.result_type(float)
    if isinstance(leaf, jax.Array):  # kept where it is (e.g. sharded by mm.shard)
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != float_dtype:
            return leaf.astype(float_dtype)
        return leaf
    array = np.asarray(leaf)
    if np.issubdtype(array.dtype, np.floating) and array.dtype != float_dtype:
        array = array.astype(float_dtype)
    return jnp.asarray(array)
