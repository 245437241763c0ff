"""Pure, module-level step functions (docs/method.md). `compiled.py` binds a `StepContext` with
`functools.partial` and compiles them with `jax.jit` over the device mesh.

A batch is a dict {"image": float [B, H, W, 3], "labels": float {0, 1} [B, L]}. Randomness
comes from the state's base key with a step counter folded in, so a step's result depends only
on its inputs, never on how often it was called. Metrics name the classification loss by its
name (`bce`, ...), whichever phase computed it. Every step also returns "nonfinite": an int
with the bit of each network (`GENERATOR_FAILED`, `CRITIC_FAILED`) whose loss or gradient
norm was not finite, for the loop to read when it next logs or saves (no sync per step).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgan import losses, pairs
from jaxgan.sampling import gumbel_sigmoid
from jaxgan.state import TrainState

# Streams folded into the base key so the phases never reuse each other's randomness.
SUPERVISED_STREAM, CRITIC_STREAM, GENERATOR_STREAM, PAIRING_STREAM = 0, 1, 2, 3
# Bits of the "nonfinite" metric: which network's loss or gradient norm was not finite.
GENERATOR_FAILED, CRITIC_FAILED = 1, 2


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What the steps need besides state and data: the modules, optimisers and method knobs."""

    generator: nn.Module
    critic: nn.Module
    generator_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    classification_loss: losses.ClassificationLoss = losses.ClassificationLoss()
    alpha: float = 10.0
    gp_weight: float = 10.0
    beta: float = 0.9
    straight_through: bool = False
    negative_sampling: bool = True
    gumbel: bool = True
    ema_decay: float = 0.0  # model.ema_decay: 0 = no moving average of G
    generator_loss: str = "paper"  # method.generator_loss (`losses.GENERATOR_LOSSES`)
    # The generator update at which G's Adam state is started afresh (optim.
    # reset_generator_moments: the first of the adversarial phase); -1 = never.
    reset_generator_at: int = -1
    # G's learning rate decays linearly over the last `decay_steps` updates of each phase, to
    # `decay_to` times itself at the phase's last update (optim.generator_decay_*); 0 = constant.
    supervised_steps: int = 0
    total_steps: int = 0
    decay_steps: int = 0
    decay_to: float = 0.0

    @classmethod
    def from_config(cls, config, generator, critic, generator_tx, critic_tx) -> "StepContext":
        m, optim, schedule = config.method, config.optim, config.schedule
        return cls(
            generator=generator,
            critic=critic,
            generator_tx=generator_tx,
            critic_tx=critic_tx,
            classification_loss=losses.ClassificationLoss.from_config(m),
            alpha=m.alpha,
            gp_weight=m.gp_weight,
            beta=m.beta,
            straight_through=m.straight_through,
            negative_sampling=m.negative_sampling,
            gumbel=m.gumbel,
            ema_decay=config.model.ema_decay,
            generator_loss=m.generator_loss,
            reset_generator_at=schedule.supervised_steps if optim.reset_generator_moments else -1,
            supervised_steps=schedule.supervised_steps,
            total_steps=schedule.supervised_steps + schedule.adversarial_steps,
            decay_steps=optim.generator_decay_steps,
            decay_to=optim.generator_decay_to,
        )

    @property
    def pair_kinds(self) -> tuple[str, ...]:
        return pairs.pair_kinds(self.negative_sampling)


def _key(state: TrainState, stream: int, counter: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(state.key(), stream), counter)


def supervised_keys(state: TrainState) -> dict[str, jax.Array]:
    """The randomness of the supervised update at `state.step`: G's dropout."""
    return {"dropout": _key(state, SUPERVISED_STREAM, state.step)}


def critic_keys(state: TrainState) -> dict[str, jax.Array]:
    """The randomness of the critic update at `state.critic_updates`: the sample ŷ, G's dropout
    while drawing it, ε of the gradient penalty's interpolation, and the mismatched pairing."""
    sample, dropout, eps = jax.random.split(_key(state, CRITIC_STREAM, state.critic_updates), 3)
    pairing = _key(state, PAIRING_STREAM, state.critic_updates)
    return {"sample": sample, "dropout": dropout, "eps": eps, "pairing": pairing}


def generator_keys(state: TrainState) -> dict[str, jax.Array]:
    """The randomness of the generator update at `state.step`: the sample ŷ and G's dropout."""
    sample, dropout = jax.random.split(_key(state, GENERATOR_STREAM, state.step))
    return {"sample": sample, "dropout": dropout}


def _generator_train(ctx: StepContext, params, batch_stats, images, key):
    """G in training mode: logits and the batch statistics it would write."""
    logits, updates = ctx.generator.apply(
        {"params": params, "batch_stats": batch_stats},
        images,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": key},
    )
    return logits, updates.get("batch_stats", batch_stats)


def _features(ctx: StepContext, state: TrainState, images) -> jax.Array | None:
    """z = f_ext(x): the frozen backbone, never differentiated; None for an unconditional D."""
    if not ctx.critic.conditional:
        return None
    z = ctx.generator.apply(state.f_variables, images, train=False, features_only=True)
    return jax.lax.stop_gradient(z)


def _sample(ctx: StepContext, key, logits) -> jax.Array:
    """ŷ: a Gumbel-sigmoid sample of G's output, or p = sigmoid(s) without Gumbel (ablation e)."""
    if not ctx.gumbel:
        return jax.nn.sigmoid(logits)
    return gumbel_sigmoid(key, logits, ctx.beta, ctx.straight_through)


def _scorer(ctx: StepContext, critic_params):
    return lambda labels, features: ctx.critic.apply({"params": critic_params}, labels, features)


def _nonfinite(network_bit: int, loss: jax.Array, grads) -> jax.Array:
    """`network_bit` when the loss or the gradients' global norm is not finite, else 0."""
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    return jnp.where(finite, 0, network_bit).astype(jnp.int32)


def _apply_gradients(tx, grads, opt_state, params, scale=None):
    """One optimiser step: the new parameters and optimiser state. `scale` multiplies the
    update (for Adam and AdamW, the learning rate)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    if scale is not None:
        updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
    return optax.apply_updates(params, updates), opt_state


def learning_rate_scale(ctx: StepContext, step: jax.Array, phase_end: int) -> jax.Array | None:
    """The factor on G's learning rate at generator update `step` of a phase that ends at
    `phase_end`: 1, falling linearly over the phase's last `ctx.decay_steps` updates to
    `ctx.decay_to` at its last one. None without a decay."""
    if ctx.decay_steps <= 0:
        return None
    left = jnp.asarray(phase_end - step, jnp.float32)  # updates left, this one included
    fraction = jnp.clip((left - 1.0) / ctx.decay_steps, 0.0, 1.0)
    return ctx.decay_to + (1.0 - ctx.decay_to) * fraction


def _update_generator(
    state: TrainState, grads, batch_stats, ctx: StepContext, phase_end: int
) -> TrainState:
    """Applies one update of G (both phases go through here, so they cannot drift apart): its
    optimiser step (at the learning rate of `learning_rate_scale`), the running statistics
    its training-mode pass measured, the moving average of both when `ctx.ema_decay` > 0,
    and the step counter."""
    params, opt_state = _apply_gradients(
        ctx.generator_tx,
        grads,
        state.g_opt_state,
        state.g_params,
        learning_rate_scale(ctx, state.step, phase_end),
    )
    g_ema = state.g_ema
    if ctx.ema_decay > 0:
        new = {"params": params, "batch_stats": batch_stats}
        g_ema = optax.incremental_update(new, state.g_ema, step_size=1.0 - ctx.ema_decay)
    return state.replace(
        step=state.step + 1,
        g_params=params,
        g_batch_stats=batch_stats,
        g_opt_state=opt_state,
        g_ema=g_ema,
    )


def supervised_step(state: TrainState, batch: dict, ctx: StepContext) -> tuple[TrainState, dict]:
    """Phase 1: one update of G on the classification loss alone."""
    key = supervised_keys(state)["dropout"]

    def loss_fn(params):
        logits, batch_stats = _generator_train(
            ctx, params, state.g_batch_stats, batch["image"], key
        )
        return ctx.classification_loss(logits, batch["labels"]), batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
    state = _update_generator(state, grads, batch_stats, ctx, ctx.supervised_steps)
    nonfinite = _nonfinite(GENERATOR_FAILED, loss, grads)
    return state, {ctx.classification_loss.name: loss, "nonfinite": nonfinite}


def critic_step(state: TrainState, batches: dict, ctx: StepContext) -> tuple[TrainState, dict]:
    """One critic update on Eq. 4, each pair kind from its own batch.

    batches: pair kind -> batch, one per kind of `ctx.pair_kinds` (`pairs`: "matched",
    "generated", and "mismatched" with negative sampling). Generated pairs are (x, ŷ) with
    ŷ sampled from G(x) under stop_gradient; the gradient penalty interpolates that batch's
    real labels with ŷ at the same images. Mismatched pairs pair each image of the third batch
    with the label set of another image of it that differs from its own (`pairs`). G (its
    batch statistics included) stays fixed.
    """
    keys = critic_keys(state)
    sample_key, dropout_key, eps_key = keys["sample"], keys["dropout"], keys["eps"]
    if set(batches) != set(ctx.pair_kinds):
        raise ValueError(f"critic batches {sorted(batches)} != pair kinds {ctx.pair_kinds}")
    matched, generated = batches["matched"], batches["generated"]

    logits, _ = _generator_train(
        ctx, state.g_params, state.g_batch_stats, generated["image"], dropout_key
    )
    fake_labels = jax.lax.stop_gradient(_sample(ctx, sample_key, logits))
    real_features = _features(ctx, state, matched["image"])
    fake_features = _features(ctx, state, generated["image"])
    eps = jax.random.uniform(eps_key, (fake_labels.shape[0], 1))
    interpolated = eps * generated["labels"] + (1.0 - eps) * fake_labels
    if ctx.negative_sampling:
        mismatched = batches["mismatched"]
        mismatched_features = _features(ctx, state, mismatched["image"])
        other_labels, pair_weights = pairs.mismatched_labels(keys["pairing"], mismatched["labels"])

    def loss_fn(critic_params):
        critic = _scorer(ctx, critic_params)
        real = critic(matched["labels"], real_features)
        fake = critic(fake_labels, fake_features)
        wrong, weights = None, None
        if ctx.negative_sampling:
            wrong, weights = critic(other_labels, mismatched_features), pair_weights
        penalty = losses.gradient_penalty(lambda y: critic(y, fake_features), interpolated)
        loss = losses.critic_loss(real, fake, wrong, penalty, ctx.gp_weight, weights)
        return loss, {"wasserstein": jnp.mean(real) - jnp.mean(fake), "gradient_penalty": penalty}

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic_params)
    params, opt_state = _apply_gradients(
        ctx.critic_tx, grads, state.critic_opt_state, state.critic_params
    )
    state = state.replace(
        critic_updates=state.critic_updates + 1, critic_params=params, critic_opt_state=opt_state
    )
    return state, {
        "critic_loss": loss,
        **metrics,
        "nonfinite": _nonfinite(CRITIC_FAILED, loss, grads),
    }


def reset_generator_moments_if_due(state: TrainState, ctx: StepContext) -> TrainState:
    """G's optimiser state started afresh (Adam's moments and step count) when `state.step` is
    `ctx.reset_generator_at`, else unchanged: a function of the step, so that the reset
    happens once, at the first generator update of the adversarial phase, however the run
    is interrupted and resumed."""
    if ctx.reset_generator_at < 0:
        return state
    fresh = ctx.generator_tx.init(state.g_params)
    due = state.step == ctx.reset_generator_at
    opt_state = jax.tree.map(lambda f, o: jnp.where(due, f, o), fresh, state.g_opt_state)
    return state.replace(g_opt_state=opt_state)


def generator_step(state: TrainState, batch: dict, ctx: StepContext) -> tuple[TrainState, dict]:
    """One update of G on Eq. 2: −E D(ŷ, x) + α·L_cls (or that divided by α,
    `ctx.generator_loss`), ŷ a differentiable sample of G(x)."""
    state = reset_generator_moments_if_due(state, ctx)
    keys = generator_keys(state)
    sample_key, dropout_key = keys["sample"], keys["dropout"]
    features = _features(ctx, state, batch["image"])
    critic = _scorer(ctx, state.critic_params)
    loss_name = ctx.classification_loss.name

    def loss_fn(params):
        logits, batch_stats = _generator_train(
            ctx, params, state.g_batch_stats, batch["image"], dropout_key
        )
        scores = critic(_sample(ctx, sample_key, logits), features)
        classification = ctx.classification_loss(logits, batch["labels"])
        loss = losses.generator_loss(scores, classification, ctx.alpha, ctx.generator_loss)
        metrics = {
            "generator_loss": loss,
            loss_name: classification,
            "critic_score": jnp.mean(scores),
        }
        return loss, (batch_stats, metrics)

    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.g_params
    )
    metrics["nonfinite"] = _nonfinite(GENERATOR_FAILED, loss, grads)
    return _update_generator(state, grads, batch_stats, ctx, ctx.total_steps), metrics


def adversarial_step(
    state: TrainState, critic_batches: dict, generator_batch: dict, ctx: StepContext
) -> tuple[TrainState, dict]:
    """One whole phase-2 update as a single compiled call: n_critic critic updates, then one
    generator update. `critic_batches` is `critic_step`'s dict with a leading axis of
    length n_critic (fresh batches for every update; `pairs.batches_per_update` counts them)."""

    def one_critic_update(carry, batches):
        return critic_step(carry, batches, ctx)

    state, critic_metrics = jax.lax.scan(one_critic_update, state, critic_batches)
    state, generator_metrics = generator_step(state, generator_batch, ctx)
    last_critic = jax.tree.map(lambda m: m[-1], critic_metrics)
    nonfinite = jnp.max(critic_metrics["nonfinite"]) | generator_metrics["nonfinite"]
    return state, {**last_critic, **generator_metrics, "nonfinite": nonfinite}
