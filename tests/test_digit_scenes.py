"""digit_scenes: disjoint splits, determinism, documented statistics, hard objects, decode."""

import re

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgan.data import digit_scenes
from jaxgan.data.digit_scenes import digit_scenes_dataset_builder as ds


@pytest.fixture(scope="module")
def train():
    return ds.generate_split("train", ds.SPLIT_SIZES["train"])


def small_data(data_dir):
    """The small build under `data_dir`, made and prepared: (its Source, its TFDS builder)."""
    config = ml_collections.ConfigDict({"name": "digit_scenes", "data_dir": str(data_dir)})
    source = digit_scenes.make_source(config, config_name="small")
    return source, ds.Builder(config="small", data_dir=str(data_dir))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_data(tmp_path_factory.mktemp("tfds"))


def _read_split(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_splits_share_no_source_scan(small):
    _, builder = small
    pools = ds.scan_pools(ds.load_scans()[1])
    scans = {name: set(np.concatenate(pools[name])) for name in ds.SPLIT_NAMES}
    used = {}
    for name in ds.SPLIT_NAMES:
        ids = np.stack([ex["source_ids"] for ex in _read_split(builder, name)])
        used[name] = set(ids[ids >= 0].tolist())
        assert used[name] <= scans[name]
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not used[a] & used[b]
        assert not scans[a] & scans[b]
    assert sum(len(s) for s in scans.values()) == len(ds.load_scans()[1])


def test_source_ids_are_scans_of_the_labelled_digit(small):
    targets = ds.load_scans()[1]
    for ex in _read_split(small[1], "validation"):
        count = len(ex["objects"]["label"])
        np.testing.assert_array_equal(targets[ex["source_ids"][:count]], ex["objects"]["label"])
        assert (ex["source_ids"][count:] == -1).all()
        assert sorted(ex["objects"]["label"]) == np.flatnonzero(ex["labels"]).tolist()


def test_two_builds_are_identical(small, tmp_path):
    (source, builder), (other_source, other) = small, small_data(tmp_path)
    for name in ds.SPLIT_NAMES:
        first = _read_split(builder, name)
        second = _read_split(other, name)
        assert len(first) == len(second) == getattr(builder.builder_config, name)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["labels"], b["labels"])
            np.testing.assert_array_equal(a["source_ids"], b["source_ids"])
        records = source.reader(name).read_all(), other_source.reader(name).read_all()
        for a, b in zip(*records, strict=True):  # images, then labels: the prepared records
            np.testing.assert_array_equal(a, b)


def test_small_config_is_a_prefix_of_the_default_generator():
    short = ds.generate_split("test", 50)
    long = ds.generate_split("test", 120)
    for key in short:
        np.testing.assert_array_equal(short[key], long[key][:50])


def _numbers(text):
    return [float(x) for x in re.findall(r"\d+\.\d+", text)]


def test_documented_statistics_hold(train):
    documented = ds.__doc__.split("ctx = both context digits")[1].split("So the companion")[0]
    measured = ds.format_statistics(ds.label_statistics(train["labels"], train["hard"]))
    expected, actual = _numbers(documented), _numbers(measured)
    assert len(expected) == len(actual) > 40
    np.testing.assert_allclose(actual, expected, atol=0.002)


def test_labels_depend_on_their_scene(train):
    stats = ds.label_statistics(train["labels"], train["hard"])
    assert 2.0 <= stats["mean_labels"] <= 4.0
    assert train["labels"].sum(1).min() >= 2 and train["labels"].sum(1).max() <= ds.MAX_OBJECTS
    for scene in stats["scenes"]:
        assert scene["p_comp_given_ctx"] > scene["p_comp_given_not_ctx"] + 0.3
        assert scene["p_hard_given_comp_ctx"] > 0.5
        assert scene["p_ctx_given_hard_comp"] == 1.0  # a hard companion always has its context
    # Every class has plenty of easy instances, so every class is learnable on its own.
    easy = (train["labels"] > 0) & (train["hard"] == 0)
    assert easy.sum(0).min() > 0.1 * len(easy)
    # Only companions are ever hard.
    companions = [companion for _, companion in ds.SCENES]
    hard_classes = np.flatnonzero(train["hard"].sum(0))
    assert set(hard_classes.tolist()) <= set(companions)


def _object_ink(data, rendering):
    """Per object of `rendering`: summed luminance above the image's background level."""
    ink = []
    images = data["image"].astype(np.float32).mean(-1) / 255.0
    slots = np.argwhere(data["rendering"] == rendering)
    for n, slot in slots:
        background = np.median(images[n])
        top, left, bottom, right = data["bbox"][n, slot]
        box = images[n, top:bottom, left:right]
        ink.append(np.clip(box - background - 0.1, 0.0, None).sum())
    return np.array(ink)


def test_hard_objects_show_less_ink_than_easy_ones():
    data = ds.generate_split("validation", 600)
    easy = _object_ink(data, ds.RENDERINGS.index("easy"))
    assert len(easy) > 500
    for kind in ("small", "faint", "occluded"):
        hard = _object_ink(data, ds.RENDERINGS.index(kind))
        assert len(hard) > 20, kind
        assert np.median(hard) < 0.6 * np.median(easy), kind


def test_images_and_labels_as_the_pipeline_reads_them(small):
    """The prepared records hold each scene's pixels and labels exactly as TFDS decodes them
    (32 px scenes are stored at their own size, never resampled)."""
    source, builder = small
    assert source.class_names == ds.CLASS_NAMES
    assert source.num_labels == 10 and source.side == ds.IMAGE_SIZE
    assert set(source.splits) == {"train", "validation", "test"}
    images, labels = source.reader("train").read(range(8))
    decoded = builder.as_dataset(split=source.splits["train"], shuffle_files=False)
    for image, row, example in zip(images, labels, tfds.as_numpy(decoded.take(8)), strict=True):
        np.testing.assert_array_equal(image, example["image"])
        assert image.shape == (ds.IMAGE_SIZE, ds.IMAGE_SIZE, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(row, example["labels"])
        assert row.shape == (10,) and row.dtype == np.float32


def test_unknown_builder_config_is_named(tmp_path):
    config = ml_collections.ConfigDict(
        {"name": "digit_scenes", "data_dir": str(tmp_path), "builder_config": "huge"}
    )
    with pytest.raises(ValueError, match="huge"):
        digit_scenes.make_source(config)
