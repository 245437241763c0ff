"""NUS-WIDE, 81 concepts (Table 2); see README for the manual download and the splits.

Variants: configs/nuswide.py:vgg16 | :inception_v3 | :resnet101 (default) | :resnet152.
"""

from jaxgan.base_config import get_base_config, set_backbone


def get_config(variant: str = "resnet101"):
    config = get_base_config()
    config.data.name = "nuswide"
    config.data.augment = "paper"
    config.data.split_scheme = "paper"  # "paper": 150,000 / 59,347 (WARP's) | "official"
    config.data.manual_dir = ""  # the unpacked official release, needed for the one-time build
    # Roles -> TFDS splits; validation (thresholds, hyper-parameters) is held out of train.
    config.data.train_split = "train[:95%]"
    config.data.validation_split = "train[95%:]"
    config.data.test_split = "test"
    return set_backbone(config, variant or "resnet101")
