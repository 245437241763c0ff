"""Supervised only vs + WGAN-gp on the embedded dataset over several seeds: the README's table.

    python experiments/embedded_table.py --seeds=0,1,2 --losses=bce,asl \
        --workdir=runs/embedded_table [--config=configs/digit_scenes.py] \
        [--config.method.alpha=5 ...]

For each seed and each classification loss (`method.classification_loss`: bce, asl) it trains
the config as given (the supervised phase, then the adversarial phase) and its supervised-only
baseline with the same number of generator updates; the table also shows the adversarial run's
own model at the end of its supervised phase (fewer updates than either). Reported on the test
split: C-F1 and O-F1 at threshold 0.5 and at the threshold chosen on the validation split,
mAP, C-P, C-R, labels per image, and validation C-F1 (the only number used to choose
settings). Runs resume from their workdirs, so an interrupted table continues where it stopped.
"""

import copy
import json
import os

from absl import app, flags, logging
from ml_collections import config_flags
from tables import COLUMNS, format_table  # experiments/tables.py

from jaxgan import train
from jaxgan.base_config import no_critic
from jaxgan.losses import CLASSIFICATION_LOSSES

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_LOSSES = flags.DEFINE_list(
    "losses", ["bce"], f"Classification losses to run both arms with: {list(CLASSIFICATION_LOSSES)}"
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/embedded_table", "Runs go under here.")
_OUT = flags.DEFINE_string("out", "experiments/results/embedded_table", "Results path prefix.")
_TAG = flags.DEFINE_string(
    "tag",
    "wgan",
    "Names the adversarial runs' workdirs; the supervised baselines' are shared, so "
    "ablations (e.g. --tag=no_negatives --config.method.negative_sampling=false) reuse them.",
)


def arms(base, loss: str, tag: str) -> dict:
    """Row name -> (workdir name, config) of the supervised-only and the adversarial arm."""
    config = copy.deepcopy(base)
    config.method.classification_loss = loss
    name = loss.upper()
    adversarial = f"{name} + WGAN-gp" if tag == "wgan" else f"{name} + WGAN-gp, {tag}"
    # BCE keeps the workdir names of the tables recorded before ASL existed.
    prefix = "" if loss == "bce" else f"{loss}_"
    return {
        f"{name} only": (loss, no_critic(copy.deepcopy(config))),
        adversarial: (f"{prefix}{tag}", config),
    }


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    base, tag = _CONFIG.value, _TAG.value
    unknown = sorted(set(_LOSSES.value) - set(CLASSIFICATION_LOSSES))
    if unknown:
        raise app.UsageError(f"unknown --losses {unknown}; choose from {CLASSIFICATION_LOSSES}")
    results = {}
    for seed in map(int, _SEEDS.value):
        for loss in _LOSSES.value:
            for name, (run_tag, config) in arms(base, loss, tag).items():
                config = copy.deepcopy(config)
                config.seed = seed
                workdir = os.path.join(_WORKDIR.value, f"{run_tag}_seed{seed}")
                print(f"== {name}, seed {seed}", flush=True)
                by_phase = train.train_and_evaluate(config, workdir)
                if config.schedule.adversarial_steps:
                    steps = config.schedule.supervised_steps
                    phase_one = f"{name} run, end of its supervised phase ({steps} steps)"
                    results.setdefault(phase_one, []).append(
                        {"seed": seed, **by_phase["supervised"]}
                    )
                last_phase = "adversarial" if config.schedule.adversarial_steps else "supervised"
                final = by_phase[last_phase]
                results.setdefault(name, []).append({"seed": seed, **final})
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value + ".json", "w") as f:
        json.dump({"config": base.to_dict(), "results": results}, f, indent=1)
    table = format_table(results, COLUMNS)
    with open(_OUT.value + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
