"""On the CPU backend, keep each compiled step's buffers from one call to the next.

XLA:CPU allocates a compiled step's temporary buffer at every call and frees it at the end:
141 MB for ResNet-18's BCE step at 112 px, batch 16. glibc serves a block that large with a
fresh `mmap` and unmaps it on free, so each step faults every page of it in again (34,600
page faults and ~75 ms of system CPU per BCE step there). Two settings stop that:
- JAX's CPU client runs a computation on the calling thread (`jax_cpu_enable_async_dispatch`
  off), so the buffer comes from the main thread's malloc arena: on a worker thread's arena
  glibc maps any block over 64 MB afresh whatever it is told;
- glibc's malloc neither maps large blocks (M_MMAP_MAX 0) nor trims the heap's top
  (M_TRIM_THRESHOLD), so a freed buffer stays in the heap for the next call.
Measured in `experiments/speed.md`. The main command and the benchmarks call it.
GPUs and TPUs keep their buffers in device memory: nothing changes there but the CPU
client's dispatch, which their steps do not use.
"""

import ctypes
import platform

import jax
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent

# glibc's mallopt parameters (malloc.h) and the values that keep freed large blocks.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
GLIBC_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def glibc() -> bool:
    """Whether the C library is glibc, whose settings these are."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def configure() -> bool:
    """Call before anything runs on JAX (the CPU client reads its dispatch mode when it is
    created). True when the steps will run on the CPU with both settings in place."""
    if xla_bridge.backends_are_initialized():
        raise RuntimeError("cpu_runtime.configure() must run before JAX's backends start")
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if jax.default_backend() != "cpu":
        return False
    if not glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return all(mallopt(param, value) == 1 for param, value in GLIBC_SETTINGS)
