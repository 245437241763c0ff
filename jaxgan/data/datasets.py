"""The dataset registry: a config's `data.name` to a `Source` that TFDS can read.

Each dataset module exposes `make_source(data_config) -> Source`. The input pipeline only ever
sees a `Source`, so adding a dataset means adding one module and one line to `SOURCES`.
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

# data.name -> module with `make_source(data_config) -> Source`.
SOURCES = {
    "digit_scenes": "jaxgan.data.digit_scenes",
    "coco": "jaxgan.data.coco",
    "nuswide": "jaxgan.data.nuswide",
    "custom": "jaxgan.data.custom",
}

SPLIT_ROLES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Source:
    """How to read one multi-label dataset.

    builder: a prepared TFDS builder (`as_dataset` works on it).
    splits: role ("train", "validation", "test") -> TFDS split string (slices allowed,
      e.g. "train[:95%]"). "validation" chooses thresholds and hyper-parameters; "test" is
      where results are reported (COCO reports on its validation split, as the paper does).
    class_names: one name per label, in label-vector order.
    decode: TFDS example -> {"image": uint8 [H, W, 3], "labels": float32 [L]} (graph mode).
    keep: optional TFDS example -> bool predicate (graph mode); examples it rejects are
      dropped before anything else (e.g. COCO images without objects).
    """

    builder: tfds.core.DatasetBuilder
    splits: Mapping[str, str]
    class_names: tuple[str, ...]
    decode: Callable[[dict], dict]
    keep: Callable[[dict], object] | None = None

    @property
    def num_labels(self) -> int:
        return len(self.class_names)

    def num_examples(self, role: str) -> int:
        return self.builder.info.splits[self.splits[role]].num_examples


def split_roles(data_config, test: str) -> dict[str, str]:
    """Roles from `data.{train,validation,test}_split`. By default validation is the last 5% of
    train, held out of training, and `test` is the dataset's own evaluation split."""
    return {
        "train": data_config.get("train_split", "train[:95%]"),
        "validation": data_config.get("validation_split", "train[95%:]"),
        "test": data_config.get("test_split", test),
    }


def decode_image_and_labels(example: dict) -> dict:
    """The usual `Source.decode`: the example's image (decoded to 3 channels if still encoded)
    and its multi-hot `labels` as float32."""
    image = example["image"]
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return {"image": image, "labels": tf.cast(example["labels"], tf.float32)}


def get_source(data_config: ml_collections.ConfigDict) -> Source:
    """Returns the `Source` for `data_config.name`, preparing the dataset if it can."""
    if data_config.name not in SOURCES:
        raise ValueError(f"unknown data.name {data_config.name!r}; choose one of {sorted(SOURCES)}")
    module = importlib.import_module(SOURCES[data_config.name])
    source = module.make_source(data_config)
    missing = [role for role in SPLIT_ROLES if role not in source.splits]
    if missing:
        raise ValueError(f"dataset {data_config.name!r} defines no split for {missing}")
    return source
