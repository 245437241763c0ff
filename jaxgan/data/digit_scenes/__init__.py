"""digit_scenes: the embedded offline dataset (see digit_scenes_dataset_builder's docstring)."""

import tensorflow_datasets as tfds

from jaxgan.choices import choose_one
from jaxgan.data.datasets import Source, stored_labels
from jaxgan.data.digit_scenes.digit_scenes_dataset_builder import CLASS_NAMES, Builder

__all__ = ["Builder", "CLASS_NAMES", "CONFIG_FIELDS", "check_data_fields", "make_source"]

# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {"builder_config": str}


def check_data_fields(data_config) -> None:
    """The data.* fields of digit_scenes, checked before anything is generated."""
    choose_one(
        "data.builder_config",
        data_config.get("builder_config", None) or "default",
        sorted(Builder.builder_configs),
    )


def make_source(data_config, config_name: str | None = None) -> Source:
    """Generates digit_scenes under `data_config.data_dir` if needed (seconds, no network).

    `config_name` (else `data_config.builder_config`, else "default") picks the builder
    config: "default" (8,000 / 2,000 / 2,000 images) or "small" (400 / 200 / 200).
    """
    config_name = config_name or data_config.get("builder_config", None) or "default"
    choose_one("data.builder_config", config_name, sorted(Builder.builder_configs))
    builder = Builder(config=config_name, data_dir=data_config.get("data_dir", None))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    splits = {"train": "train", "validation": "validation", "test": "test"}
    return Source(builder=builder, splits=splits, class_names=CLASS_NAMES, labels=stored_labels)
