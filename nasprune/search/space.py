"""Search spaces: YAML files that say which networks a study may sample.

A space has five dimensions, all searched jointly:

* ``width``: the width multiplier (a list of choices);
* ``schedules``: where the stride-2 layers sit, as named block tables (``fast`` = FD-MobileNet, ``slow`` =
  MobileNet), plus optionally ``free_placement``: a ``custom`` schedule whose stride-2 positions move
  inside per-stage windows of a base table;
* ``se``: squeeze-and-excite on or off per block;
* ``prune``: a pruning ratio per prunable layer (``low``..``high`` by ``step``) and the importance criterion.

:meth:`SearchSpace.sample` draws a :class:`Candidate` from an Optuna trial (or from fixed values, see
:class:`FixedParams`); :func:`resolve` turns it into the parent network that is trained and the pruned child
that is counted, before any training. The schema is documented in ``docs/search.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import yaml

from nasprune.errors import NaspruneError
from nasprune.schema import Lazy, SchemaError, dump, invalid, mapping_keys, plain, read, rule, shown
from nasprune.search.shipped import SPACES
from nasprune.spec import ACTIVATIONS, KERNELS, ArchSpec, HeadSpec, make_divisible
from nasprune.zoo import DWSStage, IRStage, dws_network, ir_network

__all__ = ["Candidate", "Design", "FamilySpace", "FixedParams", "Prefixed", "Row", "SearchSpace", "find_space",
           "load_space", "ratio_param", "resolve"]

FAMILIES = ("dws", "ir")
MODES = ("shared", "per_trial")


class Row(NamedTuple):
    """One block of a schedule table (``exp`` and ``kernel`` matter for inverted-residual blocks only)."""

    out: int
    stride: int = 1
    kernel: int = 3
    exp: int = 0
    act: str = "relu"


class Candidate(NamedTuple):
    """One point of a space: what a trial sampled."""

    schedule: str
    downsample: tuple[int, ...]
    width: float
    se_blocks: tuple[int, ...]
    ratios: dict[str, float]   # prunable layer -> sampled ratio
    criterion: str
    family: str = "dws"        # the block family (the member of a FamilySpace it was drawn from)


class Design(NamedTuple):
    """What a candidate becomes: the parent to train, the SE to drop from it, the ratios to prune it by."""

    parent: ArchSpec
    drop_se: tuple[int, ...]
    ratios: dict[str, float]
    child: ArchSpec


class ParamSource(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


class FixedParams:
    """A :class:`ParamSource` that returns given values (baselines, smallest network, tests).

    Missing parameters take ``defaults[kind]`` (``"se"``, ``"ratio"``) or the first choice.
    """

    def __init__(self, params: Mapping[str, Any], *, se: bool = False, ratio: float | None = None) -> None:
        self.params = dict(params)
        self.se = se
        self.ratio = ratio

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name in self.params:
            return self.params[name]
        return self.se if name.startswith("se_") else choices[0]

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        if name in self.params:
            return float(self.params[name])
        return low if self.ratio is None else self.ratio


class Prefixed:
    """A :class:`ParamSource` that prefixes every parameter name (a family's parameters in a
    :class:`FamilySpace`: ``ir.width``, ``dws.ratio_3``), so each family's are sampled only where they exist."""

    def __init__(self, source: ParamSource, prefix: str) -> None:
        self.source = source
        self.prefix = prefix

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.source.suggest_categorical(self.prefix + name, choices)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        return self.source.suggest_float(self.prefix + name, low, high, step=step)


@dataclass(frozen=True, kw_only=True)
class FreePlacement:
    base: str
    windows: tuple[tuple[int, int], ...]

    def positions(self, picks: Sequence[int]) -> tuple[int, ...]:
        """Stride-2 block indices from per-window picks, made strictly increasing (a clash moves right)."""
        out, last = [], -1
        for p in picks:
            last = max(p, last + 1)
            out.append(last)
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """A parsed, validated search space file (see ``docs/search.md`` for the schema)."""

    name: str
    family: str
    path: str = field(compare=False)  # where it was read from (messages); equal content is an equal space
    stem_channels: int
    stem_act: str
    head: Mapping[str, Any]
    widths: tuple[float, ...]
    schedules: Mapping[str, tuple[Row, ...]]
    free: FreePlacement | None
    se_blocks: str | tuple[int, ...]
    se_ratio: float
    ratio_low: float
    ratio_high: float
    ratio_step: float
    criteria: tuple[str, ...]
    bn_eps: float
    bn_momentum: float
    raw: Mapping[str, Any]

    # -- sampling ---------------------------------------------------------------------------------
    @property
    def schedule_choices(self) -> list[str]:
        return [*self.schedules, *(["custom"] if self.free else [])]

    def rows(self, schedule: str, downsample: Sequence[int]) -> tuple[Row, ...]:
        """The block table of ``schedule`` (for ``custom``: the base table with strides at ``downsample``)."""
        if schedule != "custom":
            return self.schedules[schedule]
        base = self.schedules[self.free.base]
        return tuple(r._replace(stride=2 if i in downsample else 1) for i, r in enumerate(base))

    def se_allowed(self, n_blocks: int) -> list[int]:
        if self.se_blocks == "all":
            return list(range(n_blocks))
        return [i for i in self.se_blocks if i < n_blocks]

    def sample(self, source: ParamSource) -> Candidate:
        """Draw every dimension from ``source`` (an ``optuna.Trial`` or :class:`FixedParams`)."""
        schedule = source.suggest_categorical("schedule", self.schedule_choices)
        if schedule == "custom":
            picks = [source.suggest_categorical(f"ds_{k}", list(range(lo, hi + 1)))
                     for k, (lo, hi) in enumerate(self.free.windows)]
            downsample = self.free.positions(picks)
        else:
            downsample = tuple(i for i, r in enumerate(self.schedules[schedule]) if r.stride == 2)
        width = source.suggest_categorical("width", list(self.widths))
        n_blocks = len(self.rows(schedule, downsample))
        se_blocks = tuple(i for i in self.se_allowed(n_blocks) if source.suggest_categorical(f"se_{i}", [False, True]))
        parent = self.network(schedule, downsample, max(self.widths), self.se_allowed(n_blocks))
        ratios = {layer: source.suggest_float(ratio_param(layer), self.ratio_low, self.ratio_high,
                                              step=self.ratio_step)
                  for layer in _prunable(parent)}
        criterion = source.suggest_categorical("criterion", list(self.criteria))
        return Candidate(schedule, downsample, width, se_blocks, ratios, criterion, self.family)

    # -- a space is its own only member (see FamilySpace) -------------------------------------------
    @property
    def members(self) -> dict[str, SearchSpace]:
        return {self.family: self}

    def member(self, family: str) -> SearchSpace:
        return self

    def param_prefix(self, family: str) -> str:
        """What this space's trial parameters of ``family`` are prefixed with (nothing: one family)."""
        return ""

    # -- networks ---------------------------------------------------------------------------------
    def network(self, schedule: str, downsample: Sequence[int], width: float, se_blocks: Sequence[int], *,
                resolution: int = 224, num_classes: int = 1000, in_channels: int = 3) -> ArchSpec:
        """The unpruned network of a schedule at ``width`` with SE on ``se_blocks``."""
        rows = self.rows(schedule, downsample)
        se = [i in se_blocks for i in range(len(rows))]
        name = f"{self.name}_{schedule}_{width:g}"
        if self.family == "dws":
            stages = [DWSStage(r.out, r.stride) for r in rows]
            return dws_network(name, stages, width=width, stem_channels=self.stem_channels, se=se,
                               se_ratio=self.se_ratio, resolution=resolution, num_classes=num_classes,
                               in_channels=in_channels)
        stages = [IRStage(r.kernel, r.exp, r.out, s, r.act, r.stride) for r, s in zip(rows, se, strict=True)]
        h = {"conv_multiplier": 6, "conv_act": "hswish", "hidden": 1280, "hidden_act": "hswish", "dropout": 0.2,
             **self.head}
        hidden = make_divisible(h["hidden"] * width) if h["hidden"] else 0
        head = HeadSpec(conv_channels=h["conv_multiplier"] * make_divisible(rows[-1].out * width),
                        conv_act=h["conv_act"], hidden_features=hidden,
                        hidden_act=h["hidden_act"], dropout=h["dropout"])
        spec = ir_network(name, stages, width=width, stem_channels=self.stem_channels, stem_act=self.stem_act,
                          head=head, resolution=resolution, num_classes=num_classes, in_channels=in_channels,
                          bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        return _squeezed(spec, self.se_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True, kw_only=True)
class FamilySpace:
    """Both block families in one study: each trial first chooses the ``family``, then samples that family's
    space (schedule, width, SE, ratios, criterion) under parameter names prefixed ``<family>.``, so a
    conditional parameter is sampled only where it exists. Each member is an ordinary :class:`SearchSpace`;
    shared parents are per (family, schedule), since their specs differ.
    """

    name: str
    path: str
    members: Mapping[str, SearchSpace]
    raw: Mapping[str, Any]
    family: str = "mixed"

    def member(self, family: str) -> SearchSpace:
        return self.members[family]

    def param_prefix(self, family: str) -> str:
        return f"{family}."

    def sample(self, source: ParamSource) -> Candidate:
        family = source.suggest_categorical("family", list(self.members))
        return self.members[family].sample(Prefixed(source, self.param_prefix(family)))

    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(sorted({w for m in self.members.values() for w in m.widths}))

    @property
    def ratio_high(self) -> float:
        return max(m.ratio_high for m in self.members.values())

    def to_dict(self) -> dict[str, Any]:
        """By content: every member's resolved mapping (overrides applied), so no file is needed to rebuild it."""
        return {"name": self.name, "families": {f: m.to_dict() for f, m in self.members.items()}}


def _squeezed(spec: ArchSpec, se_ratio: float) -> ArchSpec:
    """``spec`` with the space's SE squeeze, ``make_divisible(exp * se.ratio, 8)`` (``ir_network`` uses
    ``make_divisible(exp / 4, 8)``: the same for ``se.ratio: 0.25``, since every ``exp`` is a multiple of 8)."""
    from nasprune.prune.groups import squeeze_channels

    return spec.replace(blocks=tuple(
        dataclasses.replace(b, se_channels=squeeze_channels(b.dw_channels, se_ratio)) if b.has_se else b
        for b in spec.blocks))


def _prunable(spec: ArchSpec) -> list[str]:
    from nasprune.prune import prunable_layers

    return prunable_layers(spec)


RATIO_PARAM_PREFIX = {"conv_pw": "", "conv_pwl": "res"}  # by the conv that names the group


def ratio_param(layer: str) -> str:
    """The trial parameter holding a prunable layer's ratio (stable names, listed in ``docs/search.md``).

    ``stem`` -> ``ratio_stem`` (the stem's output path); ``blocks.<i>.conv_pw`` -> ``ratio_<i>`` (block ``i``'s
    expansion channels, or a depthwise-separable block's output path); ``blocks.<i>.conv_pwl`` -> ``ratio_res<i>``
    (the path that starts at inverted-residual block ``i``'s output and runs through every residual block after
    it: one group, see :mod:`nasprune.prune.groups`).
    """
    if layer == "stem":
        return "ratio_stem"
    _, block, conv = layer.split(".")
    return f"ratio_{RATIO_PARAM_PREFIX[conv]}{block}"


def drop_se(spec: ArchSpec, blocks: Sequence[int]) -> ArchSpec:
    """``spec`` without squeeze-and-excite on ``blocks``."""
    new = list(spec.blocks)
    for i in blocks:
        new[i] = dataclasses.replace(new[i], se_channels=0)
    return spec.replace(blocks=tuple(new))


def resolve(space: SearchSpace, cand: Candidate, *, mode: str, resolution: int = 224, num_classes: int = 1000,
            in_channels: int = 3) -> Design:
    """Parent (to train), SE to drop and ratios (to prune by), and the child spec, for ``cand``.

    ``per_trial``: the parent is the candidate's own network (its width and SE); the child prunes it by the
    sampled ratios. ``shared``: the parent is the largest network of the schedule (widest, SE wherever the
    space allows it), shared by every trial of that schedule; the candidate's SE choice drops the other SE
    modules and its width becomes extra pruning: layer ``l`` keeps ``(width / max_width) * (1 - ratio_l)``
    of the parent's channels, for every channel group (the stem and the residual paths too). SE squeezes over
    cut channels follow the kept channels (``make_divisible(kept * se.ratio, 8)``). The child is
    :func:`~nasprune.prune.surgery.child_spec` of the ratios: a pure function of them.
    """
    from nasprune.prune import child_spec

    space = space.member(cand.family)
    kw = dict(resolution=resolution, num_classes=num_classes, in_channels=in_channels)
    if mode == "per_trial":
        parent = space.network(cand.schedule, cand.downsample, cand.width, cand.se_blocks, **kw)
        layers = set(_prunable(parent))
        ratios = {k: v for k, v in cand.ratios.items() if k in layers}
        drop: tuple[int, ...] = ()
    else:
        n_blocks = len(space.rows(cand.schedule, cand.downsample))
        allowed = space.se_allowed(n_blocks)
        parent = space.network(cand.schedule, cand.downsample, max(space.widths), allowed, **kw)
        drop = tuple(i for i in allowed if i not in cand.se_blocks)
        scale = cand.width / max(space.widths)
        ratios = {k: 1.0 - scale * (1.0 - v) for k, v in cand.ratios.items()}
    child = child_spec(drop_se(parent, drop), ratios, se_ratio=space.se_ratio)
    return Design(parent, drop, ratios, child)


# -- parsing: the file schema ------------------------------------------------------------------------
# What a space file may hold, as typed dataclasses (checked by nasprune.schema); parse_space turns one into a
# SearchSpace. Keys left out (None) take the family's default from FAMILY_DEFAULTS.
@dataclass(frozen=True, kw_only=True)
class StemFile:
    channels: int | None = field(default=None, metadata=rule(low=1, high=4096))  # 1.0x channels
    act: str | None = field(default=None, metadata=rule(choices=ACTIVATIONS))


@dataclass(frozen=True, kw_only=True)
class HeadFile:
    """Inverted-residual head: 1x1 conv (``conv_multiplier`` x the last block's channels), pool, hidden linear."""

    conv_multiplier: int = field(default=6, metadata=rule(low=0))
    conv_act: str = field(default="hswish", metadata=rule(choices=ACTIVATIONS))
    hidden: int = field(default=1280, metadata=rule(low=0))
    hidden_act: str = field(default="hswish", metadata=rule(choices=ACTIVATIONS))
    dropout: float = field(default=0.2, metadata=rule(low=0, high=1, high_open=True))


@dataclass(frozen=True, kw_only=True)
class DWSRow:
    """A depthwise-separable block of a schedule table."""

    out: int = field(metadata=rule(low=1, high=1 << 16))
    stride: int = field(default=1, metadata=rule(choices=(1, 2)))

    def row(self) -> Row:
        return Row(self.out, self.stride)


@dataclass(frozen=True, kw_only=True)
class IRRow(DWSRow):
    """An inverted-residual (bneck) block of a schedule table."""

    kernel: int = field(default=3, metadata=rule(choices=KERNELS))
    exp: int = field(metadata=rule(low=1, high=1 << 16))
    act: str = field(default="relu", metadata=rule(choices=ACTIVATIONS))

    def row(self) -> Row:
        return Row(self.out, self.stride, self.kernel, self.exp, self.act)


@dataclass(frozen=True, kw_only=True)
class FreePlacementFile:
    base: str
    windows: tuple[tuple[int, int], ...] = field(metadata=rule(min_items=1))


@dataclass(frozen=True, kw_only=True)
class SEFile:
    blocks: Literal["all"] | tuple[int, ...] = field(default="all", metadata=rule(low=0))
    ratio: float = field(default=0.25, metadata=rule(low=0, high=1, low_open=True))


@dataclass(frozen=True, kw_only=True)
class RatioFile:
    low: float = field(default=0.0, metadata=rule(low=0, high=0.95))
    high: float = field(default=0.5, metadata=rule(low=0, high=0.95))
    step: float = field(default=0.1, metadata=rule(low=0, high=1, low_open=True))

    def __post_init__(self) -> None:
        if self.high < self.low:
            raise NaspruneError(f"high={self.high!r} is invalid: expected a number in [{self.low:g}, 0.95] (>= low)")


@dataclass(frozen=True, kw_only=True)
class PruneFile:
    ratio: RatioFile = field(default_factory=RatioFile)
    criteria: tuple[str, ...] = field(default=("gamma_sparsity",), metadata=rule(
        choices=Lazy("nasprune.prune.importance:CRITERIA"), one_or_many=True, min_items=1))


@dataclass(frozen=True, kw_only=True)
class SpaceFile:
    """A search space file (``docs/search.md``)."""

    name: str | None = None  # default: the file name
    family: str = field(default="dws", metadata=rule(choices=FAMILIES))
    stem: StemFile = field(default_factory=StemFile)
    head: HeadFile = field(default_factory=HeadFile)  # ir only
    width: tuple[float, ...] = field(default=(1.0,), metadata=rule(low=0, high=4, low_open=True, one_or_many=True,
                                                                   min_items=1))
    schedules: Mapping[str, tuple[Any, ...]] = field(metadata=rule(
        expected="a mapping of schedule names (e.g. fast, slow) to lists of blocks"))
    free_placement: FreePlacementFile | None = None
    se: SEFile = field(default_factory=SEFile)
    prune: PruneFile = field(default_factory=PruneFile)
    bn_eps: float | None = field(default=None, metadata=rule(low=0, high=1, low_open=True))
    bn_momentum: float | None = field(default=None, metadata=rule(low=0, high=1, low_open=True))


# family -> the schema of its schedule rows, and the defaults of the keys a file leaves out
ROW_SCHEMAS: dict[str, type[DWSRow]] = {"dws": DWSRow, "ir": IRRow}
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "dws": {"stem_channels": 32, "stem_act": "relu", "bn_eps": 1e-5, "bn_momentum": 0.1},
    "ir": {"stem_channels": 16, "stem_act": "hswish", "bn_eps": 1e-3, "bn_momentum": 0.01},
}
SPACE_KEYS = mapping_keys(SpaceFile)


def _schedules(path, f: SpaceFile) -> dict[str, tuple[Row, ...]]:
    if not f.schedules:
        raise invalid(path, "schedules", {}, "a mapping of schedule names (e.g. fast, slow) to lists of blocks")
    out = {}
    for name, rows in f.schedules.items():
        if name == "custom":
            raise invalid(path, "schedules", name, "names other than 'custom' (reserved for free_placement)")
        if not rows:
            raise invalid(path, f"schedules.{name}", [], "a non-empty list of blocks")
        out[name] = tuple(read(ROW_SCHEMAS[f.family], r, file=path, where=f"schedules.{name}[{i}]").row()
                          for i, r in enumerate(rows))
    return out


def _free(path, f: FreePlacementFile | None, schedules: Mapping[str, tuple[Row, ...]]) -> FreePlacement | None:
    if f is None:
        return None
    if f.base not in schedules:
        raise invalid(path, "free_placement.base", f.base, f"one of {', '.join(schedules)}")
    n, last = len(schedules[f.base]), -1
    for k, (lo, hi) in enumerate(f.windows):
        where = f"free_placement.windows[{k}]"
        if not 0 <= lo <= hi < n:
            raise invalid(path, where, [lo, hi], f"[low, high] with 0 <= low <= high < {n}")
        last = max(hi, last + 1)
        if last >= n:
            raise invalid(path, where, [lo, hi], f"windows leaving room for one stride-2 block each within the "
                          f"{n} blocks of {f.base!r}")
    return FreePlacement(base=f.base, windows=f.windows)


def parse_space(data: Any, path: str | Path = "<space>", *, check_se: bool = True) -> SearchSpace | FamilySpace:
    """Validate a space mapping (as loaded from YAML) against :class:`SpaceFile`; a mapping with ``families``
    is a :class:`FamilySpace` (:func:`parse_family_space`). ``check_se``: every ``se.blocks`` index must be a block
    of some schedule (:func:`_check_se_blocks`; a family space checks its shared ``se`` over all members).

    Raises:
        SchemaError: naming ``path``, the dotted key, the value and what is accepted.
    """
    if isinstance(data, Mapping) and "families" in data:
        return parse_family_space(data, path)
    f = read(SpaceFile, data, file=path)
    defaults = FAMILY_DEFAULTS[f.family]
    schedules = _schedules(path, f)
    blocks = f.se.blocks if f.se.blocks == "all" else tuple(sorted(set(f.se.blocks)))
    space = SearchSpace(
        name=f.name if f.name is not None else Path(str(path)).stem, family=f.family, path=str(path),
        stem_channels=f.stem.channels or defaults["stem_channels"], stem_act=f.stem.act or defaults["stem_act"],
        head=dump(f.head), widths=tuple(sorted(set(f.width))), schedules=schedules,
        free=_free(path, f.free_placement, schedules), se_blocks=blocks, se_ratio=f.se.ratio,
        ratio_low=f.prune.ratio.low, ratio_high=f.prune.ratio.high, ratio_step=f.prune.ratio.step,
        criteria=f.prune.criteria, bn_eps=defaults["bn_eps"] if f.bn_eps is None else f.bn_eps,
        bn_momentum=defaults["bn_momentum"] if f.bn_momentum is None else f.bn_momentum, raw=plain(data),
    )
    _check_builds(space)
    if check_se:
        _check_se_blocks(path, f.se.blocks, [space])
    return space


def _check_se_blocks(path, given: str | tuple[int, ...], spaces: Sequence[SearchSpace]) -> None:
    """Every index of ``se.blocks`` is a block of the longest schedule of ``spaces``: one past every table would
    put SE nowhere, silently."""
    if given == "all":
        return
    longest, name = max((len(rows), f"{s.family}:{n}" if len(spaces) > 1 else n)
                        for s in spaces for n, rows in s.schedules.items())
    for i, block in enumerate(given):
        if block >= longest:
            raise invalid(path, f"se.blocks[{i}]", block, f"a block index < {longest} (the longest schedule, "
                          f"{name!r}, has {longest} blocks; blocks count from 0)")


def parse_family_space(data: Mapping[str, Any], path: str | Path) -> FamilySpace:
    """A :class:`FamilySpace` file: ``name``, ``families`` (family -> a space file's name or path, or a space
    mapping, of that family), and any other space key, which overrides that key in every member (e.g.
    ``free_placement: null``; a recipe's ``space_overrides`` land here too)."""
    data = dict(data)
    name, families = data.pop("name", None), data.pop("families")
    if name is not None and not isinstance(name, str):
        raise invalid(path, "name", name, "a string")
    if not isinstance(families, Mapping) or not families or any(f not in FAMILIES for f in families):
        raise invalid(path, "families", families, f"a mapping from {' and/or '.join(FAMILIES)} to a space file "
                      "(name or path) or a space mapping of that family")
    for key, value in data.items():
        if key not in SPACE_KEYS or key == "family":
            raise SchemaError(str(path), key, f"unknown key {shown(key)} (value {shown(value)}): expected name, "
                              f"families or a key every member takes: "
                              f"{', '.join(k for k in SPACE_KEYS if k != 'family')}")
    base = Path(str(path)).parent if Path(str(path)).is_file() else None
    members = {}
    for family, source in families.items():
        if isinstance(source, Mapping):
            member = parse_space({**source, **data}, path, check_se=False)
        elif isinstance(source, (str, Path)):
            member = load_space(source, overrides=data or None, relative_to=base, overrides_file=path,
                                overrides_prefix="", check_se=False)
        else:
            raise invalid(path, f"families.{family}", source, "a space file (name or path) or a space mapping")
        if not isinstance(member, SearchSpace) or member.family != family:
            raise invalid(path, f"families.{family}", source, f"a space of family {family!r} (it has "
                          f"{getattr(member, 'family', None)!r})")
        members[family] = member
    _check_family_se(path, data, members)
    return FamilySpace(name=name or Path(str(path)).stem, path=str(path), members=members,
                       raw={"name": name or Path(str(path)).stem, "families": {f: m.to_dict()
                                                                               for f, m in members.items()}})


def _check_family_se(path, shared: Mapping[str, Any], members: Mapping[str, SearchSpace]) -> None:
    """A family space's SE blocks (shared, or a member's own) fit a schedule of some member (the longest table
    of the family space: each member uses the indices below its own length, as a space of several schedules)."""
    spaces = list(members.values())
    if "se" in shared:
        given = read(SEFile, shared["se"] or {}, file=path, where="se").blocks
        _check_se_blocks(path, given, spaces)
    for family, member in members.items():
        try:
            _check_se_blocks(path, member.se_blocks, spaces)
        except SchemaError as exc:
            raise exc.moved(str(path), f"families.{family}.") from None


def _check_builds(space: SearchSpace) -> None:
    """Every schedule must give a valid network (a spec error names the file)."""
    from nasprune.spec import SpecError

    for name in space.schedule_choices:
        downsample = space.free.positions([lo for lo, _ in space.free.windows]) if name == "custom" else ()
        try:
            space.network(name, downsample, min(space.widths), [])
        except SpecError as exc:
            raise NaspruneError(f"{space.path}: schedule {name!r} does not give a valid network: {exc}") from None


def find_space(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """A space file by path (absolute, relative to ``relative_to`` or the working directory) or bare name
    (``./search_spaces/NAME.yaml``, then the one shipped with nasprune)."""
    p = Path(name_or_path)
    paths = [p] if p.is_absolute() else [*([relative_to / p] if relative_to else []), Path.cwd() / p]
    return SPACES.find(name_or_path, paths)


# -- reading YAML: recipes and spaces are small; a file that is not is refused before it costs anything ----------------
MAX_YAML_BYTES = 1 << 20   # a recipe or space file is a few kB
MAX_YAML_DEPTH = 64        # nesting of lists and mappings (a space needs 4)
MAX_YAML_NODES = 100_000   # values after expanding every alias (&a / *a): a few hundred in a real file


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than :data:`MAX_YAML_DEPTH` while it composes (the composer
    recurses: 50,000 nested lists are a RecursionError otherwise)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} lists or mappings (line {line})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: yaml.Node) -> int:
    """The values ``node`` holds once every alias is expanded, counted on the node graph (each shared node once,
    its size memoised: a bomb of 9 aliases to 9 aliases ... is counted in microseconds, not built)."""
    sizes: dict[int, int] = {}
    stack = [node]
    while stack:  # post-order without recursion
        n = stack.pop()
        if id(n) in sizes:
            continue
        children = [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else \
            list(n.value) if isinstance(n, yaml.SequenceNode) else []
        pending = [c for c in children if id(c) not in sizes]
        if pending:
            stack += [n, *pending]
            continue
        sizes[id(n)] = 1 + sum(sizes[id(c)] for c in children)
    return sizes[id(node)]


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 text (a byte order mark allowed); anything else is refused naming what it looks like."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (raw[:2].count(0) == 1 and len(raw) % 2 == 0):
        raise NaspruneError(f"{path}: not UTF-8 text: it looks like UTF-16 (save it as UTF-8, e.g. "
                            f"iconv -f UTF-16 -t UTF-8)")
    if b"\x00" in raw:
        raise NaspruneError(f"{path}: not a YAML text file: it holds NUL bytes (binary data?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise NaspruneError(f"{path}: not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} is not UTF-8 "
                            "(a Latin-1 or Windows-1252 file? save it as UTF-8)") from None


def read_yaml(path: Path) -> Any:
    """A recipe or space file's YAML, with one-line errors for what is not a small UTF-8 YAML file: too large,
    another encoding or binary, nested deeper than :data:`MAX_YAML_DEPTH`, or more than :data:`MAX_YAML_NODES`
    values once its aliases are expanded (an alias bomb)."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise NaspruneError(f"{path}: {size:,} bytes is invalid: expected a YAML file of at most "
                                f"{MAX_YAML_BYTES:,} bytes (a recipe or space is a few kB)")
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise NaspruneError(f"cannot read {path}: {exc.strerror}") from None
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node)
        if values > MAX_YAML_NODES:
            raise NaspruneError(f"{path}: {values:,} values once its aliases (*name) are expanded is invalid: "
                                f"expected at most {MAX_YAML_NODES:,} (a recipe or space holds a few hundred; an "
                                "alias bomb billions)")
        return loader.construct_document(node)
    except NaspruneError:
        raise
    except yaml.YAMLError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NaspruneError(f"{path}: not valid YAML: {first[:200]}{'...' if len(first) > 200 else ''}") from None
    except RecursionError:
        raise NaspruneError(f"{path}: not valid YAML: nested too deep to read") from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's int-to-str limit), a bad date
        raise NaspruneError(f"{path}: a value could not be read ({str(exc).split(':')[0][:200]}): expected the "
                            "numbers and names a recipe or space holds") from None
    finally:
        loader.dispose()


def load_space(name_or_path: str | Path, *, overrides: Mapping[str, Any] | None = None,
               relative_to: Path | None = None, overrides_file: str | Path | None = None,
               overrides_prefix: str = "space_overrides.", check_se: bool = True) -> SearchSpace:
    """Read, override (top-level keys replaced) and validate a space file.

    An error in an overridden key names ``overrides_file`` (the recipe that gave it) and the key
    ``<overrides_prefix><key>``; any other error names the space file.
    """
    path = find_space(name_or_path, relative_to=relative_to)
    data = read_yaml(path)
    if not overrides:
        return parse_space(data, path, check_se=check_se)
    where = str(overrides_file or path)
    if not isinstance(data, Mapping):
        raise invalid(path, "", data, f"a mapping with keys among {', '.join(SPACE_KEYS)}")
    for key, value in overrides.items():
        if key not in SPACE_KEYS:
            name = f"{overrides_prefix}{key}"
            raise SchemaError(where, name, f"unknown key {shown(name)} (value {shown(value)}): expected one of "
                              f"{', '.join(SPACE_KEYS)}")
    try:
        return parse_space({**data, **overrides}, path, check_se=check_se)
    except SchemaError as exc:
        if exc.key.partition(".")[0].partition("[")[0] in overrides:
            raise exc.moved(where, overrides_prefix) from None
        raise
