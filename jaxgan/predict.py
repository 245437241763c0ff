"""Predict labels for image files with a trained checkpoint.

    python -m jaxgan.main --mode=predict --workdir=DIR --images=PATH [--images=PATH ...]
        [--threshold=configured|global|per_class|0.3] [--output=PREFIX] [--checkpoint_step=N]

PATH is a file, a folder (its image files, in sub-folders too) or a glob; links to folders are
followed, each real folder walked once, and at most `MAX_PATHS` files are taken. Each image
gets the evaluation's preprocessing (the build's checks, decoded to RGB and made the square
that prepared records hold: `image_input.stored_image`; then, in the classifier's compiled
forward pass, resized and normalised: `augment.eval_image`), then G's probabilities; the
predicted labels are those above the chosen threshold: the configured one
(`method.threshold`), the global one chosen on the validation split ("global", the C-F1 best),
or one per class chosen on validation ("per_class"). A file that is missing, not a regular
file, too large or not an image is reported in one line and skipped; the others are still
predicted. Results are printed and written to PREFIX.csv (file, labels, one probability column
per class) and PREFIX.jsonl; an --output that ends in '/' or is a folder means
FOLDER/predictions.csv and .jsonl. The output is checked writable, and the paths walked,
before the model is restored.
"""

import concurrent.futures
import csv
import fnmatch
import glob
import json
import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from jaxgan import evaluate

# Files one --mode=predict takes in all: 1,000,000 paths are ~100 MB of Python strings.
MAX_PATHS = 1_000_000
PREDICTIONS = "predictions"  # the files' name in a folder: predictions.csv, .jsonl
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def expand_paths(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, folders and globs -> (files in order, without repeats; [(spec, reason)] for
    specs that name nothing). A folder contributes its image files, sorted, recursively.

    Folders and globs are walked following links to folders, but never into a folder already
    walked (by its real path), so links that loop end the walk instead of repeating it; more
    than `MAX_PATHS` files in all is refused (ValueError, one line)."""
    files, missing, seen = [], [], set()

    def add_all(spec, found):
        found = sorted(_bounded(found, MAX_PATHS - len(files), spec))
        for path in found:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
        return found

    for spec in specs:
        if os.path.isdir(spec):
            if not add_all(spec, _folder_images(spec)):
                missing.append((spec, "a folder with no image files"))
        elif os.path.lexists(spec):
            add_all(spec, [spec])
        elif glob.has_magic(spec):
            if not add_all(spec, _glob_files(spec)):
                missing.append((spec, "no file matches"))
        else:
            missing.append((spec, "missing"))
    return files, missing


def _bounded(paths: Iterable[str], room: int, spec: str) -> list[str]:
    out = []
    for path in paths:
        if len(out) >= room:
            raise ValueError(
                f"--images names more than {MAX_PATHS:,} files (the limit was reached at "
                f"{spec!r}); predict them in parts, a folder or glob at a time"
            )
        out.append(path)
    return out


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder or ".") as entries:
            return list(entries)
    except OSError:  # gone, unreadable, not a folder: it holds nothing to predict
        return []


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:
        return False


def _folder_images(folder: str) -> Iterator[str]:
    """The image files below `folder` (sub-folders and linked folders too, each real folder
    once); hidden files are left out."""
    stack, walked = [folder], {os.path.realpath(folder)}
    while stack:
        path = stack.pop()
        for entry in _entries(path):
            child = os.path.join(path, entry.name)
            if _is_folder(entry):
                real = os.path.realpath(child)
                if real not in walked:
                    walked.add(real)
                    stack.append(child)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith("."):
                yield child


def _glob_files(pattern: str) -> Iterator[str]:
    """The files (not folders) `glob.glob(pattern, recursive=True)` would name, without ever
    entering a real folder twice at the same place in the pattern: what a walk finds there
    the second time is what it found the first (`**` through links that loop would otherwise
    go round forever). Hidden names match only a part that starts with a dot, as in glob."""
    parts = pattern.split(os.sep)
    start = 0
    while start < len(parts) - 1 and not glob.has_magic(parts[start]):
        start += 1
    base = os.sep.join(parts[:start]) or (os.sep if pattern.startswith(os.sep) else "")
    stack, walked = [], set()

    def visit(path, index):
        key = (os.path.realpath(path or "."), index)
        if key not in walked:
            walked.add(key)
            stack.append((path, index))

    visit(base, start)
    while stack:
        path, index = stack.pop()
        part, last = parts[index], index == len(parts) - 1
        if part == "**":
            if not last:
                visit(path, index + 1)  # `**` matching no folder at all
            for entry in _entries(path):
                if entry.name.startswith("."):
                    continue
                child = os.path.join(path, entry.name)
                if _is_folder(entry):
                    visit(child, index)
                elif last:
                    yield child
        elif glob.has_magic(part):
            for entry in _entries(path):
                if entry.name.startswith(".") and not part.startswith("."):
                    continue
                if not fnmatch.fnmatch(entry.name, part):
                    continue
                child = os.path.join(path, entry.name)
                if not _is_folder(entry):
                    if last:
                        yield child
                elif not last:
                    visit(child, index + 1)
        else:
            child = os.path.join(path, part)
            if last:
                if os.path.lexists(child) and not os.path.isdir(child):
                    yield child
            elif os.path.isdir(child):
                visit(child, index + 1)


def _prepared(files, data_config, num_threads: int = 4) -> Iterator[tuple[str, object]]:
    """(path, uint8 square or BadImage) in order: a thread pool reads, checks, decodes and
    resizes the files (PIL, a bounded window at a time)."""
    from jaxgan.data import image_input
    from jaxgan.data.datasets import stored_side

    side = stored_side(data_config)

    def prepare(path):
        try:
            return image_input.stored_image(path, side)
        except image_input.BadImage as error:
            return error

    window = 4 * num_threads
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        for start in range(0, len(files), window):
            chunk = files[start : start + window]
            yield from zip(chunk, pool.map(prepare, chunk), strict=True)


def predict_files(
    classifier, specs: list[str], threshold: str = "configured", report=None, found=None
):
    """Probabilities for every readable image named by `specs`; bad ones are reported (one
    line each, through `report`, by default on stderr) and skipped. Returns (files,
    probabilities [N, L], thresholds [L], skipped [(path, reason)]). `found`: what
    `expand_paths(specs)` returned, if the caller has walked them already."""
    from tqdm import tqdm

    report = report or (lambda line: tqdm.write(line, file=sys.stderr))
    files, skipped = found if found is not None else expand_paths(specs)
    skipped = list(skipped)
    for spec, reason in skipped:
        report(f"skipped {spec}: {reason}")
    thresholds = evaluate.choose_thresholds(classifier, threshold)
    kept, scores, batch, names = [], [], [], []

    def flush():
        if batch:
            scores.append(classifier.score_images(np.stack(batch)))
            kept.extend(names)
            batch.clear()
            names.clear()

    progress = tqdm(
        total=len(files),
        unit="image",
        file=sys.stderr,
        disable=len(files) <= classifier.local_batch_size or None,
    )
    for path, image in _prepared(files, classifier.config.data):
        progress.update(1)
        if isinstance(image, Exception):
            skipped.append((path, image.reason))
            report(f"skipped {path}: {image.reason}")
            continue
        batch.append(image)
        names.append(path)
        if len(batch) == classifier.local_batch_size:
            flush()
    flush()
    progress.close()
    probabilities = np.concatenate(scores) if scores else np.zeros((0, len(thresholds)))
    return kept, probabilities, thresholds, skipped


def rows(files, probabilities, thresholds, class_names) -> list[dict]:
    """One record per image: its file, predicted label names (most probable first), and every
    class's probability."""
    out = []
    for path, p in zip(files, probabilities, strict=True):
        order = np.argsort(-p, kind="stable")
        labels = [class_names[i] for i in order if p[i] > thresholds[i]]
        out.append(
            {
                "file": path,
                "labels": labels,
                "probabilities": {
                    n: round(float(v), 6) for n, v in zip(class_names, p, strict=True)
                },
            }
        )
    return out


def output_prefix(output: str | None, workdir: str) -> str:
    """--output: PREFIX, or a folder (ending in '/', or one that exists) to write
    FOLDER/predictions.*; by default WORKDIR/predictions."""
    if not output:
        return os.path.join(workdir, PREDICTIONS)
    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        return os.path.join(output, PREDICTIONS)
    return output


def check_output(prefix: str) -> None:
    """PREFIX.csv and PREFIX.jsonl can be written (ValueError, one line, if not): checked
    before the model is restored or any image read."""
    from jaxgan import outputs

    folder, name = os.path.split(os.path.abspath(prefix))
    outputs.check_writable(folder, [name + ".csv", name + ".jsonl"], flag="--output")


def write_outputs(records: list[dict], class_names, prefix: str) -> tuple[str, str]:
    """PREFIX.csv (file, labels joined by ';', one column per class) and PREFIX.jsonl."""
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    csv_path, jsonl_path = prefix + ".csv", prefix + ".jsonl"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "labels", *class_names])
        for r in records:
            probabilities = [f"{r['probabilities'][n]:.6f}" for n in class_names]
            writer.writerow([r["file"], ";".join(r["labels"]), *probabilities])
    with open(jsonl_path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return csv_path, jsonl_path


def format_record(record: dict) -> str:
    shown = ", ".join(f"{n} ({record['probabilities'][n]:.2f})" for n in record["labels"])
    return f"{record['file']}: {shown or '(no label)'}"


def run_predict(workdir, specs, threshold="configured", output=None, step=None, config=None):
    """--mode=predict: prints each image's labels and writes CSV and JSON lines."""
    if not specs:
        raise ValueError("--mode=predict needs --images=PATH (files, folders or globs)")
    prefix = output_prefix(output, workdir)
    check_output(prefix)  # before the model is restored or any image read
    found = expand_paths(specs)  # the walk's refusals before the restore, too
    classifier = evaluate.load_classifier(workdir, step, config)
    files, probabilities, thresholds, skipped = predict_files(
        classifier, specs, threshold, found=found
    )
    records = rows(files, probabilities, thresholds, classifier.class_names)
    for record in records:
        print(format_record(record))
    csv_path, jsonl_path = write_outputs(records, classifier.class_names, prefix)
    print(
        f"predicted {len(records)} image(s) with the checkpoint at step {classifier.step}"
        f" ({threshold} threshold), skipped {len(skipped)}; wrote {csv_path} and {jsonl_path}"
    )
    return records, skipped
