"""Test setup: four forced CPU devices (set before JAX starts) so every test can shard."""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torch imports triton when it can, and importing triton into a process that has already
# loaded TensorFlow crashes it (a native-library clash). The conversion tests only build
# torchvision models on the CPU, so make triton unimportable; torch then does without it.
sys.modules.setdefault("triton", None)
