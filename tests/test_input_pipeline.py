"""The tf.data pipeline on the embedded dataset's small build."""

import ast
import dataclasses
import importlib
import os
import shutil
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxgan.data import datasets, input_pipeline
from jaxgan.data.datasets import get_source

BATCH = 16


@pytest.fixture(scope="module")
def data_config(tmp_path_factory):
    return ml_collections.ConfigDict(
        {
            "name": "digit_scenes",
            "builder_config": "small",
            "data_dir": str(tmp_path_factory.mktemp("tfds")),
            "image_size": 24,
            "augment": "paper",
            "normalization": "unit",
            "shuffle_buffer": 128,
            "num_parallel_calls": 2,
            "private_threads": 2,
            "cache_decoded": False,
            "cache_max_mib": 64,
        }
    )


@pytest.fixture(scope="module")
def source(data_config):
    return get_source(data_config)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _with(data_config, **fields):
    return ml_collections.ConfigDict({**data_config.to_dict(), **fields})


def test_train_batches_shapes_and_values(source, data_config):
    batch = next(input_pipeline.train_batches(source, data_config, BATCH, seed=0))
    assert batch["image"].shape == (BATCH, 24, 24, 3) and batch["image"].dtype == np.float32
    assert batch["labels"].shape == (BATCH, 10) and batch["labels"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert set(np.unique(batch["labels"])) <= {0.0, 1.0}
    assert batch["labels"].sum(1).min() >= 1  # every scene has objects


def test_stream_is_a_function_of_the_seed(source, data_config):
    a = take(input_pipeline.train_batches(source, data_config, BATCH, seed=3), 4)
    b = take(input_pipeline.train_batches(source, data_config, BATCH, seed=3), 4)
    c = take(input_pipeline.train_batches(source, data_config, BATCH, seed=4), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert not np.array_equal(a[0]["labels"], c[0]["labels"])


def test_resuming_continues_the_same_stream_across_epochs(source, data_config):
    per_epoch = source.num_examples("train") // BATCH  # 25 batches of 16 in the small build
    whole = take(input_pipeline.train_batches(source, data_config, BATCH, seed=1), per_epoch + 3)
    resumed = take(
        input_pipeline.train_batches(source, data_config, BATCH, seed=1, start_batch=per_epoch - 1),
        4,
    )
    for x, y in zip(whole[per_epoch - 1 :], resumed, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["labels"], y["labels"])


def test_epochs_are_reshuffled_and_cover_the_split(source, data_config):
    per_epoch = source.num_examples("train") // BATCH
    stream = input_pipeline.train_batches(source, data_config, BATCH, seed=2)
    first = np.concatenate([b["labels"] for b in take(stream, per_epoch)])
    second = np.concatenate([b["labels"] for b in take(stream, per_epoch)])
    assert not np.array_equal(first, second)  # another order
    np.testing.assert_array_equal(first.sum(0), second.sum(0))  # the same examples


def _fingerprints(batches):
    """One hashable key per row: its image bytes and labels (unique examples)."""
    return [
        (b["image"][i].tobytes(), b["labels"][i].tobytes())
        for b in batches
        for i in range(len(b["labels"]))
    ]


def test_each_epoch_is_the_split_once_across_the_boundary(source, data_config):
    """Without augmentation an example is its pixels: each epoch of the one continuous stream
    must hold every train example exactly once (the small build has no remainder), the
    second in another order; nothing skipped or repeated where one epoch meets the next."""
    plain = _with(data_config, augment="none")
    per_epoch = source.num_examples("train") // BATCH
    stream = input_pipeline.train_batches(source, plain, BATCH, seed=2)
    epochs = [_fingerprints(take(stream, per_epoch)) for _ in range(2)]
    split = _fingerprints(input_pipeline.eval_batches(source, plain, "train", BATCH))
    assert len(set(split)) == len(split) == per_epoch * BATCH  # the keys tell examples apart
    for epoch in epochs:
        assert sorted(epoch) == sorted(split)
    assert epochs[0] != epochs[1]


def test_the_global_batch_does_not_depend_on_the_process_count(source, data_config):
    """Two processes' rows of each batch, side by side, are one process's batch, bit for bit
    (augmentation included), from the start and from a resume position."""
    for start in (0, 23):
        whole = input_pipeline.train_dataset(source, data_config, BATCH, 1, start)
        halves = [
            input_pipeline.train_dataset(source, data_config, BATCH, 1, start, process=(p, 2))
            for p in range(2)
        ]
        streams = [d.as_numpy_iterator() for d in (whole, *halves)]
        for _ in range(4):  # crosses the epoch boundary after batch 25 when resuming at 23
            one, first, second = (next(s) for s in streams)
            assert first["image"].shape[0] == BATCH // 2
            for key in one:
                np.testing.assert_array_equal(one[key], np.concatenate([first[key], second[key]]))


@pytest.mark.parametrize("augmentation", ["paper", "none"])
def test_the_decoded_cache_leaves_the_stream_as_it_is(source, data_config, augmentation):
    """Cached or not, the same batches, across two epoch boundaries and from a resume position
    inside the second epoch: with augmentation (decoded images cached, augmented each epoch)
    and without (the model inputs themselves cached)."""
    per_epoch = source.num_examples("train") // BATCH
    plain = _with(data_config, augment=augmentation)
    cached = _with(plain, cache_decoded=True)
    for start, count in ((0, 2 * per_epoch + 2), (per_epoch + 3, 4)):
        a = input_pipeline.train_batches(source, plain, BATCH, 5, start)
        b = input_pipeline.train_batches(source, cached, BATCH, 5, start)
        for x, y in zip(take(a, count), take(b, count), strict=True):
            np.testing.assert_array_equal(x["image"], y["image"])
            np.testing.assert_array_equal(x["labels"], y["labels"])


@pytest.mark.parametrize("cache", [True, False])
def test_after_the_first_epoch_the_cached_stream_reads_no_file(data_config, tmp_path, cache):
    """Delete the dataset's files once the first epoch is read: the cached stream goes on (it
    holds the split); the uncached one fails on its next epoch, which shows the test can."""
    data_dir = tmp_path / "tfds"
    shutil.copytree(data_config.data_dir, data_dir)
    config = _with(data_config, data_dir=str(data_dir), cache_decoded=cache)
    source = get_source(config)
    per_epoch = source.num_examples("train") // BATCH
    stream = input_pipeline.train_batches(source, config, BATCH, seed=0)
    take(stream, per_epoch)
    for record_file in data_dir.rglob("*.tfrecord*"):
        record_file.unlink()
    if cache:
        assert len(take(stream, 2 * per_epoch)) == 2 * per_epoch
    else:
        with pytest.raises(tf.errors.NotFoundError):
            take(stream, 2 * per_epoch)


def test_a_cache_over_its_bound_or_of_unsized_images_is_refused(source, data_config):
    labels_bytes, n = 4 * 10, source.num_examples("train")
    # Augmented: the small build's decoded images, 32 x 32 x 3 bytes; not: 24 x 24 x 3 floats.
    assert input_pipeline.cached_train_mib(source, data_config) == pytest.approx(
        n * (32 * 32 * 3 + labels_bytes) / 2**20
    )
    plain = _with(data_config, augment="none")
    assert input_pipeline.cached_train_mib(source, plain) == pytest.approx(
        n * (24 * 24 * 3 * 4 + labels_bytes) / 2**20
    )
    bounded = _with(data_config, cache_decoded=True, cache_max_mib=1)
    input_pipeline.train_dataset(source, _with(bounded, cache_max_mib=2), BATCH, 0)
    with pytest.raises(ValueError, match=r"1 MiB of train images, over .*=1"):
        input_pipeline.train_dataset(source, bounded, BATCH, 0)
    unsized = dataclasses.replace(source, builder=_ImagesOfAnyShape(source.builder))
    with pytest.raises(ValueError, match=r"one stored shape; .* \(None, None, 3\)"):
        input_pipeline.cached_train_mib(unsized, data_config)
    input_pipeline.cached_train_mib(unsized, plain)  # model inputs have the config's shape


class _ImagesOfAnyShape:
    """A builder whose info says its images have no fixed shape (COCO's, NUS-WIDE's)."""

    def __init__(self, builder):
        features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))})
        self.info = types.SimpleNamespace(features=features, splits=builder.info.splits)


def test_a_batch_that_does_not_split_over_the_processes_is_a_clear_error(source, data_config):
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        input_pipeline.train_dataset(source, data_config, BATCH, 0, process=(0, 3))


def test_eval_covers_every_example_once_with_padding(source, data_config):
    batches = list(input_pipeline.eval_batches(source, data_config, "test", 48))
    total = source.num_examples("test")  # 200: four full batches and one of 8
    assert len(batches) == -(-total // 48)
    assert sum(int(b["mask"].sum()) for b in batches) == total
    assert all(b["image"].shape == (48, 24, 24, 3) for b in batches)
    last = batches[-1]
    assert last["mask"][: total % 48].all() and not last["mask"][total % 48 :].any()
    again = list(input_pipeline.eval_batches(source, data_config, "test", 48))
    np.testing.assert_array_equal(batches[0]["image"], again[0]["image"])


def test_too_large_a_batch_is_a_clear_error(source, data_config):
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(input_pipeline.train_batches(source, data_config, 10_000, seed=0))


def test_unknown_dataset_is_a_clear_error(data_config):
    bad = _with(data_config, name="imagenet")
    with pytest.raises(ValueError, match="unknown data.name 'imagenet'"):
        get_source(bad)


def test_every_dataset_is_a_package_of_the_same_shape():
    names = set()
    for name, module_name in datasets.SOURCES.items():
        package = importlib.import_module(module_name)
        folder = os.path.dirname(package.__file__)
        assert os.path.basename(package.__file__) == "__init__.py", name  # a package
        assert callable(package.make_source), name
        assert not hasattr(package, "decode"), name  # images are the pipeline's to decode
        leaf = module_name.rsplit(".", 1)[1]
        if os.path.exists(os.path.join(folder, f"{leaf}_dataset_builder.py")):
            builder = importlib.import_module(f"{module_name}.{leaf}_dataset_builder").Builder
            assert package.Builder is builder, name
            assert issubclass(builder, tfds.core.GeneratorBasedBuilder), name
            names.add(builder.name)
        else:
            assert name == "coco"  # TFDS's own coco/2014
    # The names their builds are stored under: renaming one would orphan every built copy.
    assert names == {"digit_scenes", "nus_wide", "custom_multilabel"}
    for name in ("coco", "nuswide"):  # built once by hand: python -m jaxgan.data.<name>
        main = importlib.import_module(f"jaxgan.data.{name}.__main__")
        with pytest.raises(SystemExit) as exit_info:
            main.main(["--help"])
        assert exit_info.value.code == 0


def test_only_the_pipeline_decodes_images():
    """One owner: no other module under jaxgan/data calls an image decoder."""
    decoders = {"decode_image", "decode_jpeg", "decode_png", "decode_example", "decode_raw"}
    callers = set()
    root = os.path.dirname(input_pipeline.__file__)
    for folder, _, files in os.walk(root):
        for file in (f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, file)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in decoders:
                    callers.add((file, ast.unparse(node.func)))
    assert callers == {
        ("input_pipeline.py", "tf.io.decode_image"),
        ("image_input.py", "input_pipeline.decode_image"),  # prediction reuses the pipeline's
    }


def test_decode_image_reads_jpeg_png_and_grey_as_three_channels():
    ramp = np.add.outer(np.arange(16), np.arange(24)).astype(np.uint8) * 5
    rgb = np.dstack([ramp, 255 - ramp, ramp // 2])
    grey = ramp[..., None]
    png = input_pipeline.decode_image(tf.io.encode_png(rgb)).numpy()
    np.testing.assert_array_equal(png, rgb)
    grey3 = input_pipeline.decode_image(tf.io.encode_png(grey)).numpy()
    np.testing.assert_array_equal(grey3, np.repeat(grey, 3, axis=-1))
    jpeg = input_pipeline.decode_image(tf.io.encode_jpeg(rgb, quality=100)).numpy()
    assert jpeg.shape == (16, 24, 3) and np.abs(jpeg.astype(int) - rgb).mean() < 3


def test_records_parse_only_the_image_and_what_the_source_reads(source):
    records, _ = input_pipeline._read(source, "train", shuffle_seed=None, shard=False)
    assert set(records.element_spec) == {"image", *source.features}
    assert records.element_spec["image"].dtype == tf.string  # left for `decode_image`


def test_cocos_parsed_features_hold_what_its_labels_and_keep_read():
    from jaxgan.data import coco

    # COCO is never downloaded here: its feature dict comes with the builder's code.
    features = coco.make_builder({"data_dir": None}).info.features
    spec = tfds.decode.PartialDecoding({"image": True, **coco.FEATURES})
    kept = spec.extract_features(features)
    assert set(kept) == {"image", "objects"} and set(kept["objects"].feature) == {"label"}
    example = {"objects": {"label": tf.constant([4, 4, 7], tf.int64)}}
    assert bool(coco.keep(example)) and set(np.flatnonzero(coco.labels(example))) == {4, 7}
