"""The losses of the method (docs/method.md): the classification loss (BCE), the critic's Eq. 4
and the generator's Eq. 2-3.

Each takes plain arrays (critic scores already computed) so that it can be checked by hand;
the gradient penalty takes the critic as a function of the label input.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgan.choices import choose_one


def bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy, summed over labels and averaged over the batch (Eq. 1, minimised).

    The paper's Eq. 1 sums over the |S| labels; the sum (not the mean) is what makes α = 10 a
    sensible balance against a critic score of order one.
    """
    per_label = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels)
    return jnp.mean(jnp.sum(per_label, axis=-1))


def asl(
    logits: jax.Array,
    labels: jax.Array,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
) -> jax.Array:
    """Asymmetric loss (Ridnik et al., "Asymmetric Loss for Multi-Label Classification",
    ICCV 2021), summed over labels and averaged over images like `bce`, so α keeps its meaning:

        −Σ_labels [ y (1 − p)^γ+ log p + (1 − y) p_m^γ− log(1 − p_m) ],  p_m = max(p − clip, 0).

    The probability margin `clip` shifts easy negatives to zero loss; γ− down-weights the
    remaining easy negatives. The focusing weights (1 − p)^γ+ and p_m^γ− are constants in the
    gradient, as in the authors' released training code. γ− = γ+ = 0 with clip 0 is `bce`,
    bit for bit.
    """
    logits = logits.astype(jnp.float32)
    log_p = jax.nn.log_sigmoid(logits)
    if clip > 0:
        not_p_shifted = jnp.minimum(jax.nn.sigmoid(-logits) + clip, 1.0)  # 1 − p_m
        log_not_p = jnp.log(not_p_shifted)
    else:
        not_p_shifted = jax.nn.sigmoid(-logits)
        log_not_p = jax.nn.log_sigmoid(-logits)
    positive = labels * log_p
    negative = (1.0 - labels) * log_not_p
    if gamma_pos > 0:
        positive = positive * jax.lax.stop_gradient(jax.nn.sigmoid(-logits) ** gamma_pos)
    if gamma_neg > 0:
        negative = negative * jax.lax.stop_gradient((1.0 - not_p_shifted) ** gamma_neg)
    return jnp.mean(jnp.sum(-positive - negative, axis=-1))


# method.classification_loss -> the loss G is trained on in the supervised phase and that
# α weighs in the generator loss.
CLASSIFICATION_LOSSES = ("bce", "asl")


@dataclasses.dataclass(frozen=True)
class ClassificationLoss:
    """The multi-label classification loss chosen by `method.classification_loss`, summed over
    labels and averaged over images; `name` also names it in logs and metrics. The ASL fields
    are `method.asl.{gamma_neg, gamma_pos, clip}`; BCE ignores them."""

    name: str = "bce"
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05

    def __post_init__(self):
        choose_one("method.classification_loss", self.name, CLASSIFICATION_LOSSES)
        for field in ("gamma_neg", "gamma_pos"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"method.asl.{field} must be >= 0, got {getattr(self, field)}")
        if not 0 <= self.clip < 1:
            raise ValueError(f"method.asl.clip must lie in [0, 1), got {self.clip}")

    @classmethod
    def from_config(cls, method_config) -> "ClassificationLoss":
        asl_config = method_config.asl
        return cls(
            name=method_config.classification_loss,
            gamma_neg=asl_config.gamma_neg,
            gamma_pos=asl_config.gamma_pos,
            clip=asl_config.clip,
        )

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        if self.name == "asl":
            return asl(logits, labels, self.gamma_neg, self.gamma_pos, self.clip)
        return bce(logits, labels)


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


# method.generator_loss: how G's loss combines the critic's score and the classification loss.
# "paper": Eq. 2-3 as written. "scaled": the same divided by α, so that the loss (and its
# gradient) keeps the supervised phase's scale when the adversarial phase starts.
GENERATOR_LOSSES = ("paper", "scaled")


def generator_loss(
    generated_scores: jax.Array,
    classification_loss: jax.Array,
    alpha: float,
    form: str = "paper",
) -> jax.Array:
    """G's loss, L_cls the classification loss (BCE in the paper) already computed on G's
    logits. `form` "paper" is Eq. 2-3, L_G' = −E D(ŷ, x) + α · L_cls(s, y); "scaled" is
    L_G' / α = L_cls(s, y) − E D(ŷ, x) / α: the same gradient direction at every step, at the
    scale of the supervised phase's loss (α > 0)."""
    if form == "scaled":
        return classification_loss - jnp.mean(generated_scores) / alpha
    if form != "paper":
        raise ValueError(f"unknown generator loss {form!r}; choose one of {GENERATOR_LOSSES}")
    return -jnp.mean(generated_scores) + alpha * classification_loss
