"""Two processes training as one: `jax.distributed` on this machine (a localhost coordinator,
two CPU devices per process, each process reading its rows of every global batch) trains both
phases and checkpoints; the result equals one process with four devices and the same global
batch. Run in subprocesses (tests/distributed_worker.py): a process can join only one
distributed run, and the test process already has its devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxgan.data.datasets import get_source

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
sys.path.insert(0, HERE)
from distributed_worker import tiny_config  # noqa: E402

pytestmark = pytest.mark.slow  # two training processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(process_id, num_processes, devices, port, workdir, data_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    args = [sys.executable, WORKER, str(process_id), str(num_processes), str(port)]
    return subprocess.Popen(
        [*args, workdir, data_dir],
        env=env,
        cwd=os.path.dirname(HERE),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(processes):
    outputs = []
    for process in processes:
        try:
            out, _ = process.communicate(timeout=1800)  # a guard against a hang only
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        outputs.append(out)
    for process, out in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out[-3000:]
    return outputs


def records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    get_source(tiny_config(data_dir).data)  # build the dataset once, before the workers read it
    two = str(tmp_path_factory.mktemp("two_processes"))
    one = str(tmp_path_factory.mktemp("one_process"))
    port = free_port()
    processes = [start(i, 2, 2, port, two, data_dir) for i in range(2)]
    processes.append(start(0, 1, 4, 0, one, data_dir))
    finish(processes)
    return two, one


def test_two_processes_train_as_one(runs):
    two, one = runs
    config = tiny_config("")
    end = config.schedule.supervised_steps + config.schedule.adversarial_steps
    assert os.path.isdir(os.path.join(two, "checkpoints", str(end)))
    with (
        np.load(os.path.join(two, "final_state.npz")) as a,
        np.load(os.path.join(one, "final_state.npz")) as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        assert int(a[".step"]) == end and int(a[".critic_updates"]) == 2 * config.method.n_critic
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    train_two = [r for r in records(two) if "phase" in r and "eval" not in r]
    train_one = [r for r in records(one) if "phase" in r and "eval" not in r]
    assert [r["step"] for r in train_two] == list(range(1, end + 1))
    assert [r["phase"] for r in train_two][-1] == "adversarial"
    for r2, r1 in zip(train_two, train_one, strict=True):
        assert r2["phase"] == r1["phase"]
        numbers = {k: v for k, v in r1.items() if k not in ("phase", "steps_per_s")}
        assert {k: r2[k] for k in numbers} == pytest.approx(numbers, rel=1e-5, abs=1e-6)
    eval_two = [r["eval"] for r in records(two) if "eval" in r]
    eval_one = [r["eval"] for r in records(one) if "eval" in r]
    assert len(eval_two) == len(eval_one) == 2  # after each phase
    for e2, e1 in zip(eval_two, eval_one, strict=True):
        assert e2["num_images"] == e1["num_images"] == 200
        assert e2 == pytest.approx(e1, rel=1e-5, abs=1e-6)
