"""Presets and small config helpers.

Every subsystem keeps its own preset table next to its code (``SYNTH_PRESETS`` in
``harness.data.synth``, ...) as a dict ``{preset_name: dataclass_instance}``; this module
only names the presets and resolves them, so adding a knob touches one module.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
from typing import Any, Iterator, Mapping, TypeVar

PRESETS = ("smoke", "tiny", "paper")
DEFAULT_PRESET = "tiny"

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad preset name or override; the message is one line meant for the user."""


def resolve(table: Mapping[str, T], preset: str, overrides: Mapping[str, Any] | None = None) -> T:
    """Return the dataclass for ``preset`` from ``table`` with ``overrides`` applied.

    Overrides are ``{field: value}``; a nested field is ``"a.b"``. Values given as strings
    (from the command line) are converted to the type of the current value.
    """
    if preset not in table:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(table)}")
    cfg = table[preset]
    names = {f.name for f in dataclasses.fields(cfg)}
    shared = {k: v for k, v in _COMMAND_SETTINGS.get().items() if k in names}
    return apply_overrides(cfg, {**shared, **(overrides or {})})


# Settings of one command that runs several stages (``harness table1 --skip-bad``): each stage's
# config takes them where it has the field, so they land in that stage's run key as an override would.
_COMMAND_SETTINGS: contextvars.ContextVar[dict] = contextvars.ContextVar("harness_command_settings", default={})


@contextlib.contextmanager
def command_settings(**settings: Any) -> Iterator[None]:
    """Inside the block every :func:`resolve` applies ``settings`` to a config that has the field
    (an explicit override still wins)."""
    token = _COMMAND_SETTINGS.set({**_COMMAND_SETTINGS.get(), **settings})
    try:
        yield
    finally:
        _COMMAND_SETTINGS.reset(token)


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | None) -> T:
    """``cfg`` (a dataclass) with ``{field: value}`` overrides applied, as ``resolve`` does."""
    for key, value in (overrides or {}).items():
        cfg = _replace_path(cfg, key.split("."), value, key)
    return cfg


def _replace_path(obj: Any, path: list[str], value: Any, full: str) -> Any:
    name = path[0]
    fields = {f.name for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ConfigError(f"unknown config key {full!r}; known here: {', '.join(sorted(fields))}")
    current = getattr(obj, name)
    if len(path) > 1:
        return dataclasses.replace(obj, **{name: _replace_path(current, path[1:], value, full)})
    return dataclasses.replace(obj, **{name: _coerce(value, current, full)})


def _coerce(value: Any, current: Any, key: str) -> Any:
    if not isinstance(value, str) or isinstance(current, str) or current is None:
        return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(current, (int, float)):
            number = type(current)(value)
            if isinstance(number, float) and not math.isfinite(number):
                raise OverflowError(value)
            return number
        if isinstance(current, tuple):
            # a tuple knob: "[1, 2]" (JSON), "1,2" or "1" (one value), "" or "[]" (empty)
            text = value.strip()
            if text.startswith("["):
                items = json.loads(text)
            else:
                items = [json.loads(v) for v in text.split(",") if v.strip()]
            if not isinstance(items, list) or not all(isinstance(v, (int, float, str)) for v in items):
                raise ValueError(value)
            return tuple(items)
        return type(current)(json.loads(value))
    except OverflowError:
        raise ConfigError(f"config key {key!r}: {value!r} is not a finite number") from None
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config key {key!r}: cannot read {value!r} as {type(current).__name__}") from exc


def check_bounds(obj: Any, bounds, where: str = "config key") -> None:
    """Each ``(key, low, strict)`` of ``bounds``: the field's value (or each value of a tuple)
    is a finite number ``> low`` (strict) or ``>= low``; else one line naming the key."""
    for key, low, strict in bounds:
        value = getattr(obj, key)
        for v in (value if isinstance(value, tuple) else (value,)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (
                v > low if strict else v >= low)
            if not ok:
                raise ConfigError(f"{where} {key!r}: must be {'>' if strict else '>='} {low:g}, got {value!r}")


def check_choice(obj: Any, key: str, choices, where: str = "config key") -> None:
    if getattr(obj, key) not in choices:
        raise ConfigError(f"{where} {key!r}: {getattr(obj, key)!r} is not one of {', '.join(map(str, choices))}")


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}`` (the ``--set`` option)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


OMIT_AT_DEFAULT = "harness.omit_at_default"


def keyless_default(value: Any) -> Any:
    """A dataclass field default that :func:`to_dict` leaves out while the field holds it, so
    adding such a setting keeps the fingerprints (run keys, store manifests) of every config
    that does not use it."""
    return dataclasses.field(default=value, metadata={OMIT_AT_DEFAULT: True})


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain JSON-able data (for run records and fingerprints); fields
    made with :func:`keyless_default` are left out while they hold their default."""
    return json.loads(json.dumps(_plain(cfg), default=str))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get(OMIT_AT_DEFAULT) and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj
