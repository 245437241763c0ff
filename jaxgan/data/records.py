"""Prepared records: what training, evaluation and prediction read, without TensorFlow.

A dataset is *prepared* once, where TensorFlow is installed (`jaxgan.data.prepare`): its TFDS
build is read, every kept image decoded and resized to a square of `side` pixels, and the
result written as ArrayRecord shards, one record per example:

    labels: L bytes (0 or 1, label-vector order) | image: side * side * 3 bytes (uint8 RGB)

Records of one prepared dataset all have the same size, so a record is read with
`np.frombuffer` and nothing is decoded while training: the host only reads and batches
uint8 arrays, and the devices crop, resize, flip and normalise them (`jaxgan.data.augment`).
Why decoded pixels rather than the original JPEG bytes: decoding a COCO JPEG costs about
2-5 ms of one CPU core, so feeding the adversarial update's ~4,400 images/s on an H200 would
need 10-20 cores for decoding alone; a prepared record costs a read and a copy (docs/method.md,
"The input pipeline", has the measurements). The price is disk: 192 KiB an image at 256 px
(COCO's train and validation splits: 24 GB, about what the JPEGs take).

Next to the shards, `index.json` (written last: a folder without it is an interrupted
preparation, never read) records the format version, the class names, the side, where the
data came from, and per split its shards with their record counts and byte sizes.
`open_prepared` checks all of it before anything is read, so a missing, truncated or replaced
shard, an old format or a half-written folder is one line naming the fix, before any step.
A shard corrupted in place (same size) is caught by ArrayRecord's checksums when the record
is read, before its batch is formed: it is reported in one line, and nothing is trained on it.
"""

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence

import numpy as np

FORMAT = "jaxgan-records"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
RECORDS_DIR = "jaxgan_records"  # under data.data_dir, beside TFDS's own builds
SHARD_EXAMPLES = 4096  # records per shard
DOCS = "docs/datasets.md"


class RecordsError(ValueError):
    """Prepared records that cannot be read; the message names the fix, in one line."""

    def __str__(self) -> str:  # one line, also when a loader (Grain) appends its own text
        return super().__str__().split("\n", 1)[0]


def default_data_dir() -> str:
    """TFDS's default data_dir (`$TFDS_DATA_DIR`, else ~/tensorflow_datasets), without TFDS."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def records_dir(data_dir: str | None, key: str, side: int) -> str:
    """Where the records of dataset `key` (e.g. "digit_scenes/default/1.0.0") at `side` px
    live under `data_dir` (TFDS's default when None)."""
    root = os.path.expanduser(data_dir) if data_dir else default_data_dir()
    return os.path.join(root, RECORDS_DIR, key, f"{side}px")


def record_size(num_labels: int, side: int) -> int:
    return num_labels + side * side * 3


def encode(image: np.ndarray, labels: np.ndarray) -> bytes:
    """One record: `labels` (0/1, [L]) then `image` (uint8 [side, side, 3])."""
    return np.asarray(labels, np.uint8).tobytes() + np.ascontiguousarray(image, np.uint8).tobytes()


@dataclasses.dataclass(frozen=True)
class Shard:
    file: str  # relative to the prepared folder
    records: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class Prepared:
    """An opened, checked prepared dataset (`open_prepared`)."""

    path: str
    class_names: tuple[str, ...]
    side: int
    splits: dict  # split name -> tuple[Shard, ...]
    source: dict  # what it was prepared from (for messages)

    @property
    def num_labels(self) -> int:
        return len(self.class_names)

    def num_examples(self, split: str) -> int:
        return sum(shard.records for shard in self.splits[split])

    def sizes(self) -> dict[str, int]:
        return {name: self.num_examples(name) for name in self.splits}


def _reader_module():
    try:
        from array_record.python import array_record_module
    except ImportError:  # pragma: no cover - a dependency of the package
        raise RecordsError(
            "the array_record package is missing; reinstall jaxgan (pip install -e .)"
        ) from None
    return array_record_module


def has_index(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INDEX_FILE))


def open_prepared(path: str, fix: str) -> Prepared:
    """The prepared dataset in `path`, every shard checked against the index (present, its
    size, its record count); RecordsError naming `fix` (the command that prepares it) if not."""
    index_path = os.path.join(path, INDEX_FILE)
    if not os.path.isfile(index_path):
        raise RecordsError(f"no prepared records in {path}; prepare them: {fix} ({DOCS})")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as error:
        raise RecordsError(f"{index_path} is unreadable ({error}); prepare again: {fix}") from None
    if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
        raise RecordsError(
            f"{path} holds records of another format ({index.get('format')} version "
            f"{index.get('version')}, this jaxgan reads {FORMAT} version {FORMAT_VERSION}); "
            f"delete the folder and prepare again: {fix}"
        )
    module = _reader_module()
    splits = {}
    for name, shards in index["splits"].items():
        checked = []
        for entry in shards:
            shard = Shard(entry["file"], int(entry["records"]), int(entry["bytes"]))
            file = os.path.join(path, shard.file)
            problem = None
            if not os.path.isfile(file):
                problem = "is missing"
            elif os.path.getsize(file) != shard.bytes:
                problem = f"has {os.path.getsize(file)} bytes, not the {shard.bytes} written"
            else:
                try:
                    reader = module.ArrayRecordReader(file, "readahead_buffer_size:0")
                    count = reader.num_records()
                    reader.close()
                except Exception as error:  # a shard that does not open: corrupt
                    problem = f"does not open ({_one_line(error)})"
                else:
                    if count != shard.records:
                        problem = f"holds {count} records, not {shard.records}"
            if problem:
                raise RecordsError(
                    f"the prepared shard {file} {problem}: the records are damaged; delete "
                    f"{path} and prepare again: {fix}"
                )
            checked.append(shard)
        splits[name] = tuple(checked)
    return Prepared(
        path=path,
        class_names=tuple(index["class_names"]),
        side=int(index["side"]),
        splits=splits,
        source=index.get("source", {}),
    )


def _one_line(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- split specs: TFDS's slicing syntax, on the prepared splits --------------------------------

_SUB_SPEC = re.compile(r"^(?P<name>[\w-]+)(\[(?P<slice>[^\]]*)\])?$")
_BOUND = re.compile(r"^(?P<value>-?\d+)(?P<percent>%)?$")


def _bound(text: str, n: int, default: int, spec: str) -> int:
    text = text.strip()
    if not text:
        return default
    match = _BOUND.match(text)
    if not match:
        raise ValueError(f"split {spec!r}: {text!r} is not an index or a percentage")
    value = int(match["value"])
    if match["percent"]:
        if abs(value) > 100:
            raise ValueError(f"split {spec!r}: {text} is beyond 100%")
        value = int(round(value * n / 100.0))  # TFDS's "closest" rounding
    if abs(value) > n:
        raise ValueError(f"split {spec!r}: {text} is beyond the split's {n} examples")
    return value + n if value < 0 else value


def resolve_split(spec: str, sizes: dict[str, int]) -> tuple[tuple[str, int, int], ...]:
    """A TFDS split spec ("train", "train[:95%]", "train[10:-5]+test") -> the (split, start,
    stop) ranges it reads, in order, with TFDS's meaning (percentages round to the closest
    example, negative bounds count from the end)."""
    ranges = []
    for part in re.split(r"\s*\+\s*", spec.strip()):
        match = _SUB_SPEC.match(part)
        if not match:
            raise ValueError(f"split {spec!r} is not a split name with an optional [from:to]")
        name = match["name"]
        if name not in sizes:
            raise ValueError(f"split {spec!r}: unknown split {name!r}; the data has {list(sizes)}")
        n = sizes[name]
        start, stop = 0, n
        if match["slice"] is not None:
            bounds = match["slice"].split(":")
            if len(bounds) != 2:
                raise ValueError(f"split {spec!r}: a slice is [from:to]")
            start, stop = _bound(bounds[0], n, 0, spec), _bound(bounds[1], n, n, spec)
        ranges.append((name, start, max(start, stop)))
    return tuple(ranges)


# -- reading ------------------------------------------------------------------------------------


class SplitReader:
    """Random access to the examples of a split spec of a prepared dataset: example i of the
    spec's ranges, in order. `read(indices)` -> (images uint8 [n, side, side, 3], labels
    float32 [n, L]). Shards are opened on first use in each process (the reader pickles
    without its open files, so Grain's worker processes open their own)."""

    def __init__(self, prepared: Prepared, spec: str):
        self.prepared = prepared
        self.spec = spec
        self.ranges = resolve_split(spec, prepared.sizes())
        # Global example offsets: spec position -> (shard file, record in the shard).
        files, starts, counts = [], [], []
        for name, start, stop in self.ranges:
            offset = 0
            for shard in prepared.splits[name]:
                lo, hi = max(start, offset), min(stop, offset + shard.records)
                if lo < hi:
                    files.append(os.path.join(prepared.path, shard.file))
                    starts.append(lo - offset)
                    counts.append(hi - lo)
                offset += shard.records
        self._files = files
        self._first = np.asarray(starts, np.int64)
        self._ends = np.cumsum(np.asarray(counts, np.int64))
        self._readers = {}
        self._num_labels = prepared.num_labels
        self._side = prepared.side

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getstate__(self):
        return {**self.__dict__, "_readers": {}}

    def _reader(self, i: int):
        reader = self._readers.get(i)
        if reader is None:
            module = _reader_module()
            reader = module.ArrayRecordReader(self._files[i], "readahead_buffer_size:0")
            self._readers[i] = reader
        return reader

    def read_bytes(self, indices: Sequence[int]) -> list[bytes]:
        """The raw records at spec positions `indices`, in that order."""
        indices = np.asarray(indices, np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"example index out of range for {self.spec} ({len(self)})")
        shard_of = np.searchsorted(self._ends, indices, side="right")
        out = [b""] * len(indices)
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)
            before = self._ends[shard - 1] if shard else 0
            local = (indices[where] - before + self._first[shard]).tolist()
            try:
                records = self._reader(int(shard)).read(local)
            except Exception as error:
                raise RecordsError(
                    f"the prepared shard {self._files[shard]} is corrupt ({_one_line(error)}); "
                    f"delete {self.prepared.path} and prepare again ({DOCS})"
                ) from None
            for position, record in zip(where.tolist(), records, strict=True):
                out[position] = record
        return out

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        records = self.read_bytes(indices)
        size = record_size(self._num_labels, self._side)
        if any(len(r) != size for r in records):
            bad = next(len(r) for r in records if len(r) != size)
            raise RecordsError(
                f"a record of {self.prepared.path} has {bad} bytes, not {size}: the records are "
                f"damaged; delete the folder and prepare again ({DOCS})"
            )
        flat = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), size)
        labels = flat[:, : self._num_labels].astype(np.float32)
        images = flat[:, self._num_labels :].reshape(len(records), self._side, self._side, 3)
        return images, labels

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        return self.read(range(len(self)))


# -- writing (preparation) ----------------------------------------------------------------------


class Writer:
    """Writes one prepared dataset into `path`: `add(split, image, labels)` for every example,
    then `close()`, which writes the index. Everything goes to a temporary folder beside
    `path` that replaces it only when complete."""

    def __init__(self, path: str, class_names: Sequence[str], side: int, source: dict):
        self.path = path
        self.tmp = path + ".incomplete"
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.class_names = tuple(class_names)
        self.side = side
        self.source = source
        self._splits: dict[str, list] = {}
        self._writer = None
        self._current = None  # (split, shard number, records in it)
        self._module = _reader_module()

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        split, number, count = self._current
        file = f"{split}-{number:05d}.array_record"
        size = os.path.getsize(os.path.join(self.tmp, file))
        self._splits[split].append({"file": file, "records": count, "bytes": size})
        self._writer = None

    def add(self, split: str, image: np.ndarray, labels: Iterable) -> None:
        if image.shape != (self.side, self.side, 3) or image.dtype != np.uint8:
            raise ValueError(f"a prepared image is uint8 {(self.side, self.side, 3)}")
        labels = np.asarray(labels, np.uint8)
        if labels.shape != (len(self.class_names),):
            raise ValueError(f"labels of shape {labels.shape}, not ({len(self.class_names)},)")
        shards = self._splits.setdefault(split, [])
        if (
            self._current is None
            or self._current[0] != split
            or (self._current[2] >= SHARD_EXAMPLES)
        ):
            self._finish_shard()
            number = len(shards)
            file = os.path.join(self.tmp, f"{split}-{number:05d}.array_record")
            # group_size:1 keeps every record its own chunk: random access reads one record.
            self._writer = self._module.ArrayRecordWriter(file, "group_size:1")
            self._current = (split, number, 0)
        self._writer.write(encode(image, labels))
        split_, number, count = self._current
        self._current = (split_, number, count + 1)

    def close(self, splits: Sequence[str]) -> Prepared:
        self._finish_shard()
        for split in splits:
            self._splits.setdefault(split, [])
        index = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "side": self.side,
            "record": "labels uint8 [L] then image uint8 [side, side, 3]",
            "source": self.source,
            "splits": self._splits,
        }
        with open(os.path.join(self.tmp, INDEX_FILE), "w") as f:
            json.dump(index, f, indent=1)
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        os.replace(self.tmp, self.path)
        return open_prepared(self.path, fix="prepare it again")

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
