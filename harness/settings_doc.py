"""``harness config show``: the resolved config of one stage, each key with its value, the
preset's default, the class default and a one-line doc (the trailing comment of its field in
the dataclass source). Nested dataclasses (a pretext task's knobs, each backbone's config)
are shown as ``outer.inner`` keys, as ``--set`` spells them."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing

from harness.config import ConfigError

STAGES = ("distill", "finetune", "pretrain", "cache", "synth", "models")


def field_docs(cls) -> dict[str, str]:
    """``{field: trailing comment}`` read from the dataclass source (empty where none)."""
    docs = {}
    for line in inspect.getsource(cls).splitlines():
        found = re.match(r"\s+(\w+): [^#]+#\s*(.+)$", line)
        if found:
            docs[found.group(1)] = found.group(2).strip()
    return docs


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def dataclass_rows(section: str, obj, ref, prefix: str = "", keep=None) -> list[dict]:
    """One row per leaf field of the dataclass instance ``obj`` beside ``ref`` (the preset's
    value); ``keep(name)`` filters top-level fields."""
    cls = type(obj)
    docs = field_docs(cls)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:   # an annotation that does not resolve here: no choices shown
        hints = {}
    rows = []
    for f in dataclasses.fields(cls):
        if keep is not None and not keep(f.name):
            continue
        value, preset_value = getattr(obj, f.name), getattr(ref, f.name)
        if dataclasses.is_dataclass(value):
            rows += dataclass_rows(section, value, preset_value, f"{prefix}{f.name}.")
            continue
        hint = hints.get(f.name)
        choices = list(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else None
        rows.append({"section": section, "key": prefix + f.name, "value": value, "preset_default": preset_value,
                     "default": _default(f), "doc": docs.get(f.name, ""), "choices": choices})
    return rows


def describe(preset: str, method: str | None, overrides: dict, stage: str = "distill", arch: str | None = None,
             task: str | None = None) -> list[dict]:
    """The rows of ``stage``. distill: the training keys and the method settings (with
    ``method``, only those it reads: what its fingerprint covers); finetune needs ``arch``,
    pretrain ``task``."""
    from harness.config import resolve

    if stage == "distill":
        from harness.distill.methods import settings_read
        from harness.distill.runner import DISTILL_PRESETS, _resolve_config

        cfg, base = _resolve_config(preset, overrides), DISTILL_PRESETS[preset]
        read = None if method is None else set(settings_read(method, cfg.method))   # raises on an unknown method
        return (dataclass_rows("training", cfg, base, keep=lambda n: n != "method")
                + dataclass_rows("method", cfg.method, base.method, keep=lambda n: read is None or n in read))
    if stage == "finetune":
        from harness.finetune import finetune_config

        if arch is None:
            raise ConfigError("config show --stage finetune: pass --arch (the backbone whose settings to show)")
        return dataclass_rows("finetune", finetune_config(arch, preset, overrides), finetune_config(arch, preset))
    if stage == "pretrain":
        from harness.pretext.train import task_config

        if task is None:
            raise ConfigError("config show --stage pretrain: pass --task (the pretext task whose settings to show)")
        return dataclass_rows("pretrain", task_config(task, preset, overrides), task_config(task, preset))
    if stage == "cache":
        from harness.cache.teachers import CACHE_PRESETS

        return dataclass_rows("cache", resolve(CACHE_PRESETS, preset, overrides), CACHE_PRESETS[preset])
    if stage == "synth":
        from harness.data.synth import SYNTH_PRESETS

        if SYNTH_PRESETS[preset].real_data:
            raise ConfigError(f"preset {preset!r} has no synthetic set (it reads a real dataset); "
                              f"choose one of {', '.join(p for p, c in SYNTH_PRESETS.items() if not c.real_data)}")
        return dataclass_rows("synth", resolve(SYNTH_PRESETS, preset, overrides), SYNTH_PRESETS[preset])
    if stage == "models":
        from harness.models import MODEL_PRESETS

        if overrides:
            raise ConfigError("config show --stage models takes no --set (backbone shapes are fixed per preset)")
        return dataclass_rows("models", MODEL_PRESETS[preset], MODEL_PRESETS[preset])
    raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


def render(rows: list[dict], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(rows, indent=2, default=str)
    lines = ["| section | key | value | preset default | default | doc |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = " (set)" if r["value"] != r["preset_default"] else ""
        default = "(per preset)" if r["default"] is None else repr(r["default"])
        doc = r["doc"].replace("|", "or") + (f" (one of: {', '.join(map(str, r['choices']))})"
                                             if r.get("choices") else "")
        lines.append(f"| {r['section']} | `{r['key']}` | {r['value']!r}{mark} | {r['preset_default']!r} | "
                     f"{default} | {doc} |")
    return "\n".join(lines)
