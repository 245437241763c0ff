"""Reading a user's labels file into (class names, records) and assigning splits.

Two formats, chosen by the file's extension:

- CSV (`.csv`): a header row with a filename column (`filename`, `file`, `image` or `path`),
  an optional `split` column (`train` / `validation` / `test`), and one column per class whose
  values are 0 or 1. Class names are the header's other columns, in order.
- JSON lines (`.jsonl`, `.json`): one object per line, `{"file": "a.jpg", "labels": ["cat"]}`,
  optionally with `"split"`. An optional first line `{"classes": [...]}` fixes the class list and
  its order; without it the classes are the sorted union of all labels.

File names are relative to the image folder (sub-folders allowed) or absolute. Every mistake a
user can make in the file is reported as one `LabelsFileError` naming the file, line and fix.
"""

import csv
import dataclasses
import json
import os

import numpy as np

FILENAME_COLUMNS = ("filename", "file", "image", "path")
SPLIT_NAMES = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation",
                  "valid": "validation", "dev": "validation", "test": "test"}  # fmt: skip


class LabelsFileError(ValueError):
    """A mistake in the user's labels file, stated so the user can fix it."""


@dataclasses.dataclass(frozen=True)
class Record:
    file: str  # as written in the labels file
    labels: tuple[int, ...]  # multi-hot, one 0/1 per class
    split: str | None  # "train" | "validation" | "test", or None to draw one


def read_labels_file(path: str) -> tuple[tuple[str, ...], list[Record]]:
    """Parses `path` (CSV or JSON lines); returns (class names, records in file order)."""
    if not os.path.isfile(path):
        raise LabelsFileError(
            f"labels file {path!r} not found; set --config.data.labels_file to a CSV or JSON "
            "lines file (README, 'Your own data')"
        )
    if path.lower().endswith((".jsonl", ".json", ".ndjson")):
        names, records = _read_jsonl(path)
    else:
        names, records = _read_csv(path)
    if not records:
        raise LabelsFileError(f"labels file {path!r} lists no images")
    counts = np.sum([r.labels for r in records], axis=0)
    empty = [name for name, n in zip(names, counts, strict=True) if n == 0]
    if empty:
        raise LabelsFileError(
            f"labels file {path!r}: class(es) {empty} have no positive example; remove them "
            "or label some images with them"
        )
    seen = set()
    for r in records:
        if r.file in seen:
            raise LabelsFileError(f"labels file {path!r}: {r.file!r} is listed twice")
        seen.add(r.file)
    return names, records


def _split_name(value: str, where: str) -> str | None:
    value = value.strip().lower()
    if not value:
        return None
    if value not in _SPLIT_ALIASES:
        raise LabelsFileError(f"{where}: split {value!r} is not one of train, validation, test")
    return _SPLIT_ALIASES[value]


def _read_csv(path: str):
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise LabelsFileError(f"labels file {path!r} is empty")
    header = [cell.strip() for cell in rows[0]]
    lowered = [cell.lower() for cell in header]
    file_col = next((lowered.index(c) for c in FILENAME_COLUMNS if c in lowered), None)
    if file_col is None:
        raise LabelsFileError(
            f"labels file {path!r}: no filename column in the header {header}; name the column "
            f"of image file names one of {list(FILENAME_COLUMNS)}"
        )
    split_col = lowered.index("split") if "split" in lowered else None
    class_cols = [i for i in range(len(header)) if i not in (file_col, split_col)]
    names = tuple(header[i] for i in class_cols)
    if not names:
        raise LabelsFileError(f"labels file {path!r}: the header {header} names no class column")
    if len(set(names)) != len(names) or not all(names):
        raise LabelsFileError(f"labels file {path!r}: class names must be distinct and non-empty")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        where = f"labels file {path!r}, line {line}"
        if len(row) != len(header):
            raise LabelsFileError(f"{where}: {len(row)} columns, the header has {len(header)}")
        labels = []
        for i in class_cols:
            value = row[i].strip()
            if value not in ("0", "1"):
                raise LabelsFileError(
                    f"{where}: column {header[i]!r} is {value!r}; class columns hold 0 or 1"
                )
            labels.append(int(value))
        file = row[file_col].strip()
        if not file:
            raise LabelsFileError(f"{where}: empty file name")
        split = _split_name(row[split_col], where) if split_col is not None else None
        records.append(Record(file, tuple(labels), split))
    return names, records


def _read_jsonl(path: str):
    entries = []
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as e:
                raise LabelsFileError(
                    f"labels file {path!r}, line {line}: not JSON ({e})"
                ) from None
            if not isinstance(entry, dict):
                raise LabelsFileError(f"labels file {path!r}, line {line}: not a JSON object")
            entries.append((line, entry))
    if not entries:
        raise LabelsFileError(f"labels file {path!r} is empty")
    names = None
    if "classes" in entries[0][1]:
        names = tuple(str(c) for c in entries.pop(0)[1]["classes"])
        if len(set(names)) != len(names) or not names:
            raise LabelsFileError(f"labels file {path!r}: 'classes' must list distinct names")
    for line, entry in entries:
        where = f"labels file {path!r}, line {line}"
        if not isinstance(entry.get("file"), str) or not entry["file"].strip():
            raise LabelsFileError(f'{where}: needs a "file" string, e.g. {{"file": "a.jpg", ...}}')
        if not isinstance(entry.get("labels"), list) or not all(
            isinstance(x, str) for x in entry["labels"]
        ):
            raise LabelsFileError(f'{where}: "labels" must be a list of class names')
    if names is None:
        names = tuple(sorted({label for _, e in entries for label in e["labels"]}))
    index = {name: i for i, name in enumerate(names)}
    records = []
    for line, entry in entries:
        where = f"labels file {path!r}, line {line}"
        labels = [0] * len(names)
        for label in entry["labels"]:
            if label not in index:
                raise LabelsFileError(f"{where}: label {label!r} is not in the 'classes' line")
            labels[index[label]] = 1
        split = _split_name(str(entry.get("split", "")), where)
        records.append(Record(entry["file"].strip(), tuple(labels), split))
    return names, records


def assign_splits(
    records: list[Record], seed: int, validation_fraction: float, test_fraction: float
) -> dict[str, list[Record]]:
    """Split name -> records. Splits given in the file are kept; the rest are drawn with `seed`.

    Records without a split are permuted with `seed`; the first `test_fraction` of them go to
    test and the next `validation_fraction` to validation, the rest to train. A split the file
    already names images for gets none drawn. Each split keeps file order.
    """
    for name, value in (("validation", validation_fraction), ("test", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"data.{name}_fraction must be in [0, 1), got {value}")
    given = {r.split for r in records if r.split is not None}
    free = [i for i, r in enumerate(records) if r.split is None]
    order = np.random.default_rng(seed).permutation(len(free))
    n_test = 0 if "test" in given else int(round(test_fraction * len(free)))
    n_val = 0 if "validation" in given else int(round(validation_fraction * len(free)))
    drawn = {}
    for rank, j in enumerate(order):
        drawn[free[j]] = (
            "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
        )
    splits = {name: [] for name in SPLIT_NAMES}
    for i, r in enumerate(records):
        splits[r.split or drawn[i]].append(r)
    return splits
