"""Config variants: a BCE-only baseline for every config; variants combine; bad ones: one line."""

import os
import runpy

import pytest

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def get_config(name: str, variant: str | None = None):
    get = runpy.run_path(os.path.join(CONFIGS, f"{name}.py"))["get_config"]
    return get() if variant is None else get(variant)


def without_schedule_lengths(config) -> dict:
    settings = config.to_dict()
    del settings["schedule"]["supervised_steps"], settings["schedule"]["adversarial_steps"]
    return settings


@pytest.mark.parametrize(
    "name, variant, baseline_variant",
    [
        ("digit_scenes", "", "no_critic"),
        ("custom", "", "no_critic"),
        ("custom", "cpu", "cpu,no_critic"),
        ("custom", "cpu", "no_critic,cpu"),
        ("custom", "resnet18", "resnet18,no_critic"),
        ("coco", "", "no_critic"),
        ("coco", "resnet152", "resnet152,no_critic"),
        ("nuswide", "", "no_critic"),
        ("nuswide", "vgg16", "no_critic,vgg16"),
    ],
)
def test_no_critic_variant_is_the_same_run_without_the_critic(name, variant, baseline_variant):
    full, baseline = get_config(name, variant), get_config(name, baseline_variant)
    assert full.schedule.adversarial_steps > 0 and baseline.schedule.adversarial_steps == 0
    total = full.schedule.supervised_steps + full.schedule.adversarial_steps
    assert baseline.schedule.supervised_steps == total  # the same number of generator updates
    assert without_schedule_lengths(baseline) == without_schedule_lengths(full)


@pytest.mark.parametrize("name", ["custom", "coco", "nuswide"])
def test_backbone_variants_choose_the_backbone(name):
    default = get_config(name)
    assert get_config(name, "") == default
    for backbone in ("resnet152", "vgg16"):
        config = get_config(name, f"{backbone},no_critic")
        assert config.model.name == backbone
        assert config.data.image_size == get_config(name, backbone).data.image_size


def test_custom_cpu_is_a_smaller_run_than_the_default():
    cpu, default = get_config("custom", "cpu"), get_config("custom")
    assert cpu.model.name != default.model.name
    assert cpu.data.image_size < default.data.image_size
    cpu_total = cpu.schedule.supervised_steps + cpu.schedule.adversarial_steps
    assert cpu_total < default.schedule.supervised_steps + default.schedule.adversarial_steps


@pytest.mark.parametrize(
    "name, variant, problem",
    [
        ("custom", "cpu_bce", "unknown variant 'cpu_bce'"),
        ("custom", "cpu,resnet18", "each choose a backbone"),
        ("custom", "cpu,no_critic,no_critic", "'no_critic' given twice"),
        ("coco", "resnet152,bce", "variant 'bce' is now called 'no_critic'"),
        ("coco", "resnet50x", "unknown variant 'resnet50x'"),
        ("nuswide", "no_critic,gan", "unknown variant 'gan'"),
    ],
)
def test_a_bad_variant_is_one_line_naming_the_choices(name, variant, problem):
    with pytest.raises(ValueError, match=problem) as error:
        get_config(name, variant)
    message = str(error.value)
    assert "\n" not in message and f"configs/{name}.py:{variant}" in message
    assert "no_critic" in message and "resnet101" in message


def test_the_old_baseline_variant_names_the_new_one():
    with pytest.raises(ValueError, match="variant 'bce' is now called 'no_critic'") as error:
        get_config("digit_scenes", "bce")
    assert "\n" not in str(error.value)
