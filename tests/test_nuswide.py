"""NUS-WIDE from a small release in the official layout, bad and unlabeled images included."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from hostile_files import call_with_deadline, make_fifo
from PIL import Image

from jaxgan.data import datasets, image_files, nuswide
from jaxgan.data.nuswide import nuswide_dataset_builder as nb

N_TRAIN, N_TEST = 14, 10
MISSING, CORRUPT = "Flickr/actor/0002_102.jpg", "Flickr/beach/0003_203.jpg"


def make_release(root, rng):
    """A release in the official layout; returns (part -> (files, labels)) as written."""
    written = {}
    for part, n, subdirs in (("Train", N_TRAIN, ("actor", "zebra")), ("Test", N_TEST, ("beach",))):
        names, files = [], []
        for i in range(n):
            sub = subdirs[i % len(subdirs)]
            name = f"{i:04d}_{100 * (1 + (part == 'Test')) + i}.jpg"
            prefix = "C:\\ImageData\\Flickr\\" if i % 3 == 0 else ""  # both forms occur
            names.append(f"{prefix}{sub}\\{name}")
            files.append(f"Flickr/{sub}/{name}")
        labels = (rng.random((n, len(nb.CONCEPTS))) < 0.05).astype(np.uint8)
        labels[1] = 0  # unlabeled images: dropped
        labels[4] = 0
        labels[2, 5] = labels[3, 7] = 1  # keep MISSING / CORRUPT labelled
        os.makedirs(os.path.join(root, "ImageList"), exist_ok=True)
        with open(os.path.join(root, f"ImageList/{part}Imagelist.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        label_dir = os.path.join(root, "Groundtruth/TrainTestLabels")
        os.makedirs(label_dir, exist_ok=True)
        for c, concept in enumerate(nb.CONCEPTS):
            with open(os.path.join(label_dir, f"Labels_{concept}_{part}.txt"), "w") as f:
                f.write("".join(f"{v}\n" for v in labels[:, c]))
        for file in files:
            path = os.path.join(root, file)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if file == MISSING:
                continue
            if file == CORRUPT:
                with open(path, "wb") as f:
                    f.write(b"garbage")
                continue
            h, w = (int(v) for v in rng.integers(8, 24, 2))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        written[part.lower()] = (files, labels)
    with open(os.path.join(root, "Concepts81.txt"), "w") as f:
        f.write("\n".join(nb.CONCEPTS) + "\n")
    return written


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("NUS-WIDE")
    return str(root), make_release(str(root), np.random.default_rng(0))


def data_config(tmp_path, manual_dir, scheme):
    return ml_collections.ConfigDict(
        {
            "name": "nuswide",
            "split_scheme": scheme,
            "manual_dir": manual_dir,
            "data_dir": str(tmp_path / "tfds"),
            "train_split": "train[:80%]",
            "validation_split": "train[80%:]",
            "test_split": "test",
            "image_size": 32,
        }  # fmt: skip
    )


def read(data_config, split):
    """file -> labels of the build (the TFDS copy the records are prepared from)."""
    builder = nuswide.make_builder(data_config)
    out = {}
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        assert example["image"].shape[-1] == 3 and example["image"].dtype == np.uint8
        out[example["file"].decode()] = example["labels"].astype(np.float32)
    return out


def labelled(written, part):
    files, labels = written[part]
    return {f: labels[i] for i, f in enumerate(files) if labels[i].any()}


def test_official_split_drops_unlabeled_and_skips_bad_files(tmp_path, release):
    root, written = release
    config = data_config(tmp_path, root, "official")
    source = datasets.get_source(config)
    assert source.class_names == tuple(nb.CONCEPTS) and source.num_labels == 81
    for part in ("train", "test"):
        expected = labelled(written, part)
        got = read(config, part)
        assert set(got) == set(expected) - {MISSING, CORRUPT}
        for file, labels in got.items():
            np.testing.assert_array_equal(labels, expected[file])
    held_out = source.num_examples("train") + source.num_examples("validation")
    builder = nuswide.make_builder(config)
    assert held_out == builder.info.splits["train"].num_examples
    _, test_labels = source.reader("test").read_all()  # the prepared records: the same labels
    np.testing.assert_array_equal(test_labels, list(read(config, "test").values()))
    report = image_files.build_report(builder)
    assert "skipped 2 of" in report and MISSING in report and CORRUPT in report


def test_paper_split_partitions_the_pooled_labelled_images(tmp_path, release):
    root, written = release
    config = data_config(tmp_path, root, "paper")
    datasets.get_source(config)
    train, test = read(config, "train"), read(config, "test")
    pooled = {**labelled(written, "train"), **labelled(written, "test")}
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(pooled) - {MISSING, CORRUPT}
    for file, labels in {**train, **test}.items():
        np.testing.assert_array_equal(labels, pooled[file])
    # The assignment is a function of the label files alone, at the paper's ratio.
    parts = nb.read_split_lists(root)
    splits = nb.form_splits(parts, "paper")
    n = len(pooled)
    assert len(splits["train"][0]) == round(n * 150_000 / 209_347)
    assert set(splits["train"][0]) >= set(train) and set(splits["test"][0]) >= set(test)
    assert nb.form_splits(parts, "paper")["train"][0] == splits["train"][0]
    official = nb.form_splits(parts, "official")
    assert splits["train"][0] != official["train"][0]


def test_paper_split_has_the_papers_sizes_at_the_releases_count():
    n = 150_000 + 59_347
    parts = {
        "train": ([f"a{i}" for i in range(n - 1000)], np.ones((n - 1000, 1), np.uint8)),
        "test": ([f"b{i}" for i in range(1500)], np.r_[np.ones((1000, 1)), np.zeros((500, 1))]),
    }
    splits = nb.form_splits(parts, "paper")
    assert (len(splits["train"][0]), len(splits["test"][0])) == (150_000, 59_347)


def test_missing_layout_files_are_named(tmp_path):
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "ImageList/TrainImagelist.txt").write_text("actor\\0001_1.jpg\n")
    with pytest.raises(FileNotFoundError, match="TestImagelist.txt"):
        nb.read_split_lists(str(tmp_path))
    with pytest.raises(ValueError, match="manual_dir"):
        nuswide.make_source(data_config(tmp_path, "", "paper"))


def test_manual_download_instructions_name_the_release_files():
    text = nb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    for name in ("Imagelist.txt", "TrainImagelist.txt", "TestImagelist.txt", "Concepts81.txt",
                 "Labels_<concept>_Train.txt", "Flickr/"):  # fmt: skip
        assert name in text


def test_list_entries_that_could_leave_the_image_folder_are_refused(tmp_path):
    make_release(str(tmp_path), np.random.default_rng(1))
    list_file = tmp_path / "ImageList/TrainImagelist.txt"
    lines = list_file.read_text().splitlines()
    for bad in ("..\\secret.jpg", "actor\\..", "C:\\x\\..\\..", "actor\\", "C:secret.jpg"):
        list_file.write_text("\n".join([*lines[:3], bad, *lines[4:]]) + "\n")
        with pytest.raises(ValueError, match=r"TrainImagelist.txt, line 4: .* is not a <sub"):
            nb.read_split_lists(str(tmp_path))
    assert (
        nb.image_file("C:\\ImageData\\Flickr\\actor\\0001_2.jpg", "") == "Flickr/actor/0001_2.jpg"
    )


def test_layout_files_are_read_only_if_regular_and_bounded(tmp_path):
    make_release(str(tmp_path), np.random.default_rng(1))
    concepts = tmp_path / "Concepts81.txt"
    concepts.unlink()
    os.mkfifo(concepts)  # isfile() is False for a pipe: then it is simply absent
    labels = tmp_path / "Groundtruth/TrainTestLabels/Labels_cat_Train.txt"
    with open(labels, "ab") as f:  # sparse, over the cap
        f.truncate(image_files.MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match=r"Labels_cat_Train.txt: too large"):
        call_with_deadline(lambda: nb.read_split_lists(str(tmp_path)), 30, fifos=[str(concepts)])
    labels.write_text("0\n" * (N_TRAIN - 1) + "2\n")
    with pytest.raises(ValueError, match=r"Labels_cat_Train.txt: expected 14 lines of 0/1"):
        nb.read_split_lists(str(tmp_path))


def test_images_are_read_only_inside_the_release_and_never_from_a_pipe(tmp_path):
    root = tmp_path / "NUS-WIDE"
    written = make_release(str(root), np.random.default_rng(2))
    files, labels = written["train"]
    labelled = [f for f, row in zip(files, labels, strict=True) if row.any()]
    linked, piped = labelled[0], labelled[3]  # replace two images: a link out, a pipe
    outside = tmp_path / "private.jpg"
    os.replace(root / linked, outside)
    os.symlink(outside, root / linked)
    os.unlink(root / piped)
    fifo = make_fifo(root / piped)
    config = data_config(tmp_path, str(root), "official")
    call_with_deadline(lambda: datasets.get_source(config), 120, fifos=[fifo])
    got = read(config, "train")
    assert linked not in got and piped not in got
    report = image_files.build_report(nuswide.make_builder(config))
    assert f"{linked} (outside Flickr)" in report
    assert f"{piped} (not a regular file: a named pipe)" in report
