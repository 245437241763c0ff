import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.sampling import gumbel_sigmoid, logistic_noise


def test_logistic_noise_has_logistic_moments():
    noise = np.asarray(logistic_noise(jax.random.key(0), (200_000,)))
    assert np.all(np.isfinite(noise))
    assert abs(noise.mean()) < 0.02
    assert noise.var() == pytest.approx(np.pi**2 / 3, rel=0.03)  # variance of Logistic(0, 1)


@pytest.mark.parametrize("beta", [0.9, 3.0])
def test_hard_samples_are_bernoulli_of_sigmoid(beta):
    logits = jnp.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    keys = jax.random.split(jax.random.key(1), 40_000)
    hard = jax.vmap(lambda k: gumbel_sigmoid(k, logits, beta, straight_through=True))(keys)
    chex.assert_trees_all_equal(jnp.unique(hard), jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(hard.mean(0), jax.nn.sigmoid(logits), atol=0.01)


@pytest.mark.parametrize("beta", [0.5, 0.9])  # larger β saturates float32 sigmoids at 1
def test_soft_samples_are_sigmoid_of_beta_times_logit_plus_logistic_noise(beta):
    """logit(ŷ) / β − s must be Logistic(0, 1) noise: mean 0, variance π²/3."""
    logits = jnp.array([-3.0, 0.0, 2.0])
    keys = jax.random.split(jax.random.key(2), 50_000)
    soft = np.asarray(jax.vmap(lambda k: gumbel_sigmoid(k, logits, beta))(keys), np.float64)
    assert soft.min() > 0.0 and soft.max() < 1.0
    noise = (np.log(soft) - np.log1p(-soft)) / beta - np.asarray(logits)
    np.testing.assert_allclose(noise.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(noise.var(0), np.pi**2 / 3, rtol=0.03)


@pytest.mark.parametrize("straight_through", [False, True])
def test_gradients_flow_through_samples(straight_through):
    key = jax.random.key(3)
    logits = jnp.array([0.3, -1.0, 2.0])
    grad = jax.grad(lambda s: jnp.sum(gumbel_sigmoid(key, s, 0.9, straight_through)))(logits)
    # d/ds sigmoid(beta (s + n)) = beta * y (1 - y) > 0 for the soft sample y.
    soft = gumbel_sigmoid(key, logits, 0.9)
    np.testing.assert_allclose(grad, 0.9 * soft * (1 - soft), rtol=1e-5)
    assert np.all(np.asarray(grad) > 0)


def test_same_key_same_sample_and_keys_differ():
    logits = jnp.zeros(16)
    a = gumbel_sigmoid(jax.random.key(4), logits)
    chex.assert_trees_all_equal(a, gumbel_sigmoid(jax.random.key(4), logits))
    assert not np.allclose(a, gumbel_sigmoid(jax.random.key(5), logits))
