"""MS-COCO 2014, 80 labels, evaluated on the validation split as in the paper (Table 1).

Variants: configs/coco.py:vgg16 | :inception_v3 | :resnet101 (default) | :resnet152, each
optionally with `,no_critic` (`:resnet152,no_critic`; `:no_critic` alone for the default
backbone): the baseline without the critic, the same number of generator updates, all supervised.
Point `model.pretrained` at a converted ImageNet checkpoint (docs/pretrained_weights.md).
"""

from jaxgan.base_config import BACKBONES, get_base_config, no_critic, parse_variant, set_backbone


def get_config(variant: str = ""):
    backbone, switches = parse_variant(variant, tuple(BACKBONES), ("no_critic",), "configs/coco.py")
    config = get_base_config()
    config.data.name = "coco"
    config.data.augment = "paper"
    # Roles -> TFDS splits. The paper reports on COCO's validation split; thresholds and
    # hyper-parameters are chosen on the last 5% of train, held out of training (train the
    # paper's way on all 82,081 images with --config.data.train_split=train).
    config.data.train_split = "train[:95%]"
    config.data.validation_split = "train[95%:]"
    config.data.test_split = "validation"
    set_backbone(config, backbone or "resnet101")
    return no_critic(config) if "no_critic" in switches else config
