"""The moving average of G's weights (`model.ema_decay`): its recurrence, that it changes
nothing when off, and that evaluation, prediction, checkpoints and the f_ext snapshot read it."""

import chex
import flax
import jax
import numpy as np
import pytest
import tiny
from tiny import L, critic_batches, make_batch, make_context, make_state

from jaxgan import checkpoint, compiled, evaluate, parallel, steps
from jaxgan.base_config import get_base_config
from jaxgan.checkpoint import Checkpointer, CheckpointError
from jaxgan.state import snapshot_feature_extractor

DECAY = 0.8


def g_variables(state):
    return jax.device_get({"params": state.g_params, "batch_stats": state.g_batch_stats})


def run_updates(ctx, state):
    """Two supervised updates and one adversarial update (three critic updates, then G), the
    trainer's own compiled steps; G's variables after each generator update."""
    run = compiled.compile_steps(ctx, parallel.create_mesh(jax.devices()[:1]))
    after = []
    for seed in (0, 1):
        state, _ = run.supervised(state, make_batch(seed))
        after.append(g_variables(state))
    state, _ = run.adversarial(state, critic_batches(2), make_batch(5))
    after.append(g_variables(state))
    return state, after


@pytest.fixture(scope="module")
def ema_run():
    ctx = make_context("sgd", ema_decay=DECAY)
    start = make_state(ctx)
    initial = g_variables(start)
    state, after = run_updates(ctx, start)
    return ctx, initial, jax.device_get(state), after


def test_the_average_after_k_updates_is_the_recurrence(ema_run):
    _, initial, state, after = ema_run
    expected = jax.tree.map(lambda x: np.asarray(x, np.float64), initial)
    for new in after:  # e_k = d·e_{k−1} + (1 − d)·G_k, from G's initial variables
        expected = jax.tree.map(lambda e, x: DECAY * e + (1 - DECAY) * x, expected, new)
    chex.assert_trees_all_close(state.g_ema, expected, rtol=1e-5, atol=1e-6)
    # The premise: the average is neither G now nor G at the start.
    for other in (after[-1], initial):
        diff = jax.tree.map(
            lambda a, b: np.abs(a - b).max(), state.g_ema["params"], other["params"]
        )
        assert max(jax.tree.leaves(diff)) > 1e-4


def test_off_keeps_no_average_and_changes_no_result(ema_run):
    ctx_on, _, state_on, _ = ema_run
    ctx = make_context("sgd")
    assert ctx.ema_decay == 0
    start = make_state(ctx)
    assert start.g_ema == {}
    state, _ = run_updates(ctx, start)
    state = jax.device_get(state)
    assert state.g_ema == {}
    # Training itself never reads the average: every other field is bit for bit the same.
    chex.assert_trees_all_equal(state, state_on.replace(g_ema={}))


def test_evaluation_and_prediction_read_the_average(ema_run):
    ctx, _, state, _ = ema_run
    assert evaluate.eval_variables(state) is state.g_ema
    batch = make_batch(9)
    probs = tiny.classifier(state, parallel.create_mesh(jax.devices()[:1]))(batch["image"])
    expected = jax.nn.sigmoid(ctx.generator.apply(state.g_ema, batch["image"], train=False))
    raw = jax.nn.sigmoid(ctx.generator.apply(g_variables(state), batch["image"], train=False))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(probs - np.asarray(raw)).max() > 1e-3


def tiny_config(ema_decay):
    config = get_base_config()
    config.model.name, config.model.width = "resnet_small", 4
    config.model.ema_decay = ema_decay
    config.data.name, config.data.image_size = "digit_scenes", 8
    config.schedule.eval_batch_size = 8
    return config


CLASS_NAMES = [str(i) for i in range(L)]


def test_a_checkpoint_keeps_the_average_and_its_classifier_reads_it(ema_run, tmp_path):
    _, _, state, _ = ema_run
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(state, checkpoint.metadata(tiny_config(DECAY), CLASS_NAMES))
    checkpointer.wait()
    ctx = make_context("sgd", ema_decay=DECAY)
    restored, _ = Checkpointer(str(tmp_path)).restore(
        make_state(ctx, seed=1), checkpoint.metadata(tiny_config(DECAY), CLASS_NAMES)
    )
    chex.assert_trees_all_equal(jax.device_get(restored), state)
    # Evaluated with a config that does not mention EMA: the recorded one decides.
    classifier = evaluate.load_classifier(str(tmp_path), config=tiny_config(0.0))
    chex.assert_trees_all_equal(jax.device_get(classifier.variables), state.g_ema)


def save_without_ema_field(state, workdir, config, monkeypatch):
    """A checkpoint as made before EMA existed: its state has no g_ema entry at all."""
    to_state_dict = flax.serialization.to_state_dict

    def old_layout(tree):
        out = to_state_dict(tree)
        return {k: v for k, v in out.items() if k != "g_ema"} if isinstance(out, dict) else out

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.flax.serialization, "to_state_dict", old_layout)
        checkpointer = Checkpointer(workdir)
        checkpointer.save(state, checkpoint.metadata(config, CLASS_NAMES))
        checkpointer.wait()


def test_a_checkpoint_from_before_ema_resumes_without_it_and_is_refused_with_it(
    tmp_path, monkeypatch
):
    ctx = make_context("sgd")
    state = make_state(ctx)
    save_without_ema_field(state, str(tmp_path), tiny_config(0.0), monkeypatch)
    saved = Checkpointer(str(tmp_path)).manager.item_metadata(0)["state"]
    assert "g_ema" not in saved.tree and "g_params" in saved.tree  # the old layout
    restored, _ = Checkpointer(str(tmp_path)).restore(
        make_state(ctx, seed=1), checkpoint.metadata(tiny_config(0.0), CLASS_NAMES), resume=True
    )
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    on = make_context("sgd", ema_decay=DECAY)
    with pytest.raises(CheckpointError, match="keeps no moving average of G.*ema_decay=0"):
        Checkpointer(str(tmp_path)).restore(
            make_state(on), checkpoint.metadata(tiny_config(DECAY), CLASS_NAMES)
        )


def test_the_snapshot_can_be_taken_from_the_average(ema_run):
    _, _, state, _ = ema_run
    chex.assert_trees_all_equal(snapshot_feature_extractor(state, True).f_variables, state.g_ema)
    chex.assert_trees_all_equal(snapshot_feature_extractor(state).f_variables, g_variables(state))
    with pytest.raises(ValueError, match="snapshot_ema needs model.ema_decay"):
        snapshot_feature_extractor(state.replace(g_ema={}), True)


def test_ema_knobs_are_checked_at_the_door():
    from jaxgan.config_check import ConfigError, check_config

    config = tiny_config(1.0)
    with pytest.raises(ConfigError, match=r"model.ema_decay=1.0 is out of range"):
        check_config(config)
    config = tiny_config(0.0)
    config.method.snapshot_ema = True
    with pytest.raises(ConfigError, match="method.snapshot_ema needs model.ema_decay > 0"):
        check_config(config)
    assert steps.StepContext.from_config(tiny_config(0.5), None, None, None, None).ema_decay == 0.5


def test_a_checkpoint_whose_recorded_config_predates_ema_evaluates_g(tmp_path, monkeypatch):
    ctx = make_context("sgd")
    state = make_state(ctx)
    config = tiny_config(0.0)
    del config.model["ema_decay"]  # as recorded before the field existed
    save_without_ema_field(state, str(tmp_path), config, monkeypatch)
    classifier = evaluate.load_classifier(str(tmp_path))
    chex.assert_trees_all_equal(jax.device_get(classifier.variables), g_variables(state))
