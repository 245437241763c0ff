"""Test setup, made before JAX starts (so the processes the tests launch get it too): four
forced CPU devices so every test can shard; XLA's optimisations off, since the tests check what
the programs compute, not how fast (tests marked `xla_optimized` turn them back on); and a
compilation cache shared by the test processes of a run and kept between runs."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax-tests"))
# Most of a test's programs compile in well under a second; cache those too.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 2**30))

# torch imports triton when it can, and importing triton into a process that has already
# loaded TensorFlow crashes it (a native-library clash). The conversion tests only build
# torchvision models on the CPU, so make triton unimportable; torch then does without it.
sys.modules.setdefault("triton", None)


def pytest_collection_modifyitems(config, items):
    """Modules with the most `slow` tests first, the rest in their usual order: pytest-xdist
    (`--dist loadscope --no-loadscope-reorder`) hands modules to workers in this order, so the
    long ones start early and the short ones fill in behind them instead of one long module
    running alone at the end."""
    slow = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-slow[item.nodeid.split("::")[0]], order[id(item)]))


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
    """Tests marked `xla_optimized` (numerical parity with another library, speed settings)
    compile with XLA's optimisations on, as users' runs do."""
    if request.node.get_closest_marker("xla_optimized") is None:
        yield
        return
    import jax

    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data_dir per test module: the embedded dataset's small build is made once there."""
    return str(tmp_path_factory.mktemp("tfds"))
