import jax
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


def test_generator_loss_is_minus_critic_plus_alpha_classification():
    scores = jnp.array([0.5, 1.5])
    assert float(losses.generator_loss(scores, jnp.array(0.25), 10.0)) == pytest.approx(1.5)


def test_classification_loss_by_name():
    logits, labels = jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 0.0]])
    bce = losses.ClassificationLoss("bce")
    assert float(bce(logits, labels)) == pytest.approx(np.log(2.0) + np.log1p(np.exp(2.0)))
    with pytest.raises(ValueError, match="unknown method.classification_loss 'bc'; choose"):
        losses.ClassificationLoss("bc")


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


def test_asl_by_hand():
    # p = sigmoid(logits) = 0.8808 (positive), 0.2689 and 0.6225 (negatives), 0.0180 (a
    # negative below the margin).
    logits = jnp.array([[2.0, -1.0, 0.5, -4.0]])
    labels = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits[0], np.float64)))
    shifted = np.maximum(p - 0.05, 0)  # p_m: negatives move down by the margin
    positive = np.log(p[0])  # γ+ = 0: weight 1
    negatives = shifted[1:] ** 4 * np.log(1 - shifted[1:])  # γ− = 4
    assert shifted[3] == 0.0  # an easy negative costs nothing
    expected = -(positive + negatives.sum())
    assert float(losses.asl(logits, labels)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.asl(logits, labels)) == pytest.approx(0.218749, abs=1e-6)
    # γ+ = 2 weighs the positive by (1 − p)²; two images average.
    two = losses.asl(jnp.tile(logits, (2, 1)), jnp.tile(labels, (2, 1)), 4.0, 2.0, 0.05)
    expected_two = -((1 - p[0]) ** 2 * positive + negatives.sum())
    assert float(two) == pytest.approx(expected_two, rel=1e-5)


def test_asl_focusing_weights_are_constants_in_the_gradient():
    logits = jnp.array([[2.0, -1.0, 0.5, -4.0]])
    labels = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits[0], np.float64)))
    shifted = np.maximum(p - 0.05, 0)
    # d/ds of −w·log p = −w (1 − p); of −w·log(1 − p + m) = w p (1 − p) / (1 − p + m) while
    # p > m, 0 below the margin.
    expected = np.where(
        np.asarray(labels[0]) > 0,
        -((1 - p) ** 1) * (1 - p),
        np.where(p > 0.05, shifted**4 * p * (1 - p) / (1 - shifted), 0.0),
    )
    grad = jax.grad(lambda s: losses.asl(s, labels, 4.0, 1.0, 0.05))(logits)[0]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-9)


def test_asl_without_focusing_or_margin_is_bce_exactly():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0, 4, (16, 7)), jnp.float32)
    labels = jnp.asarray(rng.random((16, 7)) < 0.3, jnp.float32)
    assert float(losses.asl(logits, labels, 0.0, 0.0, 0.0)) == float(losses.bce(logits, labels))
    np.testing.assert_array_equal(
        jax.grad(lambda s: losses.asl(s, labels, 0.0, 0.0, 0.0))(logits),
        jax.grad(lambda s: losses.bce(s, labels))(logits),
    )


def test_classification_loss_picks_asl_with_its_fields():
    logits, labels = jnp.array([[0.3, -2.0]]), jnp.array([[1.0, 0.0]])
    chosen = losses.ClassificationLoss("asl", gamma_neg=2.0, gamma_pos=1.0, clip=0.1)
    assert float(chosen(logits, labels)) == float(losses.asl(logits, labels, 2.0, 1.0, 0.1))
    with pytest.raises(ValueError, match="method.asl.clip must lie in"):
        losses.ClassificationLoss("asl", clip=1.0)


def asl_by_hand(logits, labels, gamma_neg, gamma_pos, margin):
    """Ridnik et al. (ICCV 2021), Eq. 1-3 written out in float64: L+ = (1 − p)^γ+ log p,
    L− = p_m^γ− log(1 − p_m), p_m = max(p − m, 0); −Σ_labels, averaged over images."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    p = 1 / (1 + np.exp(-logits))
    p_m = np.maximum(p - margin, 0.0)
    positive = (1 - p) ** gamma_pos * np.log(p)
    negative = p_m**gamma_neg * np.log(1 - p_m)
    return float(-(labels * positive + (1 - labels) * negative).sum(-1).mean())


ASL_LOGITS = np.array([[2.0, -0.5, 1.0, -3.0], [-1.0, 0.3, 3.0, 0.0]], np.float32)
ASL_LABELS = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], np.float32)


@pytest.mark.parametrize(
    "gamma_neg, gamma_pos, margin",
    [(2.0, 1.0, 0.1), (0.0, 1.0, 0.1), (2.0, 0.0, 0.1), (2.0, 1.0, 0.0), (4.0, 0.0, 0.05)],
)
def test_asl_matches_the_papers_formulas(gamma_neg, gamma_pos, margin):
    expected = asl_by_hand(ASL_LOGITS, ASL_LABELS, gamma_neg, gamma_pos, margin)
    got = losses.asl(jnp.asarray(ASL_LOGITS), jnp.asarray(ASL_LABELS), gamma_neg, gamma_pos, margin)
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("field", ["gamma_neg", "gamma_pos", "margin"])
def test_each_asl_knob_changes_the_loss(field):
    """γ−, γ+ and the margin each move the loss on this batch (positives and negatives on both
    sides of the margin, none saturated), so a knob that is ignored or swapped shows."""
    knobs = {"gamma_neg": 2.0, "gamma_pos": 1.0, "margin": 0.1}
    off = {**knobs, field: 0.0}
    on_value = float(losses.asl(ASL_LOGITS, ASL_LABELS, *knobs.values()))
    off_value = float(losses.asl(ASL_LOGITS, ASL_LABELS, *off.values()))
    assert off_value == pytest.approx(asl_by_hand(ASL_LOGITS, ASL_LABELS, *off.values()), rel=1e-5)
    assert abs(on_value - off_value) > 0.02 * abs(on_value)


def test_classification_loss_reads_its_config_fields():
    from jaxgan.base_config import get_base_config

    method = get_base_config().method
    method.classification_loss = "asl"
    method.asl.gamma_neg, method.asl.gamma_pos, method.asl.clip = 3.0, 0.5, 0.2
    chosen = losses.ClassificationLoss.from_config(method)
    assert chosen == losses.ClassificationLoss("asl", gamma_neg=3.0, gamma_pos=0.5, clip=0.2)


def test_the_scaled_generator_loss_is_the_papers_divided_by_alpha():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    labels = jnp.asarray(rng.random((6, 5)) < 0.4, jnp.float32)
    scores_of = jnp.asarray(rng.normal(size=(5,)), jnp.float32)  # a linear "critic"
    alpha = 7.0

    def loss(form):
        def of_logits(s):
            return losses.generator_loss(
                jax.nn.sigmoid(s) @ scores_of, losses.bce(s, labels), alpha, form
            )

        return of_logits

    paper, scaled = loss("paper"), loss("scaled")
    np.testing.assert_allclose(scaled(logits), paper(logits) / alpha, rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(scaled)(logits), jax.grad(paper)(logits) / alpha, rtol=1e-5, atol=1e-7
    )
    # The paper's form is Eq. 2 itself: −E D + α·BCE.
    expected = -jnp.mean(jax.nn.sigmoid(logits) @ scores_of) + alpha * losses.bce(logits, labels)
    np.testing.assert_allclose(paper(logits), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown generator loss"):
        losses.generator_loss(jnp.zeros(3), jnp.float32(1.0), alpha, "papr")
