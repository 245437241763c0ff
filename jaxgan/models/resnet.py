"""ResNet v1.5 in Flax Linen, laid out as torchvision's so converted weights map one to one.

torchvision's conventions kept here: the stride of a bottleneck sits on its 3x3 conv (v1.5),
every conv pads symmetrically with k // 2 (Flax's 'SAME' pads asymmetrically at stride 2),
BatchNorm epsilon 1e-5 and running-average momentum 0.9 (torch's 0.1), the stem is
7x7/2 conv + 3x3/2 max-pool padded by 1. `resnet_small` swaps the stem for one 3x3/1 conv
so 32-64 px images keep their resolution.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


def conv(features, kernel, stride=1, dtype=jnp.float32, name=None):
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=name,
    )


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    dtype: jnp.dtype = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x, norm):
        residual = x
        y = conv(self.features, 3, self.stride, self.dtype, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, 3, 1, self.dtype, name="conv2")(y)
        y = norm(name="bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            residual = conv(self.features, 1, self.stride, self.dtype, name="downsample_conv")(x)
            residual = norm(name="downsample_bn")(residual)
        return nn.relu(y + residual)


class Bottleneck(nn.Module):
    features: int
    stride: int = 1
    dtype: jnp.dtype = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x, norm):
        residual = x
        out = self.features * self.expansion
        y = conv(self.features, 1, 1, self.dtype, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, 3, self.stride, self.dtype, name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = conv(out, 1, 1, self.dtype, name="conv3")(y)
        y = norm(name="bn3")(y)
        if self.stride != 1 or x.shape[-1] != out:
            residual = conv(out, 1, self.stride, self.dtype, name="downsample_conv")(x)
            residual = norm(name="downsample_bn")(residual)
        return nn.relu(y + residual)


class ResNet(nn.Module):
    stage_sizes: Sequence[int]
    block_cls: type
    num_labels: int
    width: int = 64
    small_stem: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, features_only: bool = False):
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
        )
        x = x.astype(self.dtype)
        if self.small_stem:
            x = conv(self.width, 3, 1, self.dtype, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x))
        else:
            x = conv(self.width, 7, 2, self.dtype, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                x = self.block_cls(
                    self.width * 2**stage, stride, self.dtype, name=f"layer{stage + 1}_{index}"
                )(x, norm)
        features = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
        if features_only:
            return features
        return nn.Dense(self.num_labels, name="head")(features)


def _factory(stage_sizes, block_cls, small_stem=False):
    def build(num_labels, dtype=jnp.float32, width=64):
        return ResNet(stage_sizes, block_cls, num_labels, width, small_stem, dtype)

    return build


resnet_small = _factory((1, 1, 1, 1), BasicBlock, small_stem=True)
resnet18 = _factory((2, 2, 2, 2), BasicBlock)
resnet34 = _factory((3, 4, 6, 3), BasicBlock)
resnet50 = _factory((3, 4, 6, 3), Bottleneck)
resnet101 = _factory((3, 4, 23, 3), Bottleneck)
resnet152 = _factory((3, 8, 36, 3), Bottleneck)
