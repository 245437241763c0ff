"""Command line: python -m jaxgan.main --workdir=DIR [--config=configs/FILE.py[:variant]]
[--mode=train|eval|predict] [--config.FIELD=VALUE ...].

train (the default) needs --config; eval and predict use the config the checkpoint recorded
unless --config is given. eval: --checkpoint_step=N|best|latest. predict: --images=PATH
(repeatable; files, folders, globs), --threshold=configured|global|per_class|NUMBER,
--output=PREFIX (default DIR/predictions). --distributed [--coordinator_address=HOST:PORT
--num_processes=N --process_id=I] [--distributed_timeout=SECONDS]: a multi-process run.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # where preparing a dataset imports TensorFlow

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxgan import command_line  # noqa: E402

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
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout",
    60,
    "--distributed: seconds to wait for every process to join before giving up.",
)
flags.mark_flags_as_required(["workdir"])  # command_line says so in one line first


VALUE_FLAGS = (
    "config",
    "workdir",
    "mode",
    "checkpoint_step",
    "images",
    "threshold",
    "output",
    "coordinator_address",
    "num_processes",
    "process_id",
    "distributed_timeout",
)


def main(argv):
    extra = argv[1:]
    if extra and _MODE.value != "predict":
        command_line.fail(f"unexpected arguments {extra}; only --mode=predict takes image paths")
    # Our progress lines are the output; libraries' INFO chatter (Orbax, TF) is not.
    logging.set_verbosity(logging.WARNING)
    import jax

    if _DISTRIBUTED.value:
        from jaxgan import multihost

        try:
            multihost.initialize(
                _COORDINATOR.value,
                _NUM_PROCESSES.value,
                _PROCESS_ID.value,
                _DISTRIBUTED_TIMEOUT.value,
            )
        except ValueError as error:
            sys.exit(f"error: {error}")
    from jaxgan import runtime

    runtime.configure_cpu()  # before anything runs on JAX
    from jaxgan.config_check import ConfigError

    try:  # each mode checks its config first, before any data, model or file
        from jaxgan import train

        if _MODE.value == "train":
            train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        elif _MODE.value == "eval":
            _evaluate(_CONFIG.value, _WORKDIR.value, _STEP.value)
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
    except ConfigError as error:  # a config the run cannot use: a usage error
        command_line.fail(str(error))
    except ImportError as error:  # a missing package: one line naming it and the fix
        sys.exit(f"error: {error}")
    except ValueError as error:  # bad input the user can act on: one line, no traceback
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:  # the loop has saved a checkpoint and said so
        sys.exit(130)


def _evaluate(config, workdir: str, step) -> None:
    """--mode=eval: writes eval.json and metrics, so it checks they can be written before it
    restores anything, and holds the workdir's lock as training does (a training in progress
    would interleave its records with ours and could delete the checkpoint being read)."""
    from jaxgan import evaluate, outputs, train
    from jaxgan.config_check import check_config
    from jaxgan.metric_writer import TENSORBOARD_DIR

    if config is not None:  # the config's refusals first, as in every mode
        check_config(config, for_training=False)
    checkpoints = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if not os.path.isdir(checkpoints):
        raise ValueError(f"no checkpoint in {checkpoints}; train first")
    outputs.check_writable(workdir, train.WORKDIR_FILES, [TENSORBOARD_DIR])
    with outputs.one_writer(workdir, "--mode=eval"):
        evaluate.evaluate_checkpoint(config, workdir, step)


def run():
    app.run(main, flags_parser=lambda argv: command_line.parse_flags(argv, VALUE_FLAGS))


if __name__ == "__main__":
    run()
