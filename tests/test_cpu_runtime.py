"""cpu_runtime: on the CPU, a compiled step's temporary buffer is reused from one call to the
next instead of being mapped and faulted in afresh at every call."""

import json
import os
import subprocess
import sys

import jax
import pytest

from jaxgan import cpu_runtime

pytestmark = pytest.mark.skipif(not cpu_runtime.glibc(), reason="the settings are glibc's")

# A training-step-like function (its state donated) whose first matrix product (8192 x 4096
# float32: 128 MiB, 32,768 pages) is a temporary buffer: the page faults of each call after
# three warm-up calls, in a fresh process (the settings must precede JAX's backends).
PROBE = """
import functools, json, resource, statistics, sys
import jax, jax.numpy as jnp
from jaxgan import cpu_runtime
configured = cpu_runtime.configure() if sys.argv[1] == "configure" else None

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
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
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


def test_configured_steps_reuse_their_temporary_buffer():
    default = _probe("default")
    if default["median_faults_per_call"] < BUFFER_PAGES / 2:
        pytest.skip("this XLA/glibc reuses the buffer by itself: nothing left to check")
    configured = _probe("configure")
    assert configured["configured"] is True
    assert configured["median_faults_per_call"] < BUFFER_PAGES / 10, (configured, default)


def test_configure_refuses_to_run_after_the_backends_started():
    jax.devices()  # starts them in this process
    with pytest.raises(RuntimeError, match="before JAX's backends start"):
        cpu_runtime.configure()
