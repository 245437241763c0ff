"""Predict with a checkpoint on image files: the evaluation's preprocessing, class names from
the checkpoint, bad files reported and skipped, thresholds from validation; and neither
predict nor --mode=eval ever reads the training split."""

import csv
import glob
import json
import os
import runpy
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan import diagnose, evaluate, predict, train
from jaxgan.checkpoint import CheckpointError
from jaxgan.data import custom, input_pipeline
from jaxgan.data.datasets import get_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
get_custom_config = runpy.run_path(os.path.join(ROOT, "configs", "custom.py"))["get_config"]

CLASSES = ("beach", "dog", "sky")
TEST_FILES = ("t_rgb.png", "t_rgb.jpg", "t_gray.png", "t_gray.jpg", "t_big.jpg")


def write(path, rng, mode="RGB", size=(20, 24)):
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    image.save(path)


def make_config(image_dir, labels, data_dir):
    config = get_custom_config("cpu")
    config.model.name = "resnet_small"
    config.model.width = 4
    config.data.image_size = 16
    config.data.normalization = "unit"
    config.data.image_dir = str(image_dir)
    config.data.labels_file = str(labels)
    config.data.data_dir = str(data_dir)
    config.critic.embed_dim = 8
    config.critic.hidden_dim = 16
    config.critic.num_layers = 2
    config.schedule.batch_size = 4
    config.schedule.eval_batch_size = 4
    return config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with one checkpoint of an (untrained) model of three named classes, saved
    with an evaluation's thresholds, as training saves it; its dataset's train split is then
    deleted."""
    root = tmp_path_factory.mktemp("predict")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        write(images / f"train{i}.jpg", rng)
        rows.append((f"train{i}.jpg", "train", [i % 2, 1 - i % 2, int(i % 3 == 0)]))
    for i in range(4):
        write(images / f"val{i}.png", rng)
        rows.append((f"val{i}.png", "validation", [1 - i % 2, i % 2, 1]))
    for i, name in enumerate(TEST_FILES):
        size = (300, 260) if "big" in name else (20 + i, 24)
        write(images / name, rng, "L" if "gray" in name else "RGB", size)
        rows.append((name, "test", [i % 2, 1, int(i == 0)]))
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["filename", *CLASSES, "split"])
        for name, split, y in rows:
            out.writerow([name, *y, split])
    config = make_config(images, labels, root / "tfds")
    workdir = str(root / "run")
    run = train.Run(config, workdir)
    report = run.evaluate()
    run.checkpointer.save(run.state, run.meta, report["metrics"], thresholds=report["thresholds"])
    run.checkpointer.wait()
    run.checkpointer.close()
    source = run.source
    builder = custom.make_builder(config.data)
    order = [
        e["file"].decode()
        for e in tfds.as_numpy(builder.as_dataset(split="test", shuffle_files=False))
    ]
    for path in glob.glob(os.path.join(builder.data_dir, "*train.tfrecord*")):
        os.remove(path)  # the build's train split: gone
    (shard,) = glob.glob(os.path.join(source.prepared.path, "train*"))
    with open(shard, "r+b") as f:  # the records' train split: unreadable from here on (its
        f.seek(1000)  # records, in its first chunk, not its index: the dataset still opens)
        f.write(b"\0" * 2000)
    with pytest.raises(Exception, match="is corrupt"):
        next(input_pipeline.train_batches(get_source(config.data), config.data, 4, 0))
    return {"workdir": workdir, "images": images, "config": config, "order": order,
            "report": report, "root": root}  # fmt: skip


def test_predict_gives_the_evaluation_paths_probabilities(saved):
    classifier = evaluate.load_classifier(saved["workdir"])
    assert classifier.class_names == CLASSES  # from the checkpoint, not from the data
    source = get_source(classifier.config.data)
    eval_scores, _ = evaluate.split_scores(classifier, source, "test")
    files, probabilities, _, skipped = predict.predict_files(
        classifier, [str(saved["images"] / name) for name in saved["order"]]
    )
    assert [os.path.basename(f) for f in files] == saved["order"] and not skipped
    np.testing.assert_allclose(probabilities, eval_scores, rtol=0, atol=1e-6)
    assert np.ptp(probabilities, axis=0).max() > 1e-4  # the images do get different scores


def test_bad_files_are_reported_in_one_line_and_skipped(saved, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in TEST_FILES[:3]:
        (folder / name).write_bytes((saved["images"] / name).read_bytes())
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    (folder / "notes.txt").write_text("not an image, not an image extension: not listed")
    lines = []
    classifier = evaluate.load_classifier(saved["workdir"])
    files, probabilities, _, skipped = predict.predict_files(
        classifier, [str(folder), str(tmp_path / "missing.jpg")], report=lines.append
    )
    assert sorted(os.path.basename(f) for f in files) == sorted(TEST_FILES[:3])
    assert probabilities.shape == (3, len(CLASSES))
    assert [os.path.basename(path) for path, _ in skipped] == ["missing.jpg", "corrupt.png"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "missing.jpg: missing" in lines[0]
    assert "corrupt.png: unreadable: not an image" in lines[1]


def test_run_predict_writes_label_names_as_csv_and_jsonl(saved, tmp_path, capsys):
    prefix = str(tmp_path / "out" / "pred")
    records, _ = predict.run_predict(
        saved["workdir"], [str(saved["images"] / "t_*")], threshold="0.5", output=prefix
    )
    assert len(records) == len(TEST_FILES)
    with open(prefix + ".csv") as f:
        table = list(csv.reader(f))
    assert table[0] == ["file", "labels", *CLASSES]
    with open(prefix + ".jsonl") as f:
        lines = [json.loads(line) for line in f]
    for row, record in zip(table[1:], lines, strict=True):
        probabilities = [record["probabilities"][c] for c in CLASSES]
        assert row[0] == record["file"]
        assert (row[1].split(";") if row[1] else []) == record["labels"]
        assert set(record["labels"]) == {
            c for c, p in zip(CLASSES, probabilities, strict=True) if p > 0.5
        }
        np.testing.assert_allclose([float(v) for v in row[2:]], probabilities, atol=1e-6)
    printed = capsys.readouterr().out
    assert "predicted 5 image(s)" in printed and "t_rgb.png:" in printed


def test_threshold_choices_use_the_validation_tuned_values(saved):
    classifier = evaluate.load_classifier(saved["workdir"])
    thresholds = saved["report"]["thresholds"]
    np.testing.assert_array_equal(
        evaluate.choose_thresholds(classifier, "per_class"), thresholds["per_class"]
    )
    assert set(evaluate.choose_thresholds(classifier, "global")) == {thresholds["CF1"]}
    assert set(evaluate.choose_thresholds(classifier, "configured")) == {0.5}
    with pytest.raises(ValueError, match="unknown --threshold"):
        evaluate.choose_thresholds(classifier, "median")
    # Distinct recorded values, so that each choice is told apart.
    classifier.saved["thresholds"] = {"CF1": 0.4, "OF1": 0.3, "per_class": [0.2, 0.6, 0.7]}
    assert evaluate.choose_thresholds(classifier, "per_class").tolist() == [0.2, 0.6, 0.7]
    assert evaluate.choose_thresholds(classifier, "global").tolist() == [0.4] * 3
    assert evaluate.choose_thresholds(classifier, "0.25").tolist() == [0.25] * 3


def test_eval_and_diagnose_never_read_the_training_split(saved):
    """The fixture deleted the train split's records; eval and diagnose still work."""
    report = evaluate.evaluate_checkpoint(None, saved["workdir"])  # the recorded config
    with open(os.path.join(saved["workdir"], "eval.json")) as f:
        written = json.load(f)
    assert written["step"] == report["step"] == 0
    assert list(written["per_class"]) == list(CLASSES)
    assert written["metrics"]["CF1"] == pytest.approx(saved["report"]["metrics"]["CF1"])
    out = str(saved["root"] / "diagnostics")
    results = diagnose.run([saved["workdir"]], out, top=2)
    assert os.path.isfile(os.path.join(out, "cooccurrence.png"))
    assert next(iter(results.values()))["num_images"] == len(TEST_FILES)


def edited_copy(saved, tmp_path, edit) -> str:
    """A copy of the saved run whose checkpoint's recorded config `edit` changed."""
    workdir = str(tmp_path / "run")
    shutil.copytree(saved["workdir"], workdir)
    (meta,) = glob.glob(os.path.join(workdir, "checkpoints", "*", "meta", "metadata"))
    with open(meta) as f:
        recorded = json.load(f)
    edit(recorded["config"])
    with open(meta, "w") as f:
        json.dump(recorded, f)
    return workdir


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("data", "image_size", 100_000, "data.image_size=100000 is out of range"),
        ("schedule", "eval_batch_size", 10**9, "schedule.eval_batch_size=1000000000 is out"),
        ("model", "name", "resnt50", "unknown model.name 'resnt50'"),
        ("method", "threshold", "high", "method.threshold='high' has the wrong type"),
    ],
)
def test_a_checkpoints_recorded_config_goes_through_the_config_door(
    saved, tmp_path, section, field, value, message
):
    workdir = edited_copy(saved, tmp_path, lambda config: config[section].update({field: value}))
    with pytest.raises(CheckpointError) as error:
        evaluate.load_classifier(workdir)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("field, value", [("image_size", 40), ("normalization", "imagenet")])
def test_an_evaluation_config_may_not_change_the_trained_input(saved, field, value):
    config = saved["config"].copy_and_resolve_references()
    assert config.data[field] != value
    config.data[field] = value
    with pytest.raises(CheckpointError, match=f"--config gives data.{field}=.* drop that"):
        evaluate.load_classifier(saved["workdir"], config=config)
    config.data[field] = saved["config"].data[field]
    config.schedule.eval_batch_size = 8  # what an evaluation config may change
    assert evaluate.load_classifier(saved["workdir"], config=config).step == 0


def test_a_damaged_newest_checkpoint_names_the_step_that_would_work(saved, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(saved["workdir"], workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    shutil.copytree(os.path.join(checkpoints, "0"), os.path.join(checkpoints, "5"))
    shutil.rmtree(os.path.join(checkpoints, "5", "meta"))
    with pytest.raises(CheckpointError) as error:
        evaluate.load_classifier(workdir)
    message = str(error.value)
    assert "step 5" in message and "--checkpoint_step=0" in message and "\n" not in message
    assert evaluate.load_classifier(workdir, step=0).step == 0


# --- the walk of folders and globs: symlink loops, a bound on the count ----------------------

import subprocess  # noqa: E402
import sys  # noqa: E402


def looping_folder(root):
    """A folder whose sub-folders link back to it (twice, so a walk that follows them goes
    down 2^depth paths), one linked folder outside it, and three images in all."""
    folder, outside = root / "loops", root / "outside"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    for path in (folder / "a.png", folder / "sub" / "b.png", outside / "c.png"):
        Image.new("RGB", (4, 4)).save(path)
    os.symlink(".", folder / "self1")
    os.symlink(".", folder / "self2")
    os.symlink("..", folder / "sub" / "up")
    os.symlink(outside, folder / "linked")
    return folder


def test_globs_and_folders_follow_links_but_not_into_loops(tmp_path):
    """Run in a child process: a walk that loops would never end and fill the memory."""
    folder = looping_folder(tmp_path)
    code = (
        "import json, os, sys; from jaxgan.predict import expand_paths\n"
        "out = {spec: sorted(os.path.realpath(f) for f in expand_paths([spec])[0])\n"
        "       for spec in sys.argv[1:]}\n"
        "print(json.dumps(out))"
    )
    specs = [f"{folder}/**/*.png", str(folder), f"{folder}/*/*.png"]
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *specs], cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("expand_paths did not finish in 60 s: it follows the links round the loop")
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    real = os.path.realpath
    everything = sorted(
        real(p) for p in (folder / "a.png", folder / "sub" / "b.png", tmp_path / "outside/c.png")
    )
    assert found[specs[0]] == everything  # ** follows the link to `outside`, once
    assert found[specs[1]] == everything  # so does a folder's walk
    assert found[specs[2]] == everything  # */ : sub/b.png, linked/c.png and self*/a.png


def test_more_files_than_the_limit_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "MAX_PATHS", 3)
    for i in range(5):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    for specs in ([str(tmp_path)], [str(tmp_path / "*.png")], [str(tmp_path / "**")]):
        with pytest.raises(ValueError, match="more than 3 files") as error:
            predict.expand_paths(specs)
        assert "\n" not in str(error.value) and "--images" in str(error.value)
    three = [str(tmp_path / f"{i}.png") for i in range(3)]
    assert predict.expand_paths(three)[0] == three  # at the limit: fine


# --- outputs: a folder means a folder, and it is checked before any work ---------------------


def test_output_names_a_prefix_or_a_folder(tmp_path):
    workdir = str(tmp_path / "run")
    assert predict.output_prefix(None, workdir) == os.path.join(workdir, "predictions")
    assert predict.output_prefix(str(tmp_path / "out" / "pred"), workdir) == str(
        tmp_path / "out" / "pred"
    )
    folder = os.path.join(str(tmp_path / "new"), "")  # trailing slash: a folder, made if new
    assert predict.output_prefix(folder, workdir) == str(tmp_path / "new" / "predictions")
    assert predict.output_prefix(str(tmp_path), workdir) == str(tmp_path / "predictions")


def test_output_to_a_folder_writes_predictions_files_there(saved, tmp_path):
    out = os.path.join(str(tmp_path / "results"), "")
    predict.run_predict(saved["workdir"], [str(saved["images"] / "t_rgb.png")], output=out)
    assert sorted(os.listdir(tmp_path / "results")) == ["predictions.csv", "predictions.jsonl"]


@pytest.mark.parametrize("blocked", ["a file on the path", "a folder where the CSV goes"])
def test_an_unwritable_output_is_refused_before_the_model_or_any_image(
    tmp_path, monkeypatch, blocked
):
    def never(*args, **kwargs):
        pytest.fail("the model was restored or an image read before the output was checked")

    monkeypatch.setattr(evaluate, "load_classifier", never)
    monkeypatch.setattr(predict, "expand_paths", never)
    if blocked == "a file on the path":
        (tmp_path / "a_file").write_text("")
        output, expected = str(tmp_path / "a_file" / "pred"), "a_file is a file, not a folder"
    else:
        (tmp_path / "pred.csv").mkdir()
        output, expected = str(tmp_path / "pred"), "pred.csv is a folder"
    with pytest.raises(ValueError) as error:
        predict.run_predict(str(tmp_path / "run"), ["x.png"], output=output)
    assert "--output" in str(error.value) and expected in str(error.value)
    assert "\n" not in str(error.value)
