"""The paper's augmentation: patches, scales, flips, shapes, ranges and determinism."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from jaxgan.data import augment


def data_config(augment_name="paper", image_size=32, normalization="imagenet"):
    return ml_collections.ConfigDict(
        {"augment": augment_name, "image_size": image_size, "normalization": normalization}
    )


def coordinate_image(height, width):
    """float [height, width, 3]: channel 0 is the row, channel 1 the column, channel 2 zero."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1), tf.float32)


def seeds(n):
    return [tf.constant([7, i], tf.int64) for i in range(n)]


def test_patch_sides_are_the_papers_at_224():
    assert augment.patch_sides(224) == (256, (256, 224, 192, 168, 128))
    full, sides = augment.patch_sides(299)  # Inception: same fractions of a larger square
    assert full == 342 and sides[0] == full and sides == tuple(sorted(sides, reverse=True))


@pytest.mark.parametrize("side", [256, 224, 192, 168, 128])
def test_patch_offset_is_each_corner_and_the_centre(side):
    far = 256 - side
    expected = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)]
    for position, top_left in enumerate(expected):
        offset = augment.patch_offset(tf.constant(position), tf.constant(side), 256)
        assert tuple(int(v) for v in offset) == top_left


def test_sample_patch_draws_every_position_and_scale_uniformly_enough():
    draws = [tuple(int(v) for v in augment.sample_patch(s)) for s in seeds(500)]
    positions = np.bincount([p for p, _ in draws], minlength=6)
    scales = np.bincount([k for _, k in draws], minlength=6)
    assert positions[5] == 0 and scales[5] == 0  # nothing out of range
    assert positions[:5].min() > 60 and scales[:5].min() > 60  # ~100 each expected
    assert len(set(draws)) == 25  # every (position, scale) pair occurs


@pytest.mark.parametrize("height, width", [(256, 256), (120, 400), (333, 250)])
def test_paper_patch_output_is_the_sampled_patch(height, width):
    """The output's coordinate channels tell which part of the image was cut: their mean is
    the patch centre and their span its side, in the 256x256 frame scaled to the image."""
    image = coordinate_image(height, width)
    _, sides = augment.patch_sides(224)
    seen = set()
    for seed in seeds(60):
        position, side_index = (int(v) for v in augment.sample_patch(seed))
        side = sides[side_index]
        far = 256 - side
        top, left = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)][position]
        out = augment.paper_patch(image, seed, 224).numpy()
        assert out.shape == (224, 224, 3)
        for channel, start, extent in ((0, top, height), (1, left, width)):
            scale = extent / 256
            centre = (start + side / 2) * scale - 0.5
            np.testing.assert_allclose(out[..., channel].mean(), centre, atol=1.0)
            span = out[..., channel].max() - out[..., channel].min()
            assert abs(span - (side * scale - 1)) < 2.5
        seen.add((position, side_index))
    assert len(seen) > 15


@pytest.mark.parametrize("normalization", sorted(augment.NORMALIZATIONS))
@pytest.mark.parametrize("augment_name", augment.AUGMENTATIONS)
def test_preprocess_shapes_and_ranges(augment_name, normalization):
    rng = np.random.default_rng(0)
    config = data_config(augment_name, 40, normalization)
    mean, std = (np.array(v) for v in augment.NORMALIZATIONS[normalization])
    low, high = (0 - mean) / std, (1 - mean) / std
    for h, w in [(17, 53), (64, 48), (40, 40)]:
        image = tf.constant(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for out in (
            augment.preprocess_train(image, tf.constant([1, h * w], tf.int64), config),
            augment.preprocess_eval(image, config),
        ):
            out = out.numpy()
            assert out.shape == (40, 40, 3) and out.dtype == np.float32
            assert np.all(out >= low - 1e-5) and np.all(out <= high + 1e-5)
    black = augment.preprocess_eval(tf.zeros((8, 8, 3), tf.uint8), config).numpy()
    white = augment.preprocess_eval(tf.fill((8, 8, 3), tf.constant(255, tf.uint8)), config)
    np.testing.assert_allclose(black[0, 0], low, rtol=1e-5)
    np.testing.assert_allclose(white.numpy()[0, 0], high, rtol=1e-5)


def test_train_is_deterministic_given_its_seed_and_varies_with_it():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    config = data_config()
    a = augment.preprocess_train(image, tf.constant([3, 4], tf.int64), config).numpy()
    b = augment.preprocess_train(image, tf.constant([3, 4], tf.int64), config).numpy()
    np.testing.assert_array_equal(a, b)
    others = [augment.preprocess_train(image, s, config).numpy() for s in seeds(8)]
    assert sum(not np.array_equal(a, o) for o in others) >= 6


def test_flip_happens_about_half_the_time_and_none_means_plain_resize():
    image = tf.constant(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    plain = augment.preprocess_eval(image, data_config("none")).numpy()
    flipped = plain[:, ::-1]
    outcomes = []
    for seed in seeds(40):
        out = augment.preprocess_train(image, seed, data_config("flip")).numpy()
        is_plain, is_flipped = np.allclose(out, plain), np.allclose(out, flipped)
        assert is_plain != is_flipped
        outcomes.append(is_flipped)
        np.testing.assert_array_equal(
            augment.preprocess_train(image, seed, data_config("none")).numpy(), plain
        )
    assert 8 <= sum(outcomes) <= 32


def test_check_choices_rejects_unknown_names():
    with pytest.raises(ValueError, match="data.augment"):
        augment.check_choices(data_config("random_crop"))
    with pytest.raises(ValueError, match="data.normalization"):
        augment.check_choices(data_config(normalization="caffe"))


@pytest.mark.parametrize("height,width", [(24, 24), (24, 40), (40, 24), (17, 31)])
def test_resize_is_tf_resize_and_skips_only_an_image_already_at_the_size(height, width):
    # The shortcut for an image already at the input size must return exactly what the
    # resize returns, and no other shape may take it.
    rng = np.random.default_rng(height * width)
    image = tf.constant(rng.random((height, width, 3), dtype=np.float32))
    expected = tf.image.resize(image, (24, 24), method="bilinear", antialias=True).numpy()
    np.testing.assert_array_equal(augment._resize(image, 24).numpy(), expected)
