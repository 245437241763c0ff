"""Your own data: a folder of images plus a labels file (docs/datasets.md).

`make_source` checks the config and the labels file, and opens the dataset's prepared
records; the first time (TensorFlow needed) it builds the TFDS dataset, skipping and reporting
bad image files, and prepares the records.
"""

import os

from jaxgan.data.custom import labels_file
from jaxgan.data.custom.naming import VERSION, config_name
from jaxgan.data.datasets import Source, open_source

__all__ = [
    "CONFIG_FIELDS",
    "Builder",
    "check_data_fields",
    "make_builder",
    "make_source",
]

GUIDE = "(docs/datasets.md, 'Your own data')"
# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {
    "image_dir": str,
    "labels_file": str,
    "allow_outside_paths": bool,
    "split_seed": int,
    "validation_fraction": float,
    "test_fraction": float,
    "keep_unlabeled": bool,
}


def check_data_fields(data_config) -> None:
    """The data.* fields of a custom dataset, checked before any file is read."""
    if not data_config.get("labels_file"):
        raise ValueError("set --config.data.labels_file to your CSV or JSON lines labels file")
    if not data_config.get("image_dir"):
        raise ValueError("set --config.data.image_dir to the folder holding your images")
    labels_file.check_fractions(
        data_config.get("validation_fraction", 0.1), data_config.get("test_fraction", 0.1)
    )


def __getattr__(name):  # the TFDS builder, only where asked for (TensorFlow)
    if name in ("Builder", "CustomConfig"):
        from jaxgan.data.custom import custom_dataset_builder

        return getattr(custom_dataset_builder, name)
    raise AttributeError(name)


def _settings(data_config) -> dict:
    """The checked paths and split settings of a user dataset (its build's name hashes them)."""
    check_data_fields(data_config)
    image_dir = os.path.expanduser(data_config.image_dir)
    if not os.path.isdir(image_dir):
        raise ValueError(f"data.image_dir {data_config.image_dir!r} is not a folder")
    return {
        "image_dir": image_dir,
        "labels_file": os.path.expanduser(data_config.labels_file),
        "split_seed": data_config.get("split_seed", 0),
        "validation_fraction": data_config.get("validation_fraction", 0.1),
        "test_fraction": data_config.get("test_fraction", 0.1),
        "keep_unlabeled": data_config.get("keep_unlabeled", False),
        "allow_outside_paths": data_config.get("allow_outside_paths", False),
    }


def make_builder(data_config):
    """The (not necessarily prepared) TFDS builder for `data_config.image_dir` +
    `labels_file` (TensorFlow)."""
    from jaxgan.data.custom.custom_dataset_builder import Builder, CustomConfig

    settings = _settings(data_config)
    class_names, _ = labels_file.read_labels_file(settings["labels_file"])
    config = CustomConfig(class_names=class_names, **settings)
    return Builder(config=config, data_dir=data_config.get("data_dir"))


def _empty_split_advice(split: str, the_plan, config) -> str:
    """What would put images into `split`, given why it came out empty."""
    if the_plan.unlabeled[split]:
        return (
            f"its {the_plan.unlabeled[split]} image(s) have no positive label; label them, or "
            "set --config.data.keep_unlabeled=true"
        )
    if the_plan.drawn == 0:
        return (
            f"every row has a split and none says {split!r}, so nothing is left to draw; mark "
            f"some rows {split!r} or leave their split empty"
        )
    if split == "train":
        return (
            f"data.validation_fraction and data.test_fraction draw all {the_plan.drawn} images "
            "that have no split; lower them, or mark some rows 'train'"
        )
    fraction = getattr(config, f"{split}_fraction")
    return (
        f"data.{split}_fraction={fraction:g} draws none of the {the_plan.drawn} images that "
        f"have no split; raise it to at least {1 / the_plan.drawn:.2g}, or mark some rows {split!r}"
    )


def _check_splits(data_config, builder) -> None:
    """Every split needs images: say which is empty and how to fix it, before TFDS would fail."""
    from jaxgan.data.custom.custom_dataset_builder import plan

    the_plan = plan(builder.builder_config)
    for split, rows in the_plan.splits.items():
        if not rows:
            raise ValueError(
                f"the {split} split of {data_config.labels_file!r} has no labelled image; "
                f"{_empty_split_advice(split, the_plan, builder.builder_config)} {GUIDE}"
            )


def check_before_preparing(data_config) -> None:
    """The image files and splits an unbuilt copy would hold, refused before anything is
    written."""
    builder = make_builder(data_config)
    if not builder.is_prepared():
        _check_splits(data_config, builder)


def prepare(data_config, path: str, side: int) -> None:
    """Builds the TFDS copy of the images if needed and prepares its records (`open_source`
    holds the preparation's lock meanwhile, so a second process waits and reads them)."""
    import tensorflow_datasets as tfds
    from absl import logging

    from jaxgan.data.image_files import build_report
    from jaxgan.data.prepare import write_records

    builder = make_builder(data_config)
    if not builder.is_prepared():
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
    write_records(
        builder, path, side, builder.builder_config.class_names, labels=lambda e: e["labels"]
    )


def make_source(data_config) -> Source:
    settings = _settings(data_config)
    class_names, _ = labels_file.read_labels_file(settings["labels_file"])
    name = config_name(**settings)
    source = open_source(
        data_config,
        key=f"custom_multilabel/{name}/{VERSION}",
        splits={split: split for split in labels_file.SPLIT_NAMES},
        prepare=lambda path, side: prepare(data_config, path, side),
        check=lambda: check_before_preparing(data_config),
        fix="python -m jaxgan.data.prepare --config=configs/custom.py "
        f"--config.data.image_dir={data_config.image_dir} "
        f"--config.data.labels_file={data_config.labels_file}",
    )
    if source.class_names != tuple(class_names):
        raise ValueError(
            f"the prepared records in {source.prepared.path} have other classes than "
            f"{data_config.labels_file!r}; delete that folder to prepare them again"
        )
    return source
