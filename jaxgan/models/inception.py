"""Inception-v3 in Flax Linen, computing what torchvision's `inception_v3` does in eval mode.

Every conv is torchvision's BasicConv2d: conv without bias, BatchNorm with epsilon 1e-3, ReLU.
Pools are torch's: max-pools 3x3/2 unpadded, branch average pools 3x3/1 padded by 1 counting
the padded zeros. Names follow torchvision's keys (`Mixed_6b/branch7x7_2/conv` is
`Mixed_6b.branch7x7_2.conv`); the output layer `head` replaces `fc`.

Input: torchvision's ImageNet weights (originally Google's) expect pixels in [-1, 1]. torchvision
builds the pretrained model with `transform_input=True`, which takes ImageNet-normalised input
and maps it to [-1, 1] inside the network. Our data pipeline normalises Inception's images to
[-1, 1] directly (`data.normalization="inception"`), so by default this module applies no
transform; `transform_input=True` reproduces torchvision's for ImageNet-normalised input.

Auxiliary head: torchvision computes `AuxLogits` only in training and only to add an auxiliary
ImageNet loss; the paper's generator is trained on its main output, so this module has no
auxiliary head and the converter drops `AuxLogits.*` on purpose. The smallest input is 75 px.
In training mode the dropout (p=0.5) before the output layer needs an rng:
`apply(..., rngs={'dropout': key})`. The features for f_ext are the pooled 2048-d vector.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.torch_compat import BatchNorm, avg_pool, conv, max_pool


class BasicConv(nn.Module):
    """torchvision's BasicConv2d: conv (no bias) + BatchNorm(eps=1e-3) + ReLU."""

    features: int
    kernel: int | tuple = 1
    stride: int = 1
    padding: int | tuple = 0
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = conv(
            self.features, self.kernel, self.stride, self.padding, dtype=self.dtype, name="conv"
        )(x)
        x = BatchNorm(not self.train, epsilon=1e-3, dtype=self.dtype, name="bn")(x)
        return nn.relu(x)


def _concat(branches):
    return jnp.concatenate(branches, axis=-1)


class InceptionA(nn.Module):
    pool_features: int
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(BasicConv, train=self.train, dtype=self.dtype)
        b1 = c(64, name="branch1x1")(x)
        b5 = c(48, name="branch5x5_1")(x)
        b5 = c(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = c(64, name="branch3x3dbl_1")(x)
        b3 = c(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = c(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = c(self.pool_features, name="branch_pool")(avg_pool(x, 3, 1, 1))
        return _concat([b1, b5, b3, bp])


class InceptionB(nn.Module):
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(BasicConv, train=self.train, dtype=self.dtype)
        b3 = c(384, 3, stride=2, name="branch3x3")(x)
        bd = c(64, name="branch3x3dbl_1")(x)
        bd = c(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = c(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return _concat([b3, bd, max_pool(x, 3, 2)])


class InceptionC(nn.Module):
    channels_7x7: int
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(BasicConv, train=self.train, dtype=self.dtype)
        c7 = self.channels_7x7
        b1 = c(192, name="branch1x1")(x)
        b7 = c(c7, name="branch7x7_1")(x)
        b7 = c(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = c(c7, name="branch7x7dbl_1")(x)
        bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = c(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = c(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = c(192, name="branch_pool")(avg_pool(x, 3, 1, 1))
        return _concat([b1, b7, bd, bp])


class InceptionD(nn.Module):
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(BasicConv, train=self.train, dtype=self.dtype)
        b3 = c(192, name="branch3x3_1")(x)
        b3 = c(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = c(192, name="branch7x7x3_1")(x)
        b7 = c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = c(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return _concat([b3, b7, max_pool(x, 3, 2)])


class InceptionE(nn.Module):
    train: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(BasicConv, train=self.train, dtype=self.dtype)
        b1 = c(320, name="branch1x1")(x)
        b3 = c(384, name="branch3x3_1")(x)
        b3 = _concat(
            [
                c(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                c(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ]
        )
        bd = c(448, name="branch3x3dbl_1")(x)
        bd = c(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = _concat(
            [
                c(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                c(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ]
        )
        bp = c(192, name="branch_pool")(avg_pool(x, 3, 1, 1))
        return _concat([b1, b3, bd, bp])


# ImageNet mean and std that torchvision's transform_input undoes.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class InceptionV3(nn.Module):
    num_labels: int
    transform_input: bool = False
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # recompute each Mixed block's activations in the backward pass

    @nn.compact
    def __call__(self, x, *, train: bool, features_only: bool = False):
        if self.transform_input:  # ImageNet-normalised -> [-1, 1], as torchvision does
            mean, std = jnp.asarray(_IMAGENET_MEAN), jnp.asarray(_IMAGENET_STD)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        x = x.astype(self.dtype)
        c = functools.partial(BasicConv, train=train, dtype=self.dtype)
        block = dict(train=train, dtype=self.dtype)
        wrap = nn.remat if self.remat else (lambda cls: cls)
        inception_a, inception_b, inception_c, inception_d, inception_e = (
            wrap(cls) for cls in (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE)
        )
        x = c(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = c(32, 3, name="Conv2d_2a_3x3")(x)
        x = c(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = max_pool(x, 3, 2)
        x = c(80, 1, name="Conv2d_3b_1x1")(x)
        x = c(192, 3, name="Conv2d_4a_3x3")(x)
        x = max_pool(x, 3, 2)
        x = inception_a(32, **block, name="Mixed_5b")(x)
        x = inception_a(64, **block, name="Mixed_5c")(x)
        x = inception_a(64, **block, name="Mixed_5d")(x)
        x = inception_b(**block, name="Mixed_6a")(x)
        x = inception_c(128, **block, name="Mixed_6b")(x)
        x = inception_c(160, **block, name="Mixed_6c")(x)
        x = inception_c(160, **block, name="Mixed_6d")(x)
        x = inception_c(192, **block, name="Mixed_6e")(x)
        x = inception_d(**block, name="Mixed_7a")(x)
        x = inception_e(**block, name="Mixed_7b")(x)
        x = inception_e(**block, name="Mixed_7c")(x)
        features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if features_only:
            return features
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        return nn.Dense(self.num_labels, name="head")(x)


def inception_v3(num_labels, dtype=jnp.float32, transform_input=False, remat=False):
    return InceptionV3(num_labels, transform_input=transform_input, dtype=dtype, remat=remat)
