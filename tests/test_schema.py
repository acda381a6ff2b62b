"""nasprune.schema: the generic checker on a small dataclass; read(dump(x)) == x."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from nasprune.errors import NaspruneError
from nasprune.schema import SchemaError, describe, dump, read, rule


@dataclass(frozen=True, kw_only=True)
class Inner:
    name: str = field(default="a", metadata=rule(choices=("a", "b")))
    size: int = field(default=1, metadata=rule(low=1))

    def __post_init__(self) -> None:
        if self.name == "b" and self.size > 2:
            raise NaspruneError(f"size={self.size!r} is invalid: expected at most 2 with name b")


@dataclass(frozen=True, kw_only=True)
class Outer:
    flag: bool = False
    ratio: float = field(default=0.5, metadata=rule(low=0, high=1, high_open=True))
    count: int | None = None
    mode: Literal["all"] | tuple[int, ...] = "all"
    pair: tuple[int, int] = (0, 1)
    inner: Inner = field(default_factory=Inner, metadata=rule(shorthand="name"))
    runs: int = field(default=3, metadata=rule(key="group.runs", low=1))
    rest: Mapping[str, Any] = field(default_factory=dict, metadata=rule(key="group", fields=Inner))


@pytest.mark.parametrize("raw, message", [
    ({"flag": 1}, "f.yaml: flag=1 is invalid: expected true or false"),
    ({"ratio": 1}, "f.yaml: ratio=1 is invalid: expected a number in [0, 1)"),
    ({"ratio": float("nan")}, "f.yaml: ratio=nan is invalid: expected a number in [0, 1)"),
    ({"count": 1.0}, "f.yaml: count=1.0 is invalid: expected an integer or null"),
    ({"mode": "some"}, "f.yaml: mode='some' is invalid: expected 'all' or a list of integers"),
    ({"mode": [1, "x"]}, "f.yaml: mode[1]='x' is invalid: expected an integer"),
    ({"pair": [1]}, "f.yaml: pair=[1] is invalid: expected a list [integer, integer]"),
    ({"inner": {"size": 0}}, "f.yaml: inner.size=0 is invalid: expected an integer >= 1"),
    ({"inner": {"name": "b", "size": 3}}, "f.yaml: inner.size=3 is invalid: expected at most 2 with name b"),
    ({"inner": "c"}, "f.yaml: inner.name='c' is invalid: expected one of a, b"),
    ({"group": {"runs": 0}}, "f.yaml: group.runs=0 is invalid: expected an integer >= 1"),
    ({"group": {"colour": 1}}, "f.yaml: unknown key 'group.colour' (value 1): expected one of runs, name, size"),
    ({"group": {"size": True}}, "f.yaml: group.size=True is invalid: expected an integer >= 1"),
    ({"colour": 1}, "f.yaml: unknown key 'colour' (value 1): expected one of flag, ratio, count, mode, pair, "
                    "inner, group"),
])
def test_bad_values(raw, message):
    with pytest.raises(SchemaError) as err:
        read(Outer, raw, file="f.yaml")
    assert str(err.value) == message


def test_conversion_and_round_trip():
    x = read(Outer, {"ratio": 0, "count": None, "mode": [2, 1], "pair": [3, 4], "inner": "b",
                     "group": {"runs": 5, "size": 2}}, file="f.yaml")
    assert x == Outer(ratio=0.0, mode=(2, 1), pair=(3, 4), inner=Inner(name="b"), runs=5, rest={"size": 2})
    assert type(x.ratio) is float
    assert dump(x)["group"] == {"runs": 5, "size": 2}
    assert read(Outer, dump(x)) == x and read(Outer, dump(Outer())) == Outer()


def test_describe():
    assert describe(int | None, rule(low=0)["rule"]) == "an integer >= 0 or null"
    assert describe(tuple[float, ...], rule(low=0, high=4, low_open=True, min_items=1)["rule"]) == \
        "a non-empty list of numbers in (0, 4]"
    assert describe(Inner) == "a mapping with keys among name, size"
