"""The one way a config value is refused: `ConfigError`, and `choose_one` for choice fields.

Kept free of other jaxgan imports so that every module owning a set of choices (models,
datasets, augmentations, losses) can use it without import cycles.
"""

import difflib
from collections.abc import Iterable


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
