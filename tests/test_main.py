"""End to end through `python -m jaxgan.main` on the embedded dataset's small build."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_run import tiny_flags

TINY = [
    "--config=configs/digit_scenes.py",
    *tiny_flags(
        schedule__supervised_steps=4,
        schedule__adversarial_steps=24,
        schedule__checkpoint_every=2,
        schedule__log_every=2,
    ),
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(workdir, data_dir, *extra):
    return [
        sys.executable,
        "-m",
        "jaxgan.main",
        f"--workdir={workdir}",
        *TINY,
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]


def run(args):
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def final_eval(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if "eval" in r][-1]


def table(stdout):
    """The rows of the last metrics table printed (from its header to its thresholds line)."""
    lines = stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:2] == ["C-P", "C-R"])
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("thresholds from"))
    return lines[start : end + 1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("run"))
    code, stdout, stderr = run(command(workdir, data_dir))
    assert code == 0, stderr[-3000:]
    return workdir, stdout


@pytest.mark.slow
def test_training_shows_progress_and_prints_metrics(trained):
    workdir, stdout = trained
    assert "[supervised] bce=" in stdout and "[adversarial]" in stdout
    assert "steps/s" in stdout and "min left" in stdout
    assert "wasserstein=" in stdout and "critic_loss=" in stdout and "generator_loss=" in stdout
    assert "test metrics after step 28" in stdout and "C-F1" in stdout
    record = final_eval(workdir)
    assert record["step"] == 28 and 0.0 <= record["eval"]["CF1"] <= 1.0
    assert record["eval"]["num_images"] == 200  # the whole small test split, none dropped
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "28"))


@pytest.mark.slow
def test_eval_mode_restores_and_prints_the_same_metrics(trained, data_dir):
    workdir, stdout = trained
    os.remove(os.path.join(workdir, "eval.json"))
    code, eval_stdout, stderr = run(command(workdir, data_dir, "--mode=eval"))
    assert code == 0, stderr[-3000:]
    assert "checkpoint at step 28" in eval_stdout
    assert table(eval_stdout) == table(stdout)
    assert any(line.startswith("val. thr.") for line in table(eval_stdout))
    with open(os.path.join(workdir, "eval.json")) as f:
        report = json.load(f)
    assert report["step"] == 28 and list(report["per_class"]) == [str(d) for d in range(10)]
    assert report["metrics"]["CF1"] == pytest.approx(final_eval(workdir)["eval"]["CF1"])


@pytest.mark.slow
def test_training_scalars_reach_tensorboard(trained):
    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(trained[0], "tensorboard", "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            tags |= {v.tag for v in tf.compat.v1.Event.FromString(record.numpy()).summary.value}
    expected = {"train/bce", "train/critic_loss", "train/wasserstein", "train/gradient_penalty",
                "train/steps_per_s", "eval/CF1", "eval/CF1_val_threshold", "eval/mAP"}  # fmt: skip
    assert expected <= tags


@pytest.mark.slow
def test_predict_on_exported_test_images_names_labels_and_skips_a_corrupt_file(
    trained, data_dir, tmp_path
):
    import tensorflow_datasets as tfds
    from PIL import Image

    from jaxgan.data.digit_scenes import Builder

    builder = Builder(config="small", data_dir=data_dir)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, example in enumerate(tfds.as_numpy(builder.as_dataset(split="test[:3]"))):
        Image.fromarray(example["image"]).save(folder / f"test_{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    prefix = str(tmp_path / "out")
    code, stdout, stderr = run(
        [sys.executable, "-m", "jaxgan.main", "--mode=predict", f"--workdir={trained[0]}",
         f"--images={folder}", f"--output={prefix}", "--threshold=per_class"]
    )  # fmt: skip
    assert code == 0, stderr[-3000:]
    skipped = [line for line in stderr.splitlines() if "broken.png" in line]
    assert len(skipped) == 1 and "not an image" in skipped[0] and "Traceback" not in stderr
    assert "predicted 3 image(s)" in stdout and "test_0.png:" in stdout
    with open(prefix + ".jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [os.path.basename(r["file"]) for r in records] == [f"test_{i}.png" for i in range(3)]
    assert set(records[0]["probabilities"]) == {str(d) for d in range(10)}
    assert os.path.isfile(prefix + ".csv")


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_one(trained, data_dir, tmp_path):
    workdir = str(tmp_path / "killed")
    process = subprocess.Popen(
        command(workdir, data_dir), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        steps = (
            [int(s) for s in os.listdir(checkpoints) if s.isdigit()]
            if os.path.isdir(checkpoints)
            else []
        )
        if any(s >= 8 for s in steps):  # inside the adversarial phase
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()

    code, stdout, stderr = run(command(workdir, data_dir))
    assert code == 0, stderr[-3000:]
    resumed_at = int(stdout.split("resumed from the checkpoint at step ")[1].split()[0])
    assert 8 <= resumed_at < 28, stdout[-1500:] + stderr[-1500:]
    uninterrupted = final_eval(trained[0])["eval"]
    assert final_eval(workdir)["eval"] == pytest.approx(uninterrupted, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_good_checkpoint(data_dir, tmp_path):
    workdir = str(tmp_path / "diverging")
    diverging = ["--config.schedule.supervised_steps=2", "--config.optim.critic_learning_rate=1e30"]
    code, stdout, stderr = run(command(workdir, data_dir, *diverging))
    assert code != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at step 3 (adversarial phase): the critic")
    assert "Traceback" not in stderr
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra,message",
    [
        (["--config.schedule.bogus=1"], "unknown config field 'schedule.bogus'"),
        (["--config.schedule.batch_size=0"], "schedule.batch_size=0 is out of range"),
        (["--config.schedule.batch_size=6"], "not divisible by the 4 devices"),
        (["--config.model.name=resnet18"], "was made with model='resnet_small'"),
        (["--config=configs/missing.py"], "config file 'configs/missing.py' not found"),
        (["--config.schedule.keep_checkpoints=0"], "keep_checkpoints must be >= 1"),
        (["--config.schedule.supervised_steps=3"], "cannot resume the run in"),
        (["--mode=eval", "--checkpoint_step=5"], "no checkpoint at step 5"),
    ],
    ids=[
        "unknown-field",
        "zero-batch",
        "indivisible-batch",
        "other-model",
        "missing-config",
        "keep-zero",
        "other-schedule",
        "missing-step",
    ],  # fmt: skip
)
def test_bad_input_stops_with_one_clear_line(trained, data_dir, extra, message):
    code, stdout, stderr = run(command(trained[0], data_dir, *extra))
    assert code != 0
    last = stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("error: ")
    assert "Traceback" not in stderr


def test_a_workdir_blocked_by_a_file_is_one_line_before_anything_runs(data_dir, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the workdir should go")
    code, _, stderr = run(command(str(blocker / "run"), data_dir))
    assert code != 0 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "a file blocks the path" in last


def mistake(args, cwd=ROOT):
    """Runs the command line; returns its one stderr line, asserting the exit status 2 (a usage
    error) and that nothing else was printed on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "jaxgan.main", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def broken_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    files = {
        "syntax.py": "from jaxgan.base_config import get_base_config\n\ndef get_config(:\n",
        "no_get_config.py": "CONFIG = None\n",
        "raises.py": "def get_config():\n    x = 1\n    raise RuntimeError('boom')\n",
        "import_fails.py": "import jaxgan.no_such_module\n",
        "returns_int.py": "def get_config():\n    return 5\n",
        "no_variant.py": "from jaxgan.base_config import get_base_config\n\n"
        "def get_config():\n    return get_base_config()\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


W = "--workdir=unused"
DIGITS = "--config=configs/digit_scenes.py"


# (args, what the one line says, whether to run the whole command): the cases absl itself
# reports (a wrong type, an unknown flag) and one of each kind run as a subprocess; the others
# call the command line's own check in-process, which the subprocess cases show it is.
MISTAKES = [
    ([W, "--config", "configs/nope.py"], "config file 'configs/nope.py' not found", True),
    ([W, "--config=configs/nope.py"], "config file 'configs/nope.py' not found", False),
    ([W, "--config=configs"], "config file 'configs' is not a file", False),
    (
        [W, "--config", "configs/coco.py:nope"],
        "unknown variant 'nope' in configs/coco.py:nope",
        True,
    ),
    ([W, "--config=configs/coco.py:nope"], "unknown variant 'nope' in configs/coco.py:nope", False),
    ([W, "--config=configs/digit_scenes.py:gan"], "unknown variant 'gan'", False),
    ([W, "--config=configs/digit_scenes.py:bce"], "variant 'bce' is now called 'no_critic'", False),
    (
        [W, DIGITS, "--config.schedule.bce_steps=4"],
        "config field 'schedule.bce_steps' is now called 'schedule.supervised_steps'",
        False,
    ),
    ([W, "--config=BROKEN/syntax.py"], "syntax.py line 3: invalid syntax", True),
    ([W, "--config=BROKEN/no_get_config.py"], "no_get_config.py defines no get_config()", True),
    (
        [W, "--config=BROKEN/raises.py"],
        "raises.py:get_config('') failed at line 3: RuntimeError: boom",
        True,
    ),
    (
        [W, "--config=BROKEN/import_fails.py"],
        "import_fails.py at line 1: ModuleNotFoundError",
        False,
    ),
    (
        [W, "--config=BROKEN/returns_int.py"],
        "returned int, not an ml_collections.ConfigDict",
        False,
    ),
    ([W, "--config=BROKEN/no_variant.py:x"], "takes no variant; drop ':x'", False),
    (
        [W, DIGITS, "--config.schedule.supervised_steps=abc"],
        "--config.schedule.supervised_steps=abc: a value of the wrong type",
        True,
    ),
    (
        [W, DIGITS, "--config.schedule.supervised_steps", "abc"],
        "--config.schedule.supervised_steps=abc: a value of the wrong type",
        True,
    ),
    (
        [W, "--config", "configs/digit_scenes.py", "--config.method.alpha", "x"],
        "--config.method.alpha=x: a value of the wrong type",
        True,
    ),
    (
        [W, DIGITS, "--config.method.alpah=1"],
        "unknown config field 'method.alpah' (from --config.method.alpah=1) (did you mean "
        "'method.alpha'?)",
        False,
    ),
    ([W, DIGITS, "--config.method.alpah", "1"], "unknown config field 'method.alpah'", True),
    ([W, DIGITS, "--config.method=1"], "config.method is a section, not a field", False),
    ([W, DIGITS, "--config.method.alpha"], "--config.method.alpha needs a value", False),
    ([W, "--config"], "--config needs a value", False),
    ([W, "--config.method.alpha=1"], "overrides a config field, but no --config=FILE.py", False),
    ([DIGITS], "--workdir is required", True),
    ([DIGITS, "--workdir"], "--workdir needs a value", False),
    (
        [W, DIGITS, "--mode=trian"],
        "unknown --mode 'trian'; choose one of ['train', 'eval', "
        "'predict'] (did you mean 'train'?)",
        False,
    ),
    ([W, DIGITS, "--mode", "evl"], "unknown --mode 'evl'", True),
    ([W], "--mode=train needs --config=configs/FILE.py", False),
    ([W, DIGITS, "--bogus=1"], "Unknown command line flag 'bogus'", True),
    ([W, DIGITS, "stray"], "unexpected arguments ['stray']", True),
    # Flags of another mode, and the distributed flags, checked before anything runs.
    ([W, DIGITS, "--checkpoint_step=5"], "--checkpoint_step is for --mode=eval and", True),
    ([W, DIGITS, "--checkpoint_step", "best"], "training resumes from the newest", False),
    ([W, DIGITS, "--output=x"], "--output is for --mode=predict", False),
    ([W, "--mode=eval", "--images=x.png"], "--images is for --mode=predict", False),
    ([W, DIGITS, "--num_processes=2"], "--num_processes is for multi-process runs", True),
    ([W, DIGITS, "--process_id=0"], "--process_id is for multi-process runs", False),
    ([W, DIGITS, "--coordinator_address=h:1"], "--coordinator_address is for multi-", False),
    ([W, DIGITS, "--distributed_timeout=5"], "--distributed_timeout is for multi-", False),
    ([W, DIGITS, "--distributed", "--num_processes=0"], "--num_processes=0 must be >= 1", False),
    ([W, DIGITS, "--distributed", "--process_id=-1"], "--process_id=-1 must be >= 0", False),
    (
        [W, DIGITS, "--distributed", "--num_processes=2", "--process_id=2"],
        "--process_id=2 must be < --num_processes=2 (process ids run from 0 to 1)",
        True,
    ),
    ([W, DIGITS, "--distributed", "--distributed_timeout=0"], "must be in [1, 86400]", False),
    *[
        (
            [W, DIGITS, "--distributed", f"--coordinator_address={address}"],
            f"--coordinator_address={address} is not HOST:PORT",
            whole,
        )
        for address, whole in [
            ("localhost", True),
            ("localhost:0", False),
            (":1234", False),
            ("h:65536", False),
            ("h:12a", False),
            ("::1:80", False),
            ("[::1:80", False),
            ("a b:80", False),
        ]
    ],  # fmt: skip
]


@pytest.mark.parametrize("args, expected, whole", MISTAKES)
def test_every_command_line_mistake_is_one_line_and_status_2(args, expected, whole, broken_configs):
    from jaxgan import command_line
    from jaxgan.main import VALUE_FLAGS

    args = [arg.replace("BROKEN", str(broken_configs)) for arg in args]
    if whole:
        line = mistake(args)
    else:
        with pytest.raises(command_line.UsageError) as error:
            command_line.prepare(args, VALUE_FLAGS)
        line = "error: " + str(error.value)
        assert "\n" not in line
    assert expected in line, line


def test_space_separated_forms_are_the_same_command(tmp_path):
    """`--config X --config.f v`, in any order, reaches the config that `--config=X
    --config.f=v` does: proven by refusing the overridden value in the words that the check
    after parsing uses (the `=` form's own test is test_config_check's)."""
    forms = [
        ["--workdir", str(tmp_path), "--config", "configs/digit_scenes.py",
         "--config.method.beta", "0.0"],
        ["--config.method.beta", "0.0", "--workdir", str(tmp_path), "--config",
         "configs/digit_scenes.py"],
    ]  # fmt: skip
    lines = {mistake(args) for args in forms}
    assert lines == {"error: method.beta=0.0 is out of range: it must be > 0"}
    assert not os.listdir(tmp_path)


def test_a_config_typo_stops_every_mode_before_any_data_or_workdir(tmp_path):
    """A typo in a choice field: one line, status 2, and neither the dataset folder (a path
    below a file, which fails if touched) nor the workdir is created."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    workdir = tmp_path / "run"
    for mode in ("train", "eval"):
        line = mistake(
            [f"--workdir={workdir}", f"--mode={mode}", "--config=configs/coco.py",
             f"--config.data.data_dir={blocker / 'tfds'}", "--config.model.name=resnt50"]
        )  # fmt: skip
        assert line.startswith("error: unknown model.name 'resnt50'; choose one of")
        assert "(did you mean 'resnet50'?)" in line
    assert not workdir.exists()


def test_distributed_flags_that_name_a_valid_run_pass_the_door():
    from jaxgan import command_line
    from jaxgan.main import VALUE_FLAGS

    for address in ("localhost:1234", "10.0.0.1:65535", "[::1]:80", "host-0.cluster:1"):
        command_line.prepare(
            [W, DIGITS, "--distributed", f"--coordinator_address={address}",
             "--num_processes=2", "--process_id=1", "--distributed_timeout=5"],
            VALUE_FLAGS,
        )  # fmt: skip
    command_line.prepare([W, "--mode=eval", "--checkpoint_step=best"], VALUE_FLAGS)
    command_line.prepare([W, "--mode=predict", "--images=a.png", "--output=o"], VALUE_FLAGS)


@pytest.mark.parametrize("process_id", [0, 1])
def test_a_coordinator_or_peer_that_never_answers_ends_in_the_timeout_with_one_line(
    tmp_path, process_id
):
    """Process 1 against a port nobody listens on; process 0 whose peer never starts."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "jaxgan.main", f"--workdir={tmp_path}", DIGITS,
            "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2",
            f"--process_id={process_id}", "--distributed_timeout=2"]  # fmt: skip
    started = time.time()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    took = time.time() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert f"localhost:{port}" in lines[0] and "2 processes" in lines[0]
    assert "within 2 s" in lines[0] and "--distributed_timeout" in lines[0]
    assert took < 60, took  # the default would have waited minutes
    assert not os.listdir(tmp_path)  # nothing written before every process joined


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_in_one_line(trained, data_dir, tmp_path):
    """Two trainings (or a training and an evaluation) on one workdir at once: the second is
    refused in one line naming the first's pid and host, and the first runs on alone."""
    import socket

    workdir = str(tmp_path / "busy")
    first = subprocess.Popen(
        command(workdir, data_dir, "--config.schedule.adversarial_steps=100000"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = os.path.join(workdir, "metrics.jsonl")
    try:
        deadline = time.time() + 300
        while not (
            os.path.isfile(metrics) and os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
        ):
            assert time.time() < deadline and first.poll() is None, "the first run did not start"
            time.sleep(0.1)
        for extra in ([], ["--mode=eval"]):
            code, _, stderr = run(command(workdir, data_dir, *extra))
            lines = stderr.strip().splitlines()
            assert code != 0 and len(lines) == 1, stderr[-3000:]
            assert lines[0].startswith(f"error: --workdir={workdir} is in use: training ")
            assert f"(pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    with open(metrics) as f:
        events = [json.loads(line).get("event") for line in f]
    assert events.count("start") == 1  # one run's records only


def test_eval_refuses_an_unwritable_eval_json_before_restoring_anything(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "7").mkdir(parents=True)  # never read: refused before
    (workdir / "eval.json").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "jaxgan.main", "--mode=eval", f"--workdir={workdir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0] == (
        f"error: --workdir: {workdir}/eval.json is a folder, where a file is to be written; "
        "move it or choose another --workdir"
    )


def test_training_refuses_a_folder_where_metrics_go_before_any_data(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tiny_run import tiny_config

    from jaxgan import train

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    workdir = tmp_path / "run"
    (workdir / "metrics.jsonl").mkdir(parents=True)
    with pytest.raises(ValueError) as error:  # the data_dir below a file: never reached
        train.train_and_evaluate(tiny_config(str(blocker / "tfds")), str(workdir))
    assert str(error.value) == (
        f"--workdir: {workdir}/metrics.jsonl is a folder, where a file is to be written; move "
        "it or choose another --workdir"
    )


@pytest.mark.slow
def test_a_disk_that_fills_during_a_save_ends_the_run_with_one_line(trained, data_dir, tmp_path):
    """Room for the first checkpoints, not for all: the run stops with its one line, and
    nothing after it (Orbax's background writes fail too, each with a traceback)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): " + mounted.stderr.decode().strip())
    try:
        code, _, stderr = run(command(str(disk / "run"), data_dir))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    lines = stderr.strip().splitlines()
    assert code == 1 and lines[-1].startswith("error: disk full while saving step"), stderr[-3000:]
    assert "a rerun resumes from step" in lines[-1]
    assert "Traceback" not in stderr and "RESOURCE_EXHAUSTED" not in stderr, stderr[-3000:]
