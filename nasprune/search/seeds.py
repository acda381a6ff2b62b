"""The hand designs a space reproduces: enqueued as baselines (``--with-baselines``) and as a study's seed designs.

Every search used to start from random points although the good hand designs are known. By default
(``seed_designs: true``) a study's first trials are:

* each hand design of the space's families (FD-MobileNet, MobileNet V1, MobileNetV3-Large at the standard widths)
  that the space reproduces exactly and that fits the budget, trained like any other trial (a child of the shared
  parent in ``shared`` mode) and not moved by the budget band; user attr ``seed_design`` = ``<zoo name>_<width>``;
* for each of them, the narrowest standard width that is over the budget, uniformly pruned (every ratio 0; the
  criterion gamma_sparsity where the space searches it, else the space's first) and filled to the band by the
  global keep-scale; ``seed_design`` = ``<zoo name>_<width>@band``.

A design whose trial failed (Ctrl-C, a killed worker) is enqueued again by the next run, so every design is
trained once the study is complete; after ``MAX_ATTEMPTS`` failed trials of it, it is left alone.

The sampler then starts from good points and has them to improve on. Baselines (``--with-baselines``) stay what
they were: the hand designs that fit, each trained as its own parent, unpruned (user attr ``baseline``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasprune.search.space import FixedParams, resolve

__all__ = ["HAND_DESIGNS", "PRUNED_SEED_SUFFIX", "STANDARD_WIDTHS", "HandDesign", "enqueue_baselines",
           "enqueue_seed_designs", "hand_designs"]

STANDARD_WIDTHS = (0.25, 0.5, 0.75, 1.0)
# family -> (zoo name, schedule, SE blocks of the hand design)
HAND_DESIGNS: dict[str, tuple[tuple[str, str, tuple[int, ...]], ...]] = {
    "dws": (("fd_mobilenet", "fast", ()), ("mobilenet_v1", "slow", ())),
    "ir": (("mobilenet_v3_large", "slow", (3, 4, 5, 10, 11, 12, 13, 14)),),
}
PRUNED_SEED_SUFFIX = "@band"
MAX_ATTEMPTS = 3  # trials of one hand design that may fail before a resume stops enqueueing it again
PREFERRED_CRITERION = "gamma_sparsity"


class _Recorder:
    """A :class:`FixedParams` that remembers every value it returned: a trial's complete parameters."""

    def __init__(self, fixed: FixedParams) -> None:
        self.fixed = fixed
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = self.fixed.suggest_categorical(name, choices)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        self.params[name] = self.fixed.suggest_float(name, low, high, step=step)
        return self.params[name]


@dataclass(frozen=True, kw_only=True)
class HandDesign:
    """A hand design as a point of a space: its full trial parameters and its unpruned cost."""

    zoo_name: str
    width: float
    params: Mapping[str, Any]
    mflops: float

    @property
    def name(self) -> str:
        return f"{self.zoo_name}_{self.width:g}"


def _point(space, family: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The complete parameters of the point of ``space`` with ``values`` for ``family`` (ratios 0, SE off)."""
    prefix = space.param_prefix(family)
    fixed = {"family": family, **{prefix + k: v for k, v in values.items()}}
    recorder = _Recorder(FixedParams(fixed, se=False, ratio=0.0))
    space.sample(recorder)
    return recorder.params


def hand_designs(recipe, shape: tuple[int, int]) -> list[HandDesign]:
    """Every hand design at a standard width that the recipe's space reproduces exactly (same spec hash as the
    zoo's when trained as its own parent, BN momentum aside: a space may set its own), cheapest first."""
    from nasprune.cost import count
    from nasprune.zoo import get_spec

    space, out = recipe.space, []
    for family, member in space.members.items():
        if member.ratio_low > 0:
            continue
        criterion = PREFERRED_CRITERION if PREFERRED_CRITERION in member.criteria else member.criteria[0]
        for zoo_name, schedule, se in HAND_DESIGNS[family]:
            if schedule not in member.schedules:
                continue
            for width in (w for w in STANDARD_WIDTHS if w in member.widths):
                values = {"schedule": schedule, "width": width, "criterion": criterion,
                          **{f"se_{i}": True for i in se}}
                params = _point(space, family, values)
                cand = space.sample(FixedParams(params))
                design = resolve(space, cand, mode="per_trial", resolution=recipe.deploy_resolution,
                                 in_channels=shape[0], num_classes=shape[1])
                zoo = get_spec(zoo_name, width=width, resolution=recipe.deploy_resolution, in_channels=shape[0],
                               num_classes=shape[1])
                # BN momentum is a training setting, not architecture: a space may settle BN faster than torchvision
                if design.child.hash == zoo.replace(bn_momentum=design.child.bn_momentum).hash:
                    out.append(HandDesign(zoo_name=zoo_name, width=width, params=params,
                                          mflops=count(design.child, layers=False).macs / 1e6))
    return sorted(out, key=lambda h: h.mflops)


def _enqueue(study, designs: Sequence[tuple[str, Mapping[str, Any]]], attr: str) -> list[str]:
    """Enqueue each design that no trial holds: a design whose every trial FAILED (interrupted by Ctrl-C, or its
    worker's heartbeat lost without a retry) is enqueued again, up to ``MAX_ATTEMPTS`` trials in all, so a design
    that fails for good (training diverged) does not take a trial on every resume."""
    from nasprune.search.record import records

    held: set[str] = set()
    failed: dict[str, int] = {}
    for r in records(study):
        name = getattr(r, attr)
        if r.state.name == "FAIL":
            failed[name] = failed.get(name, 0) + 1
        else:  # WAITING, RUNNING (or a heartbeat retry of it), COMPLETE, PRUNED
            held.add(name)
    names = []
    for name, params in designs:
        if name not in held and failed.get(name, 0) < MAX_ATTEMPTS:
            study.enqueue_trial(dict(params), user_attrs={attr: name})  # a baseline may share a seed's params
            names.append(name)
    return names


def enqueue_baselines(study, recipe, shape: tuple[int, int]) -> list[str]:
    """Enqueue the hand designs that fit the budget as baselines (own parents, unpruned); returns their names."""
    fits = [(h.name, h.params) for h in hand_designs(recipe, shape) if h.mflops <= recipe.budget_mflops]
    return _enqueue(study, fits, "baseline")


def enqueue_seed_designs(study, recipe, shape: tuple[int, int]) -> list[str]:
    """Enqueue the seed designs (module doc) not enqueued before; returns their names."""
    designs = hand_designs(recipe, shape)
    seeds = [(h.name, h.params) for h in designs if h.mflops <= recipe.budget_mflops]
    if recipe.budget_floor > 0:
        for zoo_name in dict.fromkeys(h.zoo_name for h in designs):
            over = [h for h in designs if h.zoo_name == zoo_name and h.mflops > recipe.budget_mflops]
            if over:
                narrowest = min(over, key=lambda h: h.width)
                seeds.append((narrowest.name + PRUNED_SEED_SUFFIX, narrowest.params))
    return _enqueue(study, seeds, "seed_design")
