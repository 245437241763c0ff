"""NUS-WIDE, 81 concepts (Table 2); see docs/datasets.md for the manual download and the splits.

Variants: configs/nuswide.py:vgg16 | :inception_v3 | :resnet101 (default) | :resnet152, each
optionally with `,no_critic` (the BCE-only baseline, as for configs/coco.py).
"""

from jaxgan.base_config import BACKBONES, get_base_config, no_critic, parse_variant, set_backbone


def get_config(variant: str = ""):
    backbone, switches = parse_variant(
        variant, tuple(BACKBONES), ("no_critic",), "configs/nuswide.py"
    )
    config = get_base_config()
    config.data.name = "nuswide"
    config.data.augment = "paper"
    config.data.split_scheme = "paper"  # "paper": 150,000 / 59,347 (WARP's) | "official"
    config.data.manual_dir = ""  # the unpacked official release, needed for the one-time build
    # Roles -> TFDS splits; validation (thresholds, hyper-parameters) is held out of train.
    config.data.train_split = "train[:95%]"
    config.data.validation_split = "train[95%:]"
    config.data.test_split = "test"
    set_backbone(config, backbone or "resnet101")
    return no_critic(config) if "no_critic" in switches else config
