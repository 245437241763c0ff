"""The persistent compilation cache (runtime.enable_compilation_cache): a program compiled by
one process is read back by the next, from the config's folder, unless it is turned off."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # processes launched end to end

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A launch: turn the cache on as a config says, compile one program, report cache hits.
LAUNCH = """
import json, sys
import jax, jax.numpy as jnp, ml_collections
from jax._src import monitoring
from jaxgan import runtime
hits = []
monitoring.register_event_listener(
    lambda event, **_: hits.append(event) if event.endswith("/cache_hits") else None
)
cache = ml_collections.ConfigDict(json.loads(sys.argv[1]))
folder = runtime.enable_compilation_cache(cache)
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(json.dumps({"folder": folder, "hits": len(hits)}))
"""


def launch(cache: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # no test cache
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH, json.dumps(cache)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_launch_reads_the_first_launchs_program(tmp_path):
    cache = {"dir": str(tmp_path / "xla"), "max_gib": 1.0, "min_compile_seconds": 0.0}
    first = launch(cache)
    assert first == {"folder": cache["dir"], "hits": 0}
    assert os.listdir(cache["dir"]), "the first launch stored nothing"
    assert launch(cache)["hits"] >= 1


def test_the_cache_can_be_turned_off(tmp_path):
    off = {"dir": "", "max_gib": 1.0, "min_compile_seconds": 0.0}
    assert launch(off) == {"folder": None, "hits": 0}
    assert launch(off)["hits"] == 0


def test_the_folder_is_the_users(tmp_path, monkeypatch):
    """`~` is the user's home; a folder set in the environment wins over the config's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    default = {"dir": "~/.cache/jaxgan/xla", "max_gib": 1.0, "min_compile_seconds": 0.0}
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    code = (
        "import ml_collections, json, sys; from jaxgan import runtime; "
        "print(runtime.enable_compilation_cache(ml_collections.ConfigDict(json.loads(sys.argv[1]))))"
    )
    for extra, expected in [
        ({}, str(tmp_path / ".cache/jaxgan/xla")),
        ({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine")}, str(tmp_path / "mine")),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(default)],
            capture_output=True, text=True, env={**env, **extra}, cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert result.stdout.strip().splitlines()[-1] == expected, result.stderr[-2000:]
