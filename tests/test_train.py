"""The training loop, in process, on the embedded dataset's small build: where f_ext comes
from, where a resumed run picks up its data, and what stops a diverging run."""

import itertools
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tiny_run import ADVERSARIAL_STEPS, SUPERVISED_STEPS, tiny_config

from jaxgan import pairs, train
from jaxgan.data import input_pipeline
from jaxgan.data.datasets import get_source
from jaxgan.models.resnet import resnet18
from jaxgan.weights.pretrained import METADATA_FILE, VARIABLES_DIR


def saved_state(config, workdir, step):
    """The state in `workdir`'s checkpoint at `step`, on the host."""
    run = train.Run(config, workdir)
    state, _ = run.checkpointer.restore(run.state, run.meta, step)
    run.checkpointer.close()
    return jax.device_get(state)


def copy_checkpoint(workdir, step, to):
    source = os.path.join(workdir, "checkpoints", str(step))
    shutil.copytree(source, os.path.join(to, "checkpoints", str(step)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A whole tiny run with a checkpoint after every step."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_config(data_dir)
    train.train_and_evaluate(config, workdir)
    return config, workdir


def test_f_ext_is_g_as_the_supervised_phase_left_it(trained):
    config, workdir = trained
    boundary = saved_state(config, workdir, SUPERVISED_STEPS)
    assert not all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(
            jax.tree.leaves(boundary.f_variables),
            jax.tree.leaves(boundary.g_variables),
            strict=True,
        )
    ), "f_ext must not be G before the adversarial phase starts"
    assert not boundary.f_ext_taken
    for step in range(SUPERVISED_STEPS + 1, SUPERVISED_STEPS + ADVERSARIAL_STEPS + 1):
        later = saved_state(config, workdir, step)
        chex.assert_trees_all_equal(later.f_variables, boundary.g_variables)
        assert later.f_ext_taken


def test_resuming_with_a_lowered_boundary_is_refused(trained, tmp_path):
    """A run resumed with fewer schedule.supervised_steps would be inside the adversarial phase at
    once, past the boundary where f_ext's snapshot is due: refused in one line naming the
    field, before any step (the snapshot is a recorded fact of the state besides)."""
    config, workdir = trained
    copy_checkpoint(workdir, SUPERVISED_STEPS, str(tmp_path))
    lowered = tiny_config(
        config.data.data_dir, supervised_steps=SUPERVISED_STEPS - 1, adversarial_steps=2
    )
    with pytest.raises(train.checkpoint.CheckpointError) as error:
        train.train_and_evaluate(lowered, str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and f"schedule.supervised_steps={SUPERVISED_STEPS}" in message
    assert os.listdir(os.path.join(tmp_path, "checkpoints")) == [str(SUPERVISED_STEPS)]


def test_a_refused_resume_is_refused_before_the_run_is_built(trained, tmp_path, monkeypatch):
    """The checkpoint's small metadata is compared with the config before any dataset,
    model or compilation is built (a refused resume costs about a second, not a whole build)."""
    config, workdir = trained
    copy_checkpoint(workdir, SUPERVISED_STEPS, str(tmp_path))

    def built(*args, **kwargs):
        raise AssertionError("the run was built before the resume was refused")

    monkeypatch.setattr(train, "Run", built)
    for field, value in [("schedule.batch_size", 8), ("critic.num_layers", 3), ("seed", 1)]:
        other = tiny_config(config.data.data_dir)
        section, name = field.split(".") if "." in field else (None, field)
        (other[section] if section else other)[name] = value
        with pytest.raises(train.checkpoint.CheckpointError, match=f"with {field}={value}"):
            train.train_and_evaluate(other, str(tmp_path))


@pytest.mark.slow  # three tiny trainings
def test_the_supervised_phase_may_be_extended_only_where_that_is_exact(trained, tmp_path):
    """`extends_supervised_phase` (the seed table's no-critic arms): a run that ended its
    supervised phase continues into a longer one and ends where a run of that length trained
    at once ends; without the permission, or from a checkpoint past the phase, it is refused."""
    config, workdir = trained
    longer = tiny_config(
        config.data.data_dir, supervised_steps=SUPERVISED_STEPS + 2, adversarial_steps=0
    )
    continued = tmp_path / "continued"
    copy_checkpoint(workdir, SUPERVISED_STEPS, str(continued))
    with pytest.raises(train.checkpoint.CheckpointError, match="schedule.supervised_steps"):
        train.train_and_evaluate(longer, str(continued))
    train.train_and_evaluate(longer, str(continued), extends_supervised_phase=True)
    at_once = tmp_path / "at_once"
    train.train_and_evaluate(longer, str(at_once))
    end = SUPERVISED_STEPS + 2
    chex.assert_trees_all_equal(
        saved_state(longer, str(continued), end), saved_state(longer, str(at_once), end)
    )
    past = tmp_path / "past"
    copy_checkpoint(workdir, SUPERVISED_STEPS + 1, str(past))
    with pytest.raises(train.checkpoint.CheckpointError, match="schedule.supervised_steps"):
        train.train_and_evaluate(longer, str(past), extends_supervised_phase=True)


@pytest.mark.slow  # a training and two evaluations
def test_a_command_checks_its_config_once(trained, tmp_path, monkeypatch):
    """The config is checked at the door (training's, evaluation's), and trusted below it."""
    from jaxgan import config_check, evaluate

    config, workdir = trained
    checked = []
    original = config_check._check_fields
    monkeypatch.setattr(config_check, "_check_fields", lambda *a: checked.append(1) or original(*a))
    train.train_and_evaluate(tiny_config(config.data.data_dir), str(tmp_path / "run"))
    assert len(checked) == 1
    evaluate.evaluate_checkpoint(None, workdir)  # the recorded config
    evaluate.evaluate_checkpoint(config, workdir)  # a given one
    assert len(checked) == 3


def test_divergence_stops_the_run_before_anything_bad_is_saved(trained, tmp_path):
    config, workdir = trained
    copy_checkpoint(workdir, SUPERVISED_STEPS, str(tmp_path))
    huge = tiny_config(config.data.data_dir)
    huge.optim.critic_learning_rate = 1e30  # the critic's second update overflows
    with pytest.raises(train.NonFiniteError) as error:
        train.train_and_evaluate(huge, str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert f"step {SUPERVISED_STEPS + 1} (adversarial phase): the critic's" in message
    assert (
        "optim.critic_learning_rate=1e+30" in message
        and "optim.generator_learning_rate=" in message
    )
    assert f"nothing after the checkpoint at step {SUPERVISED_STEPS} was saved" in message
    assert os.listdir(os.path.join(tmp_path, "checkpoints")) == [str(SUPERVISED_STEPS)]
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        assert not [line for line in f if '"phase": "adversarial"' in line]


def test_resumed_run_continues_exactly(trained, tmp_path):
    """Resuming inside the adversarial phase reads the data where the first run did: the
    final state is bit for bit the uninterrupted run's."""
    config, workdir = trained
    resume_at = SUPERVISED_STEPS + 1
    copy_checkpoint(workdir, resume_at, str(tmp_path))
    train.train_and_evaluate(config, str(tmp_path))
    end = SUPERVISED_STEPS + ADVERSARIAL_STEPS
    chex.assert_trees_all_equal(
        saved_state(config, str(tmp_path), end), saved_state(config, workdir, end)
    )


def numbered_batches():
    """Batch i holds the number i, so a test can see which batches went where."""
    for i in range(1000):
        yield {"image": np.full([2, 1], i, np.float32), "labels": np.zeros([2, 3], np.float32)}


@pytest.mark.parametrize("negative_sampling", [True, False])
def test_an_update_reads_the_batches_the_resume_position_counts(negative_sampling):
    """The grouping reads, for each critic update, one batch per pair kind in order, then the
    generator's; an update reads exactly `batches_per_update` batches."""
    config = tiny_config(None)
    config.method.negative_sampling = negative_sampling
    kinds = pairs.pair_kinds(negative_sampling)
    per_update = train.batches_per_update(config)
    updates = input_pipeline.group_updates(numbered_batches(), config.method.n_critic, kinds)
    for u, (critic, generator) in enumerate(itertools.islice(updates, 3)):
        assert tuple(critic) == kinds  # no unused batch is sent
        first = u * per_update
        for c in range(config.method.n_critic):
            for k, kind in enumerate(kinds):
                expected = first + c * len(kinds) + k
                assert critic[kind]["image"].shape == (config.method.n_critic, 2, 1)
                np.testing.assert_array_equal(critic[kind]["image"][c], expected)
        np.testing.assert_array_equal(generator["image"], first + per_update - 1)


def test_the_adversarial_phase_reads_the_stream_where_the_counters_say(data_dir):
    """Update u of the adversarial phase is the global batches from `batches_consumed` on,
    grouped: the same batches the plain stream holds there."""
    config = tiny_config(data_dir)
    source = get_source(config.data)
    kinds = pairs.pair_kinds(config.method.negative_sampling)
    items = list(train.step_batches(config, source, 0))
    assert [phase for phase, _, _ in items] == (
        ["supervised"] * SUPERVISED_STEPS + ["adversarial"] * ADVERSARIAL_STEPS
    )
    stream = input_pipeline.train_batches(
        source, config.data, config.schedule.batch_size, config.seed
    )
    plain = [next(stream) for _ in range(train.batches_consumed(config, len(items)))]
    for step, (_, (batch,), state) in enumerate(items[:SUPERVISED_STEPS]):
        chex.assert_trees_all_equal(batch, plain[step])
        assert state["position"] == step + 1
    grouped = input_pipeline.group_updates(
        iter(plain[SUPERVISED_STEPS:]), config.method.n_critic, kinds
    )
    for (_, batches, _), expected in zip(items[SUPERVISED_STEPS:], grouped, strict=True):
        chex.assert_trees_all_equal(batches, expected)


def test_a_saved_input_state_resumes_the_stream_and_must_agree_with_the_counters(data_dir):
    """The Grain iterator state saved after step s restores the stream at step s + 1; a state
    that disagrees with the step counters is refused in one line, before any batch."""
    config = tiny_config(data_dir)
    source = get_source(config.data)
    whole = list(train.step_batches(config, source, 0))
    for step in (1, SUPERVISED_STEPS + 1):
        saved = whole[step - 1][2]
        resumed = list(train.step_batches(config, source, step, saved))
        assert len(resumed) == len(whole) - step
        for (p1, b1, s1), (p2, b2, s2) in zip(resumed, whole[step:], strict=True):
            assert p1 == p2 and s1["position"] == s2["position"]
            chex.assert_trees_all_equal(b1, b2)
    wrong = whole[SUPERVISED_STEPS + 1][2]  # after the second update, not the first
    with pytest.raises(train.InputStateError, match="counters put it at element 1") as error:
        next(train.step_batches(config, source, SUPERVISED_STEPS + 1, wrong))
    assert "\n" not in str(error.value)
    assert train.input_at(config, SUPERVISED_STEPS + 1, wrong) is None
    assert train.input_at(config, SUPERVISED_STEPS + 2, wrong) == wrong


def test_training_augments_on_the_devices(data_dir, tmp_path):
    """What the compiled step receives is the augmented batch: with data.augment="paper"
    most images differ from the plain evaluation resize of the same records, and they are
    what `augment.train_batch` makes of them (augmentation is never silently skipped)."""
    from jaxgan.data import augment

    config = tiny_config(data_dir)
    config.data.augment = "paper"
    source = get_source(config.data)
    run = train.Run(config, str(tmp_path / "run"))
    run.checkpointer.close()
    phase, batches, state = next(train.step_batches(config, source, 0))
    _, inputs = train.to_devices(run, (phase, batches, state))
    assert inputs.input_state == state
    images = np.asarray(inputs[0]["image"])
    host = batches[0]
    transform = augment.Transform.from_config(config.data)
    plain = np.asarray(augment.eval_batch(host["image"], transform))
    assert images.shape == plain.shape == (16, 16, 16, 3)
    changed = [not np.allclose(images[i], plain[i], atol=1e-3) for i in range(16)]
    assert sum(changed) >= 10
    expected = augment.train_batch(host, transform, config.seed)["image"]
    np.testing.assert_allclose(images, np.asarray(expected), atol=1e-6)


def write_pretrained(path, arch_builder, image_size, seed):
    """A converted checkpoint directory, as `python -m jaxgan.convert` writes one."""
    variables = arch_builder(num_labels=1000, width=4).init(
        jax.random.key(seed), jnp.zeros((1, image_size, image_size, 3)), train=False
    )
    backbone = {
        kind: {k: v for k, v in tree.items() if k != "head"} for kind, tree in variables.items()
    }
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, VARIABLES_DIR), backbone)
    checkpointer.wait_until_finished()
    with open(os.path.join(path, METADATA_FILE), "w") as f:
        json.dump({"arch": "resnet18"}, f)
    return backbone


def test_pretrained_f_ext_is_the_pretrained_backbone(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.model.name = "resnet18"
    config.data.normalization = "imagenet"  # what resnet18's ImageNet weights expect
    config.method.feature_extractor = "pretrained"
    config.model.pretrained = str(tmp_path / "weights")
    backbone = write_pretrained(config.model.pretrained, resnet18, 16, seed=7)
    run = train.Run(config, str(tmp_path / "run"))
    run.checkpointer.close()
    assert run.state.f_ext_taken  # no snapshot will replace it
    state = jax.device_get(train.take_feature_extractor_if_due(run.state, run.mesh))
    for kind, tree in backbone.items():
        chex.assert_trees_all_equal({k: state.f_variables[kind][k] for k in tree}, tree)


def test_the_initial_state_is_the_one_a_pass_of_g_would_give(data_dir, tmp_path):
    """The critic is initialised from f_ext's feature shape alone (no pass of G is compiled):
    the state equals, parameter by parameter, the one built with G's real features."""
    from jaxgan.state import create_train_state

    config = tiny_config(data_dir)
    run = train.Run(config, str(tmp_path))
    run.checkpointer.close()
    g_key, critic_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
    image = jnp.zeros((1, config.data.image_size, config.data.image_size, 3))

    @jax.jit
    def with_a_pass_of_g(g_key, critic_key, run_key):  # the earlier build, compiled likewise
        g_variables = run.generator.init({"params": g_key, "dropout": g_key}, image, train=False)
        features = run.generator.apply(g_variables, image, train=False, features_only=True)
        critic_params = run.critic.init(critic_key, jnp.zeros((1, run.num_labels)), features)
        return create_train_state(
            run_key,
            g_variables,
            critic_params["params"],
            run.ctx.generator_tx,
            run.ctx.critic_tx,
        )

    expected = with_a_pass_of_g(g_key, critic_key, run_key)
    chex.assert_trees_all_equal(jax.device_get(run.state), jax.device_get(expected))


@pytest.mark.slow
def test_g_moments_reset_once_at_the_switch_and_a_resume_is_exact(tmp_path, data_dir):
    """optim.reset_generator_moments (with a learning-rate decay at each phase's end): Adam's
    step count restarts at the first adversarial update only, and a run resumed just before
    or just after that update ends bit for bit where the uninterrupted run does."""
    config = tiny_config(data_dir, adversarial_steps=3)
    config.optim.reset_generator_moments = True
    config.optim.generator_decay_steps = 2
    whole = str(tmp_path / "whole")
    train.train_and_evaluate(config, whole)
    end = SUPERVISED_STEPS + 3

    def adam_count(step):
        return int(saved_state(config, whole, step).g_opt_state[0].count)

    assert adam_count(SUPERVISED_STEPS) == SUPERVISED_STEPS
    assert [adam_count(SUPERVISED_STEPS + k) for k in (1, 2, 3)] == [1, 2, 3]
    for resume_at in (SUPERVISED_STEPS, SUPERVISED_STEPS + 1):
        resumed = str(tmp_path / f"resumed_{resume_at}")
        copy_checkpoint(whole, resume_at, resumed)
        train.train_and_evaluate(config, resumed)
        chex.assert_trees_all_equal(
            saved_state(config, resumed, end), saved_state(config, whole, end)
        )
