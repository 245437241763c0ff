"""MS-COCO 2014 through TFDS's mock data (no download): labels, filtering, splits."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgan.data import coco, datasets
from jaxgan.data.coco import __main__ as coco_main


def data_config(tmp_path):
    return ml_collections.ConfigDict(
        {
            "name": "coco",
            "data_dir": str(tmp_path),
            "train_split": "train[:95%]",
            "validation_split": "train[95%:]",
            "test_split": "validation",
            "image_size": 32,
        }  # fmt: skip
    )


def test_class_names_are_the_80_categories_in_id_order():
    assert len(coco.CLASS_NAMES) == 80 == len(set(coco.CLASS_NAMES))
    assert coco.CLASS_NAMES[:3] == ("person", "bicycle", "car")
    assert coco.CLASS_NAMES[-1] == "toothbrush" and coco.CLASS_NAMES[61] == "toilet"


def test_multi_hot_marks_each_present_class_once():
    labels = coco.multi_hot(np.array([3, 0, 3, 79]))
    expected = np.zeros(80, np.uint8)
    expected[[0, 3, 79]] = 1
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(coco.multi_hot(np.zeros([0], np.int64)), 0)


def test_keep_drops_images_without_objects():
    with_objects = {"objects": {"label": np.array([5])}}
    without = {"objects": {"label": np.zeros([0], np.int64)}}
    assert bool(coco.keep(with_objects)) and not bool(coco.keep(without))


def test_source_reads_mock_coco(tmp_path):
    """Preparing TFDS's mock coco/2014 keeps only images with objects and writes them as
    records the source reads back (TFDS's mock data draws other object sequences when images
    are left encoded, so the labels are checked by `labels` and `keep` above, not here)."""
    with tfds.testing.mock_data(num_examples=12):
        source = datasets.get_source(data_config(tmp_path))
    assert source.splits["test"] == "validation" and source.class_names == coco.CLASS_NAMES
    images, labels = source.reader("test").read_all()
    assert len(labels) > 0 and labels.shape[1] == 80 and (labels.sum(1) >= 1).all()
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert images.dtype == np.uint8 and images.shape[1:] == (source.side, source.side, 3)


def test_labels_of_an_example():
    labels = coco.labels({"objects": {"label": np.array([2, 2])}})
    assert labels[2] == 1 and labels.sum() == 1


def test_build_entry_point_parses_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        coco_main.main(["--help"])
    assert exit_info.value.code == 0 and "--data_dir" in capsys.readouterr().out
