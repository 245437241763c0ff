"""Where the embedded table's gain comes from: recall of easy vs hard (small, faint, occluded)
objects on the digit-scenes test split, for each run that `embedded_table.py` trained.

    python experiments/hard_objects.py --workdir=runs/embedded_table --seeds=0,1,2

A hard object is predictable from its scene partners rather than from its pixels, so a
generator that learned label dependency should gain most there. Also reported: how often a
scene's companion is predicted when it is absent but its context is present (the price of
leaning on context).
"""

import copy
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from ml_collections import config_flags
from tables import format_table  # experiments/tables.py

from jaxgan import train
from jaxgan.base_config import no_critic
from jaxgan.data.digit_scenes.digit_scenes_dataset_builder import SCENES

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds that embedded_table.py ran.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/embedded_table", "embedded_table.py's workdir.")
_OUT = flags.DEFINE_string("out", "experiments/results/hard_objects.md", "Markdown output.")


def test_annotations(run) -> tuple[np.ndarray, np.ndarray]:
    """labels and hard masks [N, L] of the test split, in evaluation order."""
    split = run.source.splits["test"]
    examples = tfds.as_numpy(run.source.builder.as_dataset(split=split, shuffle_files=False))
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
    methods = {
        "BCE only": ("bce", no_critic(copy.deepcopy(_CONFIG.value))),
        "+ WGAN-gp": ("wgan", _CONFIG.value),
    }
    rows = {}
    for name, (tag, config) in methods.items():
        per_seed = []
        for seed in map(int, _SEEDS.value):
            run = train.Run(config, os.path.join(_WORKDIR.value, f"{tag}_seed{seed}"))
            if not run.restore():
                raise SystemExit(f"no checkpoint for {name}, seed {seed}: run embedded_table.py")
            scores, _ = run.predict("test")
            labels, hard = test_annotations(run)
            per_seed.append(rates(scores > config.method.threshold, labels, hard))
        rows[name] = per_seed
    table = format_table(rows, {name: name for name in rows["BCE only"][0]})
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
