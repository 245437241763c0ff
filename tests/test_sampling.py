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


def test_soft_samples_lie_in_unit_interval_and_track_logits():
    keys = jax.random.split(jax.random.key(2), 20_000)
    low = jax.vmap(lambda k: gumbel_sigmoid(k, jnp.full(3, -3.0)))(keys)
    high = jax.vmap(lambda k: gumbel_sigmoid(k, jnp.full(3, 3.0)))(keys)
    assert float(low.min()) > 0.0 and float(high.max()) < 1.0
    assert float(high.mean()) > 0.8 > 0.2 > float(low.mean())


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
