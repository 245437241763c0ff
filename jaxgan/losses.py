"""The losses of the method (DESIGN §1): BCE, the critic's Eq. 4 and the generator's Eq. 2-3.

Each takes plain arrays (critic scores already computed) so that it can be checked by hand;
the gradient penalty takes the critic as a function of the label input.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy, summed over labels and averaged over the batch (Eq. 1, minimised).

    The paper's Eq. 1 sums over the |S| labels; the sum (not the mean) is what makes α = 10 a
    sensible balance against a critic score of order one.
    """
    per_label = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels)
    return jnp.mean(jnp.sum(per_label, axis=-1))


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array], interpolated_labels: jax.Array
) -> jax.Array:
    """E (‖∇_{y*} D(y*, x)‖₂ − 1)², the gradient taken per example w.r.t. the label input only.

    `critic` maps labels [B, L] to scores [B] with everything else (params, image features)
    closed over. Examples do not interact in the critic (no batch norm), so the gradient of the
    summed scores is each example's own gradient.
    """
    grads = jax.grad(lambda y: jnp.sum(critic(y)))(interpolated_labels)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=-1) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def critic_loss(
    real_scores: jax.Array,
    generated_scores: jax.Array,
    mismatched_scores: jax.Array | None,
    penalty: jax.Array,
    gp_weight: float,
    mismatched_weights: jax.Array | None = None,
) -> jax.Array:
    """Eq. 4: −E D(y,x) + ½ E D(ŷ,x) + ½ E D(y',x) + λ·GP.

    Without negative sampling (`mismatched_scores` None, ablations c and d) the generated term
    takes the whole weight 1. `mismatched_weights` (1 or 0 per pair) leave out of E D(y',x) the
    pairs that found no differing label set (`pairs.mismatched_labels`); when no pair of the
    batch found one, that term is 0.
    """
    if mismatched_scores is None:
        fake = jnp.mean(generated_scores)
    else:
        if mismatched_weights is None:
            mismatched_weights = jnp.ones_like(mismatched_scores)
        count = jnp.sum(mismatched_weights)
        mismatched = jnp.sum(mismatched_weights * mismatched_scores) / jnp.maximum(count, 1.0)
        fake = 0.5 * jnp.mean(generated_scores) + 0.5 * mismatched
    return -jnp.mean(real_scores) + fake + gp_weight * penalty


def generator_loss(
    generated_scores: jax.Array, logits: jax.Array, labels: jax.Array, alpha: float
) -> jax.Array:
    """Eq. 2-3: L_G' = −E D(ŷ, x) + α · BCE(s, y)."""
    return -jnp.mean(generated_scores) + alpha * bce(logits, labels)
