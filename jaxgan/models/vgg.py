"""VGG-16 (configuration D, no BatchNorm) in Flax Linen, computing what torchvision's does.

torchvision's VGG: thirteen 3x3 convs padded by 1 with ReLU, five 2x2/2 max-pools, an adaptive
average pool to 7x7 (torch's overlapping bins, so any input of at least 32 px works), then
Linear(25088, 4096) + ReLU + Dropout(0.5), Linear(4096, 4096) + ReLU + Dropout(0.5), and the
output Linear. torch flattens the pooled map in (C, H, W) order; this module flattens NHWC in
(H, W, C) order and the converter permutes the first classifier weight to match, so no
activation transpose is paid at run time.

Names follow torchvision's keys (`features_28` is `features.28`, `classifier_3` is
`classifier.3`); the output layer `head` replaces `classifier.6`. The features for f_ext are the
4096-d output of the second classifier layer. VGG has no BatchNorm, hence no `batch_stats`
collection; in training mode its dropout needs an rng: `apply(..., rngs={'dropout': key})`.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.torch_compat import adaptive_avg_pool, conv, max_pool

# Output channels of each conv, "M" a 2x2/2 max-pool (torchvision's cfg "D").
VGG16_LAYERS = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


def _stages(layers):
    """(first index in torchvision's `features`, the convs' widths) per stage; each stage
    ends with a max-pool."""
    stages, current, index, start = [], [], 0, 0
    for layer in layers:
        if layer == "M":
            stages.append((start, tuple(current)))
            current, index = [], index + 1
            start = index
        else:
            current.append(layer)
            index += 2  # conv, ReLU
    return stages


def _stage(module, x, start, widths):
    """One stage: 3x3 convs with ReLU, then a 2x2/2 max-pool (its convs named as torch's)."""
    for offset, width in enumerate(widths):
        name = f"features_{start + 2 * offset}"
        x = conv(width, 3, 1, 1, use_bias=True, dtype=module.dtype, name=name)(x)
        x = nn.relu(x)
    return max_pool(x, 2, 2)


class VGG(nn.Module):
    layers: tuple
    num_labels: int
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # recompute each stage's activations in the backward pass

    @nn.compact
    def __call__(self, x, *, train: bool, features_only: bool = False):
        x = x.astype(self.dtype)
        # Rematerialised stages keep only their inputs for the backward pass (start and widths,
        # arguments 2 and 3 counting the module, are static); parameters keep their names.
        stage = nn.remat(_stage, static_argnums=(2, 3)) if self.remat else _stage
        for start, widths in _stages(self.layers):
            x = stage(self, x, start, widths)
        x = adaptive_avg_pool(x, 7)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order; see the module docstring
        for name in ("classifier_0", "classifier_3"):
            x = nn.Dense(4096, dtype=self.dtype, param_dtype=jnp.float32, name=name)(x)
            x = nn.relu(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features = x.astype(jnp.float32)
        if features_only:
            return features
        return nn.Dense(self.num_labels, name="head")(features)


def vgg16(num_labels, dtype=jnp.float32, remat=False):
    return VGG(VGG16_LAYERS, num_labels, dtype=dtype, remat=remat)
