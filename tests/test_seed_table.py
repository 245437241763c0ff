"""experiments/paired_seeds.py (the seed table's protocol): runs are shared exactly when the
settings they depend on agree."""

import importlib
import os
import runpy
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def seed_table():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))  # as the scripts import it
    try:
        yield vars(importlib.import_module("paired_seeds"))
    finally:
        sys.path.remove(os.path.join(ROOT, "experiments"))


@pytest.fixture
def config():
    return runpy.run_path(os.path.join(ROOT, "configs", "custom.py"))["get_config"]("cpu")


def changed(config, path: str, value):
    config = config.copy_and_resolve_references()
    node = config
    *parents, leaf = path.split(".")
    for name in parents:
        node = node[name]
    assert node[leaf] != value, f"{path} is already {value!r}: the test would change nothing"
    node[leaf] = value
    return config


# What the supervised phase never sees: the adversarial phase's settings, lengths, and reporting.
PHASE_TWO_ONLY = [
    ("method.alpha", 5.0),
    ("method.straight_through", True),
    ("method.n_critic", 1),
    ("critic.num_layers", 2),
    ("optim.critic_learning_rate", 1e-3),
    ("method.generator_loss", "scaled"),
    ("optim.reset_generator_moments", True),
    ("schedule.adversarial_steps", 7),
    ("schedule.supervised_steps", 9),
    ("schedule.log_every", 3),
    ("seed", 5),  # the seed is part of the run's folder name instead
]
# What the supervised phase depends on.
PHASE_ONE = [
    ("optim.generator_learning_rate", 5e-4),
    ("optim.generator_decay_steps", 50),
    ("method.classification_loss", "asl"),
    ("schedule.batch_size", 8),
    ("model.name", "resnet34"),
    ("data.image_size", 64),
    ("data.labels_file", "other.csv"),
]


@pytest.mark.parametrize("path, value", PHASE_TWO_ONLY)
def test_the_supervised_phase_is_shared_across_adversarial_settings(
    seed_table, config, path, value
):
    key = seed_table["settings_key"]
    assert key(changed(config, path, value), supervised_only=True) == key(
        config, supervised_only=True
    )


@pytest.mark.parametrize("path, value", PHASE_ONE)
def test_the_supervised_phase_is_not_shared_across_its_own_settings(
    seed_table, config, path, value
):
    key = seed_table["settings_key"]
    assert key(changed(config, path, value), supervised_only=True) != key(
        config, supervised_only=True
    )


@pytest.mark.parametrize("path, value", PHASE_ONE + PHASE_TWO_ONLY[:-4])
def test_an_adversarial_run_depends_on_every_setting(seed_table, config, path, value):
    key = seed_table["settings_key"]
    assert key(changed(config, path, value), supervised_only=False) != key(
        config, supervised_only=False
    )


def test_paired_differences_match_seeds(seed_table):
    columns = seed_table["COLUMNS"].values()
    bce = [{"seed": s, **{k: 0.1 * s for k in columns}} for s in (0, 1)]
    adversarial = [{"seed": s, **{k: 0.5 for k in columns}} for s in (1, 0)]
    differences = seed_table["paired_differences"](bce, adversarial)
    assert [d["seed"] for d in differences] == [1, 0]
    assert [d["mAP"] for d in differences] == pytest.approx([0.4, 0.5])


def test_a_copy_cut_short_is_made_again(seed_table, tmp_path):
    source, target = tmp_path / "supervised_300", tmp_path / "wgan_seed0"
    (source / "checkpoints" / "300").mkdir(parents=True)
    (source / "checkpoints" / "300" / "state").write_text("finished")
    (tmp_path / "wgan_seed0.partial" / "checkpoints").mkdir(parents=True)  # an earlier copy, cut
    seed_table["_copy_run"](str(source), str(target))
    assert (target / "checkpoints" / "300" / "state").read_text() == "finished"
    assert not (tmp_path / "wgan_seed0.partial").exists()


def test_an_adversarial_run_is_shared_across_tags(seed_table, config, tmp_path):
    key = seed_table["settings_key"](config, supervised_only=False)
    finished = tmp_path / f"alpha1_{key}_seed1"  # phase_switch.py's name for these settings
    finished.mkdir()
    (finished / seed_table["RESULT_FILE"]).write_text('{"mAP": 0.5}')
    (tmp_path / f"ablation_{key}_seed1").mkdir()  # unfinished: trained by its own command
    result = seed_table["adversarial_run"](config, 1, "no/supervised/phase", str(tmp_path), "wgan")
    assert result == {"mAP": 0.5}
    assert not (tmp_path / f"wgan_{key}_seed1").exists()
