"""digit_scenes: the embedded offline dataset (see digit_scenes_dataset_builder's docstring).

Reading it needs no TensorFlow: training opens its prepared records. Where they are missing
(the first run) it is generated and prepared, offline, in seconds; that step uses TFDS.
"""

from jaxgan.choices import choose_one
from jaxgan.data.datasets import Source, open_source

__all__ = ["CONFIG_FIELDS", "NATIVE_SIDE", "check_data_fields", "make_source", "prepare"]

# The data.* fields this dataset reads besides the base config's, with their types.
CONFIG_FIELDS = {"builder_config": str}
# The builder's configs (a test checks they agree): the scenes ("default", "small") and the
# dependency levels of `digit_scenes_dataset_builder.DEPENDENCIES`.
BUILDER_CONFIGS = (
    *("default", "small"),
    *(f"{level}{size}" for level in ("shuffled", "half", "strong") for size in ("", "_small")),
)
VERSION = "1.0.0"  # the builder's (a test checks they agree)
NATIVE_SIDE = 32  # every scene is 32 x 32: prepared as it is, whatever data.image_size


def __getattr__(name):  # the TFDS builder and its constants, only where asked for (TF)
    if name in ("Builder", "CLASS_NAMES"):
        from jaxgan.data.digit_scenes import digit_scenes_dataset_builder

        return getattr(digit_scenes_dataset_builder, name)
    raise AttributeError(name)


def _config_name(data_config, config_name: str | None = None) -> str:
    config_name = config_name or data_config.get("builder_config", None) or "default"
    return choose_one("data.builder_config", config_name, BUILDER_CONFIGS)


def check_data_fields(data_config) -> None:
    """The data.* fields of digit_scenes, checked before anything is generated."""
    _config_name(data_config)


def prepare(data_config, path: str, side: int, config_name: str | None = None) -> None:
    """Generates the scenes with TFDS (seconds, no network) and prepares their records."""
    import tensorflow_datasets as tfds

    from jaxgan.data.digit_scenes.digit_scenes_dataset_builder import CLASS_NAMES, Builder
    from jaxgan.data.prepare import write_records

    builder = Builder(config=_config_name(data_config, config_name),
                      data_dir=data_config.get("data_dir", None))  # fmt: skip
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    write_records(builder, path, side, CLASS_NAMES, labels=lambda e: e["labels"])


def make_source(data_config, config_name: str | None = None) -> Source:
    """The prepared scenes under `data_config.data_dir`, generated and prepared if needed.

    `config_name` (else `data_config.builder_config`, else "default") picks the builder
    config: "default" (8,000 / 2,000 / 2,000 images), "small" (400 / 200 / 200) or a
    dependency level's (`BUILDER_CONFIGS`).
    """
    name = _config_name(data_config, config_name)
    return open_source(
        data_config,
        key=f"digit_scenes/{name}/{VERSION}",
        splits={"train": "train", "validation": "validation", "test": "test"},
        prepare=lambda path, side: prepare(data_config, path, side, name),
        fix=f"python -m jaxgan.data.prepare --config=configs/digit_scenes.py "
        f"--config.data.builder_config={name}",
    )
