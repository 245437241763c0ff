"""Where the digit scenes' gain comes from: recall of easy vs hard (small, faint, occluded)
objects on the test split, for each run of a `seed_table.py` table of the digit scenes.

    python experiments/hard_objects.py --table=experiments/results/embedded_table.json \
        --out=experiments/results/hard_objects.md

A hard object is predictable from its scene partners rather than from its pixels, so a
generator that learned label dependency should gain most there. Also reported: how often a
scene's companion is predicted when it is absent but its context is present (the price of
leaning on context).
"""

import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from tables import format_table  # experiments/tables.py

from jaxgan import evaluate
from jaxgan.data.digit_scenes.digit_scenes_dataset_builder import SCENES


def annotations(data_config, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """labels and hard masks [N, L] of a split of the digit scenes, in evaluation order (the
    build's order, which its prepared records keep)."""
    from jaxgan.data.digit_scenes import Builder

    builder = Builder(
        config=data_config.get("builder_config") or "default", data_dir=data_config.data_dir
    )
    # Generated offline in seconds where this build is not there yet; a no-op where it is.
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    examples = tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
    pairs = [(e["labels"], e["hard"]) for e in examples]
    return np.array([p[0] for p in pairs], bool), np.array([p[1] for p in pairs], bool)


def rates(predicted, labels, hard) -> dict:
    easy = labels & ~hard
    context_without_companion = np.zeros_like(labels)
    for (a, b), companion in SCENES:
        rows = labels[:, a] & labels[:, b] & ~labels[:, companion]
        context_without_companion[rows, companion] = True
    return {
        "easy recall": predicted[easy].mean(),
        "hard recall": predicted[hard].mean(),
        "companion false positives": predicted[context_without_companion].mean(),
    }


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    with open(flags.FLAGS.table) as f:
        table = json.load(f)["results"]
    rows = {}
    for name, runs in table.items():
        if not all("workdir" in run for run in runs):  # a paired difference
            continue
        per_seed = []
        for run in runs:
            scores = evaluate.scores(run["workdir"], "test")
            if scores.config.data.name != "digit_scenes":
                raise app.UsageError(f"{run['workdir']} was not trained on the digit scenes")
            labels, hard = annotations(scores.config.data)
            if not np.array_equal(labels, scores.labels > 0.5):
                raise app.UsageError("the test split's annotations are not in evaluation order")
            predicted = scores.probabilities > scores.config.method.threshold
            per_seed.append(rates(predicted, labels, hard))
        rows[name] = per_seed
    markdown = format_table(rows, {name: name for name in next(iter(rows.values()))[0]})
    out = flags.FLAGS.out
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        f.write(markdown + "\n")
    print(markdown)


if __name__ == "__main__":  # flags only here: other scripts import the functions above
    flags.DEFINE_string(
        "table", "experiments/results/embedded_table.json", "A seed_table.py results file."
    )
    flags.DEFINE_string("out", "experiments/results/hard_objects.md", "Markdown output.")
    app.run(main)
