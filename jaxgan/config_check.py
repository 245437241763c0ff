"""The whole config checked at the door, before any dataset is built or downloaded, any model
is created or the workdir is touched.

`check_config(config)` is the one place that decides whether a config can run: every field
known (a typo in a config file is refused with the field's name), every value of the right
type, every choice field one of its choices (`choices.choose_one`), every number in its range,
and the combinations the method needs. Modules that own a choice or a rule (backbones, datasets,
augmentations, losses, checkpoints, the device mesh) keep it; this module calls them. Each
refusal is a `ConfigError`: one line naming the field, the value and the fix.
"""

import dataclasses
import importlib
import math

import ml_collections

from jaxgan import checkpoint, parallel
from jaxgan.base_config import get_base_config
from jaxgan.choices import (
    MISSING,
    ConfigError,
    choose_one,
    close_match,
    field_at,
    renamed_message,
)
from jaxgan.data import augment
from jaxgan.data.datasets import SOURCES
from jaxgan.losses import GENERATOR_LOSSES, ClassificationLoss
from jaxgan.models import DTYPES, GENERATORS, backbone, check_width
from jaxgan.state import FEATURE_EXTRACTORS

__all__ = ["ConfigError", "check_config", "choose_one"]

# Beyond this side one image's activations in the large backbones no longer fit a device, and
# a typo (224 -> 22400) would otherwise be found only as an out-of-memory error.
MAX_IMAGE_SIZE = 2048
MAX_BATCH_SIZE = 65_536  # global; no device holds this many 224-pixel images


@dataclasses.dataclass(frozen=True)
class Interval:
    """Where a number may lie: [low, high] with either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return (
            f"in {'(' if self.low_open else '['}{self.low}, {self.high}"
            f"{')' if self.high_open else ']'}"
        )


AT_LEAST_0, AT_LEAST_1 = Interval(0), Interval(1)
POSITIVE = Interval(0, low_open=True)
UNIT_OPEN = Interval(0, 1, low_open=True, high_open=True)  # (0, 1)
UNIT_HALF_OPEN = Interval(0, 1, high_open=True)  # [0, 1)

# field -> its valid range. Types are checked first (against the base config), so every value
# here is a number; NaN lies in no interval and every float must be finite.
RANGES = {
    "seed": Interval(0, 2**31 - 1),
    # A typo (64 -> 64000000) would otherwise be found only as an out-of-memory error.
    "schedule.batch_size": Interval(1, MAX_BATCH_SIZE),
    "schedule.eval_batch_size": Interval(1, MAX_BATCH_SIZE),
    "model.width": Interval(1, 4096),
    "data.shuffle_buffer": AT_LEAST_1,
    "data.device_prefetch": AT_LEAST_1,
    "data.cache_max_mib": AT_LEAST_1,
    "data.private_threads": AT_LEAST_0,
    "data.num_workers": AT_LEAST_0,
    "method.asl.gamma_neg": AT_LEAST_0,
    "method.asl.gamma_pos": AT_LEAST_0,
    "method.asl.clip": UNIT_HALF_OPEN,
    "method.alpha": AT_LEAST_0,
    "method.gp_weight": AT_LEAST_0,
    "method.beta": POSITIVE,
    "method.n_critic": AT_LEAST_1,
    "method.threshold": UNIT_OPEN,
    "critic.embed_dim": AT_LEAST_1,
    "critic.hidden_dim": AT_LEAST_1,
    "critic.num_layers": AT_LEAST_1,
    "critic.negative_slope": UNIT_HALF_OPEN,
    "optim.generator_learning_rate": POSITIVE,
    "optim.critic_learning_rate": POSITIVE,
    "optim.b1": UNIT_HALF_OPEN,
    "optim.b2": UNIT_HALF_OPEN,
    "optim.weight_decay": AT_LEAST_0,
    "optim.generator_decay_steps": AT_LEAST_0,
    "optim.generator_decay_to": Interval(0, 1),
    "schedule.supervised_steps": AT_LEAST_0,
    "schedule.adversarial_steps": AT_LEAST_0,
    "schedule.log_every": AT_LEAST_0,
    "schedule.eval_every": AT_LEAST_0,
    "schedule.checkpoint_every": AT_LEAST_0,
    "model.ema_decay": UNIT_HALF_OPEN,
    "compilation_cache.max_gib": POSITIVE,
    "compilation_cache.min_compile_seconds": AT_LEAST_0,
}


def check_config(config, for_training: bool = True) -> None:
    """Raises `ConfigError` (one line) for the first problem in `config`; returns otherwise.
    Reads no dataset and writes nothing; the only file it opens, when `for_training`, is a
    converted checkpoint's small metadata file (`model.pretrained`), to compare its backbone
    with `model.name` (a trained model's checkpoint holds its weights: evaluating it reads no
    `model.pretrained`)."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"the config is a {type(config).__name__}, not an ml_collections.ConfigDict; a "
            "config file's get_config() must return one (start from "
            "jaxgan.base_config.get_base_config())"
        )
    dataset = _dataset_module(config)
    _check_fields(config, dataset)
    _check_choices(config)
    _check_ranges(config)
    _check_combinations(config, for_training)
    _delegate(lambda: getattr(dataset, "check_data_fields", lambda _: None)(config.data))
    _delegate(lambda: _check_schedule(config.schedule))


def _delegate(check) -> None:
    """Runs a check owned by another module; its one-line ValueError becomes a ConfigError."""
    try:
        check()
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _dataset_module(config):
    data = config.get("data")
    name = data.get("name") if isinstance(data, ml_collections.ConfigDict) else None
    return importlib.import_module(SOURCES[choose_one("data.name", name, sorted(SOURCES))])


def _leaves(node, prefix=""):
    """(dotted path, value) of every non-ConfigDict field, depth first."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _type_name(kind) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


def _check_type(path: str, value, kind) -> None:
    """`kind` is the type of the base config's default (or a dataset's declared type)."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"{path}={value!r} is not a finite number; set a finite value")
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(
            f"{path}={value!r} has the wrong type: it takes {_type_name(kind)}; "
            f"set --config.{path} to one"
        )


def _field_types(dataset) -> dict:
    """Every field a config may have, with its type: the base config's and the dataset's."""
    base = get_base_config()
    types = {path: type(value) for path, value in _leaves(base)}
    types["data.data_dir"] = str  # a FieldReference that may be None: TFDS's default folder
    types.update(
        {f"data.{name}": kind for name, kind in getattr(dataset, "CONFIG_FIELDS", {}).items()}
    )
    return types


def _check_fields(config, dataset) -> None:
    types = _field_types(dataset)
    for path, value in _leaves(config):
        if path not in types and renamed_message(path):
            raise ConfigError(renamed_message(path))
        if path not in types:
            raise ConfigError(
                f"unknown config field {path!r}{close_match(path, types)}: neither "
                f"jaxgan/base_config.py nor dataset {config.data.name!r} has it; fix its "
                "spelling or remove it from the config file"
            )
        if path == "data.data_dir" and value is None:
            continue
        _check_type(path, value, types[path])
    base_paths = {path for path, _ in _leaves(get_base_config())}
    missing = sorted(path for path in base_paths if field_at(config, path) is MISSING)
    if missing:
        raise ConfigError(
            f"the config has no field {missing[0]!r} ({len(missing)} missing); build config "
            "files on jaxgan.base_config.get_base_config() and change what they need"
        )


def _check_choices(config) -> None:
    backbone(config.model.name)
    choose_one("model.dtype", config.model.dtype, sorted(DTYPES))
    _delegate(lambda: augment.check_choices(config.data))
    choose_one("method.feature_extractor", config.method.feature_extractor, FEATURE_EXTRACTORS)
    _delegate(lambda: ClassificationLoss.from_config(config.method))
    choose_one("method.generator_loss", config.method.generator_loss, GENERATOR_LOSSES)


def _check_ranges(config) -> None:
    for path, interval in RANGES.items():
        value = field_at(config, path)
        if value is not MISSING and value not in interval:
            raise ConfigError(f"{path}={value!r} is out of range: it must be {interval}")
    calls = config.data.num_parallel_calls
    if calls != -1 and calls < 1:
        raise ConfigError(
            f"data.num_parallel_calls={calls} is out of range: use -1 (the default, 4) or >= 1"
        )
    spec = GENERATORS[config.model.name]
    size = config.data.image_size
    if not spec.min_image_size <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"data.image_size={size} is out of range for model.name={config.model.name}: it "
            f"must be in [{spec.min_image_size}, {MAX_IMAGE_SIZE}]"
            + (f" (its ImageNet weights expect {spec.image_size})" if spec.image_size else "")
        )


def _check_combinations(config, for_training: bool) -> None:
    model, method = config.model, config.method
    if method.feature_extractor == "pretrained" and not model.pretrained:
        raise ConfigError(
            "method.feature_extractor='pretrained' needs model.pretrained (a converted ImageNet "
            "checkpoint, python -m jaxgan.convert); without it f_ext would be a random network. "
            "Set --config.model.pretrained=DIR or use feature_extractor='snapshot'"
        )
    if not method.conditional and method.negative_sampling:
        raise ConfigError(
            "method.conditional=False needs method.negative_sampling=False: to a critic that "
            "sees no image, mismatched label sets are real ones (ablation d drops both)"
        )
    if method.generator_loss == "scaled" and not method.alpha > 0:
        raise ConfigError(
            "method.generator_loss='scaled' divides G's loss by method.alpha, which is 0; set "
            "method.alpha > 0 or use generator_loss='paper'"
        )
    if method.straight_through and not method.gumbel:
        raise ConfigError(
            "method.straight_through=True needs method.gumbel=True: without Gumbel sampling the "
            "critic sees sigmoid(s) and there is no sample to harden; drop one of the two"
        )
    if method.snapshot_ema and not (model.ema_decay > 0 and method.feature_extractor == "snapshot"):
        raise ConfigError(
            "method.snapshot_ema needs model.ema_decay > 0 and method.feature_extractor="
            "'snapshot' (it says which weights the snapshot is taken from)"
        )
    _delegate(lambda: check_width(model.name, model.width))
    if model.pretrained and for_training:
        _check_pretrained(config)


def _check_pretrained(config) -> None:
    """Converted ImageNet weights must be of model.name's backbone, and the images normalised
    as those weights were trained. (Their width is compared with model.width, shape by shape,
    by `load_pretrained`; a converted file is not read here beyond its metadata.)"""
    from jaxgan.weights.pretrained import check_pretrained_arch

    model = config.model
    spec = backbone(model.name)
    _delegate(lambda: check_pretrained_arch(model.pretrained, model.name))
    if spec.normalization and config.data.normalization != spec.normalization:
        raise ConfigError(
            f"data.normalization={config.data.normalization!r} is not what {model.name}'s "
            f"ImageNet weights were trained on; set --config.data.normalization="
            f"{spec.normalization} (or unset model.pretrained)"
        )


def _check_schedule(schedule) -> None:
    parallel.check_batch_size(schedule.batch_size, "schedule.batch_size")
    parallel.check_batch_size(schedule.eval_batch_size, "schedule.eval_batch_size")
    checkpoint.check_options(schedule)
