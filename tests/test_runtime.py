"""runtime: the CPU client's settings keep a compiled step's temporary buffer from one call to the
next instead of being mapped and faulted in afresh at every call."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import runtime
from jaxgan.models.torch_compat import BatchNorm, conv

pytestmark = pytest.mark.xla_optimized  # the compiler options are about optimised programs
glibc_only = pytest.mark.skipif(not runtime.glibc(), reason="the settings are glibc's")

# A training-step-like function (its state donated) whose first matrix product (8192 x 4096
# float32: 128 MiB, 32,768 pages) is a temporary buffer: the page faults of each call after
# three warm-up calls, in a fresh process (the settings must precede JAX's backends).
PROBE = """
import functools, json, resource, statistics, sys
import jax, jax.numpy as jnp
from jaxgan import runtime
configured = runtime.configure_cpu() if sys.argv[1] == "configure" else None

@functools.partial(jax.jit, donate_argnums=0)
def step(state, w):
    return state + jnp.sin(state @ w) @ w.T * 1e-6

state, w = jnp.ones((8192, 16)), jnp.full((16, 4096), 1e-3)
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    state = jax.block_until_ready(step(state, w))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
median = statistics.median(faults[3:])
print(json.dumps({"configured": configured, "median_faults_per_call": median}))
"""
BUFFER_PAGES = 8192 * 4096 * 4 // 4096


def _probe(mode: str) -> dict:
    """Runs PROBE on this checkout's code (from the repository root), on one CPU device."""
    unset = ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS")  # one device, optimised as users run
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@glibc_only
@pytest.mark.slow  # two probe processes
def test_configured_steps_reuse_their_temporary_buffer():
    default = _probe("default")
    if default["median_faults_per_call"] < BUFFER_PAGES / 2:
        pytest.skip("this XLA/glibc reuses the buffer by itself: nothing left to check")
    configured = _probe("configure")
    assert configured["configured"] is True
    assert configured["median_faults_per_call"] < BUFFER_PAGES / 10, (configured, default)


@glibc_only
def test_configure_refuses_to_run_after_the_backends_started():
    jax.devices()  # starts them in this process
    with pytest.raises(RuntimeError, match="before JAX's backends start"):
        runtime.configure_cpu()


def _conv_bn_grads():
    """Gradients of a conv + BatchNorm + dense layer: a conv, reductions and a dot."""
    # 32 channels: smaller convolutions never go to YNNPACK, whatever the options.
    x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 8, 32), jnp.float32)
    layer, norm = conv(32, 3, 1, 1), BatchNorm(use_running_average=False)
    params = layer.init(jax.random.key(0), x)
    bn = norm.init(jax.random.key(1), layer.apply(params, x))
    dense = jnp.asarray(np.random.RandomState(1).randn(32, 5), jnp.float32)

    def loss(params, dense, x):
        y, _ = norm.apply(bn, layer.apply(params, x), mutable=["batch_stats"])
        return jnp.sum(jnp.tanh(jnp.mean(y, axis=(1, 2)) @ dense))

    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, dense, x), (params, dense, x)


def _entry_ops(compiled) -> list[str]:
    """The opcode of every instruction of the optimised program's entry computation."""
    entry = compiled.as_text().split("\nENTRY ", 1)[1]
    return re.findall(r"^\s+(?:ROOT )?%\S+ = \S+ ([\w-]+)\(", entry, flags=re.MULTILINE)


def test_cpu_convolutions_leave_ynnpack_and_results_stay_the_same():
    lowered, args = _conv_bn_grads()
    options = runtime.compiler_options("cpu")
    default = lowered.compile()
    assert "convolution" not in _entry_ops(default), "XLA's default should fuse them to YNNPACK"
    tuned = lowered.compile(options)
    # The forward and the kernel-gradient convolutions run as XLA's own ops...
    assert _entry_ops(tuned).count("convolution") == 2
    # ...while dots and reductions still go to YNNPACK.
    assert '"__ynn_fusion"' in tuned.as_text()
    for ours, ref in zip(
        jax.tree.leaves(tuned(*args)), jax.tree.leaves(default(*args)), strict=True
    ):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_no_options_for_accelerators():
    assert runtime.compiler_options("gpu") == {}
    assert runtime.compiler_options("tpu") == {}


def test_a_users_own_flag_wins(monkeypatch):
    flag = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {flag}")
    assert "xla_cpu_experimental_ynn_fusion_type" not in runtime.compiler_options("cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert "xla_cpu_experimental_ynn_fusion_type" in runtime.compiler_options("cpu")
