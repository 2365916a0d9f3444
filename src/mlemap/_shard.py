"""shard(): lay a dataset out along the observation axis over a device mesh.

Nothing here is home-made parallelism: the arrays get a ``jax.sharding.NamedSharding`` over
a one-axis ``Mesh`` and XLA's partitioner does the rest. The log-likelihood is a sum over
observations, so with ``X`` and ``y`` split by rows each device sums its own rows and the
total becomes one all-reduce; the parameters stay replicated. ``fit``, ``laplace`` and
``sample`` take sharded data unchanged, and the model code does not change either.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["shard"]

AXIS = "obs"


def shard(data, devices: Sequence[jax.Device] | None = None, *, num_obs: int | None = None):
    """Shard every array of ``data`` whose leading axis is the observations.

    Parameters
    ----------
    data : pytree of arrays
        e.g. ``{"X": (n, d), "y": (n,)}`` from :func:`mlemap.glm`.
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
        When ``n`` is not divisible by the number of devices (JAX shards evenly).
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

    def place(leaf):
        is_rows = np.ndim(leaf) >= 1 and np.shape(leaf)[0] == num_obs
        return jax.device_put(leaf, by_rows if is_rows else replicated)

    return jax.tree.map(place, data)
