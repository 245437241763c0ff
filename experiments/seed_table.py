"""A config with and without the critic over paired seeds, for any config: the results tables.

    python experiments/seed_table.py --config=configs/custom.py:cpu --seeds=0,1,2 \
        --workdir=runs/photos_ucm --out=experiments/results/photos_table_ucmerced \
        [--losses=bce,asl] [--tag=alpha1 --config.method.alpha=1 ...]

Paired seeds: for each seed (and classification loss) the supervised phase
(`schedule.supervised_steps`) is trained once, and both arms start from its checkpoint, so they
share the same initial model and data order up to there and differ only in what follows. The
no-critic arm takes `schedule.adversarial_steps` more supervised updates (as many generator
updates as the adversarial arm), the + WGAN-gp arm the adversarial phase. Supervised-only runs
of any length are one chain per (seed, supervised settings): a longer one continues from the
longest finished shorter one (the data order and the state are functions of the seed and the
step, so the result is the run trained at once), and a no-critic arm of S + A steps also serves
as the supervised phase of a later setting with S + A supervised steps. Every run is keyed by a
hash of the settings it depends on, so a changed setting never reuses a run made without it,
and a finished adversarial run is reused whatever `--tag` (or `phase_switch.py` variant) named it.

Reported on the test split: C-F1 and O-F1 at the configured threshold and at the threshold
chosen on the validation split, mAP, C-P, C-R, labels per image; the validation C-F1 and mAP
(the only numbers used to choose settings); and the paired difference (+ WGAN-gp minus no
critic, per seed). Written as markdown (`--out`.md) and JSON (`--out`.json: every run's numbers,
workdir and the config). Runs resume and finished ones are read back, so an interrupted table
continues where it stopped.
"""

import os

import paired_seeds  # experiments/paired_seeds.py
import tables  # experiments/tables.py
from absl import app, flags, logging
from ml_collections import config_flags

from jaxgan.losses import CLASSIFICATION_LOSSES

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digit_scenes.py", "Config file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_LOSSES = flags.DEFINE_list(
    "losses", [], f"Classification losses to run both arms with (default: the config's): "
    f"{list(CLASSIFICATION_LOSSES)}",
)  # fmt: skip
_WORKDIR = flags.DEFINE_string("workdir", "runs/seed_table", "Runs go under here.")
_OUT = flags.DEFINE_string("out", "experiments/results/seed_table", "Results path prefix.")
_TAG = flags.DEFINE_string("tag", "wgan", "Names the adversarial arm (e.g. alpha1).")
_ONLY = flags.DEFINE_enum(
    "only",
    "",
    ["", "no_critic", "supervised_phase", "adversarial"],
    "Run one part: the supervised phase and the no-critic arm, the supervised phase alone, or "
    "the supervised phase and the adversarial arm (e.g. to screen several adversarial settings "
    "from one supervised phase in parallel processes).",
)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config, root = _CONFIG.value, _WORKDIR.value
    if config.schedule.adversarial_steps == 0:
        raise app.UsageError("the config has no adversarial phase; pass the + WGAN-gp config")
    losses = _LOSSES.value or [config.method.classification_loss]
    unknown = sorted(set(losses) - set(CLASSIFICATION_LOSSES))
    if unknown:
        raise app.UsageError(f"unknown --losses {unknown}; choose from {CLASSIFICATION_LOSSES}")
    os.makedirs(root, exist_ok=True)
    seeds = [int(seed) for seed in _SEEDS.value]
    results = {}
    for loss in losses:
        results.update(paired_seeds.loss_rows(config, loss, seeds, root, _TAG.value, _ONLY.value))
    table = tables.format_table(results, paired_seeds.COLUMNS)
    tables.write_results(
        _OUT.value, {"config": paired_seeds.recorded(config), "results": results}, table
    )
    print(table)


if __name__ == "__main__":
    app.run(main)
