"""Reading a user's labels file into (class names, records) and assigning splits.

Two formats, chosen by the file's extension:

- CSV (`.csv`): a header row with a filename column (`filename`, `file`, `image` or `path`),
  an optional `split` column (`train` / `validation` / `test`), and one column per class whose
  values are 0 or 1. Class names are the header's other columns, in order.
- JSON lines (`.jsonl`, `.json`): one object per line, `{"file": "a.jpg", "labels": ["cat"]}`,
  optionally with `"split"`. An optional first line `{"classes": [...]}` fixes the class list and
  its order; without it the classes are the sorted union of all labels.

File names are relative to the image folder (sub-folders allowed), or absolute. Each must
resolve (symbolic links and `..` followed) to a file inside the image folder unless
`data.allow_outside_paths` is set; `resolve_files` checks that, and that no file is listed
twice under two spellings (`a.jpg`, `./a.jpg`, `sub/../a.jpg`, a link to it). Every mistake a
user can make in the file is reported as one `LabelsFileError` naming the file, line and fix.
"""

import csv
import dataclasses
import io
import json
import os

import numpy as np

from jaxgan.data import image_files

FILENAME_COLUMNS = ("filename", "file", "image", "path")
SPLIT_NAMES = ("train", "validation", "test")
MAX_LABELS_FILE_BYTES = 256 * 2**20  # ~1M images with 80 classes as CSV take ~190 MB
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation",
                  "valid": "validation", "dev": "validation", "test": "test"}  # fmt: skip


class LabelsFileError(ValueError):
    """A mistake in the user's labels file, stated so the user can fix it."""


@dataclasses.dataclass(frozen=True)
class Record:
    file: str  # as written in the labels file
    labels: tuple[int, ...]  # multi-hot, one 0/1 per class
    split: str | None  # "train" | "validation" | "test", or None to draw one
    line: int = 0  # where it is in the labels file, for messages


def read_labels_file(path: str) -> tuple[tuple[str, ...], list[Record]]:
    """Parses `path` (CSV or JSON lines); returns (class names, records in file order)."""
    try:
        data = image_files.read_regular_file(path, MAX_LABELS_FILE_BYTES)
    except image_files.BadFile as e:
        if str(e) == "missing":
            raise LabelsFileError(
                f"labels file {path!r} not found; set --config.data.labels_file to a CSV or "
                "JSON lines file (docs/datasets.md, 'Your own data')"
            ) from None
        raise LabelsFileError(f"labels file {path!r}: {e}; pass a CSV or JSON lines file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelsFileError(
            f"labels file {path!r} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    if path.lower().endswith((".jsonl", ".json", ".ndjson")):
        names, records = _read_jsonl(path, text)
    else:
        names, records = _read_csv(path, text)
    if not records:
        raise LabelsFileError(f"labels file {path!r} lists no images")
    counts = np.sum([r.labels for r in records], axis=0)
    empty = [name for name, n in zip(names, counts, strict=True) if n == 0]
    if empty:
        raise LabelsFileError(
            f"labels file {path!r}: class(es) {empty} have no positive example; remove them "
            "or label some images with them"
        )
    seen = {}
    for r in records:
        if r.file in seen:
            raise LabelsFileError(
                f"labels file {path!r}: {r.file!r} is listed twice (lines {seen[r.file]} and "
                f"{r.line}); list each image once"
            )
        seen[r.file] = r.line
    return names, records


def resolve_files(
    path: str, records: list[Record], image_dir: str, allow_outside_paths: bool = False
) -> list[str]:
    """The resolved path of each record's file, in order, after checking where they lead.

    A file name is joined to `image_dir` and normalised (`sub/../a.jpg` is `a.jpg`); unless
    `allow_outside_paths`, one that leaves the folder is refused before the file system is
    asked anything about it, and one that a symbolic link leads out of is refused the same
    way, so the message never tells whether a path outside exists. Two names for one file
    (same resolved path, or the same inode for hard links) are refused as a duplicate.
    """
    folder, root = os.path.abspath(image_dir), os.path.realpath(image_dir)
    resolved, outside = [], []
    for r in records:
        joined = os.path.normpath(os.path.join(folder, r.file))
        lexically_inside = image_files.is_inside(joined, folder) or image_files.is_inside(
            joined,
            root,  # an absolute name may spell the folder either way
        )
        if not allow_outside_paths and not lexically_inside:
            outside.append(r)  # decided from the name alone
            resolved.append(None)
            continue
        real = os.path.realpath(joined)
        if not allow_outside_paths and not image_files.is_inside(real, root):
            outside.append(r)  # a link inside leads out
        resolved.append(real)
    if outside:
        first = outside[0]
        raise LabelsFileError(
            f"labels file {path!r}, line {first.line}: {first.file!r} is outside data.image_dir "
            f"{image_dir!r} ({len(outside)} such file name(s)); move the images into the folder "
            "or set --config.data.allow_outside_paths=true"
        )
    seen = {}
    for r, real in zip(records, resolved, strict=True):
        keys = [real]
        try:
            info = os.stat(real)
            if info.st_ino:  # some file systems report 0 for every file
                keys.append((info.st_dev, info.st_ino))
        except OSError:  # missing or unreadable: skipped and reported at build time
            pass
        other = next((seen[k] for k in keys if k in seen), None)
        if other is not None:
            raise LabelsFileError(
                f"labels file {path!r}: {other.file!r} (line {other.line}) and {r.file!r} "
                f"(line {r.line}) are the same image file; list it once"
            )
        seen.update((k, r) for k in keys)
    return resolved


def _split_name(value: str, where: str) -> str | None:
    value = value.strip().lower()
    if not value:
        return None
    if value not in _SPLIT_ALIASES:
        raise LabelsFileError(f"{where}: split {value!r} is not one of train, validation, test")
    return _SPLIT_ALIASES[value]


def _read_csv(path: str, text: str):
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise LabelsFileError(
            f"labels file {path!r}, line {reader.line_num}: not CSV ({e})"
        ) from None
    if not rows:
        raise LabelsFileError(f"labels file {path!r} is empty")
    header = [cell.strip() for cell in rows[0][1]]
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
    for line, row in rows[1:]:
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
        records.append(Record(file, tuple(labels), split, line))
    return names, records


def _read_jsonl(path: str, text: str):
    entries = []
    for line, line_text in enumerate(text.splitlines(), start=1):
        if not line_text.strip():
            continue
        try:
            entry = json.loads(line_text)
        except (json.JSONDecodeError, RecursionError) as e:
            reason = e if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise LabelsFileError(
                f"labels file {path!r}, line {line}: not JSON ({reason})"
            ) from None
        if not isinstance(entry, dict):
            raise LabelsFileError(f"labels file {path!r}, line {line}: not a JSON object")
        entries.append((line, entry))
    if not entries:
        raise LabelsFileError(f"labels file {path!r} is empty")
    names = None
    if "classes" in entries[0][1]:
        line, first = entries.pop(0)
        classes = first["classes"]
        if (
            not isinstance(classes, list)
            or not classes
            or not all(isinstance(c, str) and c.strip() for c in classes)
            or len(set(classes)) != len(classes)
        ):
            raise LabelsFileError(
                f'labels file {path!r}, line {line}: "classes" must be a list of distinct, '
                f'non-empty class names, e.g. {{"classes": ["cat", "dog"]}}'
            )
        names = tuple(classes)
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
        records.append(Record(entry["file"].strip(), tuple(labels), split, line))
    return names, records


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Both in [0, 1), and their sum below 1 so that images without a split are left for train."""
    for name, value in (("validation", validation_fraction), ("test", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"data.{name}_fraction is {value!r}; set it to a number in [0, 1)")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"data.validation_fraction + data.test_fraction is "
            f"{validation_fraction + test_fraction:g}, which leaves no image for train; keep "
            "their sum below 1 (e.g. 0.1 and 0.1)"
        )


def assign_splits(
    records: list[Record], seed: int, validation_fraction: float, test_fraction: float
) -> dict[str, list[Record]]:
    """Split name -> records. Splits given in the file are kept; the rest are drawn with `seed`.

    Records without a split are permuted with `seed`; the first `test_fraction` of them go to
    test and the next `validation_fraction` to validation, the rest to train. A split the file
    already names images for gets none drawn. Each split keeps file order.
    """
    check_fractions(validation_fraction, test_fraction)
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
