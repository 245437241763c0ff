"""The phase switch without a jolt: several ways into the adversarial phase, each continued
from the same supervised phase per seed, against the no-critic arm.

    python experiments/phase_switch.py --variants=paper,scaled,alpha1,reset --seeds=0,1,2 \\
        --workdir=runs/phase_switch --out=experiments/results/phase_switch_embedded \\
        --config.schedule.adversarial_steps=200

The variants (`VARIANTS`, each a few config fields over the config's own): the paper's
−E D + α·L_cls at the config's α ("paper"), the same objective divided by α ("scaled"),
α = 1 ("alpha1"), and the paper's loss with G's Adam state started afresh at the switch
("reset"). Per seed the supervised phase is trained once (`seed_table.py`, whose flags these
are: --config, --seeds, --workdir, --out, --config.FIELD=VALUE) and every variant's adversarial
arm continues from it, as does the no-critic arm. Reported: the validation C-F1 and mAP (the
numbers that choose), the test metrics, each arm's paired difference from the no-critic arm,
and G's training loss on its batch at the last progress line of the supervised phase and the
first of the adversarial phase (how hard the switch jolts G). Writes PREFIX.md and PREFIX.json.
"""

import copy
import json
import os

import numpy as np
import paired_seeds  # experiments/paired_seeds.py
import seed_table  # noqa: F401  experiments/seed_table.py: its flags are this script's too
import tables  # experiments/tables.py
from absl import app, flags, logging

# Variant -> the config fields it sets. "paper" and "reset" keep the config's α.
VARIANTS = {
    "paper": {"method.generator_loss": "paper"},
    "scaled": {"method.generator_loss": "scaled"},
    "alpha1": {"method.generator_loss": "paper", "method.alpha": 1.0},
    "reset": {"method.generator_loss": "paper", "optim.reset_generator_moments": True},
}
_VARIANTS = flags.DEFINE_list(
    "variants", list(VARIANTS), f"Ways into the adversarial phase: {list(VARIANTS)}"
)
FLAGS = flags.FLAGS
COLUMNS = {
    "val. C-F1": "validation_CF1",
    "val. mAP": "validation_mAP",
    "C-F1": "CF1",
    "C-F1 (val. thr.)": "CF1_val_threshold",
    "mAP": "mAP",
    "labels/image": "labels_per_image",
}


def with_fields(config, fields: dict):
    config = copy.deepcopy(config)
    for dotted, value in fields.items():
        section, name = dotted.split(".")
        config[section][name] = value
    return config


def switch_losses(workdir: str, supervised_steps: int) -> dict:
    """G's classification loss on its training batch at the last progress line at or before
    the phase switch and at the first one after it (metrics.jsonl)."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    progress = [r for r in records if "phase" in r and "eval" not in r and "step" in r]
    before = [r for r in progress if r["step"] <= supervised_steps]
    after = [r for r in progress if r["step"] > supervised_steps]
    loss = next((k for k in ("bce", "asl") if progress and k in progress[0]), "bce")
    return {
        "train_loss_before_switch": before[-1][loss] if before else float("nan"),
        "train_loss_after_switch": after[0][loss] if after else float("nan"),
    }


def format_switch(rows: dict) -> str:
    lines = [
        "| arm | train loss, last supervised log | train loss, first adversarial log |",
        "|---|---|---|",
    ]
    for name, runs in rows.items():
        if "(paired)" in name or "train_loss_after_switch" not in runs[0]:
            continue
        cells = [
            np.mean([r[k] for r in runs])
            for k in ("train_loss_before_switch", "train_loss_after_switch")
        ]
        lines.append(f"| {name} | {cells[0]:.2f} | {cells[1]:.2f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config, root, out = FLAGS.config, FLAGS.workdir, FLAGS.out
    if config.schedule.adversarial_steps == 0:
        raise app.UsageError("the config has no adversarial phase; pass the + WGAN-gp config")
    unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"unknown --variants {unknown}; choose from {list(VARIANTS)}")
    os.makedirs(root, exist_ok=True)
    seeds = [int(seed) for seed in FLAGS.seeds]
    loss = config.method.classification_loss
    supervised = config.schedule.supervised_steps
    rows, baseline = {}, None
    for k, variant in enumerate(_VARIANTS.value):
        variant_config = with_fields(config, VARIANTS[variant])
        only = "" if k == 0 else "adversarial"
        tag = "wgan" if variant == "paper" else variant  # seed_table's own arm is the paper's
        part = paired_seeds.loss_rows(variant_config, loss, seeds, root, tag, only)
        names = [name for name in part if "(paired)" not in name]
        if k == 0:
            baseline = names[0]
            for name in names[:-1]:  # the no-critic arm and the shared supervised phase
                rows[name] = part[name]
        arm = f"+ WGAN-gp, {variant}"
        rows[arm] = [
            {**run, **switch_losses(run["workdir"], supervised)} for run in part[names[-1]]
        ]
        rows[f"{arm} minus no critic (paired)"] = paired_seeds.paired_differences(
            rows[baseline], rows[arm], COLUMNS.values()
        )
    rows[baseline] = [
        {**run, **switch_losses(run["workdir"], supervised)} for run in rows[baseline]
    ]
    table = tables.format_table(rows, COLUMNS)
    markdown = f"{table}\n\nG's classification loss on its training batch around the switch "
    markdown += f"(mean over seeds):\n\n{format_switch(rows)}\n"
    settings = {variant: VARIANTS[variant] for variant in _VARIANTS.value}
    record = {"config": paired_seeds.recorded(config), "variants": settings, "results": rows}
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(record, f, indent=1, default=float)
    with open(out + ".md", "w") as f:
        f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    app.run(main)
