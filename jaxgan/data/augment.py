"""Image preprocessing in TensorFlow graph mode: the paper's augmentation and normalisation.

Training ("paper", DESIGN §1, after Wang et al.): resize to 256x256, cut one of five patches
(four corners or centre) whose side is drawn from {256, 224, 192, 168, 128}, resize the patch
to the model's input size, flip horizontally with probability 1/2. At other input sizes the
same fractions of the side are used (256 = input_size * 256 / 224). Evaluation: resize to the
input size, single crop. All randomness is stateless, drawn from a per-example seed, so the
pipeline is deterministic given its seed whatever the parallelism.
"""

import tensorflow as tf

PATCH_SIDES = (256, 224, 192, 168, 128)  # at the paper's 256x256 resize
NUM_PATCH_POSITIONS = 5  # top-left, top-right, bottom-left, bottom-right, centre

# Per-channel mean and std on [0, 1] images, for each backbone family.
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision ResNet, VGG
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # Inception-v3: [-1, 1]
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # [0, 1], for models trained from scratch
}
AUGMENTATIONS = ("paper", "flip", "none")


def check_config(data_config) -> None:
    if data_config.augment not in AUGMENTATIONS:
        raise ValueError(
            f"unknown data.augment {data_config.augment!r}; choose one of {list(AUGMENTATIONS)}"
        )
    if data_config.normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown data.normalization {data_config.normalization!r}; "
            f"choose one of {sorted(NORMALIZATIONS)}"
        )


def normalize(image: tf.Tensor, normalization: str) -> tf.Tensor:
    """float [0, 1] image -> the input distribution the backbone was trained on."""
    mean, std = NORMALIZATIONS[normalization]
    return (image - tf.constant(mean)) / tf.constant(std)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    return tf.image.resize(image, (size, size), method="bilinear", antialias=True)


def five_patch_crop(image: tf.Tensor, position: tf.Tensor, side: tf.Tensor) -> tf.Tensor:
    """The `side` x `side` patch of a square image at `position`.

    Positions: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre.
    """
    full = tf.shape(image)[0]
    far = full - side
    centre = far // 2
    tops = tf.stack([0, 0, far, far, centre])
    lefts = tf.stack([0, far, 0, far, centre])
    return tf.image.crop_to_bounding_box(image, tops[position], lefts[position], side, side)


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
    """Resize to 256/224 of the input size, cut a random five-patch crop, resize back."""
    full, sides = patch_sides(image_size)
    position, side_index = sample_patch(seed)
    image = _resize(image, full)
    side = tf.constant(sides, tf.int32)[side_index]
    return _resize(five_patch_crop(image, position, side), image_size)


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
