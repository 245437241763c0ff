"""The step functions against computations written out in this file.

Each step's loss is recomputed here from the networks' own outputs (critic scores on the pairs
the method prescribes, with the step's keys), and its update is checked against this file's
gradient of that loss: the tests use plain SGD, so an update is `−lr · gradient`. In the tiny
state f_ext is another network than G and G's running statistics differ from a batch's, so a
step that reads the wrong variables or runs in the wrong mode fails.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from tiny import (
    BATCH,
    LEARNING_RATE,
    N_CRITIC,
    L,
    critic_batches,
    make_batch,
    make_context,
    make_state,
)

from jaxgan import compiled, evaluate, losses, pairs, parallel, steps
from jaxgan.sampling import gumbel_sigmoid

# Table 3's switches (and the straight-through sampler), as StepContext fields.
VARIANTS = {
    "full": {},
    "no-negatives": {"negative_sampling": False},
    "unconditional": {"conditional": False, "negative_sampling": False},
    "no-gumbel": {"gumbel": False},
    "straight-through": {"straight_through": True},
}


@functools.cache
def context(optimizer="adam", variant="full", **extra):
    """One StepContext per setting, shared by the tests so that their compiled steps are too."""
    return make_context(optimizer, **VARIANTS[variant], **extra)


_COMPILED = {}


def jitted(step, ctx):
    key = (step, id(ctx))
    if key not in _COMPILED:
        _COMPILED[key] = (ctx, jax.jit(functools.partial(step, ctx=ctx)))
    return _COMPILED[key][1]


def first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def flat(tree) -> np.ndarray:
    leaves = jax.tree.leaves(jax.device_get(tree))
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])


def relative_error(actual, expected) -> float:
    a, e = flat(actual), flat(expected)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-12))


def gradient_of_update(before, after):
    """The gradient an SGD update used: (before − after) / lr."""
    return jax.tree.map(lambda b, a: (b - a) / LEARNING_RATE, before, after)


def assert_unchanged(before, after):
    chex.assert_trees_all_equal(jax.device_get(before), jax.device_get(after))


def bce_by_hand(logits, labels):
    """−Σ_labels [y log p + (1 − y) log(1 − p)], averaged over images."""
    log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    return -jnp.mean(jnp.sum(labels * log_p + (1 - labels) * log_not_p, axis=-1))


# ASL knobs unlike the defaults and unlike each other, so that a step that silently falls back
# to BCE (or to the default knobs) computes another loss.
ASL = losses.ClassificationLoss("asl", gamma_neg=2.0, gamma_pos=1.0, clip=0.1)


def asl_by_hand(logits, labels, gamma_neg, gamma_pos, margin):
    """Ridnik et al.: −Σ_labels [y (1 − p)^γ+ log p + (1 − y) p_m^γ− log(1 − p_m)],
    p_m = max(p − m, 0), averaged over images; the focusing weights are constants in the
    gradient (the authors' code)."""
    p = jax.nn.sigmoid(logits)
    p_m = jnp.maximum(p - margin, 0.0)
    positive = jax.lax.stop_gradient((1 - p) ** gamma_pos) * jnp.log(p)
    negative = jax.lax.stop_gradient(p_m**gamma_neg) * jnp.log(1 - p_m)
    return -jnp.mean(jnp.sum(labels * positive + (1 - labels) * negative, axis=-1))


def classification_by_hand(ctx, logits, labels):
    """The loss `method.classification_loss` names, written out here."""
    chosen = ctx.classification_loss
    if chosen.name == "asl":
        return asl_by_hand(logits, labels, chosen.gamma_neg, chosen.gamma_pos, chosen.clip)
    assert chosen.name == "bce"
    return bce_by_hand(logits, labels)


def g_train(ctx, params, batch_stats, images, dropout_key):
    """G in training mode: logits and the running statistics it would write."""
    logits, updates = ctx.generator.apply(
        {"params": params, "batch_stats": batch_stats},
        images,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": dropout_key},
    )
    return logits, updates["batch_stats"]


def critic_by_hand(ctx, state, critic_params):
    """D(y, x) with x seen through f_ext (inference mode); D(y) for an unconditional critic."""

    def critic(labels, images):
        features = None
        if ctx.critic.conditional:
            features = ctx.generator.apply(
                state.f_variables, images, train=False, features_only=True
            )
        return ctx.critic.apply({"params": critic_params}, labels, features)

    return critic


def sample_by_hand(ctx, key, logits):
    if not ctx.gumbel:  # ablation (e): D sees sigmoid(s)
        return jax.nn.sigmoid(logits)
    return gumbel_sigmoid(key, logits, ctx.beta, ctx.straight_through)


def critic_loss_by_hand(ctx, state, batches, critic_params):
    """Eq. 4 with Table 3's variants, from critic scores computed here."""
    keys = steps.critic_keys(state)
    matched, generated = batches["matched"], batches["generated"]
    logits, _ = g_train(
        ctx, state.g_params, state.g_batch_stats, generated["image"], keys["dropout"]
    )
    fake = sample_by_hand(ctx, keys["sample"], logits)
    critic = critic_by_hand(ctx, state, critic_params)
    real_scores = critic(matched["labels"], matched["image"])
    fake_scores = critic(fake, generated["image"])

    # Gradient penalty at y* = ε y + (1 − ε) ŷ, one example at a time.
    eps = jax.random.uniform(keys["eps"], (BATCH, 1))
    interpolated = eps * generated["labels"] + (1 - eps) * fake
    one_score = lambda y, image: critic(y[None], image[None])[0]
    grads = jax.vmap(jax.grad(one_score))(interpolated, generated["image"])
    penalty = jnp.mean(jnp.square(jnp.linalg.norm(grads, axis=-1) - 1))

    if ctx.negative_sampling:
        # Each image with another row's differing label set (tests/test_pairs.py); pairs that
        # found none are left out of the mean.
        mismatched = batches["mismatched"]
        other_labels, weights = pairs.mismatched_labels(keys["pairing"], mismatched["labels"])
        wrong_scores = critic(other_labels, mismatched["image"])
        wrong_mean = jnp.sum(weights * wrong_scores) / jnp.maximum(jnp.sum(weights), 1)
        fake_term = 0.5 * jnp.mean(fake_scores) + 0.5 * wrong_mean
    else:  # ablations (c) and (d): no mismatched term, the generated one weighted 1
        fake_term = jnp.mean(fake_scores)
    return -jnp.mean(real_scores) + fake_term + ctx.gp_weight * penalty


def generator_loss_by_hand(ctx, state, batch, params, with_critic=True):
    """Eq. 2: −E D(ŷ, x) + α·L_cls (the configured classification loss), ŷ a differentiable
    sample of G(x); G's statistics as aux."""
    keys = steps.generator_keys(state)
    logits, batch_stats = g_train(ctx, params, state.g_batch_stats, batch["image"], keys["dropout"])
    loss = ctx.alpha * classification_by_hand(ctx, logits, batch["labels"])
    if with_critic:
        sample = sample_by_hand(ctx, keys["sample"], logits)
        loss -= jnp.mean(critic_by_hand(ctx, state, state.critic_params)(sample, batch["image"]))
    return loss, batch_stats


def test_tiny_state_tells_the_variables_apart():
    """The premise of the tests below: f_ext, G in training mode and G in inference mode give
    different outputs on the same images."""
    ctx = context()
    state, images = make_state(ctx), make_batch(0)["image"]
    inference = ctx.generator.apply(state.g_variables, images, train=False)
    training, _ = g_train(ctx, state.g_params, state.g_batch_stats, images, jax.random.key(0))
    other = ctx.generator.apply(state.f_variables, images, train=False)
    assert relative_error(training, inference) > 0.1
    assert relative_error(other, inference) > 0.1


@pytest.mark.parametrize("loss_name", ["bce", "asl"])
def test_supervised_step_descends_the_classification_loss(loss_name):
    ctx = context("sgd") if loss_name == "bce" else context("sgd", classification_loss=ASL)
    state, batch = make_state(ctx), make_batch(0)
    new, metrics = jitted(steps.supervised_step, ctx)(state, batch)

    key = steps.supervised_keys(state)["dropout"]

    def loss(params, by_hand=classification_by_hand):
        logits, batch_stats = g_train(ctx, params, state.g_batch_stats, batch["image"], key)
        return by_hand(ctx, logits, batch["labels"]), batch_stats

    (expected, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(state.g_params)
    assert set(metrics) == {loss_name, "nonfinite"}
    assert float(metrics[loss_name]) == pytest.approx(float(expected), rel=1e-5)
    if loss_name == "asl":  # the premise: here ASL's value and gradient are not BCE's
        bce, bce_grads = jax.value_and_grad(
            lambda p: loss(p, lambda ctx, s, y: bce_by_hand(s, y))[0]
        )(state.g_params)
        assert abs(float(bce) - float(expected)) > 0.1 * float(expected)
        assert relative_error(bce_grads, grads) > 0.1
    assert relative_error(gradient_of_update(state.g_params, new.g_params), grads) < 1e-3
    chex.assert_trees_all_close(new.g_batch_stats, batch_stats, rtol=1e-5, atol=1e-6)
    assert_unchanged(state.critic_params, new.critic_params)
    assert_unchanged(state.f_variables, new.f_variables)
    assert int(new.step) == 1 and int(new.critic_updates) == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_critic_step_descends_eq4(variant):
    ctx = context("sgd", variant)
    state, batches = make_state(ctx), first(critic_batches(0, ctx.pair_kinds))
    new, metrics = jitted(steps.critic_step, ctx)(state, batches)

    expected, grads = jax.value_and_grad(
        lambda critic_params: critic_loss_by_hand(ctx, state, batches, critic_params)
    )(state.critic_params)
    assert float(metrics["critic_loss"]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert relative_error(gradient_of_update(state.critic_params, new.critic_params), grads) < 1e-3
    # G, its running statistics and f_ext stay fixed while the critic learns.
    assert_unchanged(state.g_variables, new.g_variables)
    assert_unchanged(state.g_opt_state, new.g_opt_state)
    assert_unchanged(state.f_variables, new.f_variables)
    assert int(new.critic_updates) == 1 and int(new.step) == 0


def test_a_mismatched_batch_of_one_label_set_leaves_its_pairs_out():
    """No image of the mismatched batch has a partner with another label set, so no pair is
    formed: the loss is −E D(y, x) + ½ E D(ŷ, x) + λ·GP, the mismatched term 0 (never the
    scores of images paired with their own labels)."""
    ctx = context("sgd")
    state, batches = make_state(ctx), first(critic_batches(0, ctx.pair_kinds))
    mismatched = batches["mismatched"]
    one_set = np.broadcast_to(mismatched["labels"][:1], mismatched["labels"].shape).copy()
    batches = {**batches, "mismatched": {**mismatched, "labels": one_set}}
    new, metrics = jitted(steps.critic_step, ctx)(state, batches)

    def loss(critic_params):
        keys = steps.critic_keys(state)
        generated = batches["generated"]
        logits, _ = g_train(
            ctx, state.g_params, state.g_batch_stats, generated["image"], keys["dropout"]
        )
        fake = sample_by_hand(ctx, keys["sample"], logits)
        critic = critic_by_hand(ctx, state, critic_params)
        eps = jax.random.uniform(keys["eps"], (BATCH, 1))
        interpolated = eps * generated["labels"] + (1 - eps) * fake
        one_score = lambda y, image: critic(y[None], image[None])[0]
        grads = jax.vmap(jax.grad(one_score))(interpolated, generated["image"])
        penalty = jnp.mean(jnp.square(jnp.linalg.norm(grads, axis=-1) - 1))
        real = critic(batches["matched"]["labels"], batches["matched"]["image"])
        generated_scores = critic(fake, generated["image"])
        return -jnp.mean(real) + 0.5 * jnp.mean(generated_scores) + ctx.gp_weight * penalty

    expected, grads = jax.value_and_grad(loss)(state.critic_params)
    assert float(metrics["critic_loss"]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert relative_error(gradient_of_update(state.critic_params, new.critic_params), grads) < 1e-3


def test_unconditional_critic_sees_no_image():
    """Ablation (d): only the generated images matter (through ŷ); no image reaches D."""
    ctx = context("sgd", "unconditional")
    state, batches = make_state(ctx), first(critic_batches(1, ctx.pair_kinds))
    step = jitted(steps.critic_step, ctx)
    new, metrics = step(state, batches)
    blank = {**batches, "matched": {**batches["matched"], "image": 0 * batches["matched"]["image"]}}
    blank_new, blank_metrics = step(state, blank)
    assert float(metrics["critic_loss"]) == float(blank_metrics["critic_loss"])
    chex.assert_trees_all_equal(new.critic_params, blank_new.critic_params)


@pytest.mark.parametrize("name", ["full", "unconditional", "no-gumbel", "asl"])
def test_generator_step_descends_eq2_through_the_critic(name):
    # α = 1 rather than 10 so that the critic's share of the gradient stands out clearly.
    if name == "asl":  # α weighs the configured classification loss, not BCE
        ctx = context("sgd", alpha=1.0, classification_loss=ASL)
    else:
        ctx = context("sgd", name, alpha=1.0)
    state, batch = make_state(ctx), make_batch(3)
    new, metrics = jitted(steps.generator_step, ctx)(state, batch)

    loss = functools.partial(generator_loss_by_hand, ctx, state, batch)
    (expected, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(state.g_params)
    used = gradient_of_update(state.g_params, new.g_params)
    assert ctx.classification_loss.name in metrics
    assert float(metrics["generator_loss"]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert relative_error(used, grads) < 1e-3
    chex.assert_trees_all_close(new.g_batch_stats, batch_stats, rtol=1e-5, atol=1e-6)
    # The critic's term reaches G: the update is not that of α·BCE alone.
    without_critic = jax.grad(lambda p: loss(p, with_critic=False)[0])(state.g_params)
    assert relative_error(used, without_critic) > 1e-2
    assert_unchanged(state.critic_params, new.critic_params)
    assert_unchanged(state.critic_opt_state, new.critic_opt_state)
    assert_unchanged(state.f_variables, new.f_variables)
    assert int(new.step) == 1 and int(new.critic_updates) == 0


def test_adversarial_step_is_n_critic_critic_updates_then_one_generator_update():
    ctx = context()
    state, batches, batch = make_state(ctx), critic_batches(5), make_batch(6)
    new, metrics = jitted(steps.adversarial_step, ctx)(state, batches, batch)

    expected = state
    for i in range(N_CRITIC):
        expected, critic_metrics = jitted(steps.critic_step, ctx)(
            expected, jax.tree.map(lambda x, i=i: x[i], batches)
        )
    expected, generator_metrics = jitted(steps.generator_step, ctx)(expected, batch)
    chex.assert_trees_all_close(jax.device_get(new), jax.device_get(expected), rtol=1e-5, atol=1e-6)
    assert int(new.critic_updates) == N_CRITIC and int(new.step) == 1
    for name, value in {**critic_metrics, **generator_metrics}.items():
        assert float(metrics[name]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), name


def test_prediction_is_sigmoid_of_g_with_running_statistics():
    """Evaluation's compiled G (what eval, predict and the trainer's evaluations run)."""
    ctx = context()
    state, batch = make_state(ctx), make_batch(7)
    probs = tiny.classifier(state, parallel.create_mesh(jax.devices()[:1]))(batch["image"])
    logits = ctx.generator.apply(
        {"params": state.g_params, "batch_stats": state.g_batch_stats},
        batch["image"],
        train=False,
    )
    chex.assert_shape(probs, (BATCH, L))
    chex.assert_trees_all_close(probs, jax.nn.sigmoid(logits), rtol=1e-5, atol=1e-6)
    # The same function evaluation runs on restored variables.
    variables = evaluate.eval_variables(state)
    direct = evaluate.probabilities(variables, batch["image"], ctx.generator, transform=None)
    chex.assert_trees_all_close(probs, direct, rtol=1e-6, atol=1e-7)


def poisoned(tree):
    """`tree` with one NaN in its first leaf."""
    leaves, treedef = jax.tree.flatten(tree)
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(jnp.nan)
    return jax.tree.unflatten(treedef, leaves)


def test_steps_flag_the_network_whose_loss_or_gradient_is_not_finite():
    G, D = steps.GENERATOR_FAILED, steps.CRITIC_FAILED
    sgd, adam = context("sgd"), context()
    state, batch, batches = make_state(sgd), make_batch(0), critic_batches(0)
    supervised = jitted(steps.supervised_step, sgd)
    critic = jitted(steps.critic_step, sgd)
    adversarial = jitted(steps.adversarial_step, adam)
    assert int(supervised(state, batch)[1]["nonfinite"]) == 0
    assert int(critic(state, first(batches))[1]["nonfinite"]) == 0
    bad_g = state.replace(g_params=poisoned(state.g_params))
    assert int(supervised(bad_g, batch)[1]["nonfinite"]) == G
    bad_d = state.replace(critic_params=poisoned(state.critic_params))
    assert int(critic(bad_d, first(batches))[1]["nonfinite"]) == D
    adam_state = make_state(adam)
    assert int(adversarial(adam_state, batches, batch)[1]["nonfinite"]) == 0
    bad_d = adam_state.replace(critic_params=poisoned(adam_state.critic_params))
    # The critic's NaN reaches G's loss through D(ŷ, x): both networks are named.
    assert int(adversarial(bad_d, batches, batch)[1]["nonfinite"]) == G | D


def run_on(devices, ctx):
    """A supervised step, an adversarial update and a prediction with the trainer's own
    compiled steps on a mesh over `devices`."""
    mesh = parallel.create_mesh(devices)
    run = compiled.compile_steps(ctx, mesh)
    state = jax.device_put(make_state(ctx), run.replicated)
    state, _ = run.supervised(state, parallel.to_global(make_batch(8), run.data))
    state, metrics = run.adversarial(
        state,
        parallel.to_global(critic_batches(9), run.stacked),
        parallel.to_global(make_batch(12), run.data),
    )
    probs = tiny.classifier(state, mesh)(make_batch(13)["image"])
    return jax.device_get((state, metrics, probs))


@pytest.mark.slow  # the steps compiled for two meshes
def test_one_device_and_four_devices_agree():
    assert jax.device_count() >= 4, "conftest forces four CPU devices"
    # SGD, not Adam: Adam's first steps are ±lr whatever the gradient's size, which turns a
    # rounding-level difference in a near-zero gradient into a full step of either sign.
    ctx = context("sgd")
    one = run_on(jax.devices()[:1], ctx)
    four = run_on(jax.devices()[:4], ctx)
    # Sums over the batch reduce in another order on 4 devices, so compare each array as a
    # whole: a sharding mistake (per-device statistics or means) moves them by percents.
    paths = jax.tree_util.tree_leaves_with_path(one)
    for (path, a), b in zip(paths, jax.tree.leaves(four), strict=True):
        assert relative_error(b, a) < 1e-4, jax.tree_util.keystr(path)


def test_the_scaled_generator_loss_takes_the_papers_step_divided_by_alpha():
    alpha = 4.0
    paper = context("sgd", alpha=alpha)
    scaled = context("sgd", alpha=alpha, generator_loss="scaled")
    state, batch = make_state(paper), make_batch(3)
    by_paper, paper_metrics = jitted(steps.generator_step, paper)(state, batch)
    by_scaled, scaled_metrics = jitted(steps.generator_step, scaled)(state, batch)
    paper_step = gradient_of_update(state.g_params, by_paper.g_params)
    scaled_step = gradient_of_update(state.g_params, by_scaled.g_params)
    assert relative_error(scaled_step, jax.tree.map(lambda g: g / alpha, paper_step)) < 1e-4
    assert float(scaled_metrics["generator_loss"]) == pytest.approx(
        float(paper_metrics["generator_loss"]) / alpha, rel=1e-5
    )
    assert float(scaled_metrics["bce"]) == pytest.approx(float(paper_metrics["bce"]), rel=1e-6)


def test_g_adam_state_is_started_afresh_at_the_switch_only():
    boundary = 2
    carried, reset = context(), context(reset_generator_at=boundary)
    state = make_state(carried)
    for seed in range(boundary):  # the supervised phase: Adam's moments build up
        state, _ = jitted(steps.supervised_step, carried)(state, make_batch(seed))
    batch = make_batch(9)
    after_reset, _ = jitted(steps.generator_step, reset)(state, batch)
    fresh = state.replace(g_opt_state=carried.generator_tx.init(state.g_params))
    expected, _ = jitted(steps.generator_step, carried)(fresh, batch)
    chex.assert_trees_all_equal(jax.device_get(after_reset), jax.device_get(expected))
    assert int(after_reset.g_opt_state[0].count) == 1
    without, _ = jitted(steps.generator_step, carried)(state, batch)
    assert int(without.g_opt_state[0].count) == boundary + 1
    assert relative_error(without.g_params, after_reset.g_params) > 1e-6
    # The next update is not at the boundary: the state is carried on.
    second, _ = jitted(steps.generator_step, reset)(after_reset, make_batch(10))
    expected_second, _ = jitted(steps.generator_step, carried)(after_reset, make_batch(10))
    chex.assert_trees_all_equal(jax.device_get(second), jax.device_get(expected_second))
    assert int(second.g_opt_state[0].count) == 2


def test_g_learning_rate_decays_over_each_phase_end():
    ctx = context("sgd", supervised_steps=10, total_steps=16, decay_steps=4, decay_to=0.1)
    scale = [float(steps.learning_rate_scale(ctx, step, 10)) for step in range(4, 10)]
    assert scale == pytest.approx([1.0, 1.0, 0.775, 0.55, 0.325, 0.1])
    assert steps.learning_rate_scale(context("sgd"), 9, 10) is None  # no decay: constant
    # Through the steps: each phase decays towards its own end (the supervised update at its
    # phase's last step, the generator update two before the adversarial phase's end and at
    # it), against the constant learning rate's update.
    constant = context("sgd")
    batch = make_batch(4)
    cases = ((steps.supervised_step, 9, 0.1), (steps.generator_step, 13, 0.55),
             (steps.generator_step, 15, 0.1))  # fmt: skip
    for step_fn, at, factor in cases:
        state = make_state(constant)
        state = state.replace(step=jnp.asarray(at, jnp.int32))
        decayed, _ = jitted(step_fn, ctx)(state, batch)
        full, _ = jitted(step_fn, constant)(state, batch)
        decayed_step = gradient_of_update(state.g_params, decayed.g_params)
        full_step = gradient_of_update(state.g_params, full.g_params)
        expected = jax.tree.map(lambda g, f=factor: f * g, full_step)
        assert relative_error(decayed_step, expected) < 1e-4, (step_fn.__name__, at)
