"""The step functions: shapes, finiteness, what stays fixed, what changes, 1 vs 4 devices."""

import functools

import chex
import jax
import numpy as np
import pytest
from tiny import BATCH, N_CRITIC, L, critic_batches, make_batch, make_context, make_state

from jaxgan import parallel, steps


def first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def changed(before, after):
    leaves = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    return any(not np.allclose(a, b) for a, b in leaves)


def test_bce_step_updates_only_the_generator():
    ctx = make_context()
    state = make_state(ctx)
    new, metrics = jax.jit(functools.partial(steps.bce_step, ctx=ctx))(state, make_batch(0))
    chex.assert_shape(metrics["bce"], ())
    assert np.isfinite(metrics["bce"])
    assert changed(state.g_params, new.g_params)
    assert changed(state.g_batch_stats, new.g_batch_stats)
    chex.assert_trees_all_equal(state.d_params, new.d_params)
    chex.assert_trees_all_equal(state.f_variables, new.f_variables)
    assert int(new.step) == 1 and int(new.d_step) == 0


def test_bce_steps_reduce_the_loss():
    ctx = make_context()
    state, batch = make_state(ctx), make_batch(1)
    step = jax.jit(functools.partial(steps.bce_step, ctx=ctx))
    state, first_metrics = step(state, batch)
    for _ in range(30):
        state, metrics = step(state, batch)
    assert float(metrics["bce"]) < 0.5 * float(first_metrics["bce"])


@pytest.mark.parametrize(
    "method",
    [
        {},
        {"negative_sampling": False},
        {"conditional": False, "negative_sampling": False},
        {"gumbel": False},
        {"straight_through": True},
    ],
    ids=["full", "no-negatives", "unconditional", "no-gumbel", "straight-through"],
)
def test_discriminator_step_updates_only_the_critic(method):
    ctx = make_context(**method)
    state = make_state(ctx)
    new, metrics = jax.jit(functools.partial(steps.discriminator_step, ctx=ctx))(
        state, first(critic_batches(0))
    )
    for name in ("d_loss", "wasserstein", "gradient_penalty"):
        chex.assert_shape(metrics[name], ())
        assert np.isfinite(metrics[name]), name
    assert changed(state.d_params, new.d_params)
    assert changed(state.d_opt_state, new.d_opt_state)
    chex.assert_trees_all_equal(state.g_variables, new.g_variables)
    chex.assert_trees_all_equal(state.g_opt_state, new.g_opt_state)
    chex.assert_trees_all_equal(state.f_variables, new.f_variables)
    assert int(new.d_step) == 1 and int(new.step) == 0


def test_critic_learns_to_separate_real_from_generated():
    ctx = make_context()
    state = make_state(ctx)
    step = jax.jit(functools.partial(steps.discriminator_step, ctx=ctx))
    batches = first(critic_batches(2))
    state, start = step(state, batches)
    for _ in range(40):
        state, metrics = step(state, batches)
    assert float(metrics["wasserstein"]) > float(start["wasserstein"]) + 0.5


def test_generator_step_updates_only_the_generator():
    ctx = make_context()
    state = make_state(ctx)
    new, metrics = jax.jit(functools.partial(steps.generator_step, ctx=ctx))(state, make_batch(3))
    for name in ("g_loss", "bce", "g_critic"):
        assert np.isfinite(metrics[name]), name
    assert changed(state.g_params, new.g_params)
    chex.assert_trees_all_equal(state.d_params, new.d_params)
    chex.assert_trees_all_equal(state.d_opt_state, new.d_opt_state)
    chex.assert_trees_all_equal(state.f_variables, new.f_variables)


def test_generator_step_follows_the_critic():
    """With alpha = 0 the generator only climbs D: its score on G's samples must rise."""
    ctx = make_context(alpha=0.0)
    state, batch = make_state(ctx), make_batch(4)
    step = jax.jit(functools.partial(steps.generator_step, ctx=ctx))
    state, start = step(state, batch)
    for _ in range(20):
        state, metrics = step(state, batch)
    assert float(metrics["g_critic"]) > float(start["g_critic"])


def test_adversarial_step_runs_n_critic_then_one_generator_update():
    ctx = make_context()
    state = make_state(ctx)
    new, metrics = jax.jit(functools.partial(steps.adversarial_step, ctx=ctx))(
        state, critic_batches(5), make_batch(6)
    )
    assert int(new.d_step) == N_CRITIC and int(new.step) == 1
    assert changed(state.g_params, new.g_params) and changed(state.d_params, new.d_params)
    chex.assert_trees_all_equal(state.f_variables, new.f_variables)
    assert set(metrics) >= {"d_loss", "wasserstein", "gradient_penalty", "g_loss", "bce"}


def test_eval_step_gives_probabilities_without_touching_state():
    ctx = make_context()
    state = make_state(ctx)
    probs = jax.jit(functools.partial(steps.eval_step, ctx=ctx))(state, make_batch(7))
    chex.assert_shape(probs, (BATCH, L))
    assert float(probs.min()) > 0 and float(probs.max()) < 1


def run_on(devices, ctx):
    """A BCE step then an adversarial update, compiled for a mesh over `devices`."""
    mesh = parallel.create_mesh(devices)
    repl, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    stacked = parallel.batch_sharded(mesh, leading_axes=1)
    state = jax.device_put(make_state(ctx), repl)
    bce = jax.jit(
        functools.partial(steps.bce_step, ctx=ctx),
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    adversarial = jax.jit(
        functools.partial(steps.adversarial_step, ctx=ctx),
        in_shardings=(repl, stacked, data),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    state, _ = bce(state, parallel.to_global(make_batch(8), data))
    state, metrics = adversarial(
        state,
        parallel.to_global(critic_batches(9), stacked),
        parallel.to_global(make_batch(12), data),
    )
    return jax.device_get(state), jax.device_get(metrics)


def test_one_device_and_four_devices_agree():
    assert jax.device_count() >= 4, "conftest forces four CPU devices"
    ctx = make_context()
    one_state, one_metrics = run_on(jax.devices()[:1], ctx)
    four_state, four_metrics = run_on(jax.devices()[:4], ctx)
    chex.assert_trees_all_close(one_metrics, four_metrics, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(
        one_state.g_batch_stats, four_state.g_batch_stats, rtol=1e-4, atol=1e-5
    )
    chex.assert_trees_all_close(one_state.g_params, four_state.g_params, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(one_state.d_params, four_state.d_params, rtol=1e-4, atol=1e-5)
