"""Per-backend settings: the compiler options the steps are compiled with, the CPU client's
settings that keep a compiled step's buffers from one call to the next, and JAX's persistent
compilation cache.

Compilation cache. Compiling the steps takes from seconds (a small model on a CPU) to minutes
(ResNet-101 on a GPU), on every launch and every resume. With the cache, a program compiled
once is read back from disk by every later process that compiles it with the same shapes,
options and JAX version (`config.compilation_cache`: on by default, in
`~/.cache/jaxgan/xla`, least recently used entries evicted past `max_gib`).

Compiler options. On CPU, XLA hands convolutions, dots and reductions to the YNNPACK library
by default. For our backbones' convolutions XLA's own Eigen kernels are faster, so convolutions
leave YNNPACK; dots (the critic's dense layers) and reductions (BatchNorm's statistics) stay
with it, where XLA's own loops are slower (docs/performance.md). GPUs and TPUs get no options.
Options given per compilation override XLA_FLAGS, so a user's own setting of the same flag in
XLA_FLAGS is respected: then these options are not given.

CPU runtime. XLA:CPU allocates a compiled step's temporary buffer at every call and frees it at
the end. glibc serves a block that large with a fresh `mmap` and unmaps it on free, so each step
faults every page of it in again. Two settings stop that: JAX's CPU client runs a computation
on the calling thread (`jax_cpu_enable_async_dispatch` off), so the buffer comes from the main
thread's malloc arena (on a worker thread's arena glibc maps any block over 64 MB afresh
whatever it is told); and glibc's malloc neither maps large blocks (M_MMAP_MAX 0) nor trims the
heap's top (M_TRIM_THRESHOLD), so a freed buffer stays in the heap for the next call. GPUs and
TPUs keep their buffers in device memory: nothing changes there but the CPU client's dispatch,
which their steps do not use.
"""

import ctypes
import os
import platform

import jax
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent

# Library fusions XLA:CPU may hand to YNNPACK: all its defaults but convolutions.
CPU_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": CPU_YNN_FUSIONS}

# glibc's mallopt parameters (malloc.h) and the values that keep freed large blocks.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
GLIBC_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def compiler_options(platform_name: str) -> dict:
    """`jax.jit(..., compiler_options=...)` for steps compiled for `platform_name` ('cpu',
    'gpu', 'tpu'): a fresh dict, empty where there is nothing to change."""
    if platform_name != "cpu":
        return {}
    user_flags = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in CPU_OPTIONS.items() if f"--{k}" not in user_flags}


def enable_compilation_cache(cache_config) -> str | None:
    """Turns JAX's persistent compilation cache on as `cache_config` (`config.compilation_cache`)
    says, before anything is compiled; returns the folder in use, or None when off. A folder
    set in the environment (JAX_COMPILATION_CACHE_DIR) wins over the config's."""
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or cache_config.dir
    if not folder:
        return None
    folder = os.path.abspath(os.path.expanduser(folder))
    jax.config.update("jax_compilation_cache_dir", folder)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", int(cache_config.max_gib * 2**30))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        seconds = cache_config.min_compile_seconds
        jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    return folder


def glibc() -> bool:
    """Whether the C library is glibc, whose settings `configure_cpu` changes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def configure_cpu() -> bool:
    """Call before anything runs on JAX (the CPU client reads its dispatch mode when it is
    created). True when the steps will run on the CPU with both settings in place."""
    if xla_bridge.backends_are_initialized():
        raise RuntimeError("runtime.configure_cpu() must run before JAX's backends start")
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if jax.default_backend() != "cpu":
        return False
    if not glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return all(mallopt(param, value) == 1 for param, value in GLIBC_SETTINGS)
