"""Mismatched label sets: never the image's own, drawn uniformly from the rows that differ."""

import jax
import numpy as np

from jaxgan.pairs import mismatched_labels


def draw(seed, labels):
    other, weights = jax.jit(mismatched_labels)(jax.random.key(seed), labels)
    return np.asarray(other), np.asarray(weights)


def test_no_pair_carries_its_own_label_set():
    rng = np.random.default_rng(0)
    # 64 rows over 3 label sets, one of them dominant (like COCO's "person" alone).
    sets = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
    labels = sets[rng.choice(3, size=64, p=[0.8, 0.15, 0.05])]
    for seed in range(20):
        other, weights = draw(seed, labels)
        assert np.all(weights == 1)
        assert not np.any(np.all(other == labels, axis=1))
        # Each y' is the label set of a row of the same batch.
        assert all(any(np.array_equal(o, row) for row in labels) for o in other)


def test_a_label_set_alone_in_its_batch_is_left_out():
    labels = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    other, weights = draw(0, labels)
    np.testing.assert_array_equal(weights, [1, 1, 1, 1])
    np.testing.assert_array_equal(other[:3], np.tile([0, 1, 0], (3, 1)))
    np.testing.assert_array_equal(other[3], [1, 0, 0])
    _, weights = draw(0, np.ones((5, 3), np.float32))  # one label set for the whole batch
    np.testing.assert_array_equal(weights, np.zeros(5))


def test_partners_are_drawn_uniformly_among_the_differing_rows():
    # Rows 0 and 1 share a label set; the other rows are distinct: row 0 may pair with rows
    # 2..5 only, each a quarter of the time.
    labels = np.array(
        [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]],
        np.float32,
    )
    keys = jax.random.split(jax.random.key(1), 4000)
    other, _ = jax.vmap(mismatched_labels, in_axes=(0, None))(keys, labels)
    row0 = np.asarray(other[:, 0])
    partners = [int(np.flatnonzero((labels == o).all(1))[0]) for o in row0]
    counts = np.bincount(partners, minlength=6)
    assert counts[0] == counts[1] == 0
    np.testing.assert_allclose(counts[2:] / len(keys), 0.25, atol=0.03)
