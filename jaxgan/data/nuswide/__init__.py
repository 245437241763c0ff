"""NUS-WIDE (81 concepts) from the official release; see docs/datasets.md.

`data.split_scheme` picks the builder config: "paper" (150,000 / 59,347, as WARP, Att-RNN and
the paper) or "official" (the release's train / test lists). Both have "train" and "test"
splits; the config's `train_split` / `validation_split` / `test_split` map the roles onto them
(by default validation is the last 5% of train, held out of training).
"""

import os

import tensorflow_datasets as tfds
from absl import logging

from jaxgan.choices import choose_one
from jaxgan.data.datasets import Source, split_roles, stored_labels
from jaxgan.data.image_files import build_report
from jaxgan.data.nuswide.nuswide_dataset_builder import CONCEPTS, Builder

__all__ = [
    "CLASS_NAMES",
    "CONCEPTS",
    "CONFIG_FIELDS",
    "Builder",
    "check_data_fields",
    "make_builder",
    "make_source",
    "prepare",
]

CLASS_NAMES = tuple(CONCEPTS)
SPLIT_SCHEMES = ("paper", "official")
# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {
    "split_scheme": str,
    "manual_dir": str,
    "train_split": str,
    "validation_split": str,
    "test_split": str,
}


def check_data_fields(data_config) -> None:
    """The data.* fields of NUS-WIDE, checked before anything is read or built."""
    choose_one("data.split_scheme", data_config.get("split_scheme", "paper"), SPLIT_SCHEMES)


def make_builder(data_config) -> Builder:
    check_data_fields(data_config)
    return Builder(
        config=data_config.get("split_scheme", "paper"), data_dir=data_config.get("data_dir")
    )


def prepare(builder: Builder, manual_dir: str | None) -> None:
    """Builds the dataset from the release in `manual_dir` unless it is already built."""
    if builder.is_prepared():
        return
    if manual_dir:
        manual_dir = os.path.expanduser(manual_dir)
        if not os.path.isdir(manual_dir):
            raise ValueError(f"data.manual_dir {manual_dir!r} is not a folder")
    elif not os.path.isdir(os.path.join(builder._data_dir_root, "downloads", "manual")):
        raise ValueError(
            f"NUS-WIDE ({builder.builder_config.name} split) is not built in "
            f"{builder._data_dir_root}; set --config.data.manual_dir to the unpacked official "
            "release (docs/datasets.md, 'NUS-WIDE')"
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir or None)
    )
    logging.warning("%s", build_report(builder))


def make_source(data_config) -> Source:
    builder = make_builder(data_config)
    prepare(builder, data_config.get("manual_dir"))
    return Source(
        builder=builder,
        splits=split_roles(data_config, test="test"),
        class_names=CLASS_NAMES,
        labels=stored_labels,
    )
