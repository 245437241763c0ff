"""When does the critic help? BCE only vs + WGAN-gp on the digit scenes at several strengths of
label dependency and several lengths of the supervised phase, over paired seeds.

    python experiments/dependency_study.py --levels=shuffled,scenes,strong \\
        --supervised_steps=300,1200 --seeds=0,1,2 --workdir=runs/dependency_study \\
        --out=experiments/results/dependency_study --config.schedule.adversarial_steps=200

A level is a builder config of the digit scenes (`DEPENDENCIES` in its builder): the same
images' objects and label frequencies, rewired so that labels depend on each other from hardly
at all ("shuffled") to more than the scenes do ("strong"). A length of the supervised phase
makes G weaker or stronger when the critic starts. Each (level, length) is a table of
`seed_table.py` (its flags: --config, default configs/digit_scenes.py, --seeds, --workdir,
--out, --tag, --config.FIELD=VALUE): per seed the supervised phase is trained once, and the
no-critic arm and the + WGAN-gp arm continue from it. Besides seed_table's metrics, each run
gets the label-dependency diagnostics on the test split at the configured threshold
(`jaxgan.diagnose`: co-occurrence distance, hallucinated and missed companions over the ten
strongest true dependencies) and the digit scenes' own (`hard_objects.py`: recall of hard
objects, companions predicted beside their context when absent).

Writes PREFIX.md (each level's measured label structure, a table per level and length, and
the critic's paired gains), PREFIX.json (every run's numbers) and PREFIX.png (the paired gain
against the dependency's strength). `--small` uses the levels' small builds (400 / 200 / 200
images), for tests. Runs resume, and finished ones are read back.
"""

import copy
import json
import os

import numpy as np
import paired_seeds  # experiments/paired_seeds.py
import seed_table  # noqa: F401  experiments/seed_table.py: its flags are this script's too
import tables  # experiments/tables.py
from absl import app, flags, logging
from hard_objects import annotations, rates  # experiments/hard_objects.py

from jaxgan import diagnose, evaluate
from jaxgan.data.digit_scenes import digit_scenes_dataset_builder as scenes

_LEVELS = flags.DEFINE_list(
    "levels", ["shuffled", "scenes", "strong"], f"Dependency levels: {list(scenes.DEPENDENCIES)}"
)
_SUPERVISED = flags.DEFINE_list(
    "supervised_steps", ["300", "1200"], "Lengths of the supervised phase (strengths of G)."
)
_SMALL = flags.DEFINE_bool("small", False, "The levels' small builds (400 / 200 / 200 images).")

FLAGS = flags.FLAGS
# Table header -> result key; percentages except labels/image (tables.format_table).
COLUMNS = {
    "C-F1": "CF1",
    "C-F1 (val. thr.)": "CF1_val_threshold",
    "mAP": "mAP",
    "labels/image": "labels_per_image",
    "co-occ. distance": "distance",
    "hallucinated": "hallucinated",
    "missed": "missed",
    "hard recall": "hard_recall",
    "companion FP": "companion_false_positives",
    "val. C-F1": "validation_CF1",
    "val. mAP": "validation_mAP",
}
GAINS = {"C-F1": "CF1", "C-F1 (val. thr.)": "CF1_val_threshold", "mAP": "mAP"}
DIAGNOSTICS_FILE = os.path.join("diagnostics", "dependency_study.json")  # not copied on


def run_diagnostics(workdir: str) -> dict:
    """The dependency diagnostics of a finished run on the test split at the configured
    threshold, cached in its workdir (under diagnostics/, which a continued run never copies)."""
    path = os.path.join(workdir, DIAGNOSTICS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    scores = evaluate.scores(workdir, "test")
    truth = scores.labels > 0.5
    predicted = scores.probabilities > scores.config.method.threshold
    report = diagnose.diagnose(truth, predicted, scores.class_names)
    labels, hard = annotations(scores.config.data, "test")
    if not np.array_equal(labels, truth):
        raise app.UsageError(f"{workdir}: the test annotations are not in evaluation order")
    digit_rates = rates(predicted, labels, hard)
    results = {
        "distance": report["distance"],
        "hallucinated": report["mean_hallucinated"],
        "missed": report["mean_missed"],
        "hard_recall": float(digit_rates["hard recall"]),
        "easy_recall": float(digit_rates["easy recall"]),
        "companion_false_positives": float(digit_rates["companion false positives"]),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return results


def level_structure(config) -> dict:
    """The label structure of a level's train split as built: `label_statistics` (printed
    as the builder's table) and `dependency_summary`."""
    labels, hard = annotations(config.data, "train")
    return {
        "builder_config": config.data.builder_config,
        "summary": scenes.dependency_summary(labels),
        "table": scenes.format_statistics(scenes.label_statistics(labels, hard)),
    }


def study_rows(config, seeds, root: str, tag: str) -> dict:
    """seed_table's rows of one (level, length), each run with its diagnostics, and the
    paired difference over every column."""
    rows = paired_seeds.loss_rows(config, config.method.classification_loss, seeds, root, tag, "")
    arms = [name for name in rows if "(paired)" not in name]
    for name in arms:
        rows[name] = [{**run, **run_diagnostics(run["workdir"])} for run in rows[name]]
    baseline, adversarial = arms[0], arms[-1]
    paired = next(name for name in rows if "(paired)" in name)
    rows[paired] = paired_seeds.paired_differences(
        rows[baseline], rows[adversarial], COLUMNS.values()
    )
    return rows


def gains(rows: dict) -> dict:
    """The paired gains of a table: per column, per seed and their mean and std."""
    paired = next(runs for name, runs in rows.items() if "(paired)" in name)
    out = {}
    for key in COLUMNS.values():
        values = [run[key] for run in paired]
        out[key] = {
            "per_seed": values,
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
        }
    return out


def format_gains(study: dict) -> str:
    """One row per (level, length): the level's P(companion | context) and the critic's
    paired gains, mean ± std over seeds, then per seed."""
    header = " | ".join(f"{name} gain" for name in GAINS)
    lines = [
        f"| level | supervised steps | P(comp. given ctx) | {header} "
        "| per seed (C-F1, val. thr.) |",
        "|---|---|---|" + "---|" * len(GAINS) + "---|",
    ]
    for entry in study["cells"]:
        cells = []
        for key in GAINS.values():
            gain = entry["gains"][key]
            cells.append(f"{100 * gain['mean']:+.2f} ± {100 * gain['std']:.2f}")
        per_seed = ", ".join(
            f"{100 * v:+.2f}" for v in entry["gains"]["CF1_val_threshold"]["per_seed"]
        )
        given = study["levels"][entry["level"]]["summary"]["p_comp_given_ctx"]
        lines.append(
            f"| {entry['level']} | {entry['supervised_steps']} | {given:.3f} | "
            + " | ".join(cells)
            + f" | {per_seed} |"
        )
    return "\n".join(lines)


def plot(study: dict, path: str) -> str:
    """The critic's paired gain against P(companion | context), one line per length of the
    supervised phase: mean ± std over seeds, and each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GAINS), figsize=(4.2 * len(GAINS), 3.6), squeeze=False)
    lengths = sorted({entry["supervised_steps"] for entry in study["cells"]})
    for ax, (name, key) in zip(axes[0], GAINS.items(), strict=True):
        for k, length in enumerate(lengths):
            cells = [e for e in study["cells"] if e["supervised_steps"] == length]
            x = np.array(
                [study["levels"][e["level"]]["summary"]["p_comp_given_ctx"] for e in cells]
            )
            order = np.argsort(x)
            mean = np.array([100 * e["gains"][key]["mean"] for e in cells])[order]
            std = np.array([100 * e["gains"][key]["std"] for e in cells])[order]
            line = ax.errorbar(
                x[order], mean, yerr=std, marker="o", capsize=3,
                label=f"{length} supervised steps",
            )  # fmt: skip
            for xi, e in zip(x, cells, strict=True):
                seeds = 100 * np.array(e["gains"][key]["per_seed"])
                offset = (k - (len(lengths) - 1) / 2) * 0.01
                ax.scatter(np.full(len(seeds), xi + offset), seeds, s=10, alpha=0.5,
                           color=line[0].get_color())  # fmt: skip
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("P(companion | both context digits), train split")
        ax.set_ylabel(f"{name} gain (points)")
        ax.set_title(f"{name}: + WGAN-gp minus BCE only, by seed", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config, root, out = FLAGS.config, FLAGS.workdir, FLAGS.out
    if config.data.name != "digit_scenes":
        raise app.UsageError("the study rewires the digit scenes: pass configs/digit_scenes.py")
    if config.schedule.adversarial_steps == 0:
        raise app.UsageError("the config has no adversarial phase; pass the + WGAN-gp config")
    unknown = sorted(set(_LEVELS.value) - set(scenes.DEPENDENCIES))
    if unknown:
        raise app.UsageError(f"unknown --levels {unknown}; choose from {scenes.DEPENDENCIES}")
    os.makedirs(root, exist_ok=True)
    seeds = [int(seed) for seed in FLAGS.seeds]
    study = {"config": paired_seeds.recorded(config), "levels": {}, "tables": {}, "cells": []}
    sections = []
    for level in _LEVELS.value:
        level_config = copy.deepcopy(config)
        level_config.data.builder_config = scenes.builder_config_name(level, _SMALL.value)
        structure = level_structure(level_config)
        study["levels"][level] = structure
        summary = ", ".join(f"{k} {v:.3f}" for k, v in structure["summary"].items())
        sections.append(
            f"### Level {level} (builder config {structure['builder_config']})\n\n"
            f"Train split: {summary}.\n\n```\n{structure['table']}\n```"
        )
        print(sections[-1], flush=True)
    for length in [int(steps) for steps in _SUPERVISED.value]:
        for level in _LEVELS.value:
            cell_config = copy.deepcopy(config)
            cell_config.data.builder_config = study["levels"][level]["builder_config"]
            cell_config.schedule.supervised_steps = length
            rows = study_rows(cell_config, seeds, root, FLAGS.tag)
            name = f"{level}, {length} supervised steps"
            study["tables"][name] = rows
            study["cells"].append(
                {"level": level, "supervised_steps": length, "gains": gains(rows)}
            )
            table = tables.format_table(rows, COLUMNS)
            sections.append(f"### {name}\n\n{table}")
            print(sections[-1], flush=True)
            write(study, sections, out)  # each table as it lands
    print(format_gains(study))


def write(study: dict, sections: list[str], out: str) -> None:
    """PREFIX.md, PREFIX.json and PREFIX.png of the study so far."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    plot_path = plot(study, out + ".png")
    markdown = "\n\n".join(
        [
            "## The critic's paired gain (+ WGAN-gp minus BCE only, test split, points)",
            format_gains(study),
            f"![paired gain against dependency]({os.path.basename(plot_path)})",
            "## Each level's label structure, and each table",
            *sections,
        ]
    )
    with open(out + ".json", "w") as f:
        json.dump(study, f, indent=1, default=float)
    with open(out + ".md", "w") as f:
        f.write(markdown + "\n")


if __name__ == "__main__":
    app.run(main)
