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


class VGG(nn.Module):
    layers: tuple
    num_labels: int
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, features_only: bool = False):
        x = x.astype(self.dtype)
        index = 0  # position in torchvision's `features` Sequential (conv, ReLU, ..., pool)
        for layer in self.layers:
            if layer == "M":
                x = max_pool(x, 2, 2)
                index += 1
            else:
                x = conv(layer, 3, 1, 1, use_bias=True, dtype=self.dtype, name=f"features_{index}")(
                    x
                )
                x = nn.relu(x)
                index += 2
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


def vgg16(num_labels, dtype=jnp.float32):
    return VGG(VGG16_LAYERS, num_labels, dtype=dtype)
