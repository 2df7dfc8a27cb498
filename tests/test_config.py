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
