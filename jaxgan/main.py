"""Command line: python -m jaxgan.main --config=configs/FILE.py[:variant] --workdir=DIR
[--mode=train|eval] [--config.FIELD=VALUE ...]."""

import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

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
