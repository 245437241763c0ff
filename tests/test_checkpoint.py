import shutil

import chex
import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tiny import make_context, make_state

from jaxgan.checkpoint import RENAMED_STATE_FIELDS, Checkpointer

META = {
    "model": "resnet_small",
    "model_width": 4,
    "num_labels": 5,
    "data": "digit_scenes",
    "conditional": True,
}


def test_round_trip_restores_every_field(tmp_path):
    ctx = make_context()
    state = make_state(ctx, seed=0).replace(step=np.int32(7), critic_updates=np.int32(21))
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(state, META)
    checkpointer.wait()

    fresh = make_state(ctx, seed=1)  # other values, same structure
    pairs = zip(jax.tree.leaves(fresh), jax.tree.leaves(state), strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)
    restored, _ = Checkpointer(str(tmp_path)).restore(fresh, META)
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    assert int(restored.step) == 7 and int(restored.critic_updates) == 21


def test_a_checkpoint_made_before_the_renames_restores_and_reads_with_todays_names(tmp_path):
    """Checkpoints made when the critic's fields were d_params / d_opt_state / d_step and its
    config section `discriminator`, the supervised phase's length `schedule.bce_steps`: they
    restore, resume (the resume fields compared under today's names) and read back."""
    ctx = make_context()
    state = make_state(ctx, seed=0).replace(step=np.int32(7), critic_updates=np.int32(21))
    saved = flax.serialization.to_state_dict(jax.device_get(state))
    for new, old in RENAMED_STATE_FIELDS.items():
        saved[old] = saved.pop(new)
    old_meta = {
        **META,
        "resume": {"schedule.bce_steps": 4, "discriminator.num_layers": 2},
        "config": {"schedule": {"bce_steps": 4}, "discriminator": {"num_layers": 2}},
    }
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.manager.save(
        7,
        args=ocp.args.Composite(state=ocp.args.PyTreeSave(saved), meta=ocp.args.JsonSave(old_meta)),
    )
    checkpointer.wait()
    meta = {**META, "resume": {"schedule.supervised_steps": 4, "critic.num_layers": 2}}
    restored, recorded = Checkpointer(str(tmp_path)).restore(
        make_state(ctx, seed=1), meta, resume=True
    )
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    assert recorded["config"] == {"schedule": {"supervised_steps": 4}, "critic": {"num_layers": 2}}
    changed = {**META, "resume": {"schedule.supervised_steps": 5}}
    with pytest.raises(ValueError, match="made with schedule.supervised_steps=4"):
        Checkpointer(str(tmp_path)).restore(make_state(ctx), changed, resume=True)


def test_keeps_only_the_newest(tmp_path):
    ctx = make_context()
    checkpointer = Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(make_state(ctx).replace(step=np.int32(step)), META)
    checkpointer.wait()
    assert checkpointer.all_steps() == [2, 3] and checkpointer.latest_step() == 3


def test_small_arrays_several_devices_hold_are_saved_whole_and_restore(tmp_path, monkeypatch):
    """Orbax cuts an array that several devices hold into one slice per device, each cut an
    eager operation; a state's small arrays are written whole instead, and read back as saved."""
    from orbax.checkpoint._src.serialization import replica_slices

    cuts, data = [], replica_slices.ReplicaSlice.data

    def counted(self):
        cuts.append(self.slice_args is not None)
        return data(self)

    monkeypatch.setattr(replica_slices.ReplicaSlice, "data", counted)
    ctx = make_context()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = jax.device_put(make_state(ctx), everywhere)
    assert len(jax.devices()) > 1 and len(jax.tree.leaves(state)[0].devices()) > 1
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(state, META)
    checkpointer.wait()
    assert cuts and not any(cuts)
    restored, _ = Checkpointer(str(tmp_path)).restore(make_state(ctx), META)
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))


@pytest.mark.parametrize("field,value", [("model", "resnet50"), ("num_labels", 80)])
def test_refuses_a_checkpoint_of_another_model(tmp_path, field, value):
    ctx = make_context()
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(make_state(ctx), META)
    checkpointer.wait()
    with pytest.raises(ValueError, match=f"{field}=.*fresh --workdir"):
        checkpointer.restore(make_state(ctx), {**META, field: value})


def test_missing_step_is_a_clear_error(tmp_path):
    ctx = make_context()
    with pytest.raises(ValueError, match="no checkpoint at step 5"):
        Checkpointer(str(tmp_path)).restore(make_state(ctx), META, step=5)


# --- best, damage, resume fields, unwritable workdirs ----------------------------------------

import errno  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from jaxgan import checkpoint as checkpoint_lib  # noqa: E402
from jaxgan.checkpoint import CheckpointError  # noqa: E402

RESUMABLE = {**META, "resume": {"schedule.supervised_steps": 4, "critic.hidden_dim": 16}}


def save_steps(workdir, scores, keep=2, meta=META):
    """Checkpoints at steps 1, 2, ... with validation C-F1 `scores` (None: not evaluated)."""
    ctx = make_context()
    checkpointer = Checkpointer(str(workdir), max_to_keep=keep)
    for step, score in enumerate(scores, start=1):
        metrics = None if score is None else {"validation_CF1": score}
        checkpointer.save(make_state(ctx).replace(step=np.int32(step)), meta, metrics)
    checkpointer.wait()
    return checkpointer


def test_best_is_the_highest_validation_cf1_and_is_kept(tmp_path):
    checkpointer = save_steps(tmp_path, [0.3, 0.9, None, 0.5, 0.4, None], keep=2)
    assert checkpointer.all_steps() == [2, 5, 6]  # the newest two, and the best
    assert checkpointer.best_step() == 2
    assert checkpointer.resolve_step("best") == 2 and checkpointer.resolve_step(None) == 6
    with pytest.raises(CheckpointError, match="not a step number"):
        checkpointer.resolve_step("bets")


def test_best_without_any_evaluation_is_a_clear_error(tmp_path):
    checkpointer = save_steps(tmp_path, [None, None])
    with pytest.raises(CheckpointError, match="has a validation C-F1 yet"):
        checkpointer.best_step()


def test_keep_checkpoints_zero_is_refused_at_the_door(tmp_path):
    import ml_collections

    schedule = ml_collections.ConfigDict({"keep_checkpoints": 0})
    with pytest.raises(CheckpointError, match="keep_checkpoints must be >= 1"):
        checkpoint_lib.check_options(schedule)
    with pytest.raises(CheckpointError, match="keep_checkpoints must be >= 1"):
        Checkpointer(str(tmp_path), max_to_keep=0)


def damage(workdir, step, how):
    folder = os.path.join(workdir, "checkpoints", str(step))
    if how == "truncated data":
        for root, _, names in os.walk(os.path.join(folder, "state")):
            for name in names:
                path = os.path.join(root, name)
                if "d/" in path or "ocdbt" in root or name.startswith("manifest"):
                    with open(path, "r+b") as f:
                        f.truncate(max(os.path.getsize(path) // 3, 1))
    elif how == "missing meta":
        import shutil

        shutil.rmtree(os.path.join(folder, "meta"))
    elif how == "missing manifest":
        for root, _, names in os.walk(os.path.join(folder, "state")):
            for name in names:
                if name.startswith("manifest") or name == "_METADATA":
                    os.remove(os.path.join(root, name))


@pytest.mark.parametrize("how", ["truncated data", "missing meta", "missing manifest"])
def test_a_damaged_newest_checkpoint_is_reported_moved_aside_and_the_previous_used(
    tmp_path, capsys, how
):
    save_steps(tmp_path, [None, None, None], keep=3)
    damage(str(tmp_path), 3, how)
    ctx = make_context()
    restored, _ = Checkpointer(str(tmp_path)).restore(make_state(ctx), META)
    assert int(restored.step) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and "step 3" in lines[0] and "using step 2" in lines[0]
    aside = os.listdir(tmp_path / checkpoint_lib.DAMAGED_DIR)
    assert len(aside) == 1 and aside[0].startswith("3-")  # kept, not deleted
    assert Checkpointer(str(tmp_path)).all_steps() == [1, 2]


def test_a_reader_skips_a_damaged_checkpoint_without_moving_it(tmp_path, capsys):
    save_steps(tmp_path, [None, None], keep=3)
    damage(str(tmp_path), 2, "missing meta")
    checkpointer = Checkpointer(str(tmp_path), read_only=True)
    abstract = {"step": jax.ShapeDtypeStruct((), np.int32)}
    restored, _ = checkpointer.restore_tree(abstract, None)
    assert int(restored["step"]) == 1
    assert "step 2" in capsys.readouterr().err
    assert os.path.isdir(tmp_path / "checkpoints" / "2")


def test_an_empty_step_folder_left_by_a_crash_is_ignored(tmp_path, capsys):
    save_steps(tmp_path, [None, None], keep=3)
    os.makedirs(tmp_path / "checkpoints" / "7")
    ctx = make_context()
    checkpointer = Checkpointer(str(tmp_path))
    assert checkpointer.latest_step() == 2
    restored, _ = checkpointer.restore(make_state(ctx), META)
    assert int(restored.step) == 2
    assert "incomplete checkpoint folder 7" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field,value",
    [("schedule.supervised_steps", 2), ("critic.hidden_dim", 32)],
)
def test_a_resume_with_another_schedule_or_critic_is_refused_naming_the_field(
    tmp_path, field, value
):
    save_steps(tmp_path, [None], meta=RESUMABLE)
    ctx = make_context()
    changed = {**RESUMABLE, "resume": {**RESUMABLE["resume"], field: value}}
    with pytest.raises(CheckpointError, match=f"with {field}={value}.*--config.{field}="):
        Checkpointer(str(tmp_path)).restore(make_state(ctx), changed, resume=True)
    # Evaluation does not resume: the same checkpoint restores for it.
    Checkpointer(str(tmp_path)).restore(make_state(ctx), changed, resume=False)


def test_a_critic_of_another_shape_is_refused_with_the_array_named(tmp_path):
    save_steps(tmp_path, [None])
    wider = make_context()
    wider = wider.__class__(
        wider.generator,
        wider.critic.clone(hidden_dim=32),
        wider.generator_tx,
        wider.critic_tx,
    )
    with pytest.raises(CheckpointError, match="critic_params/.* of shape .* but the config builds"):
        Checkpointer(str(tmp_path)).restore(make_state(wider), META)


def test_disk_full_while_saving_is_one_line(tmp_path, monkeypatch):
    checkpointer = save_steps(tmp_path, [None])

    def full(*args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: Error writing local file: No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    state = make_state(make_context()).replace(step=np.int32(2))
    with pytest.raises(CheckpointError) as error:
        checkpointer.save(state, META)
    message = str(error.value)
    assert "disk full while saving step 2" in message and "resumes from step 1" in message
    assert "\n" not in message


def _mount_tmpfs(path, options):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): " + done.stderr.decode().strip())


@pytest.fixture
def tiny_disk(tmp_path):
    path = tmp_path / "disk"
    _mount_tmpfs(path, "size=256k")
    yield path
    subprocess.run(["umount", str(path)], check=False)


def test_a_full_disk_is_one_line_before_and_during_training(tiny_disk):
    with pytest.raises(CheckpointError, match="needs about"):
        checkpoint_lib.check_workdir(str(tiny_disk / "run"), needed_bytes=10 * 2**20)
    checkpointer = Checkpointer(str(tiny_disk / "run"))
    big = make_state(make_context()).replace(g_params={"filler": np.ones(2**17, np.float32)})
    with pytest.raises(CheckpointError, match="disk full while saving step 0"):
        checkpointer.save(big, META)
        checkpointer.wait()


@pytest.fixture
def read_only_disk(tmp_path):
    path = tmp_path / "ro"
    _mount_tmpfs(path, "size=64k,ro")
    yield path
    subprocess.run(["umount", str(path)], check=False)


def test_a_read_only_workdir_is_one_line_before_training(read_only_disk):
    with pytest.raises(CheckpointError, match="cannot write to .*Read-only.*--workdir"):
        checkpoint_lib.check_workdir(str(read_only_disk / "run"))


def test_a_workdir_blocked_by_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        checkpoint_lib.check_workdir(str(tmp_path / "file"))
    with pytest.raises(CheckpointError, match="a file blocks the path"):
        checkpoint_lib.check_workdir(str(tmp_path / "file" / "run"))
    assert errno.ENOTDIR  # the error a blocked path raises underneath


def test_a_damaged_checkpoint_asked_for_names_the_step_to_pass_instead(tmp_path):
    """Readers (eval, predict, diagnose) never fall back silently from the step they asked
    for; they say which --checkpoint_step would work."""
    save_steps(tmp_path, [None, None, None], keep=3)
    damage(str(tmp_path), 3, "missing meta")
    checkpointer = Checkpointer(str(tmp_path), read_only=True)
    abstract = {"step": jax.ShapeDtypeStruct((), np.int32)}
    with pytest.raises(CheckpointError) as error:
        checkpointer.restore_tree(abstract, None, step=3)
    message = str(error.value)
    assert "step 3" in message and "--checkpoint_step=2" in message and "\n" not in message


def test_a_full_disks_unretrieved_background_failures_log_nothing():
    """Orbax writes a checkpoint from asyncio tasks; when the disk fills, each failed write's
    future is dropped unretrieved and asyncio logs it with its traceback (hundreds of lines
    after the one-line error, at exit). Those records are dropped; others are not."""
    import asyncio
    import gc
    import logging

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    kept = Kept()
    logging.getLogger().addHandler(kept)
    try:
        for message in (
            'RESOURCE_EXHAUSTED: Error writing "g_params.head.bias/0" in OCDBT database',
            "[Errno 28] No space left on device",
            "something else went wrong",
        ):
            loop = asyncio.new_event_loop()
            future = loop.create_future()
            future.set_exception(ValueError(message))
            del future
            gc.collect()
            loop.close()
    finally:
        logging.getLogger().removeHandler(kept)
    logged = [str(r.exc_info[1]) if r.exc_info else r.getMessage() for r in kept.records]
    assert logged == ["something else went wrong"], logged


# --- the metadata a checkpoint holds is input: bounded, typed, one line ----------------------

import json  # noqa: E402

NAMED = {**META, "class_names": ["a", "b", "c", "d", "e"], "input": {"image_size": 16}}


def with_meta(workdir, content, step=1):
    """Replaces the metadata file of the checkpoint at `step` by `content` (bytes, or JSON)."""
    path = os.path.join(str(workdir), "checkpoints", str(step), "meta", "metadata")
    assert os.path.isfile(path)  # where Orbax's JsonCheckpointHandler keeps it
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else json.dumps(content).encode())


HOSTILE_META = [
    (b"[" * 200_000 + b"]" * 200_000, "nested more than 32 levels deep"),
    (b'{"model": "resnet_small", ', "is not JSON"),
    (b"\xff\xfe not text", "is not JSON"),
    ([1, 2], "is not a JSON object"),
    ({**NAMED, "class_names": "abcde"}, "class_names must be a list of 5 unique non-empty"),
    ({**NAMED, "class_names": ["a", "a", "b", "c", "d"]}, "class_names repeats 'a'"),
    ({**NAMED, "class_names": ["a", "b"]}, "class_names must be a list of 5 unique"),
    ({**NAMED, "class_names": ["a", "", "c", "d", "e"]}, "class_names must be a list of 5"),
    ({**NAMED, "class_names": ["a", "b\nc", "d", "e", "f"]}, "class_names must be a list of"),
    ({**NAMED, "class_names": [1, 2, 3, 4, 5]}, "class_names must be a list of 5"),
    ({**NAMED, "num_labels": "5"}, "num_labels must be an integer in [1, 100000]"),
    ({**NAMED, "num_labels": True}, "num_labels must be an integer in [1, 100000]"),
    ({**NAMED, "num_labels": 10**9}, "num_labels must be an integer in [1, 100000]"),
    ({**NAMED, "model": ["resnet"]}, "model must be a non-empty string"),
    ({**NAMED, "conditional": "yes"}, "conditional must be true or false"),
    ({**NAMED, "input": "16"}, "input must be a JSON object"),
    ({**NAMED, "input": {"image_size": 10**9}}, "input.image_size must be an integer in [1,"),
    ({**NAMED, "input": {"image_size": 16.5}}, "input.image_size must be an integer in [1,"),
    ({**NAMED, "config": [1]}, "config must be a JSON object"),
    ({**NAMED, "metrics": {"validation_CF1": "high"}}, "metrics.validation_CF1 must be a"),
    ({**NAMED, "thresholds": {"per_class": [0.5]}}, "thresholds.per_class must be a list of 5"),
    ({**NAMED, "thresholds": {"CF1": "x"}}, "thresholds.CF1 must be a number in [0, 1]"),
]


@pytest.fixture(scope="module")
def one_checkpoint(tmp_path_factory):
    """A workdir with one checkpoint of NAMED's metadata, for the tests to copy and damage."""
    workdir = tmp_path_factory.mktemp("saved")
    save_steps(workdir, [None], meta=NAMED)
    return workdir


@pytest.mark.parametrize("content, expected", HOSTILE_META)
def test_hostile_metadata_is_refused_in_one_line_naming_the_checkpoint_and_field(
    one_checkpoint, tmp_path, content, expected
):
    tmp_path = tmp_path / "run"
    shutil.copytree(one_checkpoint, tmp_path)
    with_meta(tmp_path, content)
    with pytest.raises(CheckpointError) as error:
        Checkpointer(str(tmp_path), read_only=True).read_meta(1)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(f"the checkpoint at step 1 in {tmp_path}/checkpoints has"), message
    assert expected in message, message
    assert message.endswith("pass another --checkpoint_step or train again"), message


def test_metadata_is_bounded_in_bytes_before_it_is_parsed(tmp_path, monkeypatch):
    save_steps(tmp_path, [None], meta=NAMED)
    with_meta(tmp_path, {**NAMED, "padding": "x" * 5000})
    monkeypatch.setattr(checkpoint_lib, "MAX_META_BYTES", 4096)
    with pytest.raises(CheckpointError, match="metadata is larger than 4,096 bytes"):
        Checkpointer(str(tmp_path), read_only=True).read_meta(1)


def test_good_metadata_reads_back_as_saved(tmp_path):
    save_steps(tmp_path, [0.5], meta=NAMED)
    saved = Checkpointer(str(tmp_path), read_only=True).read_meta(1)
    assert saved["class_names"] == NAMED["class_names"] and saved["metrics"] == {
        "validation_CF1": 0.5
    }


def test_predicting_with_hostile_class_names_is_one_line_before_any_model(tmp_path):
    """Repeated names made a CSV whose columns all held the last class's probability."""
    from jaxgan import evaluate

    save_steps(tmp_path, [None], meta=NAMED)
    with_meta(tmp_path, {**NAMED, "class_names": ["a", "b", "a", "c", "d"]})
    with pytest.raises(CheckpointError, match="class_names repeats 'a'"):
        evaluate.load_classifier(str(tmp_path))


def test_a_newest_checkpoint_with_hostile_metadata_is_skipped_when_resuming(tmp_path, capsys):
    save_steps(tmp_path, [None, None], keep=3, meta=NAMED)
    with_meta(tmp_path, {**NAMED, "class_names": "abcde"}, step=2)
    restored, _ = Checkpointer(str(tmp_path)).restore(make_state(make_context()), NAMED)
    assert int(restored.step) == 1
    line = [x for x in capsys.readouterr().err.splitlines() if "damaged" in x][0]
    assert "step 2" in line and "class_names must be a list" in line and "using step 1" in line


def test_writes_that_complete_after_a_failed_save_closed_its_loop_print_nothing():
    """When a save fails (a full disk), Orbax closes its asyncio loop while TensorStore still
    has writes in flight; each then reports 'Event loop is closed' as an unraisable error,
    hundreds of tracebacks. They are dropped; other unraisable errors still show."""
    code = (
        "import asyncio, tensorstore as ts\n"
        "import jaxgan.checkpoint\n"
        "promise, future = ts.Promise.new()\n"
        "loop = asyncio.new_event_loop()\n"
        "async def wait():\n"
        "    await future\n"
        "task = loop.create_task(wait())\n"
        "loop.run_until_complete(asyncio.sleep(0.01))\n"
        "loop.close()\n"
        "promise.set_result(1)  # its callback finds the loop closed\n"
        "class Other:\n"
        "    def __del__(self):\n"
        "        raise ValueError('still shown')\n"
        "Other()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Event loop is closed" not in done.stderr, done.stderr[-3000:]
    assert "ValueError: still shown" in done.stderr
