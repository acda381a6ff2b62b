"""The tables a report is drawn from: one pandas frame per view, built from an Optuna study.

Everything the figures show is computed here first, so unit tests check these frames and ``--csv`` writes
them. The study follows the contract in ``docs/design.md``: ``values[0]`` is validation accuracy
(maximised), ``values[1]`` is MFLOPs (minimised), the budget is a trial constraint and each trial's
``user_attrs`` carry cost, schedule, width, SE placement and layers. Every trial is read through
:class:`~nasprune.search.record.TrialRecord`, which also decides feasible, trained and the Pareto front.
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
from nasprune.search.record import TrialRecord, objective_names, pareto_front, rerank_results, study_objectives

__all__ = ["RERANK_COLUMNS", "ReportTables", "STATUSES", "build_tables", "format_value", "hypervolume_2d",
           "percent_ticks", "rerank_frame", "too_few_trials", "trained_study"]

# Every trial row gets exactly one status; the Pareto figure draws one marker trace per status.
STATUSES: tuple[str, ...] = ("pareto", "dominated", "over budget", "stopped early")

TRIAL_COLUMNS: tuple[str, ...] = (
    "number", "state", "status", "feasible", "trained", "pareto", "baseline", "design", "val_acc", "mflops", "macs",
    "params",
    "latency_ms", "latency_ort_ms", "family", "schedule", "seed_design", "width", "se_count", "se_blocks",
    "downsample_layers", "criterion",
    "constraint", "network", "duplicate_of",
)
# one row per (trial, rung) of the study's re-rank (nasprune.search.rerank): proxy against re-ranked accuracy
RERANK_COLUMNS: tuple[str, ...] = ("number", "proxy_rank", "proxy_acc", "rung", "epochs", "seeds", "from",
                                   "val_acc", "seconds", "advanced", "winner")


@dataclasses.dataclass(frozen=True)
class ReportTables:
    """The data behind every view of a report.

    Attributes:
        study_name: the study's name.
        budget_mflops: the study's budget (``user_attrs["budget_mflops"]``), or ``None`` without one.
        budget_floor: the budget band's lower end as a fraction of the budget (``user_attrs["budget_floor"]``;
            0 for a study without the band).
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
        rerank: ``RERANK_COLUMNS``, one row per re-ranked trial and rung it was trained at: its proxy (search)
            rank and accuracy, the rung's epochs, seeds and ``from``, the re-ranked validation accuracy (mean
            over seeds), seconds, whether it went on to the next rung (``advanced``) and whether it won; empty
            for a study that was not re-ranked.
    """

    study_name: str
    budget_mflops: float | None
    budget_floor: float
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
    rerank: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(RERANK_COLUMNS)))

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables by name, in the order ``to_csv`` writes them."""
        return {"trials": self.trials, "pareto": self.pareto, "hypervolume": self.hypervolume,
                "layers": self.layers, "features": self.features, "importance": self.importance,
                "rerank": self.rerank}

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
    reranked = rerank_results(study.user_attrs)
    records = [TrialRecord.from_trial(t, reranked.get(t.number, ())) for t in finished]
    trials = _trials_frame(records, study)
    reference = _reference_mflops(trials, budget)
    pareto = trials[trials["pareto"]].sort_values(["mflops", "number"]).reset_index(drop=True)
    pareto = _pareto_frame(pareto, study.study_name, storage_arg)
    order = {int(n): i for i, n in enumerate(pareto["number"])}
    pareto_trials = sorted((r for r in records if r.number in order), key=lambda r: order[r.number])
    objectives = objective_names(study)
    importance, note = _importance_frame(trained_study(study, trials, objectives), objectives)
    return ReportTables(
        study_name=study.study_name, budget_mflops=budget,
        budget_floor=float(study.user_attrs.get("budget_floor") or 0.0), objectives=objectives, trials=trials,
        pareto=pareto, hypervolume=_hypervolume_frame(trials, reference), layers=_layers_frame(pareto_trials),
        features=_features_frame(pareto_trials), reference_mflops=reference, importance=importance,
        importance_note=note, state_counts={s.name: n for s, n in counts.items()},
        rerank=rerank_frame(study, records),
    )


# -- the trials table ---------------------------------------------------------------------------------
def _state_counts(trials: Sequence[FrozenTrial]) -> dict[TrialState, int]:
    counts: dict[TrialState, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


def _join(values) -> str:
    return " ".join(str(v) for v in values) if values is not None else ""


def _nan(value) -> float:
    return math.nan if value is None else value


def _trial_row(r: TrialRecord) -> dict:
    return {
        "number": r.number, "state": r.state.name, "feasible": r.feasible, "trained": r.trained,
        "baseline": r.baseline or "", "design": r.baseline or r.seed_design or "",
        "val_acc": _nan(r.val_acc), "mflops": _nan(r.mflops), "macs": _nan(r.macs),
        "params": _nan(r.params), "latency_ms": _nan(r.latency_ms),
        "latency_ort_ms": _nan(r.latency_ort_ms), "family": r.family or "", "schedule": r.schedule or "",
        "seed_design": r.seed_design or "",
        "width": _nan(r.width), "se_count": _nan(r.se_count), "se_blocks": _join(r.se_blocks),
        "downsample_layers": _join(r.downsample_layers), "criterion": r.criterion or "",
        "constraint": _nan(r.constraint), "network": r.network or f"trial {r.number}",
        "duplicate_of": _nan(r.duplicate_of),
    }


def _trials_frame(records: Sequence[TrialRecord], study: optuna.Study) -> pd.DataFrame:
    """One row per record; ``pareto`` is over all of the study's objectives (its ``values``)."""
    frame = pd.DataFrame([_trial_row(r) for r in records], columns=[c for c in TRIAL_COLUMNS
                                                                    if c not in ("status", "pareto")])
    optimal = {r.number for r in pareto_front(records, study_objectives(study))}
    frame["pareto"] = frame["number"].isin(optimal)
    frame["status"] = [_status(row) for row in frame.itertuples()]
    frame = frame.astype({"macs": "Int64", "params": "Int64", "se_count": "Int64", "duplicate_of": "Int64"})
    return frame[list(TRIAL_COLUMNS)].sort_values("number").reset_index(drop=True)


def _status(row) -> str:
    if row.pareto:
        return "pareto"
    if not row.feasible:
        return "over budget"
    return "stopped early" if row.state == "PRUNED" else "dominated"


NICE_STEPS = (1, 2, 2.5, 5)  # tick steps per power of ten


def percent_ticks(values: Sequence[float], *, ticks: int = 6, pad: float = 0.0) -> dict:
    """Plotly axis settings for fractions shown as percentages, with as many decimals as the tick step needs, so
    that no two tick labels read alike (plotly's own ticks with ``.0%`` repeat "28 %" when accuracies are close).

    Returns ``range`` (the values' span, widened by ``pad`` of it on each side and, for equal values, to
    +-0.5 points around them), ``dtick`` (the step of 1, 2, 2.5 or 5 x 10^k nearest above span / ``ticks``) and
    ``tickformat``. Empty input: the range 0-1.
    """
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = high - low
    if span < 1e-9:  # one value, or all equal: a window of one percentage point around it
        low, high, span = low - 0.005, high + 0.005, 0.01
    low, high = low - pad * span, high + pad * span
    raw = (high - low) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (*NICE_STEPS, 10) if m * power >= raw * (1 - 1e-9))
    points = step * 100  # the step in percentage points: print as many decimals as it has
    decimals = next(d for d in range(12) if abs(round(points, d) - points) <= 1e-9 * points)
    return {"range": [low, high], "dtick": step, "tickformat": f".{decimals}%"}


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
    columns = ["number", "val_acc", "mflops", "params", "latency_ms", "latency_ort_ms", "schedule", "width",
               "se_count", "se_blocks", "downsample_layers", "criterion", "baseline", "seed_design", "design"]
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
    """Hypervolume of the trained trials after each finished trial, normalised to [0, 1]."""
    counted = trials["trained"]
    rows = []
    for i, number in enumerate(trials["number"]):
        seen = trials.iloc[: i + 1][counted.iloc[: i + 1]]
        area = hypervolume_2d(seen["val_acc"].tolist(), seen["mflops"].tolist(), reference)
        rows.append({"number": int(number), "hypervolume": area / reference})
    return pd.DataFrame(rows, columns=["number", "hypervolume"])


def _layers_frame(pareto_trials: Sequence[TrialRecord]) -> pd.DataFrame:
    rows = []
    for trial in pareto_trials:
        for position, layer in enumerate(trial.layers):
            before, after = int(layer["before"]), int(layer["after"])
            rows.append({"number": trial.number, "position": position, "layer": layer["name"],
                         "before": before, "after": after, "kept": after / before if before else math.nan})
    return pd.DataFrame(rows, columns=["number", "position", "layer", "before", "after", "kept"])


def _features_frame(pareto_trials: Sequence[TrialRecord]) -> pd.DataFrame:
    """Feature-map side per layer: position 0 is the stem, position ``i + 1`` is block ``i``."""
    rows = []
    for trial in pareto_trials:
        se = set(trial.se_blocks or ())
        down = set(trial.downsample_layers or ())
        for position, size in enumerate(trial.feature_sizes or ()):
            block = position - 1
            rows.append({"number": trial.number, "schedule": trial.schedule or "",
                         "position": position, "layer": "stem" if position == 0 else f"block {block}",
                         "size": int(size), "downsample": block in down, "se": block in se})
    return pd.DataFrame(rows, columns=["number", "schedule", "position", "layer", "size", "downsample", "se"])


def rerank_frame(study: optuna.Study, records: Sequence[TrialRecord]) -> pd.DataFrame:
    """The study's re-rank as ``RERANK_COLUMNS`` rows, by rung then re-ranked place (empty: not re-ranked)."""
    from nasprune.search.rerank import stored_plan

    plan = stored_plan(study, records)
    rows = []
    for rung in plan.rungs if plan is not None else ():
        following = plan.rungs[rung.index + 1].members if rung.index + 1 < len(plan.rungs) else ()
        last = plan.complete and rung.index == len(plan.sizes) - 1
        for n in rung.ranking(plan.proxy_rank):
            res = rung.results[n]
            rows.append({"number": n, "proxy_rank": plan.proxy_rank[n], "proxy_acc": plan.record(n).val_acc,
                         "rung": rung.index, "epochs": res.epochs, "seeds": res.seeds, "from": res.source,
                         "val_acc": res.val_acc, "seconds": _nan(res.seconds), "advanced": n in following,
                         "winner": last and n == plan.winner})
    return pd.DataFrame(rows, columns=list(RERANK_COLUMNS))


# -- parameter importance -----------------------------------------------------------------------------
def trained_study(study: optuna.Study, trials: pd.DataFrame, objectives: Sequence[str]) -> optuna.Study:
    """An in-memory copy of ``study`` with only its trained trials (``TrialRecord.trained``)."""
    keep = set(trials.loc[trials["trained"], "number"])
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
    trials = copy.get_trials(deepcopy=False)
    differ = [len({t.values[i] for t in trials}) > 1 for i in range(len(objectives))]
    if not any(differ):  # the evaluator would draw equal bars: nothing separates the trials
        return pd.DataFrame(columns=columns), (
            f"No trials that differ: every trained feasible trial has the same {' and '.join(objectives)}, so no "
            "parameter separates the best trials from the rest.")
    targets = {"pareto": None}
    for i, (name, direction) in enumerate(zip(objectives, copy.directions, strict=True)):
        sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0  # the evaluator rewards low targets
        if differ[i]:  # an objective equal in every trial has no importances (the figure says it is left out)
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
