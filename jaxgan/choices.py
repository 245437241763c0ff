"""The one way a config value is refused: `ConfigError`, and `choose_one` for choice fields;
and `field_at`, the one lookup of a dotted config field.

Kept free of other jaxgan imports (and of TensorFlow) so that every module owning a set of
choices (models, datasets, augmentations, losses) and the command line can use it without
import cycles.
"""

import difflib
from collections.abc import Iterable

import ml_collections

MISSING = object()  # `field_at`'s answer for a field the config does not have


def field_at(config, dotted: str):
    """The value of field `dotted` ('a.b.c') of a nested config, or `MISSING` where a part is
    absent or a value stands where a section should."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return MISSING
        node = node[part]
    return node


# Config fields and sections renamed since configs were first written: old -> new. An old name
# on the command line or in a config file is refused with the new one; a checkpoint's recorded
# config is read with the new ones (`checkpoint.upgrade_recorded`).
RENAMED_FIELDS = {
    "schedule.bce_steps": "schedule.supervised_steps",
    "discriminator": "critic",
    "optim.g_learning_rate": "optim.generator_learning_rate",
    "optim.d_learning_rate": "optim.critic_learning_rate",
}


def renamed_field(dotted: str) -> str | None:
    """The current name of an old field `dotted` (or of a field of an old section), else None."""
    for old, new in RENAMED_FIELDS.items():
        if dotted == old or dotted.startswith(old + "."):
            return new + dotted[len(old) :]
    return None


def renamed_message(dotted: str) -> str | None:
    """The one-line refusal of an old field name, or None when `dotted` is not one."""
    new = renamed_field(dotted)
    return None if new is None else f"config field {dotted!r} is now called {new!r}; rename it"


class ConfigError(ValueError):
    """A config value or combination the run cannot use; the message is one line naming the
    field, the value and the fix. The command line exits with status 2 (a usage error)."""


def close_match(value, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the candidate nearest to `value`, or '' when none is near."""
    matches = difflib.get_close_matches(str(value), [str(c) for c in candidates], n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def choose_one(field: str, value, choices: Iterable):
    """Returns `value` if it is one of `choices`, else raises one line naming the field, the
    value, the nearest choice and all of them, e.g.
    "unknown model.name 'resnt50'; choose one of [...] (did you mean 'resnet50'?)"."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    raise ConfigError(
        f"unknown {field} {value!r}; choose one of {choices}{close_match(value, choices)}"
    )
