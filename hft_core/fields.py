"""Config fields with help text, and the one error type for a wrong config value.

Both ``RunConfig`` (config.py) and every strategy's config dataclass (strategies/*.py)
are built from these. They live here, below both, so the strategy registry never has
to import config.py and config.py can import the registry at the top: no import circle.
``hft_core.config`` re-exports all of them, so ``from hft_core.config import ConfigError``
keeps working.
"""
from __future__ import annotations

from dataclasses import field, fields
from typing import Any


class ConfigError(ValueError):
    """A config value is wrong. The message names the field, the value and the fix."""


def param(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (shown as UI tooltip and CLI help)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def help_of(cls: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``cls``."""
    for f in fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def coerce_numbers(obj: Any) -> None:
    """Turn numeric strings into the field's type ("1e-4" -> 1e-4 for a float field).

    YAML 1.1 reads ``1e-4`` as a string and HTML forms send text, so configs coming
    from either are normalised here; anything that does not parse is left for the
    field's own validation message.
    """
    for f in fields(obj):
        v = getattr(obj, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        try:
            if kind == "float" and isinstance(v, (str, int)) and not isinstance(v, bool):
                setattr(obj, f.name, float(v))
            elif kind == "int" and isinstance(v, str):
                setattr(obj, f.name, int(v))
            elif kind == "int" and isinstance(v, float) and v.is_integer():
                setattr(obj, f.name, int(v))
        except ValueError:
            raise ConfigError(f"{f.name}={v!r} is not a {kind}: give a number") from None


def check(ok: bool, field_name: str, value: Any, fix: str) -> None:
    """Raise a ConfigError naming the field, the value received and what to do."""
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is not valid: {fix}")
