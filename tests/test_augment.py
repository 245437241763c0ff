"""The device augmentation (JAX): the TensorFlow augmentation's pixels on fixed crop boxes,
its distribution over many draws, determinism, and that training really augments."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tf_augment  # the TensorFlow augmentation the pipeline ran before

from jaxgan.data import augment

# Pixels on [0, 1]: the two implementations compute the same weights in float32.
PIXEL_TOLERANCE = 1e-5


def transform(name="paper", size=32, normalization="unit"):
    return augment.Transform(name, size, normalization)


def tf_config(t):
    return ml_collections.ConfigDict(
        {"augment": t.augment, "image_size": t.image_size, "normalization": t.normalization}
    )


def random_image(side, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_patch_sides_are_the_papers_at_224():
    assert augment.patch_sides(224) == (256, (256, 224, 192, 168, 128))
    full, sides = augment.patch_sides(299)  # Inception: same fractions of a larger square
    assert full == 342 and sides[0] == full and sides == tuple(sorted(sides, reverse=True))


@pytest.mark.parametrize("size, stored", [(224, 256), (32, 32), (24, 37), (16, 32)])
def test_every_fixed_box_gives_the_tensorflow_pixels(size, stored):
    """For each of the 25 (position, scale) boxes: the same box as the TensorFlow code
    computes, and the same resized pixels within PIXEL_TOLERANCE."""
    image = random_image(stored, size)
    as_float = tf.image.convert_image_dtype(tf.constant(image), tf.float32)
    full, sides = tf_augment.patch_sides(size)
    for side_index in range(5):
        for position in range(5):
            side = sides[side_index]
            top, left = (int(v) for v in tf_augment.patch_offset(position, side, full))

            def pixels(offset, side=side):
                start = int(np.round(offset * stored / full))
                return start, max(int(np.round((offset + side) * stored / full)), start + 1)

            (y0, y1), (x0, x1) = pixels(top), pixels(left)
            box = augment.patch_box(jnp.int32(position), jnp.int32(side_index), size, stored)
            assert tuple(int(b) for b in box) == (y0, y1, x0, x1)
            expected = tf.clip_by_value(tf_augment._resize(as_float[y0:y1, x0:x1], size), 0, 1)
            out = np.asarray(augment.crop_resize(jnp.asarray(image), box, size))
            np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=PIXEL_TOLERANCE)


@pytest.mark.parametrize("normalization", sorted(augment.NORMALIZATIONS))
def test_eval_image_is_the_tensorflow_eval_preprocessing(normalization):
    t = transform("none", 24, normalization)
    for side in (24, 32, 17):
        image = random_image(side, side)
        expected = tf_augment.preprocess_eval(tf.constant(image), tf_config(t)).numpy()
        out = np.asarray(augment.eval_image(jnp.asarray(image), t))
        np.testing.assert_allclose(out, expected, rtol=0, atol=PIXEL_TOLERANCE * 5)


def test_train_image_is_the_tensorflow_crop_for_its_draws():
    """A whole augmented example: the patch and flip its key draws, applied as the
    TensorFlow code applies that patch and flip."""
    t = transform("paper", 24, "imagenet")
    image = random_image(32, 3)
    as_float = tf.image.convert_image_dtype(tf.constant(image), tf.float32)
    for i in range(12):
        key = jax.random.key(i)
        position, side_index, flipped = (int(v) for v in augment.draws(key, t))
        y0, y1, x0, x1 = (int(b) for b in augment.patch_box(position, side_index, 24, 32))
        expected = tf.clip_by_value(tf_augment._resize(as_float[y0:y1, x0:x1], 24), 0, 1)
        expected = expected.numpy()[:, ::-1] if flipped else expected.numpy()
        expected = tf_augment.normalize(expected, "imagenet").numpy()
        out = np.asarray(augment.train_image(jnp.asarray(image), key, t))
        np.testing.assert_allclose(out, expected, rtol=0, atol=PIXEL_TOLERANCE * 5)


def test_draws_have_the_papers_distribution():
    """Over 20,000 keys: positions and scales uniform on 5 values each and independent,
    flips at rate 1/2 (bounds are ~5 standard deviations)."""
    keys = jax.random.split(jax.random.key(0), 20_000)
    position, side, flip = jax.vmap(lambda k: augment.draws(k, transform()))(keys)
    position, side, flip = (np.asarray(v) for v in (position, side, flip))
    n = len(keys)
    for values in (position, side):
        counts = np.bincount(values, minlength=6)
        assert counts[5] == 0 and abs(counts[:5] / n - 0.2).max() < 0.015
    joint = np.bincount(position * 5 + side, minlength=25) / n
    assert abs(joint - 0.04).max() < 0.008
    assert abs(flip.mean() - 0.5) < 0.02
    # The boxes' scale and aspect ratio: square patches of the five sides, at 224.
    boxes = jax.vmap(lambda p, s: jnp.stack(augment.patch_box(p, s, 224, 256)))(position, side)
    boxes = np.asarray(boxes)
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    assert (heights == widths).all()
    assert set(np.unique(heights)) == {256, 224, 192, 168, 128}
    assert abs(heights.mean() - np.mean(augment.PATCH_SIDES)) < 2


def test_flip_only_and_none():
    image = jnp.asarray(random_image(16, 5))
    plain = np.asarray(augment.eval_image(image, transform("none", 16)))
    flips = []
    for i in range(40):
        key = jax.random.key(i)
        out = np.asarray(augment.train_image(image, key, transform("flip", 16)))
        is_plain, is_flipped = np.allclose(out, plain), np.allclose(out, plain[:, ::-1])
        assert is_plain != is_flipped
        flips.append(is_flipped)
        none = augment.train_image(image, key, transform("none", 16))
        np.testing.assert_array_equal(np.asarray(none), plain)
    assert 8 <= sum(flips) <= 32


def test_train_batch_is_keyed_by_seed_epoch_and_position_alone():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 6, 32, 32, 3), dtype=np.uint8)
    batch = {
        "image": images,
        "labels": np.zeros((2, 6, 3), np.float32),
        "epoch": np.full((2, 6), 3, np.int32),
        "index": np.arange(12, dtype=np.int32).reshape(2, 6),
    }
    t = transform("paper", 24)
    stacked = augment.train_batch(batch, t, seed=7)["image"]
    assert stacked.shape == (2, 6, 24, 24, 3)
    # One example alone, or its batch cut in two: the same pixels.
    single = {k: v[1, 2:3] for k, v in batch.items()}
    np.testing.assert_array_equal(
        np.asarray(augment.train_batch(single, t, seed=7)["image"][0]), np.asarray(stacked[1, 2])
    )
    other_seed = augment.train_batch(batch, t, seed=8)["image"]
    other_epoch = augment.train_batch({**batch, "epoch": batch["epoch"] + 1}, t, seed=7)["image"]
    for other in (other_seed, other_epoch):
        differs = [
            not np.array_equal(stacked[i, j], other[i, j]) for i in range(2) for j in range(6)
        ]
        assert sum(differs) >= 8
    # One image at every position of an epoch: each position draws its own augmentation
    # (50 crops and flips to draw from).
    same = {**batch, "image": np.broadcast_to(images[:1, :1], images.shape).copy()}
    outputs = np.asarray(augment.train_batch(same, t, seed=7)["image"]).reshape(12, -1)
    assert len({row.tobytes() for row in outputs}) >= 6


def test_check_choices_rejects_unknown_names():
    with pytest.raises(ValueError, match="data.augment"):
        augment.check_choices(
            ml_collections.ConfigDict({"augment": "crop", "normalization": "unit"})
        )
    with pytest.raises(ValueError, match="data.normalization"):
        augment.check_choices(ml_collections.ConfigDict({"augment": "paper", "normalization": "x"}))
