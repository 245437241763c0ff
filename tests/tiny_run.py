"""The tiny run of the tests, the one definition of it: the embedded config on its small build,
16 px images, width 4, a small critic. In process (`tiny_config`: tests/test_train.py,
tests/distributed_worker.py, ...) or as command-line overrides (`tiny_flags`: tests/test_main.py
and the documented commands' test)."""

import os
import runpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED_STEPS, ADVERSARIAL_STEPS = 2, 2

# Dotted config field -> value: what makes any run of the embedded config tiny.
TINY = {
    "data.builder_config": "small",
    "data.image_size": 16,
    "model.width": 4,
    "critic.embed_dim": 8,
    "critic.hidden_dim": 16,
    "critic.num_layers": 2,
    "schedule.batch_size": 16,
    "schedule.eval_batch_size": 64,
}
# The in-process loop tests' schedule: two steps of each phase, logged and saved at every step.
SCHEDULE = {
    "supervised_steps": SUPERVISED_STEPS,
    "adversarial_steps": ADVERSARIAL_STEPS,
    "log_every": 1,
    "eval_every": 0,
    "checkpoint_every": 1,
    "keep_checkpoints": 100,
}


def tiny_flags(**fields) -> list[str]:
    """`--config.FIELD=VALUE` overrides of `TINY`, then of `fields` (`schedule__log_every=2`
    for schedule.log_every)."""
    overrides = {**TINY, **{k.replace("__", "."): v for k, v in fields.items()}}
    return [f"--config.{field}={value}" for field, value in overrides.items()]


def tiny_config(data_dir, **schedule):
    """The embedded config made tiny, with `SCHEDULE`; `schedule` overrides its fields."""
    config = runpy.run_path(os.path.join(ROOT, "configs", "digit_scenes.py"))["get_config"]()
    for field, value in TINY.items():
        section, name = field.split(".")
        config[section][name] = value
    config.data.data_dir = data_dir
    config.schedule.update({**SCHEDULE, **schedule})
    return config
