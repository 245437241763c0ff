"""The config checked at the door: choices, ranges, combinations, unknown and missing fields,
every shipped config passing, and a bad config stopping training before any data work."""

import json
import os
import runpy

import ml_collections
import pytest

from jaxgan import config_check, train
from jaxgan.choices import ConfigError, choose_one
from jaxgan.config_check import check_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = {
    "digit_scenes": ["", "no_critic"],
    "coco": [
        "",
        "no_critic",
        "vgg16",
        "inception_v3",
        "resnet101",
        "resnet152",
        "resnet152,no_critic",
    ],
    "nuswide": ["", "no_critic", "vgg16", "inception_v3,no_critic", "resnet152"],
    "custom": ["", "no_critic", "cpu", "cpu,no_critic", "resnet18", "resnet101,no_critic", "vgg16"],
}


def get_config(name="digit_scenes", variant=""):
    config = runpy.run_path(os.path.join(ROOT, "configs", f"{name}.py"))["get_config"](variant)
    if name == "custom":  # the two fields a user must set
        config.data.image_dir, config.data.labels_file = "photos", "photos/labels.csv"
    return config


def set_field(config, dotted: str, value):
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value
    return config


def refused(config, *words):
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    "name, variant", [(n, v) for n, variants in SHIPPED.items() for v in variants]
)
def test_every_shipped_config_and_variant_passes(name, variant):
    check_config(get_config(name, variant))


@pytest.mark.parametrize(
    "field, typo, suggestion, dataset",
    [
        ("model.name", "resnt50", "resnet50", "digit_scenes"),
        ("model.dtype", "bfloat", "bfloat16", "digit_scenes"),
        ("data.name", "cocoo", "coco", "digit_scenes"),
        ("data.augment", "papr", "paper", "digit_scenes"),
        ("data.normalization", "imagnet", "imagenet", "digit_scenes"),
        ("method.feature_extractor", "snapshots", "snapshot", "digit_scenes"),
        ("method.classification_loss", "als", "asl", "digit_scenes"),
        ("data.builder_config", "smal", "small", "digit_scenes"),
        ("data.builder_config", "shufled", "shuffled", "digit_scenes"),
        ("method.generator_loss", "scaeld", "scaled", "digit_scenes"),
        ("data.split_scheme", "oficial", "official", "nuswide"),
    ],
)
def test_a_typo_in_a_choice_field_names_the_field_the_value_and_the_nearest_choice(
    field, typo, suggestion, dataset
):
    config = set_field(get_config(dataset), field, typo)
    message = refused(config, f"unknown {field} {typo!r}; choose one of", suggestion)
    assert message.endswith(f"(did you mean {suggestion!r}?)")
    assert message.startswith(f"unknown {field}")


def test_choose_one_lists_every_choice_and_suggests_only_near_ones():
    with pytest.raises(ConfigError, match=r"unknown x 'zzz'; choose one of \['a', 'b'\]$"):
        choose_one("x", "zzz", ("a", "b"))
    assert choose_one("x", "b", ("a", "b")) == "b"


@pytest.mark.parametrize(
    "field, bad, good",
    [
        ("method.alpha", -0.5, 0.0),
        ("method.gp_weight", -1.0, 0.0),
        ("method.beta", 0.0, 1e-3),
        ("method.n_critic", 0, 1),
        ("method.threshold", 0.0, 0.01),
        ("method.threshold", 1.0, 0.99),
        ("method.asl.gamma_neg", -1.0, 0.0),
        ("method.asl.gamma_pos", -0.1, 0.0),
        ("method.asl.clip", 1.0, 0.0),
        ("optim.generator_learning_rate", 0.0, 1e-9),
        ("optim.critic_learning_rate", -1e-4, 1e-9),
        ("optim.generator_learning_rate", float("nan"), 1e-3),
        ("optim.critic_learning_rate", float("inf"), 1e-3),
        ("optim.b1", 1.0, 0.0),
        ("optim.b2", -0.1, 0.0),
        ("optim.weight_decay", -1e-4, 0.0),
        ("optim.generator_decay_steps", -1, 0),
        ("optim.generator_decay_to", 1.5, 1.0),
        ("optim.generator_decay_to", -0.1, 0.0),
        ("critic.embed_dim", 0, 1),
        ("critic.num_layers", 0, 1),
        ("critic.negative_slope", 1.0, 0.0),
        ("schedule.supervised_steps", -1, 0),
        ("schedule.adversarial_steps", -1, 0),
        ("schedule.log_every", -1, 0),
        ("schedule.eval_every", -1, 0),
        ("schedule.checkpoint_every", -1, 0),
        ("schedule.keep_checkpoints", 0, 1),
        ("schedule.batch_size", 0, 4),
        ("schedule.batch_size", 6, 8),  # the tests run on 4 devices
        ("schedule.eval_batch_size", 2, 4),
        ("schedule.batch_size", 65_540, 65_536),
        ("schedule.eval_batch_size", 10**9, 65_536),
        ("seed", -1, 0),
        ("model.width", 0, 1),
        ("data.image_size", 0, 1),
        ("data.image_size", 4096, 2048),
        ("data.shuffle_buffer", 0, 1),
        ("data.device_prefetch", 0, 1),
        ("data.num_parallel_calls", 0, -1),
        ("data.private_threads", -1, 0),
    ],
)
def test_a_number_out_of_its_range_is_refused_and_its_boundary_accepted(field, bad, good):
    refused(set_field(get_config(), field, bad), field)
    check_config(set_field(get_config(), field, good))


@pytest.mark.parametrize("name, too_small", [("vgg16", 31), ("inception_v3", 74)])
def test_image_size_below_the_backbones_minimum_is_refused(name, too_small):
    config = get_config("coco", name)
    refused(set_field(config, "data.image_size", too_small), "data.image_size", name)
    check_config(set_field(config, "data.image_size", too_small + 1))


def test_custom_fractions_are_checked_by_the_dataset():
    config = get_config("custom")
    config.data.validation_fraction, config.data.test_fraction = 0.6, 0.5
    refused(config, "data.validation_fraction + data.test_fraction")
    config.data.labels_file = ""
    refused(config, "data.labels_file")


def test_feature_extractor_pretrained_needs_weights():
    config = get_config()
    config.method.feature_extractor = "pretrained"
    refused(config, "method.feature_extractor='pretrained' needs model.pretrained")


def test_an_unconditional_critic_needs_negative_sampling_off():
    config = get_config()
    config.method.conditional = False
    refused(config, "method.conditional=False", "negative_sampling=False")
    config.method.negative_sampling = False
    check_config(config)


def test_the_scaled_generator_loss_needs_a_positive_alpha():
    config = get_config()
    config.method.generator_loss, config.method.alpha = "scaled", 0.0
    refused(config, "method.generator_loss='scaled'", "method.alpha")
    config.method.alpha = 0.5
    check_config(config)


def test_straight_through_needs_gumbel_samples():
    config = get_config()
    config.method.gumbel, config.method.straight_through = False, True
    refused(config, "method.straight_through=True needs method.gumbel=True")
    config.method.straight_through = False
    check_config(config)


@pytest.mark.parametrize("name", ["vgg16", "inception_v3"])
def test_width_only_where_the_backbone_has_one(name):
    config = get_config("coco", name)
    config.model.width = 32
    refused(config, f"model.width=32 does not apply to {name}")


def converted(tmp_path, arch: str) -> str:
    """A converted checkpoint's directory as far as the config check reads it."""
    folder = tmp_path / f"converted_{arch}"
    folder.mkdir()
    (folder / "pretrained.json").write_text(json.dumps({"arch": arch}))
    return str(folder)


def test_pretrained_weights_must_be_of_the_configured_backbone(tmp_path):
    config = get_config("coco", "resnet101")
    config.model.pretrained = converted(tmp_path, "resnet50")
    refused(config, "holds resnet50 weights but model.name is resnet101")
    config.model.pretrained = converted(tmp_path, "resnet101")
    check_config(config)
    config.model.pretrained = str(tmp_path / "nothing_here")
    refused(config, "is not a converted checkpoint")


def test_pretrained_weights_need_their_normalisation_and_a_backbone_that_has_them(tmp_path):
    config = get_config("coco", "resnet50")
    config.model.pretrained = converted(tmp_path, "resnet50")
    config.data.normalization = "unit"
    refused(config, "data.normalization='unit'", "imagenet")
    small = get_config()
    small.model.pretrained = config.model.pretrained
    refused(small, "model.name=resnet_small has no ImageNet weights")


def test_a_config_file_field_nobody_reads_is_refused_with_its_name():
    config = get_config("coco")
    config.method.alpah = 1.0  # a typo in a config file: ml_collections accepts it
    refused(config, "unknown config field 'method.alpah'", "'method.alpha'")
    other = get_config("coco")
    other.data.builder_config = "small"  # digit_scenes' field, not COCO's
    refused(other, "unknown config field 'data.builder_config'", "'coco'")


@pytest.mark.parametrize(
    "old, new",
    [
        ("schedule.bce_steps", "schedule.supervised_steps"),
        ("optim.d_learning_rate", "optim.critic_learning_rate"),
        ("optim.g_learning_rate", "optim.generator_learning_rate"),
        ("discriminator.num_layers", "critic.num_layers"),
    ],
)
def test_an_old_field_name_is_refused_with_the_new_one(old, new):
    config = get_config("coco")
    section, name = old.split(".")
    if section not in config:
        config[section] = ml_collections.ConfigDict()
    config[section][name] = 3  # a config file written before the rename
    refused(config, f"config field {old!r} is now called {new!r}")


def test_a_config_missing_a_field_is_refused():
    settings = get_config().to_dict()
    del settings["optim"]["b2"]
    refused(ml_collections.ConfigDict(settings), "no field 'optim.b2'")


@pytest.mark.parametrize(
    "field, value",
    [("method.alpha", "10"), ("method.conditional", 1), ("schedule.supervised_steps", 2.5),
     ("model.name", 3), ("data.data_dir", 5)],
)  # fmt: skip
def test_a_value_of_the_wrong_type_is_refused(field, value):
    settings = get_config().to_dict()
    set_field(settings, field, value)
    refused(ml_collections.ConfigDict(settings), field, "wrong type")


def test_not_a_config_dict_is_refused():
    with pytest.raises(ConfigError, match="not an ml_collections.ConfigDict"):
        check_config({"model": {}})


def test_a_bad_config_stops_training_before_any_data_model_or_workdir(monkeypatch, tmp_path):
    def touched(*_, **__):
        raise AssertionError("touched before the config was checked")

    for name in ("get_source", "create_generator", "create_critic"):
        monkeypatch.setattr(train, name, touched)
    monkeypatch.setattr(train.checkpoint, "check_workdir", touched)
    workdir = tmp_path / "run"
    for field, value in [("model.name", "resnt50"), ("data.augment", "papr"),
                         ("method.gp_weight", -1.0)]:  # fmt: skip
        config = set_field(get_config(), field, value)
        with pytest.raises(ConfigError, match=field):
            train.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


def test_every_range_names_a_field_a_config_has():
    # Every range names a field of the base config (or a field a config may add).
    base = {path for path, _ in config_check._leaves(get_config())}
    assert set(config_check.RANGES) - base <= {"model.ema_decay"}
