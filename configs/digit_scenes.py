"""The embedded offline dataset (jaxgan/data/digit_scenes): a small ResNet, from scratch.

The README's main command runs this config: the supervised phase, then the adversarial phase, in a
few minutes on a 2-core CPU. Variant "no_critic" trains the same number of generator updates with
BCE alone (the baseline of the README's table).
"""

from jaxgan.base_config import get_base_config, no_critic, parse_variant


def get_config(variant: str = ""):
    config = get_base_config()
    config.model.name = "resnet_small"
    config.model.width = 16
    config.data.name = "digit_scenes"
    config.data.builder_config = "default"  # "small": 400 / 200 / 200 images, for smoke tests
    config.data.image_size = 32
    config.data.augment = "none"
    config.data.normalization = "unit"
    config.data.shuffle_buffer = 8_192
    config.data.cache_decoded = True  # 8,000 records of 32 x 32 x 3 bytes: 24 MiB
    config.optim.generator_learning_rate = 1e-3  # from scratch, not fine-tuning: a larger step
    config.schedule.batch_size = 64
    config.schedule.eval_batch_size = 256
    config.schedule.supervised_steps = 1_200
    config.schedule.adversarial_steps = 400
    config.schedule.log_every = 100
    config.schedule.eval_every = 0
    config.schedule.checkpoint_every = 200
    _, switches = parse_variant(variant, (), ("no_critic",), "configs/digit_scenes.py")
    return no_critic(config) if "no_critic" in switches else config
