"""BCE only vs + WGAN-gp on the embedded dataset over several seeds: the README's table.

    python experiments/embedded_table.py --seeds=0,1,2 --workdir=runs/embedded_table \
        [--config=configs/digit_scenes.py] [--config.method.alpha=5 ...]

Each seed trains the config as given (BCE phase, then the adversarial phase) and its BCE-only
baseline with the same number of generator updates; the table also shows the + WGAN-gp run's
own model at the end of its BCE phase (fewer updates than either). Reported on the test
split: C-F1 and O-F1 at threshold 0.5 and at the threshold chosen on the validation split,
mAP, labels per image, and validation C-F1 (the only number used to choose settings). Runs
resume from their workdirs, so an interrupted table continues where it stopped.
"""

import copy
import json
import os

from absl import app, flags, logging
from ml_collections import config_flags
from tables import format_table  # experiments/tables.py

from jaxgan import train
from jaxgan.base_config import bce_only

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/embedded_table", "Runs go under here.")
_OUT = flags.DEFINE_string("out", "experiments/results/embedded_table", "Results path prefix.")
_TAG = flags.DEFINE_string(
    "tag",
    "wgan",
    "Names the adversarial runs' workdirs; the BCE baseline's are shared, so "
    "ablations (e.g. --tag=no_negatives --config.method.negative_sampling=false) reuse it.",
)

COLUMNS = {
    "C-F1": "CF1",
    "C-F1 (val. thr.)": "CF1_val_threshold",
    "O-F1": "OF1",
    "O-F1 (val. thr.)": "OF1_val_threshold",
    "mAP": "mAP",
    "C-P": "CP",
    "C-R": "CR",
    "labels/image": "labels_per_image",
    "val. C-F1": "validation_CF1",
}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    base, tag = _CONFIG.value, _TAG.value
    adversarial = "+ WGAN-gp" if tag == "wgan" else f"+ WGAN-gp, {tag}"
    methods = {"BCE only": ("bce", bce_only(copy.deepcopy(base))), adversarial: (tag, base)}
    phase_one = f"{adversarial} run, end of its BCE phase ({base.schedule.bce_steps} steps)"
    results = {"BCE only": [], phase_one: [], adversarial: []}
    for seed in map(int, _SEEDS.value):
        for name, (run_tag, config) in methods.items():
            config = copy.deepcopy(config)
            config.seed = seed
            workdir = os.path.join(_WORKDIR.value, f"{run_tag}_seed{seed}")
            print(f"== {name}, seed {seed}", flush=True)
            by_phase = train.train_and_evaluate(config, workdir)
            final = by_phase["adversarial" if config.schedule.adversarial_steps else "bce"]
            results[name].append({"seed": seed, **final})
            if run_tag == tag:
                results[phase_one].append({"seed": seed, **by_phase["bce"]})
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value + ".json", "w") as f:
        json.dump({"config": base.to_dict(), "results": results}, f, indent=1)
    table = format_table(results, COLUMNS)
    with open(_OUT.value + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
