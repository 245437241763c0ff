"""The TensorFlow augmentation the input pipeline ran before augmentation moved to the devices:
the reference that tests/test_augment.py compares `jaxgan.data.augment` with.

Training ("paper", docs/method.md, after Wang et al.): resize to 256x256, cut one of five patches
(four corners or centre) whose side is drawn from {256, 224, 192, 168, 128}, resize the patch
to the model's input size, flip horizontally with probability 1/2. At other input sizes the
same fractions of the side are used (256 = input_size * 256 / 224). Evaluation: resize to the
input size, single crop. All randomness is stateless, drawn from a per-example seed, so the
pipeline is deterministic given its seed whatever the parallelism.
"""

import tensorflow as tf

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


def check_choices(data_config) -> None:
    choose_one("data.augment", data_config.augment, AUGMENTATIONS)
    choose_one("data.normalization", data_config.normalization, sorted(NORMALIZATIONS))


def normalize(image: tf.Tensor, normalization: str) -> tf.Tensor:
    """float [0, 1] image -> the input distribution the backbone was trained on."""
    mean, std = NORMALIZATIONS[normalization]
    return (image - tf.constant(mean)) / tf.constant(std)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear, antialiased; an image already `size` x `size` is returned as it is (what the
    resize would return, without its CPU time: the embedded dataset's case)."""
    shape = tf.shape(image)
    resized = tf.cond(
        tf.logical_and(shape[0] == size, shape[1] == size),
        lambda: image,
        lambda: tf.image.resize(image, (size, size), method="bilinear", antialias=True),
    )
    return tf.ensure_shape(resized, [size, size, image.shape[-1]])


def patch_offset(position: tf.Tensor, side: tf.Tensor, full: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(top, left) of the `side` patch at `position` in a `full` x `full` square.

    Positions: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre.
    """
    far = full - side
    top = tf.stack([0, 0, far, far, far // 2])[position]
    left = tf.stack([0, far, 0, far, far // 2])[position]
    return top, left


def patch_sides(image_size: int) -> tuple[int, tuple[int, ...]]:
    """(side of the square resize, the five patch sides) for a model input of `image_size`."""
    full = round(image_size * 256 / 224)
    return full, tuple(max(1, round(full * s / 256)) for s in PATCH_SIDES)


def sample_patch(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(position in [0, 5), index into PATCH_SIDES in [0, 5)), uniform and independent."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    position = tf.random.stateless_uniform((), seeds[0], 0, NUM_PATCH_POSITIONS, tf.int32)
    side_index = tf.random.stateless_uniform((), seeds[1], 0, len(PATCH_SIDES), tf.int32)
    return position, side_index


def paper_patch(image: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """A random five-patch crop at a random scale, resized to `image_size`.

    The patch is chosen in the frame of the square resize (256x256 at 224) and cut from the
    image at the same relative place, then resized once: the same geometry as resizing to
    256x256 first, with one resampling instead of two (sharper, and the full-image resize,
    the costliest step, is skipped).
    """
    full, sides = patch_sides(image_size)
    position, side_index = sample_patch(seed)
    side = tf.constant(sides, tf.int32)[side_index]
    top, left = patch_offset(position, side, full)
    shape = tf.shape(image)

    def to_image(offset, extent):  # [offset, offset + side) of `full` -> pixel rows/columns
        start = tf.cast(tf.round(offset * extent / full), tf.int32)
        stop = tf.cast(tf.round((offset + side) * extent / full), tf.int32)
        return start, tf.maximum(stop, start + 1)

    y0, y1 = to_image(top, shape[0])
    x0, x1 = to_image(left, shape[1])
    return _resize(image[y0:y1, x0:x1], image_size)


def preprocess_train(image: tf.Tensor, seed: tf.Tensor, data_config) -> tf.Tensor:
    """uint8 [H, W, 3] -> normalised float32 [S, S, 3], augmented; `seed` is int32 [2]."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    size = data_config.image_size
    patch_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if data_config.augment == "paper":
        image = paper_patch(image, patch_seed, size)
    else:
        image = _resize(image, size)
    if data_config.augment in ("paper", "flip"):
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return normalize(tf.clip_by_value(image, 0.0, 1.0), data_config.normalization)


def preprocess_eval(image: tf.Tensor, data_config) -> tf.Tensor:
    """uint8 [H, W, 3] -> normalised float32 [S, S, 3]: resize, single crop."""
    image = _resize(tf.image.convert_image_dtype(image, tf.float32), data_config.image_size)
    return normalize(tf.clip_by_value(image, 0.0, 1.0), data_config.normalization)
