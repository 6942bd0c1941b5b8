"""Options of a family member (a task type, sampler, weighting, strategy...) from YAML.

Each member declares its options as a dataclass; ``build_options`` checks raw YAML values
against it so every family reports bad options the same way, naming the field and the fix.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from polytask.errors import ConfigError


def _is_number(value: Any) -> bool:
    # bool is an int subclass: a YAML `true` must not pass as a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value: Any, hint: Any, field: str) -> Any:
    """``value`` converted to ``hint`` (floats stored as float), or a ConfigError."""
    def fail(what: str, verb: str = "be") -> ConfigError:
        return ConfigError(f"option {key!r} must {verb} {what}; got {value!r}", field=f"{field}.{key}")

    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(key, value, inner[0] if len(inner) == 1 else typing.Union[tuple(inner)], field)  # noqa: UP007
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is float:
        if not _is_number(value):
            raise fail("a number")
        return float(value)
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("a whole number")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in value.items()):
            raise fail("task names to numbers", verb="map")
        return {k: float(v) for k, v in value.items()}
    if isinstance(hint, type) and not isinstance(value, hint):
        raise fail(f"a {hint.__name__}")
    return value


def build_options(config_cls: type, options: dict[str, Any] | None, *, name: str, kind: str, field: str) -> Any:
    """The member's options dataclass built from raw ``options``.

    Args:
        config_cls: the member's dataclass; its fields are the allowed keys and their defaults.
        options: raw values from the config (None means none).
        name: the member's registry name, named in messages.
        kind: what the member is ("task type", "task sampler", "loss weighting", ...).
        field: the config path of the options (``tasks.sst2.options``), named in errors.

    Raises:
        ConfigError: an unknown key (naming the allowed ones), a value of the wrong type, or a
            value the dataclass's ``__post_init__`` rejects with ValueError.
    """
    options = dict(options or {})
    hints = typing.get_type_hints(config_cls)
    allowed = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        if not allowed:
            raise ConfigError(f"{kind} {name!r} takes no options; got {', '.join(unknown)}", field=field)
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {kind} {name!r}; allowed: {', '.join(allowed)}",
            field=field,
        )
    values = {key: _check(key, value, hints[key], field) for key, value in options.items()}
    try:
        return config_cls(**values)
    except ValueError as exc:
        raise ConfigError(str(exc), field=field) from None
