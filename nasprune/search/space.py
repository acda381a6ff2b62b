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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import yaml

from nasprune.errors import NaspruneError
from nasprune.search.shipped import SPACES
from nasprune.spec import ACTIVATIONS, KERNELS, ArchSpec, HeadSpec, make_divisible
from nasprune.zoo import DWSStage, IRStage, dws_network, ir_network

__all__ = ["Candidate", "Design", "FixedParams", "Row", "SearchSpace", "find_space", "load_space", "resolve"]

FAMILIES = ("dws", "ir")
MODES = ("shared", "per_trial")
SPACE_KEYS = ("name", "family", "stem", "head", "width", "schedules", "free_placement", "se", "prune",
              "bn_eps", "bn_momentum")


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


def _bad(path: Path | str, key: str, value: Any, allowed: str) -> NaspruneError:
    return NaspruneError(f"{path}: {key}={value!r} is invalid: expected {allowed}")


def check_keys(path: Path | str, where: str, raw: Any, allowed: Sequence[str]) -> dict:
    """``raw`` as a dict whose keys are all in ``allowed``; else an error naming the file and the key."""
    if not isinstance(raw, Mapping):
        raise _bad(path, where or "file", raw, f"a mapping with keys {', '.join(allowed)}")
    for key, value in raw.items():
        if key not in allowed:
            name = f"{where}.{key}" if where else str(key)
            raise NaspruneError(f"{path}: unknown key {name!r} (value {value!r}): expected one of "
                                f"{', '.join(allowed)}")
    return dict(raw)


def _number(path, key, value, low: float, high: float, *, integer: bool = False, low_open: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        what = "an integer" if integer else "a number"
        raise _bad(path, key, value, f"{what} in {'(' if low_open else '['}{low:g}, {high:g}]")
    return value


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
    path: str
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
        ratios = {}
        for layer in _prunable(parent):
            block = layer.split(".")[1]
            ratios[layer] = source.suggest_float(f"ratio_{block}", self.ratio_low, self.ratio_high,
                                                 step=self.ratio_step)
        criterion = source.suggest_categorical("criterion", list(self.criteria))
        return Candidate(schedule, downsample, width, se_blocks, ratios, criterion)

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
        return ir_network(name, stages, width=width, stem_channels=self.stem_channels, stem_act=self.stem_act,
                          head=head, resolution=resolution, num_classes=num_classes, in_channels=in_channels,
                          bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


def _prunable(spec: ArchSpec) -> list[str]:
    from nasprune.prune import prunable_layers

    return prunable_layers(spec)


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
    of the parent's channels. The stem is not prunable, so it keeps the widest width in this mode.
    """
    from nasprune.prune import child_spec

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
    child = child_spec(drop_se(parent, drop), ratios)
    return Design(parent, drop, ratios, child)


# -- parsing ------------------------------------------------------------------------------------------
def _parse_row(path, where: str, raw: Any, family: str) -> Row:
    keys = ("out", "stride") if family == "dws" else ("out", "stride", "kernel", "exp", "act")
    raw = check_keys(path, where, raw, keys)
    if "out" not in raw:
        raise _bad(path, f"{where}.out", None, "an integer >= 1 (output channels)")
    out = _number(path, f"{where}.out", raw["out"], 1, 1 << 16, integer=True)
    stride = raw.get("stride", 1)
    if stride not in (1, 2):
        raise _bad(path, f"{where}.stride", stride, "1 or 2")
    if family == "dws":
        return Row(out, stride)
    kernel = raw.get("kernel", 3)
    if kernel not in KERNELS:
        raise _bad(path, f"{where}.kernel", kernel, f"one of {KERNELS}")
    exp = _number(path, f"{where}.exp", raw.get("exp"), 1, 1 << 16, integer=True)
    act = raw.get("act", "relu")
    if act not in ACTIVATIONS:
        raise _bad(path, f"{where}.act", act, f"one of {', '.join(ACTIVATIONS)}")
    return Row(out, stride, kernel, exp, act)


def _parse_schedules(path, raw: Any, family: str) -> dict[str, tuple[Row, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise _bad(path, "schedules", raw, "a mapping of schedule names (e.g. fast, slow) to block lists")
    out = {}
    for name, rows in raw.items():
        if name == "custom" or not isinstance(name, str):
            raise _bad(path, "schedules", name, "names other than 'custom' (reserved for free_placement)")
        if not isinstance(rows, list) or not rows:
            raise _bad(path, f"schedules.{name}", rows, "a non-empty list of blocks")
        out[name] = tuple(_parse_row(path, f"schedules.{name}[{i}]", r, family) for i, r in enumerate(rows))
    return out


def _parse_free(path, raw: Any, schedules: Mapping[str, tuple[Row, ...]]) -> FreePlacement | None:
    if raw is None or raw is False:
        return None
    raw = check_keys(path, "free_placement", raw, ("base", "windows"))
    base = raw.get("base")
    if base not in schedules:
        raise _bad(path, "free_placement.base", base, f"one of {', '.join(schedules)}")
    n = len(schedules[base])
    windows = raw.get("windows")
    if not isinstance(windows, list) or not windows:
        raise _bad(path, "free_placement.windows", windows, "a non-empty list of [low, high] block indices")
    parsed, last = [], -1
    for k, w in enumerate(windows):
        ok = (isinstance(w, list) and len(w) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in w)
              and 0 <= w[0] <= w[1] < n)
        if not ok:
            raise _bad(path, f"free_placement.windows[{k}]", w, f"[low, high] with 0 <= low <= high < {n}")
        last = max(w[1], last + 1)
        if last >= n:
            raise _bad(path, f"free_placement.windows[{k}]", w, f"windows leaving room for one stride-2 block "
                       f"each within the {n} blocks of {base!r}")
        parsed.append((w[0], w[1]))
    return FreePlacement(base=base, windows=tuple(parsed))


def _parse_se(path, raw: Any) -> tuple[str | tuple[int, ...], float]:
    raw = check_keys(path, "se", raw if raw is not None else {}, ("blocks", "ratio"))
    blocks = raw.get("blocks", "all")
    if blocks != "all":
        if not isinstance(blocks, list) or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0
                                                   for b in blocks):
            raise _bad(path, "se.blocks", blocks, "'all' or a list of block indices (may be empty)")
        blocks = tuple(sorted(set(blocks)))
    ratio = _number(path, "se.ratio", raw.get("ratio", 0.25), 0, 1, low_open=True)
    return blocks, float(ratio)


def _parse_prune(path, raw: Any) -> tuple[float, float, float, tuple[str, ...]]:
    from nasprune.prune import CRITERIA

    raw = check_keys(path, "prune", raw if raw is not None else {}, ("ratio", "criteria"))
    ratio = check_keys(path, "prune.ratio", raw.get("ratio", {}), ("low", "high", "step"))
    low = float(_number(path, "prune.ratio.low", ratio.get("low", 0.0), 0, 0.95))
    high = float(_number(path, "prune.ratio.high", ratio.get("high", 0.5), low, 0.95))
    step = float(_number(path, "prune.ratio.step", ratio.get("step", 0.1), 0, 1, low_open=True))
    criteria = raw.get("criteria", ["gamma_sparsity"])
    if isinstance(criteria, str):
        criteria = [criteria]
    if not isinstance(criteria, list) or not criteria:
        raise _bad(path, "prune.criteria", criteria, f"a non-empty list from {', '.join(CRITERIA)}")
    for c in criteria:
        if c not in CRITERIA:
            raise _bad(path, "prune.criteria", c, f"one of {', '.join(CRITERIA)}")
    return low, high, step, tuple(criteria)


def _parse_widths(path, raw: Any) -> tuple[float, ...]:
    raw = [raw] if isinstance(raw, (int, float)) and not isinstance(raw, bool) else raw
    if not isinstance(raw, list) or not raw:
        raise _bad(path, "width", raw, "a non-empty list of width multipliers in (0, 4]")
    return tuple(sorted({float(_number(path, "width", w, 0, 4, low_open=True)) for w in raw}))


def parse_space(data: Any, path: str | Path = "<space>") -> SearchSpace:
    """Validate a space mapping (as loaded from YAML); every error names ``path``, the key and the value."""
    data = check_keys(path, "", data, SPACE_KEYS)
    family = data.get("family", "dws")
    if family not in FAMILIES:
        raise _bad(path, "family", family, f"one of {', '.join(FAMILIES)}")
    stem = check_keys(path, "stem", data.get("stem", {}), ("channels", "act"))
    head = check_keys(path, "head", data.get("head", {}) or {},
                      ("conv_multiplier", "conv_act", "hidden", "hidden_act", "dropout"))
    schedules = _parse_schedules(path, data.get("schedules"), family)
    se_blocks, se_ratio = _parse_se(path, data.get("se"))
    low, high, step, criteria = _parse_prune(path, data.get("prune"))
    stem_act = stem.get("act", "relu" if family == "dws" else "hswish")
    if stem_act not in ACTIVATIONS:
        raise _bad(path, "stem.act", stem_act, f"one of {', '.join(ACTIVATIONS)}")
    space = SearchSpace(
        name=str(data.get("name", Path(str(path)).stem)), family=family, path=str(path),
        stem_channels=_number(path, "stem.channels", stem.get("channels", 32 if family == "dws" else 16), 1, 4096,
                              integer=True),
        stem_act=stem_act, head=head, widths=_parse_widths(path, data.get("width", [1.0])), schedules=schedules,
        free=_parse_free(path, data.get("free_placement"), schedules), se_blocks=se_blocks, se_ratio=se_ratio,
        ratio_low=low, ratio_high=high, ratio_step=step, criteria=criteria,
        bn_eps=float(_number(path, "bn_eps", data.get("bn_eps", 1e-5 if family == "dws" else 1e-3), 0, 1,
                             low_open=True)),
        bn_momentum=float(_number(path, "bn_momentum", data.get("bn_momentum", 0.1 if family == "dws" else 0.01),
                                  0, 1, low_open=True)),
        raw=data,
    )
    _check_builds(space)
    return space


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


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise NaspruneError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise NaspruneError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None


def load_space(name_or_path: str | Path, *, overrides: Mapping[str, Any] | None = None,
               relative_to: Path | None = None) -> SearchSpace:
    """Read, override (top-level keys replaced) and validate a space file."""
    path = find_space(name_or_path, relative_to=relative_to)
    data = read_yaml(path)
    if overrides:
        data = {**check_keys(path, "", data, SPACE_KEYS), **overrides}
    return parse_space(data, path)
