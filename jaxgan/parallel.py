"""The device mesh and shardings: data parallelism over a ('data',) mesh with jax.jit."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def create_mesh(devices=None) -> Mesh:
    """A one-axis mesh over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Shards the batch axis over 'data'; `leading_axes` unsharded axes may come first."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), "data"))


def check_batch_size(batch_size: int, name: str = "schedule.batch_size") -> None:
    """A global batch must be positive and split evenly over the devices."""
    if batch_size <= 0:
        raise ValueError(f"{name} must be positive, got {batch_size}")
    devices = jax.device_count()
    if batch_size % devices:
        raise ValueError(
            f"{name}={batch_size} is not divisible by the {devices} devices; "
            f"use a multiple of {devices}"
        )


def local_batch_size(batch_size: int) -> int:
    """This process's share of a global batch."""
    return batch_size // jax.process_count()


def to_global(tree, sharding: NamedSharding):
    """Host-local NumPy arrays (this process's rows) -> global jax.Arrays."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)


def to_host(array: jax.Array) -> np.ndarray:
    """A global array -> the full NumPy value on every process."""
    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def to_host_local(array: jax.Array) -> np.ndarray:
    """A global array sharded on its first axis -> this process's rows, as NumPy."""
    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(
        multihost_utils.global_array_to_host_local_array(
            array, array.sharding.mesh, array.sharding.spec
        )
    )


def gather_host_arrays(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Each process's NumPy rows -> every process's rows concatenated (a no-op on one host).

    Every process must pass arrays of the same shapes (pad, and pass a mask)."""
    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils

    return tuple(np.asarray(multihost_utils.process_allgather(a, tiled=True)) for a in arrays)
