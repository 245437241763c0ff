"""Command line: python -m jaxgan.main --config=configs/FILE.py[:variant] --workdir=DIR
[--mode=train|eval] [--config.FIELD=VALUE ...]."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/coco.py.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and metrics go here.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (resumes) or evaluate.")
_STEP = flags.DEFINE_integer("checkpoint_step", None, "--mode=eval: this step, not the latest.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Our progress lines are the output; libraries' INFO chatter (Orbax, TF) is not.
    logging.set_verbosity(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from jaxgan import train

    try:
        if _MODE.value == "train":
            train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        else:
            train.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _STEP.value)
    except ValueError as error:  # bad input the user can act on: one line, no traceback
        sys.exit(f"error: {error}")


def run():
    # Config files and their overrides are parsed with the flags; make their errors one line.
    try:
        app.run(main)
    except (KeyError, AttributeError, FileNotFoundError, OSError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    run()
