"""The critic's pairs (paper Eq. 4): which kinds an adversarial update reads, how many batches
that is, and how mismatched label sets are drawn.

The loop reads batches, the step consumes them and the resume position counts them, all from
`pair_kinds` and `batches_per_update` here.

A mismatched pair (x, y′) must carry "a label set which does not correspond to image x". Taking
a neighbour's label set (a roll of the batch) gives an image its own label set whenever the
neighbour shares it, which is common where a few label sets dominate. Here each image draws
its y′ from the rows of its batch whose label set differs from its own.
"""

import jax
import jax.numpy as jnp

# Each kind of (labels, image) pair the critic scores comes from its own batch.
PAIR_KINDS = ("matched", "generated", "mismatched")


def pair_kinds(negative_sampling: bool) -> tuple[str, ...]:
    """The pair kinds of one critic update: mismatched pairs only with negative sampling."""
    return PAIR_KINDS if negative_sampling else PAIR_KINDS[:2]


def batches_per_update(n_critic: int, negative_sampling: bool) -> int:
    """Batches one adversarial update reads: a fresh one per pair kind for each of the
    n_critic critic updates, then one for the generator's update."""
    return n_critic * len(pair_kinds(negative_sampling)) + 1


def mismatched_labels(key: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For each row i of `labels` [B, L] ({0, 1}), the label set of a row j whose label set
    differs from row i's, drawn uniformly among such rows; and weights [B]: 1 where row i found
    one, 0 where every row of the batch carries row i's label set.

    A row with weight 0 is paired with its own label set and must be left out of the
    mismatched mean (see `losses.critic_loss`); it is never counted as mismatched.
    """
    labels = jnp.asarray(labels)
    positives = labels.astype(jnp.float32)
    # Hamming distance between every two label sets; exact for {0, 1} inputs.
    highest = jax.lax.Precision.HIGHEST
    distance = jnp.matmul(positives, (1 - positives).T, precision=highest) + jnp.matmul(
        1 - positives, positives.T, precision=highest
    )
    differs = distance > 0.5
    # The arg-max of independent uniforms over the allowed rows is a uniform draw among them.
    draws = jnp.where(differs, jax.random.uniform(key, differs.shape), -1.0)
    partner = jnp.argmax(draws, axis=1)
    return labels[partner], jnp.any(differs, axis=1).astype(jnp.float32)
