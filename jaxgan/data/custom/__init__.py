"""Your own data: a folder of images plus a labels file (README, 'Your own data').

`make_source` checks the config, reads the labels file, builds the TFDS dataset the first time
(skipping and reporting bad image files) and returns the `Source` the input pipeline reads.
"""

import os

import tensorflow_datasets as tfds
from absl import logging

from jaxgan.data.custom import labels_file
from jaxgan.data.custom.custom_dataset_builder import CustomConfig, CustomMultilabel
from jaxgan.data.datasets import Source, decode_image_and_labels
from jaxgan.data.image_files import build_report

__all__ = ["CustomConfig", "CustomMultilabel", "make_source", "decode"]


decode = decode_image_and_labels


def make_builder(data_config) -> CustomMultilabel:
    """The (not necessarily prepared) builder for `data_config.image_dir` + `labels_file`."""
    if not data_config.get("labels_file"):
        raise ValueError("set --config.data.labels_file to your CSV or JSON lines labels file")
    if not data_config.get("image_dir"):
        raise ValueError("set --config.data.image_dir to the folder holding your images")
    image_dir = os.path.expanduser(data_config.image_dir)
    if not os.path.isdir(image_dir):
        raise ValueError(f"data.image_dir {data_config.image_dir!r} is not a folder")
    class_names, _ = labels_file.read_labels_file(os.path.expanduser(data_config.labels_file))
    config = CustomConfig(
        image_dir=image_dir,
        labels_file=data_config.labels_file,
        class_names=class_names,
        split_seed=data_config.get("split_seed", 0),
        validation_fraction=data_config.get("validation_fraction", 0.1),
        test_fraction=data_config.get("test_fraction", 0.1),
        keep_unlabeled=data_config.get("keep_unlabeled", False),
    )
    return CustomMultilabel(config=config, data_dir=data_config.get("data_dir"))


def _check_splits(data_config, builder: CustomMultilabel) -> None:
    """Every split needs images: say which is empty and how to fix it, before TFDS would fail."""
    config = builder.builder_config
    _, records = labels_file.read_labels_file(config.labels_file)
    if not config.keep_unlabeled:
        records = [r for r in records if any(r.labels)]
    splits = labels_file.assign_splits(
        records, config.split_seed, config.validation_fraction, config.test_fraction
    )
    for split, rows in splits.items():
        if not rows:
            fix = "add rows to it" if split == "train" else f"raise data.{split}_fraction"
            raise ValueError(
                f"the {split} split of {data_config.labels_file!r} has no labelled image; "
                f"{fix} (README, 'Your own data')"
            )


def make_source(data_config) -> Source:
    builder = make_builder(data_config)
    if not builder.is_prepared():
        _check_splits(data_config, builder)
        logging.info("building %s/%s in %s", builder.name, builder.builder_config.name,
                     builder.data_dir)  # fmt: skip
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        except AssertionError as error:  # TFDS refuses a split whose every image was bad
            raise ValueError(
                f"building from {data_config.labels_file!r} failed ({error}): every image of a "
                f"split is missing or unreadable. {build_report(builder)}"
            ) from None
        logging.warning("%s", build_report(builder))
    return Source(
        builder=builder,
        splits={name: name for name in labels_file.SPLIT_NAMES},
        class_names=builder.builder_config.class_names,
        decode=decode,
    )
