"""The dataset registry: a config's `data.name` to a `Source` that TFDS can read.

Every dataset has the same layout, a package `jaxgan/data/<name>/`:

- `__init__.py`: `make_source(data_config) -> Source` (and the dataset's class names);
- `<name>_dataset_builder.py`: its TFDS builder, a class named `Builder`, where we build the
  dataset ourselves (COCO is TFDS's own `coco/2014`);
- `__main__.py`, where the dataset is built once by hand: `python -m jaxgan.data.<name>`.

The input pipeline only ever sees a `Source`, so adding a dataset means adding one package and
one line to `SOURCES`.
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxgan.choices import choose_one

# data.name -> package with `make_source(data_config) -> Source`.
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

    builder: a prepared TFDS builder (`as_dataset` works on it) whose "image" feature holds
      encoded images; the input pipeline reads them undecoded and decodes them itself
      (`input_pipeline.decode_image`), so a dataset never decodes images.
    splits: role ("train", "validation", "test") -> TFDS split string (slices allowed,
      e.g. "train[:95%]"). "validation" chooses thresholds and hyper-parameters; "test" is
      where results are reported (COCO reports on its validation split, as the paper does).
    class_names: one name per label, in label-vector order.
    labels: TFDS example -> float32 [L] multi-hot label vector (graph mode).
    keep: optional TFDS example -> bool predicate (graph mode); examples it rejects are
      dropped before anything else (e.g. COCO images without objects).
    features: the stored features `labels` and `keep` read, as a `tfds.decode.PartialDecoding`
      spec; only these and the image are parsed from each record (parsing every stored
      feature, e.g. a dataset's boxes, costs the input pipeline CPU time for nothing).
    """

    builder: tfds.core.DatasetBuilder
    splits: Mapping[str, str]
    class_names: tuple[str, ...]
    labels: Callable[[dict], tf.Tensor]
    keep: Callable[[dict], object] | None = None
    features: Mapping = dataclasses.field(default_factory=lambda: {"labels": True})

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


def stored_labels(example: dict) -> tf.Tensor:
    """The usual `Source.labels`: the example's stored multi-hot `labels`, as float32."""
    return tf.cast(example["labels"], tf.float32)


def get_source(data_config: ml_collections.ConfigDict) -> Source:
    """Returns the `Source` for `data_config.name`, preparing the dataset if it can."""
    module = importlib.import_module(
        SOURCES[choose_one("data.name", data_config.name, sorted(SOURCES))]
    )
    source = module.make_source(data_config)
    missing = [role for role in SPLIT_ROLES if role not in source.splits]
    if missing:
        raise ValueError(f"dataset {data_config.name!r} defines no split for {missing}")
    return source
