"""Your own data: labels files (CSV, JSON lines), splits, and a folder with bad files in it."""

import csv
import importlib.util
import json
import logging
import os

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from hostile_files import call_with_deadline, make_fifo
from PIL import Image

from jaxgan.data import custom, datasets, image_files
from jaxgan.data.custom import labels_file

CLASSES = ("cat", "dog", "sky")


def write_image(path, kind, rng):
    """A small image of random size in one of the formats users' folders hold."""
    h, w = (int(v) for v in rng.integers(9, 30, 2))
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if kind == "gray":
        image = image.convert("L")
    elif kind == "cmyk":
        image = image.convert("CMYK")
    elif kind == "rgba":
        image = Image.fromarray(np.dstack([pixels, pixels[..., :1]]), "RGBA")
    elif kind == "palette":
        image = image.convert("P")
    fmt = {".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}.get(os.path.splitext(path)[1], "JPEG")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, format=fmt)
    return h, w


def make_folder(root, n_good=24, seed=0):
    """A folder of images plus bad entries; returns (rows, shapes of the good images)."""
    rng = np.random.default_rng(seed)
    kinds = [("rgb", ".jpg"), ("gray", ".jpg"), ("cmyk", ".jpg"), ("rgba", ".png"),
             ("rgb", ".bmp"), ("palette", ".gif"), ("rgb", ".jpeg")]  # fmt: skip
    rows, shapes = [], {}
    for i in range(n_good):
        kind, ext = kinds[i % len(kinds)]
        name = f"sub{i % 2}/img{i}{ext}"
        shapes[name] = write_image(os.path.join(root, name), kind, rng)
        labels = [int(i % 2 == 0), int(i % 3 == 0), 1 if i % 4 != 3 else int(i % 2 == 1)]
        rows.append((name, labels))
    with open(os.path.join(root, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG body")
    good = open(os.path.join(root, "sub0/img0.jpg"), "rb").read()
    with open(os.path.join(root, "truncated.jpg"), "wb") as f:
        f.write(good[: len(good) // 2])
    open(os.path.join(root, "empty.jpg"), "wb").close()
    write_image(os.path.join(root, "unlabeled.jpg"), "rgb", rng)
    rows += [("missing.jpg", [1, 0, 0]), ("corrupt.jpg", [0, 1, 0]),
             ("truncated.jpg", [1, 1, 0]), ("empty.jpg", [0, 0, 1]),
             ("unlabeled.jpg", [0, 0, 0])]  # fmt: skip
    return rows, shapes


def write_csv(path, rows, header=("filename", *CLASSES), splits=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(header) + (["split"] if splits else []))
        for i, (name, labels) in enumerate(rows):
            writer.writerow([name, *labels] + ([splits[i]] if splits else []))


def config(tmp_path, image_dir, labels, **overrides):
    c = ml_collections.ConfigDict(
        {
            "name": "custom",
            "image_dir": str(image_dir),
            "labels_file": str(labels),
            "data_dir": str(tmp_path / "tfds"),
            "split_seed": 0,
            "validation_fraction": 0.2,
            "test_fraction": 0.2,
            "keep_unlabeled": False,
            "image_size": 32,
        }  # fmt: skip
    )
    c.update(overrides)
    return c


def read_split(data_config, role):
    """file -> (image, labels) of the dataset's build (the TFDS copy the records are prepared
    from), the image as stored."""
    builder = custom.make_builder(data_config)
    out = {}
    for example in tfds.as_numpy(builder.as_dataset(split=role, shuffle_files=False)):
        out[example["file"].decode()] = (example["image"], example["labels"].astype(np.float32))
    return out


def test_folder_with_bad_files_builds_skips_and_reports(tmp_path, caplog):
    image_dir = tmp_path / "photos"
    rows, shapes = make_folder(str(image_dir))
    write_csv(image_dir / "labels.csv", rows)
    data_config = config(tmp_path, image_dir, image_dir / "labels.csv")
    with caplog.at_level(logging.WARNING):
        source = datasets.get_source(data_config)
    assert source.class_names == CLASSES

    read = {role: read_split(data_config, role) for role in ("train", "validation", "test")}
    files = [set(r) for r in read.values()]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert set().union(*files) == set(shapes)  # every good image once, no bad or unlabeled one
    assert all(source.num_examples(role) == len(read[role]) for role in read)
    assert len(read["validation"]) >= 3 and len(read["test"]) >= 3
    expected = dict(rows)
    for split in read.values():
        for name, (image, labels) in split.items():
            assert image.dtype == np.uint8 and image.shape == (*shapes[name], 3)
            np.testing.assert_array_equal(labels, expected[name])
            assert labels.dtype == np.float32

    for role in read:  # the prepared records hold the same labels, in the build's order
        _, labels = source.reader(role).read_all()
        np.testing.assert_array_equal(labels, [label for _, label in read[role].values()])
    report = image_files.build_report(custom.make_builder(data_config))
    assert "skipped 4 of" in report and "dropped 1 images with no label" in report
    assert "1 empty, 1 missing, 2 unreadable" in report
    for listed in ["missing.jpg (missing)", "corrupt.jpg (unreadable", "truncated.jpg (unreadable",
                   "empty.jpg (empty)"]:  # fmt: skip
        assert listed in report
    assert report in caplog.text  # the user sees it once, at build time


def test_rebuild_is_skipped_and_a_changed_labels_file_gets_a_new_dataset(tmp_path):
    image_dir = tmp_path / "photos"
    rows, _ = make_folder(str(image_dir), n_good=10)
    labels = image_dir / "labels.csv"
    write_csv(labels, rows)
    first = custom.make_source(config(tmp_path, image_dir, labels))
    again = custom.make_source(config(tmp_path, image_dir, labels))
    assert again.prepared.path == first.prepared.path
    write_csv(labels, rows[:8] + rows[10:])
    os.utime(labels, ns=(1, 1))
    changed = custom.make_source(config(tmp_path, image_dir, labels))
    assert changed.prepared.path != first.prepared.path
    total = sum(changed.num_examples(r) for r in ("train", "validation", "test"))
    assert total == 8


def test_splits_from_the_file_and_jsonl_give_the_same_dataset(tmp_path):
    image_dir = tmp_path / "photos"
    rows, shapes = make_folder(str(image_dir), n_good=12)
    rows = rows[:12]
    splits = ["train"] * 8 + ["val", "validation", "test", "test"]
    write_csv(image_dir / "labels.csv", rows, splits=splits)
    with open(image_dir / "labels.jsonl", "w") as f:
        f.write(json.dumps({"classes": list(CLASSES)}) + "\n")
        for (name, labels), split in zip(rows, splits, strict=True):
            names = [c for c, v in zip(CLASSES, labels, strict=True) if v]
            f.write(json.dumps({"file": name, "labels": names, "split": split}) + "\n")
    csv_config = config(tmp_path, image_dir, image_dir / "labels.csv")
    jsonl_config = config(tmp_path, image_dir, image_dir / "labels.jsonl")
    from_csv, from_jsonl = custom.make_source(csv_config), custom.make_source(jsonl_config)
    assert from_jsonl.class_names == from_csv.class_names == CLASSES
    for role, expected in [("train", rows[:8]), ("validation", rows[8:10]), ("test", rows[10:])]:
        a, b = read_split(csv_config, role), read_split(jsonl_config, role)
        assert set(a) == set(b) == {name for name, _ in expected}
        for name in a:
            np.testing.assert_array_equal(a[name][1], b[name][1])


def test_drawn_splits_follow_the_seed_and_fractions():
    records = [labels_file.Record(f"{i}.jpg", (1,), None) for i in range(100)]
    a = labels_file.assign_splits(records, 3, 0.1, 0.2)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [70, 10, 20]
    assert a == labels_file.assign_splits(records, 3, 0.1, 0.2)
    assert a != labels_file.assign_splits(records, 4, 0.1, 0.2)
    given = records[:5] + [labels_file.Record("t.jpg", (1,), "test")]
    b = labels_file.assign_splits(given, 0, 0.2, 0.5)
    assert [r.file for r in b["test"]] == ["t.jpg"] and len(b["validation"]) == 1


@pytest.mark.parametrize(
    "header, row, message",
    [
        (("name", *CLASSES), ["a.jpg", 1, 0, 1], "no filename column"),
        (("filename", *CLASSES), ["a.jpg", 2, 0, 1], "hold 0 or 1"),
        (("filename", *CLASSES), ["a.jpg", 1, 0, 0], r"\['sky'\] have no positive"),
        (("filename",), ["a.jpg"], "names no class column"),
    ],
)
def test_labels_file_mistakes_are_named(tmp_path, header, row, message):
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, row, ["b.jpg", 0, 1, 0][: len(header)]])
    with pytest.raises(labels_file.LabelsFileError, match=message):
        labels_file.read_labels_file(str(path))


def test_config_mistakes_are_named(tmp_path):
    image_dir = tmp_path / "photos"
    image_dir.mkdir()
    write_csv(image_dir / "labels.csv", [("a.jpg", [1, 1, 1])])
    with pytest.raises(ValueError, match="not found"):
        custom.make_source(config(tmp_path, image_dir, tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="is not a folder"):
        custom.make_source(config(tmp_path, tmp_path / "nope", image_dir / "labels.csv"))
    with pytest.raises(ValueError, match="labels_file"):
        custom.make_source(config(tmp_path, image_dir, ""))


def test_an_empty_split_is_named(tmp_path):
    image_dir = tmp_path / "photos"
    rows, _ = make_folder(str(image_dir), n_good=6)
    write_csv(image_dir / "labels.csv", rows[:6])
    with pytest.raises(ValueError, match="test split .* data.test_fraction=0 draws none .* raise"):
        custom.make_source(config(tmp_path, image_dir, image_dir / "labels.csv", test_fraction=0.0))
    bad = [row for row in rows if row[0] in ("missing.jpg", "corrupt.jpg")]
    splits = ["train"] * 5 + ["validation"] + ["test"] * 2  # test: only bad files
    write_csv(image_dir / "bad.csv", rows[:6] + bad, splits=splits)
    with pytest.raises(ValueError, match="every image of a split .*missing.jpg"):
        custom.make_source(config(tmp_path, image_dir, image_dir / "bad.csv"))


def test_configs_custom_points_at_this_builder():
    path = os.path.join(os.path.dirname(__file__), "..", "configs", "custom.py")
    spec = importlib.util.spec_from_file_location("custom_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    assert c.data.name == "custom" and c.model.name == "resnet50"
    assert {"image_dir", "labels_file", "split_seed"} <= set(c.data.keys())
    cpu = module.get_config("cpu")
    assert cpu.model.name == "resnet18" and cpu.data.image_size < c.data.image_size


# --- Hostile labels files (every case refused or skipped with a reason, never a hang). ---


def write_rows(path, names, splits=None):
    """A CSV labelling every file with all three classes."""
    write_csv(path, [(name, [1, 1, 1]) for name in names], splits=splits)
    return path


def good_folder(root, n=6):
    rows, _ = make_folder(str(root), n_good=n)
    return [name for name, _ in rows[:n]]


def test_names_outside_the_folder_are_refused_alike_whether_or_not_they_exist(tmp_path):
    image_dir, outside = tmp_path / "photos", tmp_path / "private"
    names = good_folder(image_dir)
    outside.mkdir()
    write_image(str(outside / "real.jpg"), "rgb", np.random.default_rng(1))
    os.symlink(outside / "real.jpg", image_dir / "link.jpg")
    os.symlink(outside / "gone.jpg", image_dir / "dangling.jpg")
    messages = {}
    for case, name in {
        "parent, exists": "../private/real.jpg",
        "parent, absent": "../private/gone.jpg",
        "absolute, exists": str(outside / "real.jpg"),
        "absolute, absent": str(outside / "gone.jpg"),
        "device": "/dev/zero",
        "link, exists": "link.jpg",
        "link, absent": "dangling.jpg",
        "sneaky, exists": "sub0/../../private/real.jpg",
    }.items():
        labels = write_rows(tmp_path / "labels.csv", [*names, name])
        with pytest.raises(labels_file.LabelsFileError) as error:
            custom.make_source(config(tmp_path, image_dir, labels))
        message = str(error.value)
        assert "outside data.image_dir" in message and "allow_outside_paths" in message
        assert "\n" not in message
        messages[case] = message.replace(repr(name), "NAME")
    for kind in ("parent", "absolute", "link"):  # nothing tells whether the file exists
        assert messages[f"{kind}, exists"] == messages[f"{kind}, absent"]
    assert not os.path.exists(tmp_path / "tfds")  # refused before any build


def test_names_inside_the_folder_pass_however_they_spell_it(tmp_path):
    real = tmp_path / "disk" / "photos"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "photos")  # the folder is given through a link
    (real / "sub").mkdir()
    for name in ("a.jpg", "sub/b.jpg"):
        (real / name).write_bytes(b"x")
    names = ["a.jpg", "./sub/b.jpg", str(real / "c.jpg"), str(tmp_path / "photos" / "d.jpg")]
    records = [labels_file.Record(n, (1,), None, i) for i, n in enumerate(names)]
    resolved = labels_file.resolve_files("l.csv", records, str(tmp_path / "photos"))
    assert resolved == [str(real / n) for n in ("a.jpg", "sub/b.jpg", "c.jpg", "d.jpg")]


def test_allow_outside_paths_reads_them_but_never_a_device(tmp_path):
    image_dir, outside = tmp_path / "photos", tmp_path / "elsewhere"
    names = good_folder(image_dir, n=9)
    write_image(str(outside / "real.jpg"), "rgb", np.random.default_rng(1))
    labels = write_rows(tmp_path / "labels.csv", [*names, str(outside / "real.jpg"), "/dev/zero"])
    data_config = config(tmp_path, image_dir, labels, allow_outside_paths=True, test_fraction=0.1)
    call_with_deadline(lambda: custom.make_source(data_config), 120)
    files = set().union(*(read_split(data_config, r) for r in ("train", "validation", "test")))
    assert files == {*names, str(outside / "real.jpg")}
    assert "/dev/zero (not a regular file: a character device)" in image_files.build_report(
        custom.make_builder(data_config)
    )


def test_special_files_in_the_folder_are_skipped_without_hanging(tmp_path):
    image_dir = tmp_path / "photos"
    names = good_folder(image_dir)
    fifo = make_fifo(image_dir / "pipe.jpg")
    os.mkdir(image_dir / "folder.jpg")
    with open(image_dir / "huge.jpg", "wb") as f:  # sparse: stat says 64 MiB + 1 byte
        f.truncate(image_files.MAX_FILE_BYTES + 1)
    labels = write_rows(tmp_path / "labels.csv", [*names, "pipe.jpg", "folder.jpg", "huge.jpg"])
    data_config = config(tmp_path, image_dir, labels)
    call_with_deadline(lambda: custom.make_source(data_config), 120, fifos=[fifo])
    report = image_files.build_report(custom.make_builder(data_config))
    assert "skipped 3 of 9 images" in report
    for listed in ("pipe.jpg (not a regular file: a named pipe)",
                   "folder.jpg (not a regular file: a directory)",
                   "huge.jpg (too large: 64.0 MiB, the limit is 64.0 MiB)"):  # fmt: skip
        assert listed in report


@pytest.mark.parametrize(
    "first, second",
    [("a.jpg", s) for s in ("./a.jpg", "sub0/../a.jpg", "alias.jpg", "hard.jpg", "a.jpg")]
    + [("gone.jpg", "./sub0/../gone.jpg")],  # a missing file too (it would be skipped twice)
)
def test_one_file_under_two_spellings_is_a_duplicate(tmp_path, first, second):
    image_dir = tmp_path / "photos"
    names = good_folder(image_dir)
    write_image(str(image_dir / "a.jpg"), "rgb", np.random.default_rng(1))
    os.symlink("a.jpg", image_dir / "alias.jpg")
    os.link(image_dir / "a.jpg", image_dir / "hard.jpg")
    labels = write_rows(tmp_path / "labels.csv", [*names, first, second])
    with pytest.raises(labels_file.LabelsFileError) as error:
        custom.make_source(config(tmp_path, image_dir, labels))
    assert f"'{first}' (line 8) and '{second}' (line 9)" in str(error.value) or (
        first == second and "listed twice (lines 8 and 9)" in str(error.value)
    )


@pytest.mark.parametrize(
    "classes", ['"catdog"', '["cat", "cat"]', '["cat", 1]', "[]", '["cat", ""]', '{"a": 1}']
)
def test_jsonl_classes_must_be_a_list_of_distinct_names(tmp_path, classes):
    path = tmp_path / "labels.jsonl"
    lines = ['{"classes": ' + classes + "}"] + [
        json.dumps({"file": f"{i}.jpg", "labels": [c]}) for i, c in enumerate("catdog")
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(labels_file.LabelsFileError, match='line 1: "classes" must be a list'):
        labels_file.read_labels_file(str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"filename,cat\n" + b"a" * 200_000 + b".jpg,1\n", r"line 2: not CSV \(field larger"),
        (b"filename,cat\n\xff\xfe.jpg,1\n", "is not UTF-8 text"),
        (
            b'{"file": "a.jpg", "labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            "line 1: not JSON",
        ),
    ],
)
def test_malformed_labels_files_get_one_line(tmp_path, content, message):
    path = tmp_path / ("labels.jsonl" if content.startswith(b"{") else "labels.csv")
    path.write_bytes(content)
    with pytest.raises(labels_file.LabelsFileError, match=message):
        labels_file.read_labels_file(str(path))


def test_a_labels_file_that_is_a_pipe_is_refused_without_hanging(tmp_path):
    image_dir = tmp_path / "photos"
    image_dir.mkdir()
    fifo = make_fifo(tmp_path / "labels.csv")
    with pytest.raises(labels_file.LabelsFileError, match="not a regular file: a named pipe"):
        call_with_deadline(
            lambda: custom.make_source(config(tmp_path, image_dir, fifo)), 30, fifos=[fifo]
        )


@pytest.mark.parametrize(
    "validation, test, message",
    [
        (0.5, 0.5, r"validation_fraction \+ data.test_fraction is 1, which leaves no image"),
        (0.7, 0.6, r"is 1.3, which leaves no image for train; keep their sum below 1"),
        (1.0, 0.0, r"data.validation_fraction is 1.0; set it to a number in \[0, 1\)"),
        (0.1, -0.1, r"data.test_fraction is -0.1"),
        (float("nan"), 0.1, r"data.validation_fraction is nan"),
    ],
)
def test_fractions_are_checked_before_anything_is_read(tmp_path, validation, test, message):
    c = config(tmp_path, tmp_path / "nope", tmp_path / "nope.csv")  # neither exists
    c.update({"validation_fraction": validation, "test_fraction": test})
    with pytest.raises(ValueError, match=message) as error:
        custom.make_source(c)
    assert "add rows" not in str(error.value)


def test_empty_splits_get_advice_that_works(tmp_path):
    image_dir = tmp_path / "photos"
    names = good_folder(image_dir)

    def refusal(splits, **overrides):
        labels = write_rows(tmp_path / "labels.csv", names, splits=splits)
        with pytest.raises(ValueError) as error:
            custom.make_source(config(tmp_path, image_dir, labels, **overrides))
        return str(error.value)

    # A split column that says "train" on every row: no fraction can draw from it.
    message = refusal(["train"] * 6)
    assert "validation split" in message and "raise" not in message
    assert "every row has a split and none says 'validation'" in message
    # The fractions draw all the images without a split: lower them (not "add rows").
    message = refusal(["test", "", "", "", "", ""], validation_fraction=0.95, test_fraction=0.0)
    assert "the train split" in message and "lower them" in message
    # Too small a fraction for this few images: raise it (and by how much).
    message = refusal(None, test_fraction=0.05)
    assert "data.test_fraction=0.05 draws none of the 6" in message and "at least 0.17" in message
    # The rows marked for a split have no label.
    labels = tmp_path / "labels.csv"
    write_csv(labels, [(n, [1, 1, 1]) for n in names] + [("unlabeled.jpg", [0, 0, 0])],
              splits=["train"] * 5 + ["validation", "test"])  # fmt: skip
    with pytest.raises(ValueError, match="test split .* no positive label; label them, or set"):
        custom.make_source(config(tmp_path, image_dir, labels))


@pytest.mark.slow  # two builds in two processes, the first slowed down
def test_two_builds_of_one_dataset_at_once_build_it_once(tmp_path):
    """Two processes (two trainings started together) preparing one dataset into one data_dir:
    the first builds (slowed down here, so that the second starts while it does), the second
    waits for it and reads what it built; neither fails."""
    import subprocess
    import sys
    import time

    image_dir = tmp_path / "photos"
    image_dir.mkdir()
    rows = []
    for i in range(200):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(image_dir / f"{i}.png")
        rows.append((f"{i}.png", [i % 2, 1 - i % 2, 1]))
    write_csv(image_dir / "labels.csv", rows)
    c = config(tmp_path, image_dir, image_dir / "labels.csv")
    code = (
        "import json, sys, time, ml_collections\n"
        "from jaxgan.data import datasets, image_files\n"
        "read = image_files.read_images\n"
        "def slow(*args, **kwargs):\n"
        "    for item in read(*args, **kwargs):\n"
        "        time.sleep(float(sys.argv[2]))\n"
        "        yield item\n"
        "image_files.read_images = slow\n"
        "source = datasets.get_source(ml_collections.ConfigDict(json.loads(sys.argv[1])))\n"
        "print('examples', sum(source.num_examples(r) for r in datasets.SPLIT_ROLES))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def build(delay):
        return subprocess.Popen([sys.executable, "-c", code, c.to_json(), str(delay)],
                                cwd=root, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip

    first = build(0.1)  # 20 s of building
    folder = tmp_path / "tfds" / "custom_multilabel"
    deadline = time.time() + 120
    while not (folder.is_dir() and any(folder.glob("*/incomplete*"))):
        assert time.time() < deadline and first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.1)
    second = build(0)
    results = [p.communicate(timeout=300) for p in (first, second)]
    for p, (out, err) in zip((first, second), results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert out.split()[-1] == "200"
    assert "waiting for another preparation" in results[1][1]
    built = os.listdir(folder)
    assert len(built) == 1
    versions = os.listdir(folder / built[0])
    assert [v for v in versions if not v.endswith(".lock")] == ["1.0.0"]  # no leftover copy
