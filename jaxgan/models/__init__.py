"""Generator registry: a config's `model.name` to a Flax module.

Every generator is a Linen module called as
`model.apply(variables, x, train=..., features_only=...)` on normalised float images `x` of
shape [B, H, W, 3]. It returns float32 logits [B, L], or, with
`features_only=True`, the pooled backbone features [B, F] (what f_ext uses). Its output layer is
the submodule named `head`, so converted ImageNet weights load into everything else.
"""

import importlib

import jax.numpy as jnp
import ml_collections

# name -> (module, constructor name). Constructors take (num_labels, dtype, width, remat).
GENERATORS = {
    "resnet_small": ("jaxgan.models.resnet", "resnet_small"),
    "resnet18": ("jaxgan.models.resnet", "resnet18"),
    "resnet34": ("jaxgan.models.resnet", "resnet34"),
    "resnet50": ("jaxgan.models.resnet", "resnet50"),
    "resnet101": ("jaxgan.models.resnet", "resnet101"),
    "resnet152": ("jaxgan.models.resnet", "resnet152"),
    "vgg16": ("jaxgan.models.vgg", "vgg16"),
    "inception_v3": ("jaxgan.models.inception", "inception_v3"),
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_generator(model_config: ml_collections.ConfigDict, num_labels: int):
    """Builds the generator named by `model_config.name` with `num_labels` outputs."""
    if model_config.name not in GENERATORS:
        raise ValueError(
            f"unknown model.name {model_config.name!r}; choose one of {sorted(GENERATORS)}"
        )
    if model_config.dtype not in DTYPES:
        raise ValueError(
            f"unknown model.dtype {model_config.dtype!r}; choose one of {sorted(DTYPES)}"
        )
    module_name, constructor = GENERATORS[model_config.name]
    build = getattr(importlib.import_module(module_name), constructor)
    return build(
        num_labels=num_labels,
        dtype=DTYPES[model_config.dtype],
        width=model_config.width,
        remat=model_config.get("remat", False),
    )
