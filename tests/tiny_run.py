"""The tiny run of the loop tests (tests/test_train.py, tests/distributed_worker.py): the
embedded config on its small build, 16 px images, width 4, two steps of each phase."""

import os
import runpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED_STEPS, ADVERSARIAL_STEPS = 2, 2


def tiny_config(data_dir, **schedule):
    """The embedded config made tiny; `schedule` overrides `config.schedule` fields."""
    config = runpy.run_path(os.path.join(ROOT, "configs", "digit_scenes.py"))["get_config"]()
    config.data.builder_config = "small"
    config.data.data_dir = data_dir
    config.data.image_size = 16
    config.model.width = 4
    config.critic.update(embed_dim=8, hidden_dim=16, num_layers=2)
    config.schedule.update(
        batch_size=16,
        eval_batch_size=64,
        supervised_steps=SUPERVISED_STEPS,
        adversarial_steps=ADVERSARIAL_STEPS,
        log_every=1,
        eval_every=0,
        checkpoint_every=1,
        keep_checkpoints=100,
    )
    config.schedule.update(schedule)
    return config
