import dataclasses

import pytest

from harness.config import ConfigError, parse_overrides, resolve
from harness.provenance import fingerprint


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    flag: bool = False


@dataclasses.dataclass(frozen=True)
class Outer:
    epochs: int = 3
    name: str = "x"
    inner: Inner = Inner()


TABLE = {"smoke": Outer(epochs=1), "tiny": Outer()}


def test_resolve_applies_typed_overrides():
    cfg = resolve(TABLE, "tiny", parse_overrides(["epochs=7", "inner.lr=0.5", "inner.flag=true"]))
    assert cfg == Outer(epochs=7, inner=Inner(lr=0.5, flag=True))


def test_unknown_key_and_preset_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown config key 'inner.nope'"):
        resolve(TABLE, "tiny", {"inner.nope": "1"})
    with pytest.raises(ConfigError, match="unknown preset 'big'"):
        resolve(TABLE, "big")
    with pytest.raises(ConfigError, match="cannot read 'abc' as int"):
        resolve(TABLE, "tiny", {"epochs": "abc"})


def test_fingerprint_ignores_key_order():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_config_show_covers_every_stage_and_documents_every_field():
    """Every field of every stage's config, on every preset, is shown with a one-line doc;
    nested knobs are spelled as --set spells them; a missing --arch/--task is one line."""
    import dataclasses

    from click.testing import CliRunner

    from harness.cli import main
    from harness.models import MODEL_REGISTRY
    from harness.pretext import PRETEXT_TASKS
    from harness.pretext.train import task_config
    from harness.settings_doc import describe

    rows = []
    for preset in ("smoke", "tiny", "paper"):
        rows += describe(preset, None, {})
        rows += [r for a in MODEL_REGISTRY for r in describe(preset, None, {}, "finetune", arch=a)]
        rows += [r for t in PRETEXT_TASKS for r in describe(preset, None, {}, "pretrain", task=t)]
        for stage in ("cache", "models") + (("synth",) if preset != "paper" else ()):
            rows += describe(preset, None, {}, stage)
    undocumented = sorted({(r["section"], r["key"]) for r in rows if not r["doc"]})
    assert undocumented == []
    sort = {r["key"]: r for r in describe("tiny", None, {"task.window": "12"}, "pretrain", task="sort")}
    knobs = {f"task.{f.name}" for f in dataclasses.fields(task_config("sort", "tiny").task)}
    assert knobs <= set(sort) and sort["task.window"]["value"] == 12 and sort["task.window"]["preset_default"] == 16
    out = CliRunner().invoke(main, ["config", "show", "--stage", "finetune", "--arch", "prednet", "--set", "lr=0.5"])
    assert out.exit_code == 0 and "| finetune | `lr` | 0.5 (set) |" in out.output
    out = CliRunner().invoke(main, ["config", "show", "--stage", "pretrain"])
    assert out.exit_code == 2 and "pass --task" in out.output
    out = CliRunner().invoke(main, ["config", "show", "--stage", "synth", "--preset", "paper"])
    assert out.exit_code == 2 and "has no synthetic set" in out.output


def test_choice_keys_are_typed_from_the_graphs_own_tuples():
    """Every choice key of MethodSettings is a Literal type built from the same tuple that
    validates it, and config show lists the choices."""
    import typing

    from harness.distill.graphs import LogitsGraph
    from harness.distill.methods import _CHOICES, MethodSettings
    from harness.settings_doc import describe

    hints = typing.get_type_hints(MethodSettings)
    for key, choices in _CHOICES.items():
        assert typing.get_origin(hints[key]) is typing.Literal and typing.get_args(hints[key]) == tuple(choices)
    assert typing.get_args(hints["gl_reading"]) == LogitsGraph.READINGS
    rows = {r["key"]: r for r in describe("tiny", "gl", {})}
    assert rows["gl_reading"]["choices"] == list(LogitsGraph.READINGS) and rows["lam"]["choices"] is None
