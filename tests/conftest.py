"""Test setup: four forced CPU devices (set before JAX starts) so every test can shard."""

import os
import sys

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torch imports triton when it can, and importing triton into a process that has already
# loaded TensorFlow crashes it (a native-library clash). The conversion tests only build
# torchvision models on the CPU, so make triton unimportable; torch then does without it.
sys.modules.setdefault("triton", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data_dir per test module: the embedded dataset's small build is made once there."""
    return str(tmp_path_factory.mktemp("tfds"))
