"""The dataset registry: a config's `data.name` to a `Source`, the prepared records it reads.

Every dataset has the same layout, a package `jaxgan/data/<name>/`:

- `__init__.py`, importing no TensorFlow: `make_source(data_config) -> Source`, through
  `open_source`, which opens the dataset's prepared records (`jaxgan.data.records`) or,
  where they are missing and TensorFlow is installed, prepares them first;
- `<name>_dataset_builder.py`: its TFDS builder, a class named `Builder`, where we build the
  dataset ourselves (COCO is TFDS's own `coco/2014`); only preparation imports it;
- `__main__.py`, where the dataset is built once by hand: `python -m jaxgan.data.<name>`.

The input pipeline only ever sees a `Source`, so adding a dataset means adding one package and
one line to `SOURCES`.
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping

import ml_collections

from jaxgan import outputs
from jaxgan.choices import choose_one
from jaxgan.data import augment, records

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
    """How to read one prepared multi-label dataset.

    prepared: its opened, checked records (uint8 squares of `prepared.side` px and 0/1
      labels; `records.Prepared`).
    splits: role ("train", "validation", "test") -> split spec of the prepared splits
      (TFDS's slicing syntax, e.g. "train[:95%]"). "validation" chooses thresholds and
      hyper-parameters; "test" is where results are reported (COCO reports on its validation
      split, as the paper does).
    """

    prepared: records.Prepared
    splits: Mapping[str, str]
    _readers: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.prepared.class_names

    @property
    def num_labels(self) -> int:
        return len(self.class_names)

    @property
    def side(self) -> int:
        return self.prepared.side

    def reader(self, role: str) -> records.SplitReader:
        """Random access to the role's examples (one reader per role, kept)."""
        if role not in self._readers:
            self._readers[role] = records.SplitReader(self.prepared, self.splits[role])
        return self._readers[role]

    def num_examples(self, role: str) -> int:
        return len(self.reader(role))


def split_roles(data_config, test: str) -> dict[str, str]:
    """Roles from `data.{train,validation,test}_split`. By default validation is the last 5% of
    train, held out of training, and `test` is the dataset's own evaluation split."""
    return {
        "train": data_config.get("train_split", "train[:95%]"),
        "validation": data_config.get("validation_split", "train[95%:]"),
        "test": data_config.get("test_split", test),
    }


def dataset_module(name: str):
    return importlib.import_module(SOURCES[choose_one("data.name", name, sorted(SOURCES))])


def stored_side(data_config) -> int:
    """The side of the squares a dataset is prepared at for this config: the dataset's own
    fixed image size where it has one (`NATIVE_SIDE`, e.g. the digit scenes' 32), else the
    paper's square-resize frame for `data.image_size` (256 at 224)."""
    native = getattr(dataset_module(data_config.name), "NATIVE_SIDE", None)
    return native or augment.frame_side(data_config.image_size)


def open_source(
    data_config,
    key: str,
    splits: Mapping[str, str],
    prepare: Callable[[str, int], None],
    fix: str,
    check: Callable[[], None] = lambda: None,
) -> Source:
    """The `Source` of dataset `key`'s prepared records under `data.data_dir`, at the side
    this config reads (`stored_side`). Where they are missing, `prepare(path, side)` makes
    them (it needs TensorFlow and TFDS: where they are not installed, one line says to run
    `fix` where they are and to carry `data.data_dir` over). `check()` runs first where they
    are missing: its refusals come before anything is written."""
    side = stored_side(data_config)
    path = records.records_dir(data_config.get("data_dir"), key, side)
    try:
        prepared = records.open_prepared(path, fix)
    except records.RecordsError:
        check()
        # One preparation at a time: a second process waits, then reads what the first wrote.
        what = f"preparation of {key}"
        with outputs.exclusive(path + ".lock", f"the {what}", f"another {what}"):
            prepared = _prepared_once(path, key, side, prepare, fix)
    source = Source(prepared=prepared, splits=dict(splits))
    missing = [role for role in SPLIT_ROLES if role not in source.splits]
    if missing:
        raise ValueError(f"dataset {data_config.name!r} defines no split for {missing}")
    for role in SPLIT_ROLES:
        try:
            source.reader(role)
        except ValueError as error:
            raise ValueError(f"data.{role}_split: {error}") from None
    return source


def _prepared_once(path: str, key: str, side: int, prepare, fix: str) -> records.Prepared:
    """The records in `path`, prepared first unless another process has done it meanwhile."""
    try:
        return records.open_prepared(path, fix)
    except records.RecordsError:
        if records.has_index(path):
            raise  # damaged or of another format: the message says what to do
    try:
        importlib.import_module("tensorflow")  # TFDS needs it to read its builds
        prepare(path, side)
    except ImportError as error:
        raise records.RecordsError(
            f"no prepared records of {key} at {side} px in {path}, and they cannot be "
            f"prepared here ({error.name or 'tensorflow'} is not installed): run `{fix}` "
            f"on a machine with TensorFlow and carry data.data_dir here ({records.DOCS})"
        ) from None
    return records.open_prepared(path, fix)


def get_source(data_config: ml_collections.ConfigDict) -> Source:
    """Returns the `Source` for `data_config.name`, preparing the dataset if it can."""
    return dataset_module(data_config.name).make_source(data_config)
