"""The paired-seed protocol of the results tables (`seed_table.py`) and the studies built on it.

For each seed the supervised phase is trained once; the no-critic arm and the + WGAN-gp arm
both continue from its checkpoint, so they share the initial model and the data order up to
there and differ only in what follows. Supervised-only runs of any length are one chain per
(seed, supervised settings): a longer one continues from the longest finished shorter one (the
data order and the state are functions of the seed and the step, so the result is the run
trained at once). Every run is keyed by a hash of the settings it depends on, so a changed
setting never reuses a run made without it; runs resume and finished ones are read back.
"""

import copy
import hashlib
import json
import os
import shutil

import tables  # experiments/tables.py

from jaxgan import evaluate, train
from jaxgan import metrics as metrics_lib

COLUMNS = {**tables.COLUMNS, "val. mAP": "validation_mAP"}
RESULT_FILE = "seed_table_result.json"  # written into each run's workdir when it has finished
# Fields that do not change what a run computes (only how often it reports or saves).
_REPORTING = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints")


def settings_key(config, supervised_only: bool) -> str:
    """A short hash of the settings a run depends on. A supervised run does not depend on the
    adversarial phase's settings (method, critic, its learning rate, the reset of G's moments,
    its length), nor does a
    supervised chain's key depend on its length (the length is in the workdir's name)."""
    settings = config.to_dict()
    settings.pop("seed")
    for name in _REPORTING:
        settings["schedule"].pop(name)
    if supervised_only:
        classification_loss = settings["method"]["classification_loss"]
        asl = settings["method"]["asl"]
        for section in ("method", "critic"):
            settings.pop(section)
        settings["method"] = {"classification_loss": classification_loss, "asl": asl}
        settings["optim"].pop("critic_learning_rate")
        settings["optim"].pop("reset_generator_moments")  # at the adversarial phase's start
        settings["schedule"].pop("supervised_steps")
        settings["schedule"].pop("adversarial_steps")
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def finished_results(config, workdir: str, extends_supervised_phase: bool = False) -> dict:
    """Trains the run in `workdir` to its end (resuming) and returns its test metrics and its
    validation numbers, cached in `workdir` once finished."""
    path = os.path.join(workdir, RESULT_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    train.train_and_evaluate(config, workdir, extends_supervised_phase=extends_supervised_phase)
    with open(os.path.join(workdir, "eval.json")) as f:
        test = json.load(f)
    validation = evaluate.scores(workdir, "validation")
    on_validation = metrics_lib.compute_metrics(
        validation.probabilities, validation.labels, config.method.threshold
    )
    results = {
        **{k: float(v) for k, v in test["metrics"].items()},
        "validation_mAP": on_validation["mAP"],
        "validation_labels_per_image": on_validation["labels_per_image"],
        "validation_OF1": on_validation["OF1"],
        "step": test["step"],
        "workdir": workdir,
    }
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return results


def _copy_run(source: str, target: str) -> None:
    """`target` starts where the finished run in `source` ended (its checkpoints and log)."""
    ignored = shutil.ignore_patterns(RESULT_FILE, "*.lock", "diagnostics")
    # A copy cut short (a full disk, a kill) is started again rather than blocking every rerun.
    shutil.rmtree(target + ".partial", ignore_errors=True)
    shutil.copytree(source, target + ".partial", ignore=ignored)
    os.rename(target + ".partial", target)


def supervised_run(config, seed: int, steps: int, root: str) -> dict:
    """A finished supervised-only run of `steps` steps, continued from the longest finished
    shorter run of the same chain when there is one."""
    prefix = f"supervised_{settings_key(config, supervised_only=True)}_seed{seed}_"
    workdir = os.path.join(root, f"{prefix}{steps}")
    run_config = copy.deepcopy(config)
    run_config.seed = seed
    run_config.schedule.supervised_steps = steps
    run_config.schedule.adversarial_steps = 0
    # A phase-end decay of G's learning rate makes a shorter run's end differ from the same
    # steps inside a longer run, so such a chain is trained from the start.
    if not os.path.exists(workdir) and config.optim.generator_decay_steps == 0:
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
    print(f"== supervised only, {steps} steps, seed {seed}: {workdir}", flush=True)
    return finished_results(run_config, workdir, extends_supervised_phase=True)


def adversarial_run(config, seed: int, supervised_phase: str, root: str, tag: str) -> dict:
    """The + WGAN-gp arm: the adversarial phase continued from the supervised phase's run."""
    key = settings_key(config, supervised_only=False)
    workdir = os.path.join(root, f"{tag}_{key}_seed{seed}")
    run_config = copy.deepcopy(config)
    run_config.seed = seed
    if not os.path.exists(workdir):
        # The same settings, finished under another tag (another script's name for them).
        same = sorted(
            name
            for name in os.listdir(root)
            if name.endswith(f"_{key}_seed{seed}")
            and os.path.exists(os.path.join(root, name, RESULT_FILE))
        )
        if same:
            workdir = os.path.join(root, same[0])
        else:
            _copy_run(supervised_phase, workdir)
    print(f"== + WGAN-gp ({tag}), seed {seed}: {workdir}", flush=True)
    return finished_results(run_config, workdir)


def recorded(config) -> dict:
    """The config as results record it: local folders by their last component only."""
    settings = config.to_dict()
    for field in ("image_dir", "labels_file", "data_dir", "manual_dir"):
        if settings["data"].get(field):
            settings["data"][field] = os.path.basename(os.path.normpath(settings["data"][field]))
    return settings


def paired_differences(first: list[dict], second: list[dict], keys=None) -> list[dict]:
    """Per seed, `second` minus `first` for every column (or result key of `keys`;
    labels/image as is)."""
    by_seed = {r["seed"]: r for r in first}
    keys = COLUMNS.values() if keys is None else keys
    return [
        {"seed": r["seed"], **{k: r[k] - by_seed[r["seed"]][k] for k in keys}}
        for r in second
        if r["seed"] in by_seed
    ]


def loss_rows(config, loss: str, seeds, root: str, tag: str, only: str) -> dict:
    """The rows of one classification loss: row name -> [per-seed results]."""
    config = copy.deepcopy(config)
    config.method.classification_loss = loss
    schedule = config.schedule
    supervised, total = schedule.supervised_steps, schedule.supervised_steps
    total += schedule.adversarial_steps
    name = loss.upper()
    baseline = f"{name} only ({total} steps)"
    shared = f"{name}: end of the shared supervised phase ({supervised} steps)"
    adversarial = f"{name} + WGAN-gp" + ("" if tag == "wgan" else f", {tag}")
    rows = {baseline: [], shared: [], adversarial: []}
    for seed in seeds:
        phase = supervised_run(config, seed, supervised, root)
        rows[shared].append({"seed": seed, **phase})
        if only in ("", "no_critic"):
            rows[baseline].append({"seed": seed, **supervised_run(config, seed, total, root)})
        if only in ("", "adversarial"):
            result = adversarial_run(config, seed, phase["workdir"], root, tag)
            rows[adversarial].append({"seed": seed, **result})
    rows = {row: runs for row, runs in rows.items() if runs}
    if rows.get(baseline) and rows.get(adversarial):
        rows[f"{adversarial} minus {name} only (paired)"] = paired_differences(
            rows[baseline], rows[adversarial]
        )
    return rows
