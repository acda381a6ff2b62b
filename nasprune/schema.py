"""Typed configuration: a dataclass's fields and type hints say what a YAML or JSON mapping may hold.

This is how :mod:`nasprune.spec` reads architectures (keyword dataclasses, every key checked, errors that
name the key, the value and what is allowed), made generic for the recipe and search-space files:

* the **type hint** of a field says what is accepted: ``bool`` only ``true``/``false``; ``int`` an integer
  (not a boolean); ``float`` any number (stored as a float); ``str``; ``X | None``; ``Literal[...]``;
  ``tuple[T, ...]`` a list of ``T``; ``tuple[A, B]`` a list of two; ``Mapping[str, T]``; a nested
  dataclass from a mapping;
* the **constraints** of a field (ranges, choices, a test) are data next to it::

      trials: int = field(default=30, metadata=rule(low=1))

* :func:`read` turns a mapping into a dataclass (errors: :class:`SchemaError`, one line naming the file, the
  dotted key, the value and the expected type), :func:`dump` turns the dataclass back into that mapping.

A field's ``key`` may be dotted (``latency.runs``): the value sits in a sub-mapping, so a flat dataclass can
read a nested file. A ``Mapping`` field with ``fields=SomeConfig`` holds (some of) the fields of another
dataclass (e.g. :class:`~nasprune.train.TrainConfig`), each checked by that dataclass's types; its own
validation (``__post_init__``) runs too. A field whose key is the prefix of other fields' keys takes the
keys they leave (``parent: {mode, cache, <TrainConfig fields>}``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import reprlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from nasprune.errors import NaspruneError

__all__ = ["Lazy", "Rule", "SchemaError", "describe", "dump", "field_keys", "invalid", "mapping_keys", "plain", "read",
           "rule", "rule_of", "shown"]


class SchemaError(NaspruneError):
    """A value does not fit its field: ``file: key=value is invalid: expected ...`` (one line)."""

    def __init__(self, file: str, key: str, detail: str) -> None:
        self.file, self.key, self.detail = str(file), key, detail
        super().__init__(f"{self.file}: {detail}" if self.file else detail)

    def moved(self, file: str, prefix: str = "") -> SchemaError:
        """The same error, reported in ``file`` under ``prefix`` (e.g. a space override given in a recipe)."""
        detail = self.detail.replace(self.key, prefix + self.key, 1) if self.key else self.detail
        return SchemaError(file, prefix + self.key, detail)


def invalid(file: Any, key: str, value: Any, expected: str) -> SchemaError:
    return SchemaError(str(file), key, f"{key or 'file'}={shown(value)} is invalid: expected {expected}")


# -- values in messages ---------------------------------------------------------------------------------------------
SHOWN_LIMIT = 100  # characters of a value a message shows


def _cutter() -> reprlib.Repr:
    cut = reprlib.Repr()  # keyword arguments only from Python 3.12
    cut.maxlevel, cut.maxstring, cut.maxother, cut.maxlong = 3, 60, 60, 40
    cut.maxtuple = cut.maxlist = cut.maxdict = cut.maxset = cut.maxfrozenset = 6
    return cut


_CUT = _cutter()


def _small(value: Any, budget: int = 200) -> bool:
    """``value`` holds at most ``budget`` items and characters in all (walked without expanding more than that:
    a YAML alias bomb holds 9**9 leaves in a few hundred bytes)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(item)
        budget -= len(item) if isinstance(item, str) else item.bit_length() // 4 if isinstance(item, int) else 1
        if budget < 0 or len(stack) > budget:
            return False
    return True


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    if isinstance(value, bool) or not isinstance(value, (int, Mapping, list, tuple, set, frozenset)):
        return type(value).__name__
    if isinstance(value, int):
        return f"an integer of about {max(1, int(value.bit_length() * math.log10(2))):,} digits"
    return f"a {'mapping' if isinstance(value, Mapping) else 'list'} of {len(value):,} items"


def shown(value: Any, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` for a message; a longer or deeper value is cut to about ``limit`` characters and says how
    long it was (``[[1, 2], [1, 2], ...] (a list of 9 items)``); never expands the whole value."""
    if _small(value):
        text = repr(value)
        if len(text) <= limit:
            return text
    try:
        text = _CUT.repr(value)
    except ValueError:  # an integer past Python's int-to-str limit (4300 digits)
        text = "..."
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{text} ({_size(value)})"


class Lazy:
    """A reference ``"module:attribute"`` imported on first use (registries that live behind torch)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    @functools.cached_property
    def value(self) -> Any:
        module, _, name = self.ref.partition(":")
        return getattr(importlib.import_module(module), name)

    def __repr__(self) -> str:
        return f"Lazy({self.ref!r})"


def _get(x: Any) -> Any:
    return x.value if isinstance(x, Lazy) else x


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Constraints of one field, declared next to it (see :func:`rule`).

    Attributes:
        low, high: bounds of a number (of every item of a list of numbers); ``low_open`` / ``high_open``
            exclude them.
        choices: allowed values (a tuple, or a registry, possibly :class:`Lazy`; its keys for a dict).
        test: a predicate the (converted) value must pass; describe it with ``expected``.
        expected: what the message says is accepted, instead of the description of the type.
        missing: the message's advice when a required key is absent.
        key: where the field sits in the mapping form when not at its name (dotted: in a sub-mapping).
        fields: for a ``Mapping`` field: the dataclass whose fields it holds (type-checked by its hints).
        partial: with ``fields``: keep only the given keys (else fill in that dataclass's defaults).
        probe: with ``fields``: builds the object that validates the values (default: the dataclass itself).
        one_or_many: a list field also accepts a single item.
        min_items: the fewest items of a list field.
        shorthand: a dataclass field also accepts a plain value: the value of this field of it.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Any = None
    test: Callable[[Any], bool] | None = None
    expected: str | None = None
    missing: str | None = None
    key: str | None = None
    fields: Any = None
    partial: bool = True
    probe: Callable[[dict[str, Any]], Any] | None = None
    one_or_many: bool = False
    min_items: int = 0
    shorthand: str | None = None


NO_RULE = Rule()


def rule(**constraints: Any) -> dict[str, Rule]:
    """Field metadata: ``field(default=1, metadata=rule(low=1))``."""
    return {"rule": Rule(**constraints)}


def rule_of(f: dataclasses.Field) -> Rule:
    """The constraints declared on field ``f`` (:data:`NO_RULE` when none)."""
    return f.metadata.get("rule", NO_RULE)


_rule = rule_of


class _Bad(Exception):
    """Raised deep in a value; :func:`read` turns it into a :class:`SchemaError` naming the file."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key, self.detail = key, detail


def _bad(key: str, value: Any, expected: str) -> _Bad:
    return _Bad(key, f"{key or 'file'}={shown(value)} is invalid: expected {expected}")


# -- descriptions ---------------------------------------------------------------------------------------------------
NOUNS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
         str: ("a string", "strings"), type(None): ("null", "nulls")}
ANY = ("a value", "values")


def _interval(r: Rule) -> str:
    if r.low is not None and r.high is not None:
        return f" in {'(' if r.low_open else '['}{r.low:g}, {r.high:g}{')' if r.high_open else ']'}"
    if r.low is not None:
        return f" {'>' if r.low_open else '>='} {r.low:g}"
    if r.high is not None:
        return f" {'<' if r.high_open else '<='} {r.high:g}"
    return ""


def _choices(r: Rule) -> list[Any]:
    return list(_get(r.choices))


def _origin(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    origin = typing.get_origin(hint)
    return (Union if origin is types.UnionType else origin), typing.get_args(hint)


def describe(hint: Any, r: Rule = NO_RULE, *, plural: bool = False) -> str:
    """What a field of type ``hint`` with constraints ``r`` accepts, in words (``"an integer >= 1"``)."""
    if r.expected and not plural:
        return r.expected
    if hint is Any:
        return ANY[plural]
    origin, args = _origin(hint)
    if r.choices is not None and hint in (int, str, float):
        names = ", ".join(str(c) for c in _choices(r))
        return f"names from {names}" if plural else f"one of {names}"
    if hint in NOUNS:
        return NOUNS[hint][plural] + (_interval(r) if hint in (int, float) else "")
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is Union:
        parts = [describe(a, r) for a in args if a is not type(None)]
        return " or ".join(parts + (["null"] if type(None) in args else []))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a {'non-empty ' if r.min_items else ''}list of {describe(args[0], r, plural=True)}"
    if origin is tuple:
        return "a list [" + ", ".join(NOUNS.get(a, ("a value",))[0].split()[-1] for a in args) + "]"
    if dataclasses.is_dataclass(hint):
        if plural:
            return "mappings"
        alone = f" (or just its {r.shorthand})" if r.shorthand else ""
        return "a mapping with keys among " + ", ".join(_layout(hint)) + alone
    if r.fields is not None:
        return "a mapping with keys among " + ", ".join(f.name for f in dataclasses.fields(_get(r.fields)))
    return "mappings" if plural else "a mapping"


# -- conversion -----------------------------------------------------------------------------------------------------
def _number(value: Any, hint: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float) if hint is float else int):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _scalar(value: Any, hint: type, key: str, r: Rule) -> Any:
    ok = type(value) is bool if hint is bool else (_number(value, hint) if hint in (int, float)
                                                   else isinstance(value, hint))
    if not ok:
        raise _bad(key, value, describe(hint, r))
    if hint in (int, float):
        lo, hi = r.low, r.high
        if (lo is not None and (value <= lo if r.low_open else value < lo)) or \
                (hi is not None and (value >= hi if r.high_open else value > hi)):
            raise _bad(key, value, describe(hint, r))
    if r.choices is not None and not any(type(value) is type(c) and value == c for c in _choices(r)):
        raise _bad(key, value, describe(hint, r))
    return float(value) if hint is float else value


def _union(value: Any, args: tuple[Any, ...], key: str, r: Rule, hint: Any) -> Any:
    if value is None and type(None) in args:
        return None
    deepest = None
    for arg in (a for a in args if a is not type(None)):
        try:
            return convert(value, arg, key, r)
        except _Bad as exc:
            if exc.key != key:  # the value has this branch's shape; its own error says more
                deepest = deepest or exc
    raise deepest or _bad(key, value, describe(hint, r))


def _sequence(value: Any, args: tuple[Any, ...], key: str, r: Rule, hint: Any) -> tuple:
    if r.one_or_many and not isinstance(value, (list, tuple)):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) < r.min_items:
        raise _bad(key, value, describe(hint, r))
    if len(args) == 2 and args[1] is Ellipsis:
        item = dataclasses.replace(r, expected=None, min_items=0, one_or_many=False, test=None)
        return tuple(convert(v, args[0], f"{key}[{i}]", item) for i, v in enumerate(value))
    if len(value) != len(args):
        raise _bad(key, value, describe(hint, r))
    return tuple(convert(v, a, f"{key}[{i}]", NO_RULE) for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _mapping(value: Any, args: tuple[Any, ...], key: str, r: Rule, hint: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(key, value, describe(hint, r))
    if r.fields is not None:
        return _fields_of(_get(r.fields), value, key, r)
    key_hint, value_hint = args or (str, Any)
    return {convert(k, key_hint, key, NO_RULE): convert(v, value_hint, f"{key}.{k}" if key else str(k), NO_RULE)
            for k, v in value.items()}


def convert(value: Any, hint: Any, key: str, r: Rule = NO_RULE) -> Any:
    """``value`` checked against ``hint`` and ``r`` (ints of float fields become floats, lists tuples)."""
    result = _convert(value, hint, key, r)
    if r.test is not None and not r.test(result):
        raise _bad(key, value, describe(hint, r))
    return result


def _convert(value: Any, hint: Any, key: str, r: Rule) -> Any:
    origin, args = _origin(hint)
    if hint is Any:
        return value
    if hint in NOUNS:
        return _scalar(value, hint, key, r)
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise _bad(key, value, describe(hint, r))
        return value
    if origin is Union:
        return _union(value, args, key, r, hint)
    if origin is tuple:
        return _sequence(value, args, key, r, hint)
    if dataclasses.is_dataclass(hint):
        if r.shorthand and value is not None and not isinstance(value, Mapping):
            value = {r.shorthand: value}
        return _build(hint, {} if value is None else value, key)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _mapping(value, args, key, r, hint)
    raise TypeError(f"nasprune.schema cannot check type {hint!r} (field {key!r})")


# -- dataclasses ----------------------------------------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _layout(cls: type) -> dict[str, list[tuple[dataclasses.Field, str | None]]]:
    """Top-level key -> [(field, sub-key or None)], in field order."""
    layout: dict[str, list[tuple[dataclasses.Field, str | None]]] = {}
    for f in dataclasses.fields(cls):
        top, _, sub = (_rule(f).key or f.name).partition(".")
        layout.setdefault(top, []).append((f, sub or None))
    return layout


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _unknown(where: str, key: Any, value: Any, allowed: Iterable[str]) -> _Bad:
    name = _join(where, str(key))
    return _Bad(name, f"unknown key {shown(name)} (value {shown(value)}): expected one of {', '.join(allowed)}")


def _check_keys(raw: Mapping, allowed: list[str], where: str) -> None:
    for key, value in raw.items():
        if key not in allowed:
            raise _unknown(where, key, value, allowed)


def _group(cls: type, members: list[tuple[dataclasses.Field, str | None]], raw: Any, top: str,
           out: dict[str, Any]) -> None:
    """Fields sharing the top-level key ``top``: some at sub-keys, at most one taking the remaining keys."""
    rest = next((f for f, sub in members if sub is None), None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _bad(top, raw, "a mapping with keys among " + ", ".join(_group_keys(members)))
    subs = {sub: f for f, sub in members if sub is not None}
    if rest is None:
        _check_keys(raw, list(subs), top)
    for sub, f in subs.items():
        if sub in raw:
            out[f.name] = convert(raw[sub], _hints(cls)[f.name], f"{top}.{sub}", _rule(f))
    if rest is not None:
        remaining = {k: v for k, v in raw.items() if k not in subs}
        try:
            out[rest.name] = convert(remaining, _hints(cls)[rest.name], top, _rule(rest))
        except _Bad as exc:
            if exc.detail.startswith("unknown key"):
                raise _unknown(top, exc.key.rpartition(".")[2], raw[exc.key.rpartition(".")[2]],
                               _group_keys(members)) from None
            raise


def _group_keys(members: list[tuple[dataclasses.Field, str | None]]) -> list[str]:
    keys = [sub for _, sub in members if sub is not None]
    for f, sub in members:
        if sub is None and _rule(f).fields is not None:
            keys += [g.name for g in dataclasses.fields(_get(_rule(f).fields))]
    return keys


def _read_fields(cls: type, raw: Mapping, where: str, given: Mapping[str, Any]) -> dict[str, Any]:
    layout = _layout(cls)
    _check_keys(raw, [k for k, m in layout.items() if not all(f.name in given for f, _ in m)], where)
    out: dict[str, Any] = dict(given)
    for top, members in layout.items():
        if all(f.name in given for f, _ in members):
            continue
        key = _join(where, top)
        if top in raw:
            if len(members) == 1 and members[0][1] is None:
                f = members[0][0]
                out[f.name] = convert(raw[top], _hints(cls)[f.name], key, _rule(f))
            else:
                _group(cls, members, raw[top], key, out)
        elif len(members) == 1 and _rule(members[0][0]).fields is not None and not _rule(members[0][0]).partial:
            f = members[0][0]  # a complete set of another dataclass's fields: its defaults
            out[f.name] = convert({}, _hints(cls)[f.name], key, _rule(f))
        for f, sub in members:
            if f.name not in out and _required(f):
                name = _join(key, sub) if sub else key
                advice = _rule(f).missing or f"expected {describe(_hints(cls)[f.name], _rule(f))}"
                raise _Bad(name, f"{name} is missing: {advice}")
    return out


def _validated(make: Callable[[], Any], where: str) -> Any:
    """``make()``, with the ``name=value is invalid`` errors of a dataclass's own checks put under ``where``."""
    try:
        return make()
    except (NaspruneError, ValueError) as exc:
        message = str(exc)
        key = message.partition("=")[0] if "=" in message.partition(" ")[0] else ""
        raise _Bad(_join(where, key) if key else where, f"{where}.{message}" if where else message) from None


def _build(cls: type, raw: Any, where: str, given: Mapping[str, Any] | None = None) -> Any:
    if not isinstance(raw, Mapping):
        raise _bad(where, raw, describe(cls))
    values = _read_fields(cls, raw, where, given or {})
    return _validated(lambda: cls(**values), where)


def _fields_of(cls: type, raw: Mapping, where: str, r: Rule) -> dict[str, Any]:
    """A mapping of ``cls``'s fields, each checked by ``cls``'s type hints and rules, then by ``cls`` itself."""
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(raw, names, where)
    rules = {f.name: _rule(f) for f in dataclasses.fields(cls)}
    values = {k: convert(v, _hints(cls)[k], _join(where, k), rules[k]) for k, v in raw.items()}
    _validated(lambda: (r.probe or (lambda v: cls(**v)))(dict(raw)), where)  # the user's values, for the message
    if r.partial:
        return values
    return {**dump(cls()), **values}


def read(cls: type, raw: Any, *, file: Any = "", where: str = "", given: Mapping[str, Any] | None = None) -> Any:
    """``cls`` from its mapping form ``raw``; ``given`` fields are set by the caller, not read from ``raw``.

    Raises:
        SchemaError: the first unknown key, missing key or bad value, naming ``file``, the dotted key, the value
            and what is accepted.
    """
    try:
        return _build(cls, raw, where, given)
    except _Bad as exc:
        raise SchemaError(str(file), exc.key, exc.detail) from None


def field_keys(cls: type) -> dict[str, str]:
    """Field name -> its (dotted) key in the mapping form."""
    return {f.name: _rule(f).key or f.name for f in dataclasses.fields(cls)}


def mapping_keys(cls: type) -> tuple[str, ...]:
    """The top-level keys of ``cls``'s mapping form, in field order."""
    return tuple(_layout(cls))


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: dataclasses and mappings -> dicts, tuples -> lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dump(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def dump(obj: Any, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The mapping form of a dataclass :func:`read` accepts (dotted keys nested, a rest field merged)."""
    out: dict[str, Any] = {}
    skip = set(exclude)
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        top, _, sub = (_rule(f).key or f.name).partition(".")
        value = plain(getattr(obj, f.name))
        if sub:
            out.setdefault(top, {})[sub] = value
        elif top in out and isinstance(value, Mapping):
            out[top].update(value)
        else:
            out[top] = value
    return out

