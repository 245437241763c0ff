"""NUS-WIDE (81 concepts) from the official release; see docs/datasets.md.

`data.split_scheme` picks the builder config: "paper" (150,000 / 59,347, as WARP, Att-RNN and
the paper) or "official" (the release's train / test lists). Both have "train" and "test"
splits; the config's `train_split` / `validation_split` / `test_split` map the roles onto them
(by default validation is the last 5% of train, held out of training).
"""

import os

from jaxgan.choices import choose_one
from jaxgan.data.datasets import Source, open_source, split_roles

__all__ = [
    "CLASS_NAMES",
    "CONFIG_FIELDS",
    "check_data_fields",
    "make_builder",
    "make_source",
    "prepare",
]

SPLIT_SCHEMES = ("paper", "official")
VERSION = "1.0.0"  # the builder's (a test checks they agree)
# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {
    "split_scheme": str,
    "manual_dir": str,
    "train_split": str,
    "validation_split": str,
    "test_split": str,
}


def __getattr__(name):  # the TFDS builder and its constants, only where asked for (TF)
    if name in ("Builder", "CONCEPTS", "CLASS_NAMES"):
        from jaxgan.data.nuswide import nuswide_dataset_builder as module

        return tuple(module.CONCEPTS) if name == "CLASS_NAMES" else getattr(module, name)
    raise AttributeError(name)


def check_data_fields(data_config) -> None:
    """The data.* fields of NUS-WIDE, checked before anything is read or built."""
    choose_one("data.split_scheme", data_config.get("split_scheme", "paper"), SPLIT_SCHEMES)


def make_builder(data_config):
    """The TFDS builder of the configured split scheme (TensorFlow)."""
    from jaxgan.data.nuswide.nuswide_dataset_builder import Builder

    check_data_fields(data_config)
    return Builder(
        config=data_config.get("split_scheme", "paper"), data_dir=data_config.get("data_dir")
    )


def build(builder, manual_dir: str | None) -> None:
    """Builds the dataset from the release in `manual_dir` unless it is already built."""
    import tensorflow_datasets as tfds
    from absl import logging

    from jaxgan.data.image_files import build_report

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


def prepare(data_config, path: str, side: int) -> None:
    """Builds NUS-WIDE from the release if needed and prepares its records."""
    from jaxgan.data.nuswide.nuswide_dataset_builder import CONCEPTS
    from jaxgan.data.prepare import write_records

    builder = make_builder(data_config)
    build(builder, data_config.get("manual_dir"))
    write_records(builder, path, side, tuple(CONCEPTS), labels=lambda e: e["labels"])


def make_source(data_config) -> Source:
    check_data_fields(data_config)
    scheme = data_config.get("split_scheme", "paper")
    fix = "python -m jaxgan.data.nuswide --manual_dir=NUS-WIDE"
    if data_config.get("data_dir"):
        fix += f" --data_dir={data_config.data_dir}"
    return open_source(
        data_config,
        key=f"nus_wide/{scheme}/{VERSION}",
        splits=split_roles(data_config, test="test"),
        prepare=lambda path, side: prepare(data_config, path, side),
        fix=fix + f" --scheme={scheme}",
    )
