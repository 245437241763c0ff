"""Host batches to the devices: the background prefetch keeps order and reports errors."""

import threading

import jax
import numpy as np
import pytest

from jaxgan import parallel


def test_prefetch_keeps_the_order_and_converts_every_item():
    mesh = parallel.create_mesh()
    sharding = parallel.batch_sharded(mesh)
    items = ({"x": np.full((4, 2), i, np.float32)} for i in range(20))
    with parallel.DevicePrefetch(items, lambda b: parallel.to_global(b, sharding), 3) as out:
        got = list(out)
    assert len(got) == 20
    for i, batch in enumerate(got):
        assert isinstance(batch["x"], jax.Array) and batch["x"].sharding == sharding
        np.testing.assert_array_equal(np.asarray(batch["x"]), i)


def test_prefetch_runs_ahead_of_the_consumer():
    pulled = []
    ready = threading.Event()

    def items():
        for i in range(10):
            pulled.append(i)
            if len(pulled) == 3:  # depth 2 in the queue + one waiting to go in
                ready.set()
            yield i

    with parallel.DevicePrefetch(items(), lambda x: x, depth=2) as out:
        assert ready.wait(timeout=60)
        assert next(out) == 0
    assert len(pulled) < 10  # closed early: the thread stopped instead of draining


def test_an_error_in_the_stream_is_raised_in_order():
    def items():
        yield 1
        yield 2
        raise ValueError("a broken record")

    with parallel.DevicePrefetch(items(), lambda x: x * 10) as out:
        assert next(out) == 10 and next(out) == 20
        with pytest.raises(ValueError, match="a broken record"):
            next(out)
        with pytest.raises(ValueError, match="a broken record"):
            next(out)


def test_prefetch_depth_must_be_positive():
    with pytest.raises(ValueError, match="data.device_prefetch must be >= 1"):
        parallel.DevicePrefetch([], lambda x: x, depth=0)
