"""The speed benchmarks (benchmarks/) run end to end in a tiny form, as their commands run
them (a subprocess from the repository root, one CPU device), and write their results files.
About a minute of CPU in all, most of it starting JAX, TensorFlow and torch and compiling."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from tiny_run import ROOT, tiny_flags

pytestmark = pytest.mark.slow  # end-to-end runs

NEEDS_TORCH = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch (a test extra) is not installed"
)
# The embedded config made tiny, as tests/tiny_run.py makes it.
TINY_RUN = (
    "--config.data.builder_config=small",
    "--image_size=16",
    "--batch_size=16",
    "--config.model.width=4",
    "--config.critic.embed_dim=8",
    "--config.critic.hidden_dim=16",
    "--config.critic.num_layers=2",
)


def run_benchmark(script, *flags, out):
    """Runs `python benchmarks/<script> <flags> --out=<out>`; (its JSON, its table)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    # One CPU device, as on a plain host (conftest forces four). conftest's other settings
    # carry over: XLA's optimisations off (XLA:CPU compiles the tiny steps 2-4x faster, and
    # what is tested here is that the scripts run, not how fast) and the compilation cache.
    xla_flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in xla_flags if "host_platform_device_count" not in f)
    command = [sys.executable, os.path.join("benchmarks", script), *flags, f"--out={out}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(f"{out}.json") as f:
        numbers = json.load(f)
    with open(f"{out}.md") as f:
        table = f.read()
    assert numbers["command"].startswith(f"python benchmarks/{script} ")
    assert table.startswith(f"`{numbers['command']}`")
    return numbers, table


def test_steps(tmp_path):
    numbers, table = run_benchmark(
        "steps.py",
        "--model=resnet_small",
        "--width=4",
        "--image_size=16",
        "--batch_size=8",
        "--num_labels=5",
        "--steps=supervised",
        "--iters=1",
        "--warmup=0",
        out=tmp_path / "steps",
    )
    supervised = numbers["steps"]["supervised"]
    assert supervised["gflop_per_step"] > 0 and supervised["xla_cost_analysis_gflop_per_step"] > 0
    assert (
        supervised["ms_median"] > 0 and supervised["utilisation"] is None
    )  # no peak known for a CPU
    assert "| supervised | 8 |" in table


def test_steps_compile_only(tmp_path):
    numbers, table = run_benchmark(
        "steps.py",
        "--model=resnet_small",
        "--width=4",
        "--image_size=16",
        "--batch_size=8",
        "--num_labels=5",
        "--steps=supervised,adversarial",
        "--compile_only",
        "--remat",
        out=tmp_path / "memory",
    )
    assert set(numbers["steps"]) == {"supervised", "adversarial"}
    assert all(row["gflop_per_step"] > 0 for row in numbers["steps"].values())


def test_steps_startup(tmp_path, data_dir):
    numbers, table = run_benchmark(
        "steps.py",
        "--startup",
        "--iters=2",
        *tiny_flags(),
        f"--config.data.data_dir={data_dir}",
        out=tmp_path / "startup",
    )
    first, second = numbers["seconds_to_first_update"]
    assert first > 0 and second > 0 and numbers["later_over_first"] == [second / first]
    assert "| 2 | read |" in table


def test_steps_backbones(tmp_path):
    numbers, table = run_benchmark(
        "steps.py",
        "--backbones",
        "--model=resnet_small",
        "--width=4",
        "--image_size=16",
        "--batch_size=2",
        "--dtype=float32,bfloat16",
        "--iters=1",
        out=tmp_path / "backbones",
    )
    rows = numbers["backbones"]
    assert [row["dtype"] for row in rows] == ["float32", "bfloat16"]
    assert rows[0]["gflop_per_image"] == rows[1]["gflop_per_image"] > 0
    assert "| resnet_small | 16 | bfloat16 |" in table


@NEEDS_TORCH
def test_torch_baseline(tmp_path):
    tiny = ("--model=resnet18", "--image_size=32", "--batch_size=2", "--iters=1")
    numbers, table = run_benchmark(
        "torch_baseline.py",
        *tiny,
        "--steps=supervised,critic",
        "--warmup=0",
        out=tmp_path / "torch",
    )
    assert set(numbers["steps"]) == {"supervised", "critic"}
    numbers, table = run_benchmark(
        "torch_baseline.py",
        "--interleaved",
        *tiny,
        "--steps=supervised",
        "--rounds=1",
        out=tmp_path / "interleaved",
    )
    assert numbers["steps"]["supervised"]["jax_speed_over_torch_median"] > 0
    assert "| supervised |" in table


@NEEDS_TORCH
def test_conv(tmp_path):
    numbers, table = run_benchmark(
        "conv.py",
        "--image_size=32",
        "--batch_size=1",
        "--rounds=1",
        "--iters=1",
        "--big_gemm=0",
        out=tmp_path / "conv",
    )
    assert numbers["times_ms"]["stem 7x7/2"]["jax"]["forward"]
    assert "All of ResNet-18's convolution work" in table


def test_input_pipeline(tmp_path):
    numbers, table = run_benchmark(
        "input.py",
        "--mode=pipeline",
        "--cores=1",
        "--seconds=0.2",
        "--num_images=4",
        "--image_size=32",
        "--batch_size=2",
        out=tmp_path / "pipeline",
    )
    assert [(r["mode"], r["cores"]) for r in numbers["rows"]] == [("prepare", 1)]
    assert numbers["rows"][0]["images_per_s"] > 0
    assert "| decode + square resize (preparation) | 1 |" in table


def test_input_cpu(tmp_path, data_dir):
    numbers, table = run_benchmark(
        "input.py",
        "--mode=cpu",
        *TINY_RUN,
        f"--config.data.data_dir={data_dir}",
        "--iters=3",
        "--warmup=1",
        out=tmp_path / "cpu",
    )
    assert numbers["batches"] == 3 and numbers["batch_size"] == 16
    assert "ms of CPU" in table


def test_input_stall(tmp_path, data_dir):
    numbers, table = run_benchmark(
        "input.py",
        "--mode=stall",
        *TINY_RUN,
        f"--config.data.data_dir={data_dir}",
        "--phase=supervised",
        "--iters=1",
        "--rounds=1",
        out=tmp_path / "stall",
    )
    assert [row["phase"] for row in numbers["phases"]] == ["supervised"]
    assert "| supervised |" in table
