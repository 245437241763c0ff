"""The device mesh and shardings: data parallelism over a ('data',) mesh with jax.jit."""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

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


class DevicePrefetch:
    """Iterates `convert(item)` for the items of `items`, computed `depth` items ahead by a
    background thread: while a step runs, the next steps' host batches are pulled from the
    input pipeline and transferred to the devices (`convert`, e.g. `to_global`). Items come
    out in their order; an error in the thread is raised where its item would have come.
    Use as a context manager (or call `close`) so that the thread ends with the loop.
    """

    _DONE = object()

    def __init__(self, items: Iterable, convert: Callable, depth: int = 2):
        if depth < 1:
            raise ValueError(f"data.device_prefetch must be >= 1, got {depth}")
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(iter(items), convert), name="device-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, items: Iterator, convert: Callable) -> None:
        try:
            for item in items:
                if not self._put((True, convert(item))):
                    return
            self._put((True, self._DONE))
        except BaseException as error:  # handed to the consumer, raised there
            self._put((False, error))

    def __iter__(self):
        return self

    def __next__(self):
        ok, item = self._queue.get()
        if not ok:
            self._queue.put((False, item))  # keep raising it
            raise item
        if item is self._DONE:
            self._queue.put((True, item))
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
