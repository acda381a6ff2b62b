"""The tables a report is drawn from: one pandas frame per view, built from an Optuna study.

Everything the figures show is computed here first, so unit tests check these frames and ``--csv`` writes
them. The study follows the contract in ``docs/design.md``: ``values[0]`` is validation accuracy
(maximised), ``values[1]`` is MFLOPs (minimised), the budget is a trial constraint (feasible when every
constraint is <= 0) and each trial's ``user_attrs`` carry cost, schedule, width, SE placement and layers.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasprune.errors import NaspruneError
from nasprune.fsutil import atomic_write_text

__all__ = ["ReportTables", "STATUSES", "build_tables", "format_value", "hypervolume_2d", "pareto_mask",
           "too_few_trials", "trained_study"]

# Every trial row gets exactly one status; the Pareto figure draws one marker trace per status.
STATUSES: tuple[str, ...] = ("pareto", "dominated", "over budget", "stopped early")

TRIAL_COLUMNS: tuple[str, ...] = (
    "number", "state", "status", "feasible", "pareto", "baseline", "val_acc", "mflops", "macs", "params",
    "latency_ms", "schedule", "width", "se_count", "se_blocks", "downsample_layers", "criterion", "constraint",
)


@dataclasses.dataclass(frozen=True)
class ReportTables:
    """The data behind every view of a report.

    Attributes:
        study_name: the study's name.
        budget_mflops: the study's budget (``user_attrs["budget_mflops"]``), or ``None`` without one.
        objectives: objective names, from the study's ``objectives`` attribute or ``value0, value1, ...``.
        trials: one row per finished trial (complete, or stopped early by a pruner), ``TRIAL_COLUMNS``.
        pareto: the Pareto-optimal feasible trials sorted by MFLOPs, with the command that exports each.
        hypervolume: ``number, hypervolume`` after each finished trial (accuracy x MFLOPs, as a fraction
            of the box from (0 accuracy, reference MFLOPs) to (1, 0 MFLOPs)).
        layers: ``number, position, layer, before, after, kept`` for the Pareto-optimal trials.
        features: ``number, schedule, position, layer, size, downsample, se`` for the Pareto-optimal trials.
        reference_mflops: the hypervolume's reference MFLOPs (the budget, else 1.1 x the largest cost).
        importance: ``target, param, importance`` (Optuna's default evaluator on the trained feasible trials;
            target ``pareto`` is the joint multi-objective importance, the others one objective each).
        importance_note: why ``importance`` is empty, or ``None``.
        state_counts: trials per Optuna state name (``RUNNING`` and ``FAIL`` included), as read.
    """

    study_name: str
    budget_mflops: float | None
    objectives: tuple[str, ...]
    trials: pd.DataFrame
    pareto: pd.DataFrame
    hypervolume: pd.DataFrame
    layers: pd.DataFrame
    features: pd.DataFrame
    reference_mflops: float
    importance: pd.DataFrame
    importance_note: str | None
    state_counts: dict[str, int]

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables by name, in the order ``to_csv`` writes them."""
        return {"trials": self.trials, "pareto": self.pareto, "hypervolume": self.hypervolume,
                "layers": self.layers, "features": self.features, "importance": self.importance}

    def to_csv(self, directory: str | Path) -> list[Path]:
        """Write ``<study>_<table>.csv`` for every table into ``directory`` (atomically); return the paths."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise NaspruneError(f"--csv {str(directory)!r} is a file: expected a directory")
        return [atomic_write_text(directory / f"{self.study_name}_{name}.csv", frame.to_csv(index=False))
                for name, frame in self.frames().items()]


def build_tables(study: optuna.Study, *, storage_arg: str | None = None) -> ReportTables:
    """Build every report table from ``study``.

    Args:
        study: a (multi-objective) nasprune study.
        storage_arg: the ``--storage`` URL to repeat in the export commands (``None`` for the default).

    Raises:
        NaspruneError: the study has no completed trial.
    """
    all_trials = study.get_trials(deepcopy=False)
    finished = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    counts = _state_counts(all_trials)
    if TrialState.COMPLETE not in counts:
        states = ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items()) or "no trials"
        raise NaspruneError(f"study {study.study_name!r} has no completed trials yet ({states}): "
                            "run or resume 'nasprune search' first")
    budget = study.user_attrs.get("budget_mflops")
    budget = float(budget) if budget is not None else None
    trials = _trials_frame(finished, study.directions)
    reference = _reference_mflops(trials, budget)
    pareto = trials[trials["pareto"]].sort_values(["mflops", "number"]).reset_index(drop=True)
    pareto = _pareto_frame(pareto, study.study_name, storage_arg)
    order = {int(n): i for i, n in enumerate(pareto["number"])}
    pareto_trials = sorted((t for t in finished if t.number in order), key=lambda t: order[t.number])
    objectives = _objective_names(study)
    importance, note = _importance_frame(trained_study(study, trials, objectives), objectives)
    return ReportTables(
        study_name=study.study_name, budget_mflops=budget, objectives=objectives, trials=trials,
        pareto=pareto, hypervolume=_hypervolume_frame(trials, reference), layers=_layers_frame(pareto_trials),
        features=_features_frame(pareto_trials), reference_mflops=reference, importance=importance,
        importance_note=note, state_counts={s.name: n for s, n in counts.items()},
    )


# -- the trials table ---------------------------------------------------------------------------------
def _state_counts(trials: Sequence[FrozenTrial]) -> dict[TrialState, int]:
    counts: dict[TrialState, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


def _objective_names(study: optuna.Study) -> tuple[str, ...]:
    names = study.user_attrs.get("objectives") or study.metric_names
    if names and len(names) == len(study.directions):
        return tuple(str(n) for n in names)
    return tuple(f"value{i}" for i in range(len(study.directions)))


def _feasible(trial: FrozenTrial) -> bool:
    if trial.constraints:
        return all(v <= 0.0 for v in trial.constraints.values())
    return bool(trial.user_attrs.get("feasible", True))


def _accuracy(trial: FrozenTrial) -> float:
    """Recorded validation accuracy; for a pruner-stopped trial its last reported value."""
    if "val_acc" in trial.user_attrs:
        return float(trial.user_attrs["val_acc"])
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    if trial.state == TrialState.COMPLETE and _feasible(trial):
        return float(trial.values[0])
    return math.nan  # over budget: never trained


def _mflops(trial: FrozenTrial) -> float:
    if "mflops" in trial.user_attrs:
        return float(trial.user_attrs["mflops"])
    if "macs" in trial.user_attrs:
        return trial.user_attrs["macs"] / 1e6
    return float(trial.values[1]) if trial.values and len(trial.values) > 1 else math.nan


def _join(values) -> str:
    return " ".join(str(v) for v in values) if values is not None else ""


def _trial_row(trial: FrozenTrial) -> dict:
    attrs = trial.user_attrs
    se_blocks = attrs.get("se_blocks")
    return {
        "number": trial.number, "state": trial.state.name, "feasible": _feasible(trial),
        "baseline": attrs.get("baseline") or "", "val_acc": _accuracy(trial), "mflops": _mflops(trial),
        "macs": attrs.get("macs", math.nan), "params": attrs.get("params", math.nan),
        "latency_ms": attrs.get("latency_ms", math.nan), "schedule": attrs.get("schedule", ""),
        "width": attrs.get("width", math.nan),
        "se_count": attrs.get("se_count", len(se_blocks) if se_blocks is not None else math.nan),
        "se_blocks": _join(se_blocks), "downsample_layers": _join(attrs.get("downsample_layers")),
        "criterion": attrs.get("criterion", ""),
        "constraint": max(trial.constraints.values()) if trial.constraints else math.nan,
    }


def _trials_frame(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> pd.DataFrame:
    frame = pd.DataFrame([_trial_row(t) for t in trials], columns=[c for c in TRIAL_COLUMNS
                                                                   if c not in ("status", "pareto")])
    candidates = [t for t in trials if t.state == TrialState.COMPLETE and _feasible(t) and t.values]
    values = np.array([t.values for t in candidates], dtype=float).reshape(len(candidates), len(directions))
    mask = pareto_mask(values, directions)
    optimal = {t.number for t, m in zip(candidates, mask, strict=True) if m}
    frame["pareto"] = frame["number"].isin(optimal)
    frame["status"] = [_status(row) for row in frame.itertuples()]
    frame = frame.astype({"macs": "Int64", "params": "Int64", "se_count": "Int64"})
    return frame[list(TRIAL_COLUMNS)].sort_values("number").reset_index(drop=True)


def _status(row) -> str:
    if row.pareto:
        return "pareto"
    if not row.feasible:
        return "over budget"
    return "stopped early" if row.state == "PRUNED" else "dominated"


def pareto_mask(values: np.ndarray, directions: Sequence[StudyDirection]) -> np.ndarray:
    """``True`` for the rows of ``values`` (trials x objectives) that no other row dominates.

    A row dominates another when it is at least as good in every objective and better in one; equal rows
    do not dominate each other, so duplicates are all kept.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    loss = values * signs  # everything minimised
    no_worse = (loss[:, None, :] <= loss[None, :, :]).all(axis=2)
    better = (loss[:, None, :] < loss[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)  # [i, j]: i dominates j
    return ~dominated


def format_value(value, spec: str, missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` for a missing value (``None``, NaN, ``pd.NA``)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


# -- derived tables -----------------------------------------------------------------------------------
def _export_command(study_name: str, number: int, storage_arg: str | None) -> str:
    command = f"nasprune export --study {shlex.quote(study_name)} --trial {number}"
    return command + (f" --storage {shlex.quote(storage_arg)}" if storage_arg else "")


def _pareto_frame(pareto: pd.DataFrame, study_name: str, storage_arg: str | None) -> pd.DataFrame:
    columns = ["number", "val_acc", "mflops", "params", "latency_ms", "schedule", "width", "se_count",
               "se_blocks", "downsample_layers", "criterion", "baseline"]
    frame = pareto[columns].copy()
    frame["export"] = [_export_command(study_name, int(n), storage_arg) for n in frame["number"]]
    return frame


def _reference_mflops(trials: pd.DataFrame, budget: float | None) -> float:
    if budget is not None:
        return budget
    largest = trials["mflops"].max()
    return 1.1 * float(largest) if np.isfinite(largest) and largest > 0 else 1.0


def hypervolume_2d(accuracy: Sequence[float], mflops: Sequence[float], reference_mflops: float) -> float:
    """Area dominated by ``(accuracy, mflops)`` points, maximising accuracy and minimising MFLOPs.

    The reference point is (accuracy 0, ``reference_mflops``); points at or beyond it add nothing. The
    area is the integral over m in [0, reference] of the best accuracy among points with MFLOPs <= m.
    """
    points = sorted((m, max(a, 0.0)) for a, m in zip(accuracy, mflops, strict=True)
                    if np.isfinite(a) and np.isfinite(m) and m < reference_mflops)
    area, best = 0.0, 0.0
    for i, (m, a) in enumerate(points):
        best = max(best, a)
        upper = points[i + 1][0] if i + 1 < len(points) else reference_mflops
        area += best * (upper - m)
    return area


def _hypervolume_frame(trials: pd.DataFrame, reference: float) -> pd.DataFrame:
    """Hypervolume of the feasible completed trials after each finished trial, normalised to [0, 1]."""
    counted = (trials["state"] == "COMPLETE") & trials["feasible"]
    rows = []
    for i, number in enumerate(trials["number"]):
        seen = trials.iloc[: i + 1][counted.iloc[: i + 1]]
        area = hypervolume_2d(seen["val_acc"].tolist(), seen["mflops"].tolist(), reference)
        rows.append({"number": int(number), "hypervolume": area / reference})
    return pd.DataFrame(rows, columns=["number", "hypervolume"])


def _layers_frame(pareto_trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    rows = []
    for trial in pareto_trials:
        for position, layer in enumerate(trial.user_attrs.get("layers") or []):
            before, after = int(layer["before"]), int(layer["after"])
            rows.append({"number": trial.number, "position": position, "layer": layer["name"],
                         "before": before, "after": after, "kept": after / before if before else math.nan})
    return pd.DataFrame(rows, columns=["number", "position", "layer", "before", "after", "kept"])


def _features_frame(pareto_trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """Feature-map side per layer: position 0 is the stem, position ``i + 1`` is block ``i``."""
    rows = []
    for trial in pareto_trials:
        se = set(trial.user_attrs.get("se_blocks") or [])
        down = set(trial.user_attrs.get("downsample_layers") or [])
        for position, size in enumerate(trial.user_attrs.get("feature_sizes") or []):
            block = position - 1
            rows.append({"number": trial.number, "schedule": trial.user_attrs.get("schedule", ""),
                         "position": position, "layer": "stem" if position == 0 else f"block {block}",
                         "size": int(size), "downsample": block in down, "se": block in se})
    return pd.DataFrame(rows, columns=["number", "schedule", "position", "layer", "size", "downsample", "se"])


# -- parameter importance -----------------------------------------------------------------------------
def trained_study(study: optuna.Study, trials: pd.DataFrame, objectives: Sequence[str]) -> optuna.Study:
    """An in-memory copy of ``study`` with only its completed feasible trials (the trained networks)."""
    keep = set(trials.loc[(trials["state"] == "COMPLETE") & trials["feasible"] & trials["val_acc"].notna(),
                          "number"])
    copy = optuna.create_study(directions=study.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        copy.set_metric_names(list(objectives))
    copy.add_trials([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.number in keep])
    return copy


def too_few_trials(study: optuna.Study) -> str | None:
    """Why importance or parallel coordinates cannot be drawn for ``study`` yet, or ``None``."""
    trials = study.get_trials(deepcopy=False)
    if len(trials) < 2:
        return f"Needs at least 2 completed feasible trials; the study has {len(trials)} so far."
    names = {name for t in trials for name in t.params}
    if not any(len({repr(t.params.get(name)) for t in trials}) > 1 for name in names):
        return "Every completed feasible trial has the same parameters, so there is nothing to compare yet."
    return None


def _importance_frame(copy: optuna.Study, objectives: Sequence[str]) -> tuple[pd.DataFrame, str | None]:
    """Joint (Pareto) importance, then one per objective with maximised objectives negated."""
    columns = ["target", "param", "importance"]
    reason = too_few_trials(copy)
    if reason:
        return pd.DataFrame(columns=columns), reason
    targets = {"pareto": None}
    for i, (name, direction) in enumerate(zip(objectives, copy.directions, strict=True)):
        sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0  # the evaluator rewards low targets
        targets[name] = lambda t, i=i, sign=sign: sign * t.values[i]
    rows = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "computes importances for low targets": we negate
            for target_name, target in targets.items():
                importances = optuna.importance.get_param_importances(copy, target=target)
                rows += [{"target": target_name, "param": p, "importance": v} for p, v in importances.items()]
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return pd.DataFrame(columns=columns), f"Optuna could not compute parameter importances yet: {exc}"
    return pd.DataFrame(rows, columns=columns), None
