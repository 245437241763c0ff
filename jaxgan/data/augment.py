"""Image preprocessing on the devices, in JAX: the paper's augmentation and the normalisation.

The host hands over uint8 squares of the prepared side R (`jaxgan.data.records`); everything
below is jit-compiled and runs where the model runs.

Training ("paper", docs/method.md, after Wang et al.): in the frame of the square resize
(256x256 at a 224 input), cut one of five patches (four corners or centre) whose side is drawn
from {256, 224, 192, 168, 128}, resize the patch to the model's input size, flip horizontally
with probability 1/2. At other input sizes the same fractions of the side are used (the frame
is input_size * 256 / 224). The patch is cut from the stored square at the same relative
place and resized once. Evaluation: resize to the input size, single crop. Resizing is
bilinear and antialiased, the same weights as `tf.image.resize(..., antialias=True)` (a
triangle kernel widened by the downscale factor), applied as two small matrix products per
image, restricted to the patch's rows and columns.

Randomness is keyed per example from (run seed, epoch, position in the epoch) (`example_keys`),
so a batch's augmentation is a function of the seed and the step: the same on any number of
devices or processes, and after a resume.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.choices import choose_one

PATCH_SIDES = (256, 224, 192, 168, 128)  # at the paper's 256x256 resize
NUM_PATCH_POSITIONS = 5  # top-left, top-right, bottom-left, bottom-right, centre

# Per-channel mean and std on [0, 1] images, for each backbone family.
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision ResNet, VGG
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # Inception-v3: [-1, 1]
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # [0, 1], for models trained from scratch
}
AUGMENTATIONS = ("paper", "flip", "none")
# Folded into the run seed's key for augmentation draws (apart from the model's RNG stream).
AUGMENT_STREAM = 0x617567


def check_choices(data_config) -> None:
    choose_one("data.augment", data_config.augment, AUGMENTATIONS)
    choose_one("data.normalization", data_config.normalization, sorted(NORMALIZATIONS))


def frame_side(image_size: int) -> int:
    """The side of the paper's square resize for a model input of `image_size` (256 at 224):
    the side datasets of variable-size images are prepared at."""
    return round(image_size * 256 / 224)


def patch_sides(image_size: int) -> tuple[int, tuple[int, ...]]:
    """(side of the square resize, the five patch sides) for a model input of `image_size`."""
    full = frame_side(image_size)
    return full, tuple(max(1, round(full * s / 256)) for s in PATCH_SIDES)


def normalize(image: jax.Array, normalization: str) -> jax.Array:
    """float [0, 1] image(s) -> the input distribution the backbone was trained on."""
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[normalization])
    return (image - mean) / std


def resize_weights(in_size: int, start, stop, out_size: int) -> jax.Array:
    """float32 [out_size, in_size]: bilinear antialiased resampling of the span [start, stop)
    of an axis of `in_size` pixels to `out_size` pixels (pixels outside the span get weight
    0). `start` and `stop` may be traced. Rows are TF's and jax.image's scale-and-translate
    weights for resizing the span alone."""
    length = (stop - start).astype(jnp.float32) if hasattr(stop, "astype") else stop - start
    length = jnp.asarray(length, jnp.float32)
    inv_scale = length / out_size
    kernel_scale = jnp.maximum(inv_scale, 1.0)
    sample = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * inv_scale - 0.5
    x = jnp.arange(in_size, dtype=jnp.float32) - jnp.asarray(start, jnp.float32)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(sample[:, None] - x[None, :]) / kernel_scale)
    weights = jnp.where((x >= 0) & (x < length), weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    eps = 1000.0 * float(np.finfo(np.float32).eps)
    return jnp.where(total > eps, weights / jnp.where(total != 0, total, 1.0), 0.0)


def crop_resize(image: jax.Array, box, out_size: int) -> jax.Array:
    """uint8 or float [H, W, C], box (y0, y1, x0, x1) -> float32 [out, out, C] in [0, 1]:
    the box's pixels resized to `out_size` (as `tf.image.resize(image[y0:y1, x0:x1])`)."""
    y0, y1, x0, x1 = box
    height, width = image.shape[:2]
    rows = resize_weights(height, y0, y1, out_size)
    cols = resize_weights(width, x0, x1, out_size)
    pixels = image.astype(jnp.float32) / 255.0 if image.dtype == jnp.uint8 else image
    out = jnp.einsum("sh,hwc,tw->stc", rows, pixels, cols, precision=jax.lax.Precision.HIGHEST)
    return jnp.clip(out, 0.0, 1.0)


def sample_patch(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(position in [0, 5), index into PATCH_SIDES in [0, 5)), uniform and independent."""
    position_key, side_key = jax.random.split(key)
    position = jax.random.randint(position_key, (), 0, NUM_PATCH_POSITIONS)
    side_index = jax.random.randint(side_key, (), 0, len(PATCH_SIDES))
    return position, side_index


def patch_offset(position, side, full: int):
    """(top, left) of the `side` patch at `position` in a `full` x `full` square.

    Positions: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre."""
    far = full - side
    top = jnp.stack([0, 0, far, far, far // 2])[position]
    left = jnp.stack([0, far, 0, far, far // 2])[position]
    return top, left


def patch_box(position, side_index, image_size: int, stored: int):
    """The box (y0, y1, x0, x1), in pixels of a `stored` x `stored` square, of the patch
    (`position`, `side_index`) chosen in the frame of `image_size`."""
    full, sides = patch_sides(image_size)
    side = jnp.asarray(sides, jnp.int32)[side_index]
    top, left = patch_offset(position, side, full)

    def to_pixels(offset):
        start = jnp.round(offset * stored / full).astype(jnp.int32)
        stop = jnp.round((offset + side) * stored / full).astype(jnp.int32)
        return start, jnp.maximum(stop, start + 1)

    y0, y1 = to_pixels(top)
    x0, x1 = to_pixels(left)
    return y0, y1, x0, x1


@dataclasses.dataclass(frozen=True)
class Transform:
    """The data.* fields preprocessing reads (hashable: jit takes it as a static argument)."""

    augment: str
    image_size: int
    normalization: str

    @classmethod
    def from_config(cls, data_config) -> "Transform":
        return cls(data_config.augment, data_config.image_size, data_config.normalization)


def draws(key: jax.Array, transform: Transform):
    """One example's augmentation: (patch position, side index, flipped), as `train_image`
    uses them (position and side are 0 without "paper", flipped is False with "none")."""
    patch_key, flip_key = jax.random.split(key)
    position, side_index = sample_patch(patch_key)
    if transform.augment != "paper":
        position, side_index = jnp.int32(0), jnp.int32(0)
    flipped = jax.random.bernoulli(flip_key) & (transform.augment in ("paper", "flip"))
    return position, side_index, flipped


def train_image(image: jax.Array, key: jax.Array, transform: Transform) -> jax.Array:
    """uint8 [R, R, 3] -> normalised float32 [S, S, 3], augmented with `key`."""
    stored = image.shape[0]
    position, side_index, flipped = draws(key, transform)
    if transform.augment == "paper":
        box = patch_box(position, side_index, transform.image_size, stored)
    else:
        box = (0, stored, 0, stored)
    out = crop_resize(image, box, transform.image_size)
    out = jnp.where(flipped, out[:, ::-1], out)
    return normalize(out, transform.normalization)


def eval_image(image: jax.Array, transform: Transform) -> jax.Array:
    """uint8 [R, R, 3] -> normalised float32 [S, S, 3]: resize, single crop. The one
    preparation of an image for evaluation and prediction."""
    stored = image.shape[0]
    out = crop_resize(image, (0, stored, 0, stored), transform.image_size)
    return normalize(out, transform.normalization)


def example_keys(seed: int, epoch: jax.Array, index: jax.Array) -> jax.Array:
    """Per-example keys [B] from the run seed and each example's (epoch, position in the
    epoch): the same example of the same epoch draws the same augmentation in any run."""
    base = jax.random.fold_in(jax.random.key(seed), AUGMENT_STREAM)
    return jax.vmap(lambda e, i: jax.random.fold_in(jax.random.fold_in(base, e), i))(epoch, index)


@functools.partial(jax.jit, static_argnames=("transform", "seed"))
def train_batch(batch: dict, transform: Transform, seed: int) -> dict:
    """{"image": uint8 [..., B, R, R, 3], "labels", "epoch", "index": int32 [..., B]} ->
    {"image": float32 [..., B, S, S, 3], "labels"}: leading axes (a critic update's stack)
    are kept, and each example is augmented alone (a batch split over devices stays so)."""

    def one_batch(images, epoch, index):
        keys = example_keys(seed, epoch, index)
        return jax.vmap(lambda image, key: train_image(image, key, transform))(images, keys)

    for _ in range(batch["image"].ndim - 4):
        one_batch = jax.vmap(one_batch)
    images = one_batch(batch["image"], batch["epoch"], batch["index"])
    return {"image": images, "labels": batch["labels"]}


def eval_batch(images: jax.Array, transform: Transform) -> jax.Array:
    """uint8 [B, R, R, 3] -> float32 [B, S, S, 3] (`eval_image` on each; traced inside the
    classifier's compiled forward pass)."""
    return jax.vmap(lambda image: eval_image(image, transform))(images)
