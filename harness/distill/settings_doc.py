"""``harness config show``: the resolved distillation config, each key with its default, its
value and a one-line doc (the trailing comment of its field in the dataclass source)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

from harness.distill.methods import MethodSettings, settings_read


def field_docs(cls) -> dict[str, str]:
    """``{field: trailing comment}`` read from the dataclass source (empty where none)."""
    docs = {}
    for line in inspect.getsource(cls).splitlines():
        found = re.match(r"\s+(\w+): [^#]+#\s*(.+)$", line)
        if found:
            docs[found.group(1)] = found.group(2).strip()
    return docs


def describe(preset: str, method: str | None, overrides: dict) -> list[dict]:
    """One row per key: section, key, value, preset default, class default, doc. With
    ``method``, only the method settings that method reads (what its fingerprint covers)."""
    from harness.distill.runner import DISTILL_PRESETS, DistillConfig, _resolve_config

    cfg = _resolve_config(preset, overrides)
    base = DISTILL_PRESETS[preset]
    read = None if method is None else set(settings_read(method, cfg.method))   # raises on an unknown method
    rows = []
    for section, cls, obj, ref in (("training", DistillConfig, cfg, base),
                                   ("method", MethodSettings, cfg.method, base.method)):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name == "method" or (section == "method" and read is not None and f.name not in read):
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            rows.append({"section": section, "key": f.name, "value": getattr(obj, f.name),
                         "preset_default": getattr(ref, f.name), "default": default, "doc": docs.get(f.name, "")})
    return rows


def render(rows: list[dict], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(rows, indent=2, default=str)
    lines = ["| section | key | value | preset default | default | doc |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = " (set)" if r["value"] != r["preset_default"] else ""
        default = "(per preset)" if r["default"] is None else repr(r["default"])
        doc = r["doc"].replace("|", "or")
        lines.append(f"| {r['section']} | `{r['key']}` | {r['value']!r}{mark} | {r['preset_default']!r} | "
                     f"{default} | {doc} |")
    return "\n".join(lines)
