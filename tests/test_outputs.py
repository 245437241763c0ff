"""One writer per workdir (and per dataset build), and every output place checked before any
work: `jaxgan.outputs` in process, and the modes that use it."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from jaxgan import outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()


def test_a_held_workdir_is_refused_in_one_line_naming_the_holder(tmp_path):
    with outputs.one_writer(str(tmp_path), "training"):
        for what in ("training", "--mode=eval"):
            with pytest.raises(ValueError) as error:
                with outputs.one_writer(str(tmp_path), what):
                    pytest.fail("a second writer got the lock")
            message = str(error.value)
            assert "\n" not in message and f"--workdir={tmp_path} is in use" in message
            assert f"training (pid {os.getpid()} on host {HOST}" in message
            assert "wait for it to end or use another --workdir" in message
    with outputs.one_writer(str(tmp_path), "--mode=eval"):  # released: free again
        pass


def test_a_killed_holder_leaves_the_workdir_free(tmp_path):
    code = (
        "import sys, time; from jaxgan import outputs\n"
        "with outputs.one_writer(sys.argv[1], 'training'):\n"
        "    print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"pid {holder.pid} on host {HOST}"):
            with outputs.one_writer(str(tmp_path), "training"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with outputs.one_writer(str(tmp_path), "training"):  # the OS released it with the process
        pass


def test_a_hostile_lock_file_is_never_followed_or_read_whole(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    os.symlink(target, tmp_path / outputs.LOCK_FILE)
    with pytest.raises(ValueError, match="is not a regular file"):
        with outputs.one_writer(str(tmp_path), "training"):
            pass
    assert target.read_text() == "keep me"
    os.remove(tmp_path / outputs.LOCK_FILE)
    (tmp_path / outputs.LOCK_FILE).write_bytes(b"{" * 10_000_000)  # what a holder "recorded"
    with outputs.one_writer(str(tmp_path), "training"):
        with pytest.raises(ValueError) as error:
            with outputs.one_writer(str(tmp_path), "training"):
                pass
    assert len(str(error.value)) < 600 and "\n" not in str(error.value)


def test_training_on_a_held_workdir_is_refused_before_any_data_or_model(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tiny_run import tiny_config

    from jaxgan import train

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    config = tiny_config(str(blocker / "tfds"))  # reading or building the data would fail
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    with outputs.one_writer(workdir, "training"):
        with pytest.raises(ValueError, match=f"is in use: training \\(pid {os.getpid()}"):
            train.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(workdir)) == ["checkpoints", outputs.LOCK_FILE]
