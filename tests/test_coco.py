"""MS-COCO 2014 through TFDS's mock data (no download): labels, filtering, splits."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxgan.data import coco, datasets, input_pipeline
from jaxgan.data.coco import __main__ as coco_main


def data_config(tmp_path):
    return ml_collections.ConfigDict(
        {
            "name": "coco",
            "data_dir": str(tmp_path),
            "train_split": "train[:95%]",
            "validation_split": "train[95%:]",
            "test_split": "validation",
        }  # fmt: skip
    )


def test_class_names_are_the_80_categories_in_id_order():
    assert len(coco.CLASS_NAMES) == 80 == len(set(coco.CLASS_NAMES))
    assert coco.CLASS_NAMES[:3] == ("person", "bicycle", "car")
    assert coco.CLASS_NAMES[-1] == "toothbrush" and coco.CLASS_NAMES[61] == "toilet"


def test_multi_hot_marks_each_present_class_once():
    labels = coco.multi_hot(tf.constant([3, 0, 3, 79], tf.int64)).numpy()
    expected = np.zeros(80, np.float32)
    expected[[0, 3, 79]] = 1
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(coco.multi_hot(tf.zeros([0], tf.int64)).numpy(), 0)


def test_keep_drops_images_without_objects():
    with_objects = {"objects": {"label": tf.constant([5], tf.int64)}}
    without = {"objects": {"label": tf.zeros([0], tf.int64)}}
    assert bool(coco.keep(with_objects)) and not bool(coco.keep(without))


def test_source_reads_mock_coco(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        source = datasets.get_source(data_config(tmp_path))
        assert source.splits["test"] == "validation" and source.keep is coco.keep
        assert source.class_names == coco.CLASS_NAMES
        # TFDS's mock data cannot skip decoding (it draws mismatched object sequences then),
        # so the images arrive decoded; labels and keep are what this source contributes.
        ds = source.builder.as_dataset(split=source.splits["test"], shuffle_files=False)
        ds = ds.filter(source.keep).map(lambda ex: (source.labels(ex), ex["objects"]["label"]))
        count = 0
        for labels, object_labels in ds.as_numpy_iterator():
            count += 1
            assert labels.shape == (80,) and labels.dtype == np.float32
            assert set(np.flatnonzero(labels)) == set(object_labels)
            assert labels.sum() >= 1
        assert count > 0


def test_labels_of_an_undecoded_example():
    image = tf.cast(tf.random.stateless_uniform((9, 11, 3), [1, 2], 0, 255), tf.uint8)
    example = {"image": tf.io.encode_jpeg(image), "objects": {"label": tf.constant([2, 2])}}
    labels = coco.labels(example).numpy()
    assert labels[2] == 1 and labels.sum() == 1
    assert input_pipeline.decode_image(example["image"]).shape == (9, 11, 3)


def test_build_entry_point_parses_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        coco_main.main(["--help"])
    assert exit_info.value.code == 0 and "--data_dir" in capsys.readouterr().out
