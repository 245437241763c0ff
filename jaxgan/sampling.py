"""The Gumbel-sigmoid sampler: a differentiable Bernoulli sample of each label (paper §3.2)."""

import jax
import jax.numpy as jnp


def logistic_noise(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """log u - log(1 - u), u ~ U(0, 1): the difference of two Gumbel variables."""
    # Keep u away from 0 and 1 so that neither log is infinite.
    tiny = jnp.finfo(dtype).tiny
    u = jax.random.uniform(key, shape, dtype, minval=tiny, maxval=1.0 - jnp.finfo(dtype).eps)
    return jnp.log(u) - jnp.log1p(-u)


def gumbel_sigmoid(
    key: jax.Array, logits: jax.Array, beta: float = 0.9, straight_through: bool = False
) -> jax.Array:
    """ŷ = sigmoid(beta * (s + log u - log(1 - u))), element-wise.

    `beta` is the inverse temperature (the paper's 0.9, no annealing). With `straight_through`,
    the forward value is round(ŷ) ∈ {0, 1} while the gradient is that of the soft sample.
    A hard sample is 1 with probability sigmoid(s), whatever beta.
    """
    noise = logistic_noise(key, logits.shape, logits.dtype)
    soft = jax.nn.sigmoid(beta * (logits + noise))
    if not straight_through:
        return soft
    hard = jnp.round(soft)
    return soft + jax.lax.stop_gradient(hard - soft)
