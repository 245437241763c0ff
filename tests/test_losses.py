import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import log_loss

from jaxgan import losses


def test_bce_sums_labels_and_averages_examples():
    logits = jnp.array([[2.0, -1.0, 0.0], [-3.0, 0.5, 1.5]])
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    by_hand = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum(1).mean()
    assert float(losses.bce(logits, labels)) == pytest.approx(by_hand, rel=1e-6)
    flat = log_loss(np.asarray(labels).ravel(), p.ravel())  # mean over all entries
    assert float(losses.bce(logits, labels)) == pytest.approx(3 * flat, rel=1e-5)


def test_critic_loss_weights_the_three_pair_kinds():
    real, fake, wrong = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0]), jnp.array([4.0, 2.0])
    # -2 + 0.5 * (-0.5) + 0.5 * 3 + 10 * 0.25
    assert float(losses.critic_loss(real, fake, wrong, jnp.array(0.25), 10.0)) == pytest.approx(
        1.75
    )
    # Without negative sampling the generated term takes weight 1: -2 - 0.5 + 0.
    assert float(losses.critic_loss(real, fake, None, jnp.array(0.0), 10.0)) == pytest.approx(-2.5)


def test_mismatched_pairs_without_a_differing_label_set_are_left_out():
    real, fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0])
    wrong, weights = jnp.array([4.0, 100.0]), jnp.array([1.0, 0.0])
    # -2 + 0.5 * (-0.5) + 0.5 * 4 (the second pair left out)
    loss = losses.critic_loss(real, fake, wrong, jnp.array(0.0), 10.0, weights)
    assert float(loss) == pytest.approx(-0.25)
    # No pair found one: the mismatched term is 0, the generated term keeps its weight ½.
    loss = losses.critic_loss(real, fake, wrong, jnp.array(0.0), 10.0, jnp.zeros(2))
    assert float(loss) == pytest.approx(-2.25)


def test_generator_loss_is_minus_critic_plus_alpha_bce():
    scores = jnp.array([0.5, 1.5])
    logits, labels = jnp.array([[0.0]]), jnp.array([[1.0]])
    expected = -1.0 + 10 * np.log(2.0)
    assert float(losses.generator_loss(scores, logits, labels, 10.0)) == pytest.approx(expected)


def test_gradient_penalty_of_a_linear_critic():
    # D(y) = w·y has gradient w everywhere: penalty (|w| - 1)^2 whatever y is.
    w = jnp.array([3.0, 4.0])  # |w| = 5
    y = jnp.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    assert float(losses.gradient_penalty(lambda y: y @ w, y)) == pytest.approx(16.0, rel=1e-5)


def test_gradient_penalty_is_per_example():
    # D(y) = 0.5 * a_i |y|^2 per row has gradient a_i y_i: the norms differ per example.
    y = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    penalty = losses.gradient_penalty(
        lambda y: 0.5 * jnp.sum(y**2, axis=-1) * jnp.array([1.0, 3.0]), y
    )
    # norms: 1 * 1 = 1 and 3 * 2 = 6 -> mean of 0 and 25.
    assert float(penalty) == pytest.approx(12.5, rel=1e-5)
