"""BCE only vs + WGAN-gp over paired seeds, for any config: the real-photo table of the README.

    python experiments/paired_table.py --config=configs/custom.py:cpu --seeds=0,1,2 \
        --workdir=runs/paired --out=experiments/results/photos_table \
        --config.data.image_dir=photos --config.data.labels_file=photos/labels.csv \
        [--tag=alpha1 --config.method.alpha=1 ...]

Paired seeds: for each seed the supervised phase (`schedule.supervised_steps`) is trained once;
both arms start from that checkpoint, so they share the same initial model and the same data
order up to there, and differ only in what follows — the BCE arm takes
`schedule.adversarial_steps` more BCE updates (the same number of generator updates as the
adversarial arm), the + WGAN-gp arm the adversarial phase. BCE-only runs of any length are one
chain per (seed, phase-one settings): a longer one continues from the longest finished shorter
one (the data order and the state are functions of the seed and the step), so a BCE arm of B + A
steps also serves as the supervised phase of a later setting with B + A BCE steps. Every run is
keyed by a hash of the settings it depends on, so a changed setting never reuses a run made
without it.

Reported on the test split, as in the embedded table: C-F1 and O-F1 at threshold 0.5 and at
the threshold chosen on the validation split, mAP, C-P, C-R, labels per image; plus the
validation numbers, the only ones used to choose settings (C-F1 at 0.5 and mAP), and the
paired difference (+ WGAN-gp minus BCE only, per seed). Written as markdown (`--out`.md) and
JSON (`--out`.json, with every run's numbers and config); runs resume and finished ones are
read back, so an interrupted table continues where it stopped.
"""

import contextlib
import copy
import hashlib
import json
import os
import shutil

import numpy as np
import tables  # experiments/tables.py
from absl import app, flags, logging
from ml_collections import config_flags

from jaxgan import evaluate, train
from jaxgan import metrics as metrics_lib
from jaxgan.base_config import no_critic

_CONFIG = config_flags.DEFINE_config_file("config", "configs/custom.py:cpu", "Config file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/paired", "Runs go under here.")
_OUT = flags.DEFINE_string("out", "experiments/results/paired_table", "Results path prefix.")
_TAG = flags.DEFINE_string("tag", "wgan", "Names the adversarial arm (e.g. alpha1).")
_ONLY = flags.DEFINE_enum(
    "only",
    "",
    ["", "bce", "phase_one", "adversarial"],
    "Run one part: the supervised phase and BCE arm, the supervised phase alone, or the "
    "supervised phase and the adversarial arm (screening several settings from one supervised "
    "phase in parallel processes).",
)

COLUMNS = {**tables.COLUMNS, "val. mAP": "validation_mAP"}
RESULT_FILE = "paired_result.json"  # written into each run's workdir when it has finished
# Fields that do not change what a run computes (only how often it reports or saves).
_REPORTING = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints")


def settings_key(config, phase_one: bool) -> str:
    """A short hash of the settings a run depends on. The supervised phase does not depend on the
    adversarial phase's settings (method, critic, its learning rate, its length), nor does a
    BCE chain's key depend on its length (the length is in the workdir's name)."""
    settings = config.to_dict()
    settings.pop("seed")
    for name in _REPORTING:
        settings["schedule"].pop(name)
    if phase_one:
        for section in ("method", "critic"):
            settings.pop(section)
        settings["optim"].pop("critic_learning_rate")
        settings["schedule"].pop("supervised_steps")
        settings["schedule"].pop("adversarial_steps")
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def final_metrics(config, workdir: str) -> dict:
    """Trains the run to its end (resuming) and returns its last phase's test metrics."""
    by_phase = train.train_and_evaluate(config, workdir)
    return by_phase["adversarial" if config.schedule.adversarial_steps else "supervised"]


def finished_results(config, workdir: str, train_metrics: dict | None = None) -> dict:
    """The run's test metrics plus its validation numbers, cached in `workdir`."""
    path = os.path.join(workdir, RESULT_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if train_metrics is None:
        train_metrics = evaluate.evaluate_checkpoint(config, workdir)["metrics"]
    run = train.Run(config, workdir)
    run.restore()
    scores, labels = run.predict("validation")
    run.checkpointer.close()
    validation = metrics_lib.compute_metrics(scores, labels, config.method.threshold)
    np.savez(
        os.path.join(workdir, "validation_scores.npz"),
        scores=scores,
        labels=labels,
        class_names=np.array(run.source.class_names),
    )
    results = {
        **{k: float(v) for k, v in train_metrics.items() if np.isscalar(v)},
        "validation_mAP": validation["mAP"],
        "validation_labels_per_image": validation["labels_per_image"],
        "validation_OF1": validation["OF1"],
        "step": int(run.state.step),
    }
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return results


@contextlib.contextmanager
def _exclusive(workdir: str):
    """Refuses to train a run that another process is training (two writers would corrupt
    its checkpoints); a lock left by a killed process names itself in the message."""
    os.makedirs(workdir, exist_ok=True)
    lock = os.path.join(workdir, "paired_table.lock")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise app.UsageError(
            f"{workdir} is being trained by another process (delete {lock} if none is)"
        ) from None
    try:
        yield
    finally:
        os.remove(lock)


def _copy_run(source: str, target: str) -> None:
    """`target` starts where the finished run in `source` ended (its checkpoints and log)."""
    shutil.copytree(
        source, target + ".partial", ignore=shutil.ignore_patterns(RESULT_FILE, "*.npz", "*.lock")
    )
    os.rename(target + ".partial", target)


def bce_run(config, seed: int, steps: int, root: str) -> tuple[str, dict]:
    """A finished BCE-only run of `steps` steps (its workdir and results), continued from the
    longest finished shorter run of the same chain when there is one."""
    key = settings_key(config, phase_one=True)
    prefix = f"bce_{key}_seed{seed}_"
    workdir = os.path.join(root, f"{prefix}{steps}")
    run_config = copy.deepcopy(config)
    run_config.seed = seed
    run_config.schedule.supervised_steps = steps
    run_config.schedule.adversarial_steps = 0
    if not os.path.exists(os.path.join(workdir, RESULT_FILE)):
        if not os.path.exists(workdir):
            shorter = [
                int(name[len(prefix) :])
                for name in os.listdir(root)
                if name.startswith(prefix)
                and name[len(prefix) :].isdigit()
                and int(name[len(prefix) :]) < steps
                and os.path.exists(os.path.join(root, name, RESULT_FILE))
            ]
            if shorter:
                _copy_run(os.path.join(root, f"{prefix}{max(shorter)}"), workdir)
        print(f"== BCE only, {steps} steps, seed {seed}: {workdir}", flush=True)
        with _exclusive(workdir):
            return workdir, finished_results(
                run_config, workdir, final_metrics(run_config, workdir)
            )
    return workdir, finished_results(run_config, workdir)


def adversarial_run(config, seed: int, phase_one: str, root: str, tag: str) -> dict:
    """The + WGAN-gp arm: the adversarial phase continued from the supervised phase's checkpoint."""
    workdir = os.path.join(root, f"{tag}_{settings_key(config, phase_one=False)}_seed{seed}")
    run_config = copy.deepcopy(config)
    run_config.seed = seed
    if not os.path.exists(os.path.join(workdir, RESULT_FILE)):
        if not os.path.exists(workdir):
            _copy_run(phase_one, workdir)
        print(f"== + WGAN-gp ({tag}), seed {seed}: {workdir}", flush=True)
        return finished_results(run_config, workdir, final_metrics(run_config, workdir))
    return finished_results(run_config, workdir)


def recorded(config) -> dict:
    """The config as results record it: local folders by their last component only."""
    settings = config.to_dict()
    for field in ("image_dir", "labels_file", "data_dir", "manual_dir"):
        if settings["data"].get(field):
            settings["data"][field] = os.path.basename(os.path.normpath(settings["data"][field]))
    return settings


def paired_differences(first: list[dict], second: list[dict]) -> list[dict]:
    """Per seed, `second` minus `first` for every column (labels/image as is)."""
    by_seed = {r["seed"]: r for r in first}
    return [
        {"seed": r["seed"], **{k: r[k] - by_seed[r["seed"]][k] for k in COLUMNS.values()}}
        for r in second
        if r["seed"] in by_seed
    ]


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config, tag, root = _CONFIG.value, _TAG.value, _WORKDIR.value
    os.makedirs(root, exist_ok=True)
    supervised_steps, adversarial_steps = (
        config.schedule.supervised_steps,
        config.schedule.adversarial_steps,
    )
    if adversarial_steps == 0:
        raise app.UsageError("the config has no adversarial phase; pass the + WGAN-gp config")
    adversarial = "+ WGAN-gp" if tag == "wgan" else f"+ WGAN-gp, {tag}"
    phase_one_row = f"end of the shared supervised phase ({supervised_steps} steps)"
    results = {f"BCE only ({supervised_steps + adversarial_steps} steps)": [], phase_one_row: []}
    bce_row = next(iter(results))
    results[adversarial] = []
    for seed in map(int, _SEEDS.value):
        phase_one, phase_one_results = bce_run(config, seed, supervised_steps, root)
        results[phase_one_row].append({"seed": seed, **phase_one_results})
        if _ONLY.value == "phase_one":
            continue
        if _ONLY.value != "adversarial":
            total = no_critic(copy.deepcopy(config)).schedule.supervised_steps
            _, bce_results = bce_run(config, seed, total, root)
            results[bce_row].append({"seed": seed, **bce_results})
        if _ONLY.value == "bce":
            continue
        results[adversarial].append(
            {"seed": seed, **adversarial_run(config, seed, phase_one, root, tag)}
        )
    results = {name: runs for name, runs in results.items() if runs}
    if results.get(adversarial) and results.get(bce_row):
        results[f"{adversarial} minus BCE only (paired)"] = paired_differences(
            results[bce_row], results[adversarial]
        )
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value + ".json", "w") as f:
        json.dump({"config": recorded(config), "results": results}, f, indent=1, default=str)
    table = tables.format_table(results, COLUMNS)
    with open(_OUT.value + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
