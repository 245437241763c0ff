"""Command line: python -m jaxgan.main --workdir=DIR [--config=configs/FILE.py[:variant]]
[--mode=train|eval|predict] [--config.FIELD=VALUE ...].

train (the default) needs --config; eval and predict use the config the checkpoint recorded
unless --config is given. eval: --checkpoint_step=N|best|latest. predict: --images=PATH
(repeatable; files, folders, globs), --threshold=configured|global|per_class|NUMBER,
--output=PREFIX (default DIR/predictions).
"""

import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/coco.py.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and metrics go here.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "predict"], "Train (resumes), evaluate or predict."
)
_STEP = flags.DEFINE_string(
    "checkpoint_step", None, "eval/predict: this step, 'best' (validation C-F1) or 'latest'."
)
_IMAGES = flags.DEFINE_multi_string("images", [], "predict: image files, folders or globs.")
_THRESHOLD = flags.DEFINE_string(
    "threshold",
    "configured",
    "predict: 'configured' (method.threshold), 'global' or 'per_class' (chosen on the "
    "validation split), or a number in (0, 1).",
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "predict: write PREFIX.csv and PREFIX.jsonl (default WORKDIR/predictions)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "--distributed: HOST:PORT of process 0 (not needed on TPU pods, SLURM or Open MPI, where "
    "JAX finds it).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "--distributed: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "--distributed: this process, 0-based.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    extra = argv[1:]
    if extra and _MODE.value != "predict":
        raise app.UsageError(f"unexpected arguments: {extra}")
    # Our progress lines are the output; libraries' INFO chatter (Orbax, TF) is not.
    logging.set_verbosity(logging.WARNING)
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from jaxgan import evaluate, train

    try:
        if _MODE.value == "train":
            if _CONFIG.value is None:
                raise ValueError("--mode=train needs --config=configs/FILE.py")
            train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        elif _MODE.value == "eval":
            evaluate.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _STEP.value)
        else:
            from jaxgan import predict

            if jax.process_count() > 1:
                raise ValueError("--mode=predict runs on one host; drop --distributed")
            predict.run_predict(
                _WORKDIR.value,
                [*_IMAGES.value, *extra],  # `--images dir/*.png` leaves the shell's expansion
                _THRESHOLD.value,
                _OUTPUT.value,
                _STEP.value,
                _CONFIG.value,
            )
    except ValueError as error:  # bad input the user can act on: one line, no traceback
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:  # the loop has saved a checkpoint and said so
        sys.exit(130)


def _flag_values(argv, name):
    prefix = f"--{name}="
    return [arg[len(prefix) :] for arg in argv if arg.startswith(prefix)]


def _override_paths(argv):
    for arg in argv:
        if arg.startswith("--config.") and "=" in arg:
            yield arg[len("--config.") : arg.index("=")], arg


def check_command_line(argv) -> None:
    """Catches the two mistakes that the flag library reports unreadably: a config file that
    does not exist, and an override of a field the config does not have."""
    for spec in _flag_values(argv, "config"):
        path, _, variant = spec.partition(":")
        if not os.path.isfile(path):
            sys.exit(f"error: config file {path!r} not found; pass e.g. --config=configs/coco.py")
        try:
            config = runpy.run_path(path)["get_config"](*([variant] if variant else []))
        except ValueError as error:  # e.g. an unknown variant
            sys.exit(f"error: {error}")
        for field, arg in _override_paths(argv):
            node = config
            for part in field.split("."):
                if not hasattr(node, "keys") or part not in node:
                    sys.exit(
                        f"error: unknown config field {field!r} (from {arg}); "
                        f"the fields are those of {path} (see jaxgan/base_config.py)"
                    )
                node = node[part]


def run():
    check_command_line(sys.argv[1:])
    app.run(main)


if __name__ == "__main__":
    run()
