"""Test setup, made before JAX starts (so the processes the tests launch get it too): four
forced CPU devices so every test can shard; XLA's optimisations off, since the tests check what
the programs compute, not how fast (tests marked `xla_optimized` turn them back on); and a
compilation cache shared by the test processes of a run and kept between runs."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Under pytest-xdist with as many workers as CPUs, each worker (and every process it starts)
# runs on a CPU of its own: XLA's, torch's and TensorFlow's thread pools size themselves from
# the affinity mask, and threads that spin waiting for work on a shared CPU slow both workers.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
if (
    _WORKER.startswith("gw")
    and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")) >= len(_CPUS) > 1
):
    os.sched_setaffinity(0, {_CPUS[int(_WORKER[2:]) % len(_CPUS)]})

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


# The modules that take longest on two CPU workers, longest first (from `--durations=0`; a
# scheduling hint only). pytest-xdist (`--dist loadscope --no-loadscope-reorder`) hands modules
# to workers in collection order, so these start first and the short ones fill in behind them
# instead of one long module running alone at the end (xdist's own order, by test count, put
# the few-test, long modules last).
LONG_MODULES = (
    "test_documented_commands", "test_main", "test_steps", "test_weights_parity",
    "test_benchmarks", "test_train", "test_dependency_study", "test_distributed",
    "test_custom", "test_phase_switch", "test_models_backbones", "test_checkpoint",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """The long modules first (`LONG_MODULES`), the rest in their usual order."""

    def rank(item):
        module = os.path.splitext(os.path.basename(item.nodeid.split("::")[0]))[0]
        return LONG_MODULES.index(module) if module in LONG_MODULES else len(LONG_MODULES)

    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank(item), order[id(item)]))


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
