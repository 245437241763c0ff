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


LEVEL_IMAGES = 1500  # per level: enough for the statistics below, a few seconds each


@pytest.fixture(scope="module")
def levels():
    return {
        level: ds.generate_split("validation", LEVEL_IMAGES, dependency=level)
        for level in ds.DEPENDENCIES
    }


def _rendering_counts(data):
    """[L, renderings]: how many objects of each class were drawn with each rendering."""
    counts = np.zeros((ds.NUM_LABELS, len(ds.RENDERINGS)), int)
    present = data["object_label"] >= 0
    np.add.at(counts, (data["object_label"][present], data["rendering"][present]), 1)
    return counts


def test_scenes_level_is_the_default_data(levels):
    default = ds.generate_split("validation", LEVEL_IMAGES)
    for key, value in default.items():
        np.testing.assert_array_equal(levels["scenes"][key], value)


@pytest.mark.parametrize("level", ["shuffled", "half", "strong"])
def test_levels_keep_label_frequencies_and_difficulty(levels, level):
    scenes, data = levels["scenes"], levels[level]
    # The same count of every class, and of every class in every rendering: exactly.
    np.testing.assert_array_equal(data["labels"].sum(0), scenes["labels"].sum(0))
    np.testing.assert_array_equal(data["hard"].sum(0), scenes["hard"].sum(0))
    np.testing.assert_array_equal(_rendering_counts(data), _rendering_counts(scenes))
    assert data["labels"].sum() == scenes["labels"].sum()  # labels per image on average
    # Still what the images show: 2-4 distinct digits, labels and hard flags from the objects.
    assert data["labels"].sum(1).min() >= 2 and data["labels"].sum(1).max() <= ds.MAX_OBJECTS
    for n in range(0, LEVEL_IMAGES, 97):
        count = int((data["object_label"][n] >= 0).sum())
        assert sorted(data["object_label"][n, :count]) == np.flatnonzero(data["labels"][n]).tolist()
        hard = data["object_label"][n, :count][data["rendering"][n, :count] > 0]
        assert sorted(hard) == np.flatnonzero(data["hard"][n]).tolist()
    assert not np.array_equal(data["labels"], scenes["labels"])  # something did move


def test_levels_order_the_dependency(levels):
    summary = {level: ds.dependency_summary(data["labels"]) for level, data in levels.items()}
    given = [summary[level]["p_comp_given_ctx"] for level in ds.DEPENDENCIES]
    assert (
        given == sorted(given) and given[-1] - given[0] > 0.5
    )  # shuffled < half < scenes < strong
    for level in ds.DEPENDENCIES:  # the companions' own frequency never changes
        assert summary[level]["p_comp"] == pytest.approx(summary["scenes"]["p_comp"])
    # Shuffled: a scene's context no longer makes its companion likelier, nor reveals a hidden
    # one; strong: the companion joins its context more often and appears less elsewhere.
    assert summary["shuffled"]["p_comp_given_ctx"] < summary["shuffled"]["p_comp"]
    shuffled = ds.label_statistics(levels["shuffled"]["labels"], levels["shuffled"]["hard"])
    assert all(s["p_ctx_given_hard_comp"] < 0.2 for s in shuffled["scenes"])
    strong = summary["strong"]
    assert strong["p_comp_given_ctx"] > summary["scenes"]["p_comp_given_ctx"] + 0.15
    assert strong["p_comp_given_not_ctx"] < summary["scenes"]["p_comp_given_not_ctx"]
    assert summary["shuffled"]["pair_dependence"] < summary["scenes"]["pair_dependence"]


def test_rewiring_is_deterministic_and_leaves_its_input():
    objects = [[(2, 0), (5, 0), (7, 1)], [(3, 0), (8, 0)], [(1, 0), (9, 0), (4, 0), (6, 2)]] * 20
    copy = [list(image) for image in objects]
    first = ds.rewire(objects, "shuffled", np.random.default_rng(0))
    assert objects == copy
    assert first == ds.rewire(objects, "shuffled", np.random.default_rng(0))
    assert [len(image) for image in first] == [len(image) for image in objects]
    with pytest.raises(ValueError, match="unknown dependency"):
        ds.generate_split("test", 10, dependency="independent")


def test_each_level_builds_a_small_config(tmp_path):
    config = ml_collections.ConfigDict(
        {"name": "digit_scenes", "data_dir": str(tmp_path), "builder_config": "strong_small"}
    )
    source = digit_scenes.make_source(config)
    assert ds.Builder(config="strong_small", data_dir=str(tmp_path)).builder_config.dependency == (
        "strong"
    )
    assert source.num_examples("train") == 400
    assert {ds.builder_config_name(level, small=True) for level in ds.DEPENDENCIES} <= set(
        ds.Builder.builder_configs
    )
