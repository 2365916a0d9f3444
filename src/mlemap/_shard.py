"""shard(): lay a dataset out along the observation axis over a device mesh.

Nothing here is home-made parallelism: the arrays get a ``jax.sharding.NamedSharding`` over
a one-axis ``Mesh`` and XLA's partitioner does the rest. The log-likelihood is a sum over
observations, so with ``X`` and ``y`` split by rows each device sums its own rows and the
total becomes one all-reduce; the parameters stay replicated. ``fit``, ``laplace`` and
``sample`` take sharded data unchanged, and the model code does not change either.

Multi-host (``jax.distributed.initialize()`` in every process): the mesh spans every
process's devices, each process holding its own rows. Such an array is not fully
addressable, so no process can ``np.asarray`` it; the few places that need a host value go
through :func:`spans_processes`, :func:`count_nonfinite` and :func:`to_host` below, and a
numpy array or a process-local ``jax.Array`` takes the plain host path as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["shard"]

AXIS = "obs"


def shard(data, devices: Sequence[jax.Device] | None = None, *, num_obs: int | None = None):
    """Shard every array of ``data`` whose leading axis is the observations.

    Parameters
    ----------
    data : pytree of arrays
        e.g. ``{"X": (n, d), "y": (n,)}`` from :func:`mlemap.glm`. On a multi-host run every
        process passes the same full data (checked: a fingerprint of each process's arrays
        is compared across processes); each process then puts only its own rows on its own
        devices (``jax.make_array_from_callback``), and nothing is gathered.
    devices : sequence of jax.Device, optional
        The devices of the mesh; default ``jax.devices()`` (on a multi-host run, every
        process's devices, after ``jax.distributed.initialize()``).
    num_obs : int, optional
        The number of observations ``n``; default the leading size of the largest array.
        Arrays whose leading axis has another size (or scalars) are replicated.

    Returns
    -------
    pytree
        The same structure; observation arrays sharded as ``PartitionSpec("obs")``, the
        others replicated on the same mesh.

    Raises
    ------
    ValueError
        When ``n`` is not divisible by the number of devices (JAX shards evenly); on a
        multi-host run, when the processes passed different data (raised on every process).

    Notes
    -----
    Data too large for one host need not go through ``shard``: build each global array from
    the rows each process holds, ``jax.make_array_from_process_local_data(sharding, rows)``,
    and pass those; ``fit``, ``laplace`` and ``sample`` take any sharded ``jax.Array``.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("shard() got an empty list of devices.")
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("shard() got no arrays: pass the data pytree, e.g. {'X': X, 'y': y}.")
    if num_obs is None:
        largest = max(leaves, key=lambda a: np.size(a))
        num_obs = np.shape(largest)[0] if np.ndim(largest) else 1
    if num_obs % len(devices):
        fits = [k for k in range(len(devices), 0, -1) if num_obs % k == 0][0]
        raise ValueError(
            f"{num_obs} observations cannot be split evenly over {len(devices)} devices (JAX "
            f"shards evenly). Use shard(data, devices=jax.devices()[:{fits}]), or drop "
            f"{num_obs % len(devices)} rows; padding would change the likelihood."
        )
    mesh = Mesh(np.array(devices), (AXIS,))
    by_rows = NamedSharding(mesh, PartitionSpec(AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    multi_process = len({d.process_index for d in devices}) > 1

    def place(leaf):
        is_rows = np.ndim(leaf) >= 1 and np.shape(leaf)[0] == num_obs
        sharding = by_rows if is_rows else replicated
        if not multi_process or spans_processes(leaf):
            return jax.device_put(leaf, sharding)
        # device_put would check that every process passed the same value by gathering the
        # whole array to every process; each process puts only its own rows instead.
        host = np.asarray(leaf)
        host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    if multi_process:
        _check_same_on_every_process(data)
    return jax.tree.map(place, data)


def _check_same_on_every_process(data) -> None:
    """Raise, on every process, when the processes passed different data to :func:`shard`."""
    digest = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if spans_processes(leaf):  # already global: nothing to compare
            continue
        host = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}{host.shape}{host.dtype}".encode())
        digest.update(host.tobytes())
    mine = np.frombuffer(digest.digest(), dtype=np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))  # (processes, 16)
    differ = [i for i in range(every.shape[0]) if not np.array_equal(every[i], every[0])]
    if differ:
        raise ValueError(
            f"shard(): processes {differ} passed other data than process 0. On a multi-host "
            "run every process passes the same full data (same seed, same file); or build "
            "the global arrays from each process's own rows with "
            "jax.make_array_from_process_local_data and pass them to fit/sample directly."
        )


# --------------------------------------------------------------------------------------------
# Host values of arrays that span several processes (multi-host)
# --------------------------------------------------------------------------------------------


def spans_processes(x) -> bool:
    """Whether ``x`` is a ``jax.Array`` with shards on other processes' devices."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


@jax.jit
def _nonfinite(x):
    return jnp.sum(~jnp.isfinite(x))


def count_nonfinite(x) -> int:
    """The number of NaN or infinite entries of a floating array that spans processes.

    Counted on the devices, each its own rows, then summed by one all-reduce: the result is
    replicated, so every process reads the same count (and raises the same error).
    """
    return int(to_host(_nonfinite(x)))


def to_host(x) -> np.ndarray:
    """``np.asarray(x)``, gathering the other processes' shards first when ``x`` spans them.

    A collective when it gathers: every process must call it, in the same order (they do,
    running the same program).
    """
    if spans_processes(x) and not x.is_fully_replicated:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
