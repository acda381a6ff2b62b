"""Study recipes: one YAML file that says what to search, on which data, under which budget, and how hard.

The schema is the :class:`Recipe` dataclass itself: its fields, type hints and the constraints declared next to
them (:mod:`nasprune.schema`) say what each key accepts; ``docs/search.md`` documents it. Command-line flags
override the file (:func:`parse_recipe`, :meth:`Recipe.override`).

Two forms, one function each way:

* the YAML form (``studies/*.yaml``) -> :func:`parse_recipe` / :func:`load_recipe`;
* the stored form, the study's user attr ``recipe``: :meth:`Recipe.to_dict` and :meth:`Recipe.from_dict`, with
  ``Recipe.from_dict(r.to_dict()) == r``. It is the YAML form with the space stored by content (``space``: the
  space mapping with the overrides applied, ``space_path``: the file it came from), so a rebuilt recipe does not
  need the space file; plus ``path``, the recipe file. A password in ``storage`` is stored as ``***``.

:meth:`Recipe.parent_key` is the part of a recipe that decides a trained parent's weights.
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
from nasprune.schema import Lazy, SchemaError, dump, field_keys, invalid, mapping_keys, read, rule, shown
from nasprune.search.band import DEFAULT_BUDGET_FLOOR
from nasprune.search.oneshot import OneShotConfig
from nasprune.search.shipped import RECIPES
from nasprune.search.space import SearchSpace, load_space, parse_space, read_yaml

__all__ = ["OBJECTIVES", "PRUNERS", "RERANK_FROM", "SAMPLERS", "PrunerConfig", "Recipe", "RerankConfig", "find_recipe",
           "load_recipe", "parse_recipe"]

# Objective name -> direction. The first two are fixed; a third is optional.
OBJECTIVES = {"val_acc": "maximize", "mflops": "minimize", "latency_ms": "minimize", "latency_ort_ms": "minimize",
              "params": "minimize"}
FIXED_OBJECTIVES = ("val_acc", "mflops")
SAMPLERS = ("tpe", "nsga2", "random")  # nasprune.search.runner.make_sampler builds each
PRUNERS = ("none", "median", "successive_halving")  # "none" and nasprune.search.early_stop.STOP_RULES
PARENT_MODES = ("shared", "per_trial", "oneshot")  # oneshot: nasprune.search.oneshot
RERANK_FROM = ("weights", "scratch")  # nasprune.search.rerank.TRAINERS trains each
TRAIN_CONFIG = Lazy("nasprune.train:TrainConfig")
DATA_CONFIG = Lazy("nasprune.data:DataConfig")


@dataclass(frozen=True, kw_only=True)
class PrunerConfig:
    """Early stopping of fine-tuning on the per-epoch validation accuracy (:mod:`nasprune.search.early_stop`)."""

    name: str = field(default="none", metadata=rule(choices=PRUNERS))
    warmup_trials: int = field(default=5, metadata=rule(low=0))  # finished trials at an epoch before any stop
    min_epochs: int = field(default=1, metadata=rule(low=1))      # first epoch checked (halving: first rung)
    reduction: int = field(default=3, metadata=rule(low=2))       # halving keeps the top 1/reduction per rung


@dataclass(frozen=True, kw_only=True)
class RerankConfig:
    """Re-ranking the top trials by successive halving after the search (:mod:`nasprune.search.rerank`).

    Rung ``i`` trains its trials for ``epochs * growth**i`` epochs; rung 0 holds the ``top`` trained trials by
    proxy accuracy, each next rung the better half (rounded up) of the one before, down to one trial.
    """

    top: int = field(default=4, metadata=rule(low=0))     # trials re-ranked (0: off)
    epochs: int = field(default=2, metadata=rule(low=1))  # epochs of the first rung
    growth: int = field(default=2, metadata=rule(low=1))  # epochs are multiplied by this at each next rung
    seeds: int = field(default=1, metadata=rule(low=1))   # trainings per trial and rung (accuracy: their mean)
    # scratch: the child_spec built fresh, trained like the parent (no sparsity penalty); weights: the trial's own
    # checkpoint fine-tuned like the search's fine-tuning
    source: str = field(default="weights", metadata=rule(key="from", choices=RERANK_FROM))
    # trials that trained the same network (equal child_spec hashes: TPE re-proposing its best point, or ratio
    # vectors the band maps to one child) count once, by their best proxy; false: every trial is a candidate
    distinct: bool = True

    def rung_epochs(self, rung: int) -> int:
        return self.epochs * self.growth ** rung

    @property
    def enabled(self) -> bool:
        return self.top > 0


def _objectives_ok(names: tuple[str, ...]) -> bool:
    fixed = len(FIXED_OBJECTIVES)
    return names[:fixed] == FIXED_OBJECTIVES and len(names) <= fixed + 1 and all(
        n in OBJECTIVES and n not in FIXED_OBJECTIVES for n in names[fixed:])


def _finetune_probe(values: dict[str, Any]) -> Any:
    """The fine-tuning's TrainConfig, where 0 epochs is allowed (prune, recalibrate BN, evaluate)."""
    if values.get("epochs", 1) < 0:  # an integer already (type-checked first)
        raise NaspruneError(f"epochs={values['epochs']!r} is invalid: expected an integer >= 0 (0: prune, "
                            "recalibrate BN and evaluate)")
    return TRAIN_CONFIG.value(**({**values, "epochs": 1} if values.get("epochs") == 0 else values))


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A resolved study recipe. Each field's key in the YAML and stored forms is its name, or its ``key`` rule."""

    path: str             # the recipe file (set by the reader)
    study: str = field(metadata=rule(test=bool, expected="a non-empty string"))
    space: SearchSpace    # from `space` (a name, a path or a mapping) and `space_overrides`
    data: Mapping[str, Any] = field(default_factory=dict, metadata=rule(fields=DATA_CONFIG, partial=False))
    budget_mflops: float = field(metadata=rule(
        low=0, low_open=True, missing="give it in the recipe or with --budget MFLOPS",
        expected="a number of MFLOPs > 0 (multiply-adds at the deployment resolution / 1e6)"))
    deploy_resolution: int = field(default=224, metadata=rule(low=1))
    objectives: tuple[str, ...] = field(default=FIXED_OBJECTIVES, metadata=rule(test=_objectives_ok, expected=(
        f"[{', '.join(FIXED_OBJECTIVES)}] plus optionally one of "
        f"{', '.join(n for n in OBJECTIVES if n not in FIXED_OBJECTIVES)}")))
    sampler: str = field(default="tpe", metadata=rule(choices=SAMPLERS))
    seed: int = field(default=0, metadata=rule(low=0))
    trials: int = field(default=30, metadata=rule(low=1))
    storage: str | None = None    # default sqlite:///studies/<study>.db
    artifacts: str | None = None  # default beside the database
    parent_mode: str = field(default="per_trial", metadata=rule(key="parent.mode", choices=PARENT_MODES))
    parent_cache: bool = field(default=True, metadata=rule(key="parent.cache"))
    # parent.mode oneshot: how the one-shot parents are trained after the shared ones (nasprune.search.oneshot)
    oneshot: OneShotConfig = field(default_factory=OneShotConfig)
    # BN statistics re-estimated before a child is scored without fine-tuning (finetune.epochs 0, oneshot)
    recalibrate_batches: int = field(default=100, metadata=rule(key="recalibrate.batches", low=1))
    recalibrate_batch_size: int = field(default=128, metadata=rule(key="recalibrate.batch_size", low=1))
    # TrainConfig fields given for sparse training (the rest of `parent`) and for fine-tuning (epochs 0 = BN
    # recalibration); unset fields take TrainConfig's defaults, and `seed` the recipe's.
    parent: Mapping[str, Any] = field(default_factory=dict, metadata=rule(fields=TRAIN_CONFIG))
    finetune: Mapping[str, Any] = field(default_factory=dict, metadata=rule(fields=TRAIN_CONFIG,
                                                                            probe=_finetune_probe))
    pruner: PrunerConfig = field(default_factory=PrunerConfig, metadata=rule(shorthand="name"))
    # bounded: every trial times `runs` forwards, and a huge thread count hangs torch
    latency_runs: int = field(default=20, metadata=rule(key="latency.runs", low=1, high=10_000))
    latency_threads: int = field(default=1, metadata=rule(key="latency.threads", low=1, high=256))
    with_baselines: bool = False
    # the budget band: every child is scaled into [budget_floor, 1] x budget (0: off; see nasprune.search.band)
    budget_floor: float = field(default=DEFAULT_BUDGET_FLOOR, metadata=rule(low=0, high=1, high_open=True))
    seed_designs: bool = True  # the first trials are the space's hand designs and their pruned versions
    # after the trials: successive halving over the top trials (absent or null: off)
    rerank: RerankConfig | None = None

    def __post_init__(self) -> None:
        if self.parent_mode == "oneshot":
            for family, member in self.space.members.items():
                if len(member.criteria) > 1:
                    where = "prune.criteria" if len(self.space.members) == 1 else f"families.{family}.prune.criteria"
                    raise NaspruneError(f"parent.mode 'oneshot' orders each parent's "
                                      f"channels once, by one criterion, but the space's {where} lists "
                                      f"{list(member.criteria)}: expected one criterion there (set it with "
                                      "space_overrides)")

    def override(self, **changes: Any) -> Recipe:
        """A copy with the non-None ``changes`` (field names) applied, re-validated like the file."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        changed = dataclasses.replace(self, **changes)
        return read(Recipe, dump(changed, exclude=("path", "space")), file=self.path,
                    given={"path": self.path, "space": changed.space})

    # -- derived ------------------------------------------------------------------------------------
    def data_config(self):
        return DATA_CONFIG.value(**self.data)

    def train_config(self, which: str):
        """The :class:`~nasprune.train.TrainConfig` of ``parent`` or ``finetune`` (``epochs`` >= 1)."""
        fields = dict(self.parent if which == "parent" else self.finetune)
        fields["epochs"] = max(1, fields.get("epochs", 1))
        fields.setdefault("seed", self.seed)
        if which == "finetune":
            fields["sparsity_lambda"] = 0.0
        return TRAIN_CONFIG.value(**fields)

    @property
    def finetune_epochs(self) -> int:
        return int(self.finetune.get("epochs", 1))

    def parent_key(self) -> str:
        """Hash (16 hex) of everything besides the spec that decides a trained parent: data and training."""
        content = {"data": dict(self.data), "parent": self.train_config("parent").to_dict()}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    # -- the stored form ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as stored on the study (user attr ``recipe``); :meth:`from_dict` rebuilds it."""
        from nasprune.storage import redact_url

        rest = dump(self, exclude=("path", "study", "space"))
        if rest["storage"] is not None:
            rest["storage"] = redact_url(rest["storage"])
        return {"path": self.path, "study": self.study, "space": self.space.to_dict(), "space_path": self.space.path,
                **rest}

    @classmethod
    def from_dict(cls, stored: Any, *, source: str | None = None) -> Recipe:
        """Inverse of :meth:`to_dict` (a recipe stored before spaces were stored by content reads its space file).

        Args:
            stored: the stored mapping.
            source: where it was read from, for messages (default: its ``path``).

        Raises:
            SchemaError: naming ``source``, the key, the value and what is accepted.
        """
        if not isinstance(stored, Mapping):
            raise invalid(source or "stored recipe", "", stored, "a mapping (Recipe.to_dict())")
        stored = dict(stored)
        path, space, space_path = stored.pop("path", None), stored.pop("space", None), stored.pop("space_path", None)
        label = source or str(path)
        if not isinstance(path, str):
            raise invalid(label, "path", path, "a string (the recipe file)")
        if isinstance(space, Mapping) and isinstance(space_path, str):
            try:
                space = parse_space(space, space_path)
            except SchemaError as exc:
                raise exc.moved(label, "space.") from None
        elif isinstance(space, str) and space_path is None:
            space = load_space(space)
        else:
            raise invalid(label, "space", space, "the space as a mapping, with its file in space_path")
        return read(cls, stored, file=label, given={"path": path, "space": space})


RECIPE_KEYS = ("study", "space", "space_overrides",
               *(k for k in mapping_keys(Recipe) if k not in ("path", "study", "space")))
OVERRIDE_KEYS = {"data_name": "data.name", "data_dir": "data.data_dir"}  # flags that set a nested key


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw[a][b] = value`` for ``key = "a.b"`` (a sub-mapping that is not one is left for the check to report)."""
    top, _, sub = key.partition(".")
    if not sub:
        raw[top] = value
    elif raw.get(top) is None or isinstance(raw[top], Mapping):
        raw[top] = {**(raw.get(top) or {}), sub: value}


def _recipe_space(file: str, name: Any, overrides: Any) -> SearchSpace:
    """The recipe's space: a file (by name or path, relative to the recipe or cwd) or a mapping, plus overrides."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise invalid(file, "space_overrides", overrides, "a mapping of space keys to their new values")
    if isinstance(name, Mapping):
        try:
            return parse_space({**name, **(overrides or {})}, file)
        except SchemaError as exc:
            raise exc.moved(file, "space.") from None
    if not isinstance(name, (str, Path)) or not str(name):
        raise invalid(file, "space", name, "the name or path of a space file, or a space mapping")
    base = Path(file).parent if Path(file).is_file() else None
    return load_space(name, overrides=overrides, relative_to=base, overrides_file=file)


def parse_recipe(raw: Any, path: str | Path, **overrides: Any) -> Recipe:
    """Validate a recipe mapping (the YAML form).

    Args:
        raw: the mapping, as loaded from YAML.
        path: the file it came from (messages, relative space paths, the default study name).
        overrides: command-line values (``None`` = not given): :class:`Recipe` field names, ``space``, and
            ``data_name`` / ``data_dir``; they replace the file's values before anything is checked.

    Raises:
        SchemaError: the first unknown key, missing key or bad value, naming the file, the dotted key, the value
            and what is accepted.
    """
    file = str(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise invalid(file, "", raw, f"a mapping with keys among {', '.join(RECIPE_KEYS)}")
    for key, value in raw.items():
        if key not in RECIPE_KEYS:
            raise SchemaError(file, str(key), f"unknown key {shown(key)} (value {shown(value)}): expected one of "
                              f"{', '.join(RECIPE_KEYS)}")
    raw = dict(raw)
    given = {k: v for k, v in overrides.items() if v is not None}
    space = given.pop("space", None) or raw.get("space", "fd_mobilenet")
    keys = field_keys(Recipe)
    for name, value in given.items():
        _set(raw, OVERRIDE_KEYS.get(name) or keys[name], value)
    space = _recipe_space(file, space, raw.pop("space_overrides", None))
    raw.pop("space", None)
    raw.setdefault("study", Path(file).stem)
    return read(Recipe, raw, file=file, given={"path": file, "space": space})


def find_recipe(name_or_path: str | Path | None) -> Path:
    """A recipe by path or by name (``./studies/NAME.yaml``, then the one shipped with nasprune; ``None``:
    ``quickstart``)."""
    given = name_or_path or "quickstart"
    return RECIPES.find(given, [Path(given)])


def load_recipe(name_or_path: str | Path | None = None, **overrides: Any) -> Recipe:
    """Read and validate a recipe file, applying command-line ``overrides`` (``None`` values ignored)."""
    path = find_recipe(name_or_path)
    return parse_recipe(read_yaml(path), path, **overrides)
