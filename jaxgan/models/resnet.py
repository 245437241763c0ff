"""ResNet v1.5 in Flax Linen, laid out as torchvision's so converted weights map one to one.

torchvision's conventions kept here: the stride of a bottleneck sits on its 3x3 conv (v1.5),
every conv pads symmetrically with k // 2 (Flax's 'SAME' pads asymmetrically at stride 2),
BatchNorm with torch's epsilon 1e-5 and running statistics (`torch_compat.BatchNorm`), the stem
is 7x7/2 conv + 3x3/2 max-pool padded by 1, the pooled features are the global mean of the last
stage. `resnet_small` swaps the stem for one 3x3/1 conv without max-pool so 32-64 px images keep
their resolution (it has no torchvision counterpart and no pretrained weights).

Submodule names follow torchvision's keys: `layer3_5/conv2` is `layer3.5.conv2`,
`downsample_conv`/`downsample_bn` are `downsample.0`/`downsample.1`, the output layer `head`
replaces `fc`.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.torch_compat import BatchNorm, conv, max_pool


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    dtype: jnp.dtype = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x, norm):
        residual = x
        y = conv(self.features, 3, self.stride, 1, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, 3, 1, 1, dtype=self.dtype, name="conv2")(y)
        y = norm(name="bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            residual = conv(
                self.features, 1, self.stride, dtype=self.dtype, name="downsample_conv"
            )(x)
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
        y = conv(self.features, 1, 1, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, 3, self.stride, 1, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = conv(out, 1, 1, dtype=self.dtype, name="conv3")(y)
        y = norm(name="bn3")(y)
        if self.stride != 1 or x.shape[-1] != out:
            residual = conv(out, 1, self.stride, dtype=self.dtype, name="downsample_conv")(x)
            residual = norm(name="downsample_bn")(residual)
        return nn.relu(y + residual)


class ResNet(nn.Module):
    """`apply(variables, x, train=..., features_only=...)`: float32 logits [B, L] or pooled
    features [B, 512 * expansion * width / 64] from NHWC images normalised as for torchvision."""

    stage_sizes: Sequence[int]
    block_cls: type
    num_labels: int
    width: int = 64
    small_stem: bool = False
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # recompute each block's activations in the backward pass

    @nn.compact
    def __call__(self, x, *, train: bool, features_only: bool = False):
        norm = functools.partial(BatchNorm, use_running_average=not train, dtype=self.dtype)
        # Rematerialised blocks keep only their inputs for the backward pass (`norm`, argument
        # 2 counting the module, is a Python callable: static). Same parameters, same results.
        block_cls = nn.remat(self.block_cls, static_argnums=(2,)) if self.remat else self.block_cls
        x = x.astype(self.dtype)
        if self.small_stem:
            x = conv(self.width, 3, 1, 1, dtype=self.dtype, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x))
        else:
            x = conv(self.width, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x))
            x = max_pool(x, 3, 2, padding=1)
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                x = block_cls(
                    self.width * 2**stage, stride, self.dtype, name=f"layer{stage + 1}_{index}"
                )(x, norm)
        features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if features_only:
            return features
        return nn.Dense(self.num_labels, name="head")(features)


def _factory(stage_sizes, block_cls, small_stem=False):
    def build(num_labels, dtype=jnp.float32, width=64, remat=False):
        return ResNet(stage_sizes, block_cls, num_labels, width, small_stem, dtype, remat)

    return build


resnet_small = _factory((1, 1, 1, 1), BasicBlock, small_stem=True)
resnet18 = _factory((2, 2, 2, 2), BasicBlock)
resnet34 = _factory((3, 4, 6, 3), BasicBlock)
resnet50 = _factory((3, 4, 6, 3), Bottleneck)
resnet101 = _factory((3, 4, 23, 3), Bottleneck)
resnet152 = _factory((3, 8, 36, 3), Bottleneck)
