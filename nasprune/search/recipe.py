"""Study recipes: one YAML file that says what to search, on which data, under which budget, and how hard.

The schema (every key optional except where noted) is documented in ``docs/search.md``; command-line flags
override the file through :meth:`Recipe.override`. The resolved recipe is stored on the study (user attr
``recipe``), and :meth:`Recipe.parent_key` is the part of it that decides a trained parent's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasprune.errors import NaspruneError
from nasprune.search.shipped import RECIPES
from nasprune.search.space import SearchSpace, _bad, check_keys, load_space, read_yaml

__all__ = ["OBJECTIVES", "PRUNERS", "SAMPLERS", "Recipe", "find_recipe", "load_recipe"]

RECIPE_KEYS = ("study", "space", "space_overrides", "data", "budget_mflops", "deploy_resolution", "objectives",
               "sampler", "seed", "trials", "storage", "artifacts", "parent", "finetune", "pruner", "latency",
               "with_baselines")
DATA_KEYS = ("name", "data_dir", "resolution", "subset", "val_size", "seed")
# Objective name -> direction. The first two are fixed; a third is optional.
OBJECTIVES = {"val_acc": "maximize", "mflops": "minimize", "latency_ms": "minimize", "params": "minimize"}
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("none", "median", "successive_halving")
PRUNER_KEYS = ("name", "warmup_trials", "min_epochs", "reduction")
PARENT_MODES = ("shared", "per_trial")


@dataclass(frozen=True, kw_only=True)
class PrunerConfig:
    """Early stopping of fine-tuning on the per-epoch validation accuracy (:mod:`nasprune.search.early_stop`)."""

    name: str = "none"
    warmup_trials: int = 5   # finished trials at an epoch before anything is stopped there
    min_epochs: int = 1      # first epoch checked (successive halving: first rung)
    reduction: int = 3       # successive halving keeps the top 1/reduction at each rung


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A resolved study recipe."""

    path: str
    study: str
    space: SearchSpace
    data: Mapping[str, Any]
    budget_mflops: float
    deploy_resolution: int = 224
    objectives: tuple[str, ...] = ("val_acc", "mflops")
    sampler: str = "tpe"
    seed: int = 0
    trials: int = 30
    storage: str | None = None
    artifacts: str | None = None
    parent_mode: str = "per_trial"
    parent_cache: bool = True
    parent: Mapping[str, Any] = field(default_factory=dict)    # TrainConfig fields for sparse training
    finetune: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields; epochs 0 = BN recalibration
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    latency_runs: int = 20
    latency_threads: int = 1
    with_baselines: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)

    def override(self, **changes: Any) -> Recipe:
        """A copy with the non-None ``changes`` applied (command-line flags), re-validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        recipe = dataclasses.replace(self, **changes)
        _validate(recipe)
        return recipe

    # -- derived ------------------------------------------------------------------------------------
    def data_config(self):
        from nasprune.data import DataConfig

        return DataConfig(**self.data)

    def train_config(self, which: str):
        """The :class:`~nasprune.train.TrainConfig` of ``parent`` or ``finetune`` (``epochs`` >= 1)."""
        from nasprune.train import TrainConfig

        fields = dict(self.parent if which == "parent" else self.finetune)
        fields["epochs"] = max(1, fields.get("epochs", 1))
        fields.setdefault("seed", self.seed)
        if which == "finetune":
            fields["sparsity_lambda"] = 0.0
        return TrainConfig(**fields)

    @property
    def finetune_epochs(self) -> int:
        return int(self.finetune.get("epochs", 1))

    def parent_key(self) -> str:
        """Hash (16 hex) of everything besides the spec that decides a trained parent: data and training."""
        content = {"data": dict(self.data), "parent": self.train_config("parent").to_dict()}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as stored on the study."""
        return {
            "path": self.path, "study": self.study, "space": self.space.path, "data": dict(self.data),
            "budget_mflops": self.budget_mflops, "deploy_resolution": self.deploy_resolution,
            "objectives": list(self.objectives), "sampler": self.sampler, "seed": self.seed, "trials": self.trials,
            "parent": {"mode": self.parent_mode, "cache": self.parent_cache, **self.parent},
            "finetune": dict(self.finetune),
            "pruner": dataclasses.asdict(self.pruner),
            "latency": {"runs": self.latency_runs, "threads": self.latency_threads},
            "with_baselines": self.with_baselines,
        }


def _validate(r: Recipe) -> None:
    path = r.path
    budget = r.budget_mflops
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise _bad(path, "budget_mflops", budget, "a number of MFLOPs > 0 (multiply-adds at the deployment "
                   "resolution / 1e6)")
    for key in ("trials", "deploy_resolution", "latency_runs", "latency_threads"):
        value = getattr(r, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(path, key, value, "an integer >= 1")
    if r.sampler not in SAMPLERS:
        raise _bad(path, "sampler", r.sampler, f"one of {', '.join(SAMPLERS)}")
    if not isinstance(r.parent_cache, bool):
        raise _bad(path, "parent.cache", r.parent_cache, "true or false")
    if r.parent_mode not in PARENT_MODES:
        raise _bad(path, "parent.mode", r.parent_mode, f"one of {', '.join(PARENT_MODES)}")
    obj = list(r.objectives)
    if obj[:2] != ["val_acc", "mflops"] or len(obj) > 3 or (len(obj) == 3 and obj[2] not in ("latency_ms", "params")):
        raise _bad(path, "objectives", obj, "[val_acc, mflops] plus optionally latency_ms or params")


def _parse_train(path, where: str, raw: Any, allow: tuple[str, ...] = ()) -> dict[str, Any]:
    from nasprune.train import TrainConfig

    names = tuple(f.name for f in dataclasses.fields(TrainConfig)) + allow
    raw = check_keys(path, where, raw or {}, names)
    probe = {k: v for k, v in raw.items() if k not in allow}
    if where == "finetune" and probe.get("epochs") == 0:
        probe["epochs"] = 1  # 0 fine-tune epochs = prune, recalibrate BN, evaluate
    try:
        TrainConfig(**probe)
    except NaspruneError as exc:
        raise NaspruneError(f"{path}: {where}.{exc}") from None
    return raw


def _parse_pruner(path, raw: Any) -> PrunerConfig:
    if raw is None or isinstance(raw, str):
        raw = {"name": raw or "none"}
    raw = check_keys(path, "pruner", raw, PRUNER_KEYS)
    if raw.get("name", "none") not in PRUNERS:
        raise _bad(path, "pruner.name", raw.get("name"), f"one of {', '.join(PRUNERS)}")
    defaults = PrunerConfig()
    for key in PRUNER_KEYS[1:]:
        value = raw.get(key, getattr(defaults, key))
        minimum = 2 if key == "reduction" else (0 if key == "warmup_trials" else 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _bad(path, f"pruner.{key}", value, f"an integer >= {minimum}")
    return PrunerConfig(**raw)


def _parse_data(path, raw: Any) -> dict[str, Any]:
    from nasprune.data import DataConfig

    raw = check_keys(path, "data", raw or {}, DATA_KEYS)
    data = {**DataConfig().to_dict(), **raw}
    try:
        DataConfig(**data)
    except NaspruneError as exc:
        raise NaspruneError(f"{path}: data.{exc}") from None
    return data


def parse_recipe(raw: Any, path: str | Path, **overrides: Any) -> Recipe:
    """Validate a recipe mapping; ``overrides`` (non-None) replace file values (``space`` and ``data`` too)."""
    raw = check_keys(path, "", raw if raw is not None else {}, RECIPE_KEYS)
    base = Path(path).parent if Path(str(path)).is_file() else None
    space_name = overrides.pop("space", None) or raw.get("space", "fd_mobilenet")
    space = load_space(space_name, overrides=raw.get("space_overrides"), relative_to=base)
    data = dict(raw.get("data") or {})
    for key, flag in (("name", "data_name"), ("data_dir", "data_dir")):
        if overrides.get(flag) is not None:
            data[key] = overrides.pop(flag)
    overrides.pop("data_name", None), overrides.pop("data_dir", None)
    parent = dict(raw.get("parent") or {})
    latency = check_keys(path, "latency", raw.get("latency") or {}, ("runs", "threads"))
    if "budget_mflops" not in raw and overrides.get("budget_mflops") is None:
        raise NaspruneError(f"{path}: budget_mflops is missing: give it in the recipe or with --budget MFLOPS")
    recipe = Recipe(
        path=str(path), study=str(raw.get("study", Path(str(path)).stem)), space=space,
        data=_parse_data(path, data), budget_mflops=raw.get("budget_mflops", 0),
        deploy_resolution=raw.get("deploy_resolution", 224),
        objectives=tuple(raw.get("objectives", ("val_acc", "mflops"))), sampler=raw.get("sampler", "tpe"),
        seed=raw.get("seed", 0), trials=raw.get("trials", 30), storage=raw.get("storage"),
        artifacts=raw.get("artifacts"), parent_mode=parent.pop("mode", "per_trial"),
        parent_cache=parent.pop("cache", True),
        parent=_parse_train(path, "parent", parent), finetune=_parse_train(path, "finetune", raw.get("finetune")),
        pruner=_parse_pruner(path, raw.get("pruner")), latency_runs=latency.get("runs", 20),
        latency_threads=latency.get("threads", 1), with_baselines=bool(raw.get("with_baselines", False)), raw=raw,
    )
    _validate(recipe)
    return recipe.override(**overrides)


def find_recipe(name_or_path: str | Path | None) -> Path:
    """A recipe by path or by name (``./studies/NAME.yaml``, then the one shipped with nasprune; ``None``:
    ``quickstart``)."""
    given = name_or_path or "quickstart"
    return RECIPES.find(given, [Path(given)])


def load_recipe(name_or_path: str | Path | None = None, **overrides: Any) -> Recipe:
    """Read and validate a recipe file, applying command-line ``overrides`` (``None`` values ignored)."""
    path = find_recipe(name_or_path)
    return parse_recipe(read_yaml(path), path, **overrides)
