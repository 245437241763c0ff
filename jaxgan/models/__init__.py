"""The generator backbones: one spec each, and the one factory that builds them.

Every generator is a Linen module called as
`model.apply(variables, x, train=..., features_only=...)` on normalised float images `x` of
shape [B, H, W, 3]. It returns float32 logits [B, L], or, with
`features_only=True`, the pooled backbone features [B, F] (what f_ext uses). Its output layer is
the submodule named `head`, so converted ImageNet weights load into everything else.

`GENERATORS` is the only place the facts about a backbone are written down; configs
(`base_config.set_backbone`), the weight converter (`jaxgan.weights`), the benchmarks and the
tests read them from here.
"""

import dataclasses
import importlib

import jax.numpy as jnp
import ml_collections

from jaxgan.choices import ConfigError, choose_one

PRETRAINED_WIDTH = 64  # the base channel count of every ImageNet backbone


@dataclasses.dataclass(frozen=True)
class Backbone:
    """What the rest of the project knows about one generator backbone."""

    module: str  # the module that defines it
    constructor: str  # its builder there: (num_labels, dtype[, width], remat) -> Linen module
    feature_dim: int  # F, the width of its pooled features at width PRETRAINED_WIDTH
    width_configurable: bool  # whether `model.width` scales its channels (ResNets)
    min_image_size: int  # the smallest input side it accepts
    # The input its ImageNet weights expect (None: no weights, any input). Inception-v3's
    # weights take [-1, 1] pixels (see jaxgan/models/inception.py).
    image_size: int | None
    normalization: str | None
    # torchvision's (and timm's) name for it: the converter's --arch. None: no ImageNet weights.
    pretrained_arch: str | None

    def features(self, width: int = PRETRAINED_WIDTH) -> int:
        """F at `model.width=width`: a ResNet's features scale with its width."""
        return (
            self.feature_dim * width // PRETRAINED_WIDTH
            if self.width_configurable
            else self.feature_dim
        )


def _resnet(constructor, feature_dim):
    imagenet = dict(image_size=224, normalization="imagenet", pretrained_arch=constructor)
    return Backbone("jaxgan.models.resnet", constructor, feature_dim, True, 1, **imagenet)


GENERATORS = {
    # A 3x3 stem without max-pool for 32-64 px images, trained from scratch.
    "resnet_small": Backbone(
        "jaxgan.models.resnet", "resnet_small", 512, True, 1, None, None, None
    ),
    "resnet18": _resnet("resnet18", 512),
    "resnet34": _resnet("resnet34", 512),
    "resnet50": _resnet("resnet50", 2048),
    "resnet101": _resnet("resnet101", 2048),
    "resnet152": _resnet("resnet152", 2048),
    # Features: the 4096-d output of the second classifier layer.
    "vgg16": Backbone("jaxgan.models.vgg", "vgg16", 4096, False, 32, 224, "imagenet", "vgg16"),
    "inception_v3": Backbone(
        "jaxgan.models.inception", "inception_v3", 2048, False, 75, 299, "inception", "inception_v3"
    ),
}

# The backbones with ImageNet weights, by the name the converter and torchvision use.
PRETRAINED = {
    spec.pretrained_arch: name for name, spec in GENERATORS.items() if spec.pretrained_arch
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def backbone(name: str) -> Backbone:
    """The spec of backbone `name` (a config's `model.name`)."""
    return GENERATORS[choose_one("model.name", name, sorted(GENERATORS))]


def check_width(name: str, width: int) -> None:
    """`model.width` scales only the backbones whose width is configurable (the ResNets)."""
    if not backbone(name).width_configurable and width != PRETRAINED_WIDTH:
        configurable = sorted(n for n, s in GENERATORS.items() if s.width_configurable)
        raise ConfigError(
            f"model.width={width} does not apply to {name}, whose width is fixed; set "
            f"model.width={PRETRAINED_WIDTH} (widths apply to {', '.join(configurable)})"
        )


def build_generator(
    name: str,
    num_labels: int,
    dtype=jnp.float32,
    width: int = PRETRAINED_WIDTH,
    remat: bool = False,
):
    """The Linen module of backbone `name` with `num_labels` outputs; `remat` recomputes each
    block's activations in the backward pass instead of keeping them."""
    spec = backbone(name)
    check_width(name, width)
    kwargs = {"width": width} if spec.width_configurable else {}
    build = getattr(importlib.import_module(spec.module), spec.constructor)
    return build(num_labels, dtype=dtype, remat=remat, **kwargs)


def create_generator(model_config: ml_collections.ConfigDict, num_labels: int):
    """Builds the generator named by `model_config.name` with `num_labels` outputs."""
    dtype = DTYPES[choose_one("model.dtype", model_config.dtype, sorted(DTYPES))]
    return build_generator(
        model_config.name,
        num_labels,
        dtype,
        model_config.width,
        remat=model_config.get("remat", False),
    )
