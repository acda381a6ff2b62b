"""One typed record per trial: what the search wrote, read back once, with one meaning of feasible and trained.

:mod:`nasprune.search.objective` writes a trial's user attributes (the table in ``docs/design.md``) and its
budget constraint; every reader (report, export, runner, CLI, benchmarks) turns a trial into a
:class:`TrialRecord` with :meth:`TrialRecord.from_trial` and asks it, instead of re-parsing ``user_attrs``.

The rules, in one place:

* **feasible** (:func:`is_feasible`): every constraint value ``<= 0`` (the objective writes one, ``budget =
  mflops - budget_mflops``; this is Optuna's own rule). A trial without constraints falls back to its recorded
  ``feasible`` attribute; a trial with neither (not written by ``nasprune search``: added by hand, or failed
  before it was counted) is feasible, as Optuna treats a trial without constraints. A tighter budget (``export
  --budget``) is the reader's own filter on :attr:`TrialRecord.mflops`.
* **trained** (:attr:`TrialRecord.trained`): COMPLETE, feasible and with a validation accuracy. Over-budget trials
  are never trained; a trial stopped early (PRUNED) is not a finished network.
* **re-rank results** (:attr:`TrialRecord.rerank`): Optuna refuses to change a finished trial, so
  :mod:`nasprune.search.rerank` keeps each trial's rung results in the *study* user attribute
  ``rerank:<number>`` (a list of :class:`RungResult` mappings); :func:`records` passes them in, and
  :func:`rerank_results` reads them.
* **Pareto front** (:func:`pareto_front`): the trained records no other trained record dominates (at least as
  good in every objective and better in one). Equal points do not dominate each other, so duplicates are all
  kept, as in Optuna's ``study.best_trials``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import TrialState

from nasprune.errors import NaspruneError
from nasprune.search.constraints import named_constraints

__all__ = ["ACCURACY_COST", "RERANK_PREFIX", "RungResult", "TrialRecord", "is_feasible", "objective_names",
           "pareto_front", "records", "rerank_results", "study_objectives", "write_attrs"]

Objectives = Sequence[tuple[str, StudyDirection | str]]

# The front every export and the 2-D plots use: accuracy up, MFLOPs down.
ACCURACY_COST: tuple[tuple[str, StudyDirection], ...] = (("val_acc", StudyDirection.MAXIMIZE),
                                                         ("mflops", StudyDirection.MINIMIZE))


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _layers(value: Any) -> tuple[dict[str, Any], ...]:
    return tuple(dict(d) for d in value if isinstance(d, Mapping) and {"name", "before", "after"} <= set(d))


# user attribute -> converter; a missing (or None) attribute is None in the record.
PLAIN_ATTRS: dict[str, Callable[[Any], Any]] = {
    "macs": int, "params": int, "latency_ms": float, "latency_ort_ms": float, "schedule": str, "width": float,
    "se_blocks": _ints, "downsample_layers": _ints, "criterion": str, "artifact_id": str, "child_spec": dict,
    "feature_sizes": _ints, "parent_hash": str, "parent_mode": str, "parent_cached": bool, "seconds": float,
    "latency_ort_seconds": float, "seed": int, "family": str, "seed_design": str, "keep_scale": float,
    "ratios_asked": dict, "ratios_got": dict, "parent_seconds": float, "finetune_seconds": float,
    "latency_ort_error": str, "proxy": str, "recalibrate_batches": int, "network": str, "duplicate_of": int,
}
# the other attributes the search writes, each read by its own rule in TrialRecord.from_trial
OTHER_ATTRS: dict[str, Callable[[Any], Any]] = {
    "mflops": float, "val_acc": float, "se_count": int, "layers": list, "val_acc_history": list, "feasible": bool,
    "baseline": str,
}


def write_attrs(trial, **attrs: Any) -> None:
    """Write a running trial's attributes: the one writer of what :meth:`TrialRecord.from_trial` reads.

    Every key must be one the record reads (:data:`PLAIN_ATTRS`, :data:`OTHER_ATTRS`) and every value must pass
    its reader's conversion, so a record written here always reads back.

    Raises:
        ValueError: an unknown key, or a value its reader would refuse (a programming error, not user input).
    """
    for key, value in attrs.items():
        convert = PLAIN_ATTRS.get(key) or OTHER_ATTRS.get(key)
        if convert is None:
            raise ValueError(f"unknown trial attribute {key!r}: expected one of "
                             f"{', '.join(sorted({*PLAIN_ATTRS, *OTHER_ATTRS}))}")
        if value is not None:
            try:
                convert(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"trial attribute {key!r}: {value!r} does not read back ({exc})") from None
        trial.set_user_attr(key, value)


RERANK_PREFIX = "rerank:"  # study user attr rerank:<trial number> = [RungResult.to_dict(), ...]


@dataclass(frozen=True, kw_only=True)
class RungResult:
    """One trial's result at one rung of a re-rank (:mod:`nasprune.search.rerank`).

    Attributes:
        rung: the rung's index (0: the first, with every re-ranked trial).
        epochs: epochs each training of this rung ran.
        seeds: trainings (seeds) whose accuracies were averaged.
        source: ``weights`` (fine-tuned from the trial's checkpoint) or ``scratch`` (trained from a fresh init).
        val_acc: mean validation accuracy over the seeds.
        val_accs: each seed's validation accuracy (the first seed's weights are the ones kept).
        seconds: wall time of the rung's trainings.
        artifact_id: the study artifact holding the first seed's weights (``None``: not kept).
    """

    rung: int
    epochs: int
    seeds: int
    source: str
    val_acc: float
    val_accs: tuple[float, ...] = ()
    seconds: float | None = None
    artifact_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "epochs": self.epochs, "seeds": self.seeds, "from": self.source,
                "val_acc": self.val_acc, "val_accs": list(self.val_accs), "seconds": self.seconds,
                "artifact_id": self.artifact_id}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RungResult:
        seconds, artifact = raw.get("seconds"), raw.get("artifact_id")
        return cls(rung=int(raw["rung"]), epochs=int(raw["epochs"]), seeds=int(raw["seeds"]), source=str(raw["from"]),
                   val_acc=float(raw["val_acc"]), val_accs=_floats(raw.get("val_accs") or ()),
                   seconds=None if seconds is None else float(seconds),
                   artifact_id=None if artifact is None else str(artifact))


def _rung_results(number: int, value: Any) -> tuple[RungResult, ...]:
    try:
        return tuple(sorted((RungResult.from_dict(v) for v in value), key=lambda r: r.rung))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise NaspruneError(f"study attribute '{RERANK_PREFIX}{number}' is malformed ({value!r}): it was not "
                            "written by 'nasprune rerank'") from None


def rerank_results(study_attrs: Mapping[str, Any]) -> dict[int, tuple[RungResult, ...]]:
    """Every trial's re-rank results, by trial number, from a study's user attributes.

    Raises:
        NaspruneError: a ``rerank:<number>`` attribute that does not hold rung results.
    """
    out = {}
    for key, value in study_attrs.items():
        number = key.removeprefix(RERANK_PREFIX)
        if key.startswith(RERANK_PREFIX) and number.isdigit() and value:
            out[int(number)] = _rung_results(int(number), value)
    return out


def is_feasible(trial) -> bool:
    """The feasibility rule (module doc): constraints, else the ``feasible`` attribute, else feasible."""
    constraints = trial.constraints
    if constraints:
        return all(v <= 0.0 for v in constraints.values())
    return bool(trial.user_attrs.get("feasible", True))


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """A trial as nasprune reads it. Attributes a trial lacks are ``None`` (empty tuples for ``layers`` and
    ``val_acc_history``); read-only by convention (``constraints``, ``child_spec`` and ``layers`` hold dicts).

    Attributes:
        number: the trial's number.
        state: its Optuna state (``RUNNING`` for a live trial).
        values: its objective values (``None`` until it is COMPLETE).
        constraints: constraint values by name (the dashboard's list copy left out).
        feasible: :func:`is_feasible`.
        val_acc: the ``val_acc`` attribute; else, for a PRUNED trial, its last reported intermediate value; else,
            for a COMPLETE feasible trial, ``values[0]`` (the search's first objective is accuracy).
        mflops: the ``mflops`` attribute, else ``macs / 1e6``, else ``values[1]``.
        se_count: the ``se_count`` attribute, else ``len(se_blocks)``.
        baseline: the zoo name of an enqueued hand-designed baseline (``None`` for a searched trial).
        layers: ``{name, before, after}`` channels per prunable layer, parent -> child.
        val_acc_history: validation accuracy after each fine-tune epoch.
        rerank: the trial's re-rank results by rung (:class:`RungResult`; empty: not re-ranked), from the study
            attribute ``rerank:<number>`` (given by :func:`records` or the caller of :meth:`from_trial`).
        duration_s: seconds from Optuna's start to complete stamps (``seconds`` is the objective's own timing).
        macs, params, latency_ms, latency_ort_ms, schedule, width, se_blocks, downsample_layers, criterion,
        artifact_id, child_spec, feature_sizes, parent_hash, parent_mode, parent_cached, seconds,
            latency_ort_seconds, seed, family, seed_design, keep_scale, ratios_asked, ratios_got, parent_seconds,
            finetune_seconds, latency_ort_error, proxy, recalibrate_batches, network, duplicate_of: the user
            attributes of the same name (:data:`PLAIN_ATTRS`;
            ``docs/design.md`` and ``docs/search.md``).
    """

    number: int
    state: TrialState
    values: tuple[float, ...] | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    feasible: bool = True
    val_acc: float | None = None
    mflops: float | None = None
    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    latency_ort_ms: float | None = None
    schedule: str | None = None
    width: float | None = None
    se_blocks: tuple[int, ...] | None = None
    se_count: int | None = None
    downsample_layers: tuple[int, ...] | None = None
    criterion: str | None = None
    baseline: str | None = None
    artifact_id: str | None = None
    child_spec: dict[str, Any] | None = None
    layers: tuple[dict[str, Any], ...] = ()
    feature_sizes: tuple[int, ...] | None = None
    parent_hash: str | None = None
    parent_mode: str | None = None
    parent_cached: bool | None = None
    val_acc_history: tuple[float, ...] = ()
    seconds: float | None = None
    latency_ort_seconds: float | None = None  # what measuring latency_ort_ms took (ONNX export included)
    duration_s: float | None = None
    seed: int | None = None
    family: str | None = None          # the block family (dws or ir)
    seed_design: str | None = None     # the hand design an enqueued seed trial is (its pruned version: "...@band")
    keep_scale: float | None = None    # the budget band's global keep-scale (1.0: the ratios as sampled)
    ratios_asked: dict[str, float] | None = None  # per-layer ratios the sampler asked for (width scaling included)
    ratios_got: dict[str, float] | None = None    # the ratios the child was cut with, after the band
    parent_seconds: float | None = None   # getting the parent (training it, or reading the cache)
    finetune_seconds: float | None = None  # the proxy: recalibration and fine-tuning
    latency_ort_error: str | None = None   # why the ONNX export failed (then no latency_ort_ms)
    proxy: str | None = None               # oneshot+recal, oneshot+ft1, shared+ft4, shared+recal (objective.proxy_name)
    recalibrate_batches: int | None = None  # training batches the BN statistics were re-estimated from
    network: str | None = None             # what makes two trials one network (objective.network_key)
    duplicate_of: int | None = None        # the trial whose evaluation of the same network this one reuses
    rerank: tuple[RungResult, ...] = ()

    @classmethod
    def from_trial(cls, trial, rerank: Sequence[RungResult] = ()) -> TrialRecord:
        """Read a :class:`~optuna.trial.FrozenTrial` or a live :class:`~optuna.trial.Trial`.

        Args:
            trial: the trial.
            rerank: its re-rank results (:func:`rerank_results` of the study's user attributes).

        Raises:
            NaspruneError: an attribute the search writes holds a value of the wrong type.
        """
        attrs = trial.user_attrs
        state = getattr(trial, "state", TrialState.RUNNING)
        values = getattr(trial, "values", None)
        plain = {key: _convert(trial.number, key, attrs.get(key), convert) for key, convert in PLAIN_ATTRS.items()}
        feasible = is_feasible(trial)
        return cls(
            number=trial.number, state=state, values=tuple(values) if values else None,
            constraints=_constraints(trial), feasible=feasible, **plain,
            val_acc=_accuracy(trial, attrs, state, values, feasible), mflops=_mflops(trial.number, attrs, values),
            se_count=_se_count(trial.number, attrs, plain["se_blocks"]), baseline=attrs.get("baseline") or None,
            layers=_convert(trial.number, "layers", attrs.get("layers"), _layers) or (),
            val_acc_history=_convert(trial.number, "val_acc_history", attrs.get("val_acc_history"), _floats) or (),
            duration_s=_duration(trial), rerank=tuple(rerank),
        )

    @property
    def trained(self) -> bool:
        """COMPLETE, feasible and with a validation accuracy: a network trained within the budget."""
        return self.state == TrialState.COMPLETE and self.feasible and self.val_acc is not None

    @property
    def constraint(self) -> float | None:
        """The largest constraint value (``> 0``: over budget by that much), ``None`` without constraints."""
        return max(self.constraints.values()) if self.constraints else None

    def objective(self, key: str) -> float:
        """The value compared on ``key``: a numeric attribute (``val_acc``, ``mflops``, ``params``,
        ``latency_ms``, ...) or ``value<i>`` for ``values[i]``; NaN when the trial lacks it."""
        index = re.fullmatch(r"value(\d+)", key)
        if index:
            i = int(index.group(1))
            value = self.values[i] if self.values is not None and i < len(self.values) else None
        elif key in NUMERIC_FIELDS:
            value = getattr(self, key)
        else:
            raise ValueError(f"objective {key!r} is not a numeric trial attribute: expected value<i> or one of "
                             f"{', '.join(NUMERIC_FIELDS)}")
        return math.nan if value is None else float(value)


NUMERIC_FIELDS: tuple[str, ...] = ("val_acc", "mflops", "macs", "params", "latency_ms", "latency_ort_ms", "width",
                                   "se_count", "seconds", "duration_s")


def _convert(number: int, key: str, value: Any, convert: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise NaspruneError(f"trial {number} has a malformed {key!r} attribute {value!r}: it was not written by "
                            "'nasprune search'") from None


def _constraints(trial) -> dict[str, float]:
    return named_constraints(trial) if hasattr(trial, "system_attrs") else dict(trial.constraints)


def _accuracy(trial, attrs: Mapping[str, Any], state: TrialState, values, feasible: bool) -> float | None:
    if attrs.get("val_acc") is not None:
        return _convert(trial.number, "val_acc", attrs["val_acc"], float)
    reported = getattr(trial, "intermediate_values", None)
    if state == TrialState.PRUNED and reported:
        return float(reported[max(reported)])
    if state == TrialState.COMPLETE and feasible and values:
        return float(values[0])
    return None  # over budget, or not finished: never trained


def _mflops(number: int, attrs: Mapping[str, Any], values) -> float | None:
    if attrs.get("mflops") is not None:
        return _convert(number, "mflops", attrs["mflops"], float)
    if attrs.get("macs") is not None:
        return _convert(number, "macs", attrs["macs"], float) / 1e6
    return float(values[1]) if values and len(values) > 1 else None


def _se_count(number: int, attrs: Mapping[str, Any], se_blocks: tuple[int, ...] | None) -> int | None:
    if attrs.get("se_count") is not None:
        return _convert(number, "se_count", attrs["se_count"], int)
    return len(se_blocks) if se_blocks is not None else None


def _duration(trial) -> float | None:
    start, end = getattr(trial, "datetime_start", None), getattr(trial, "datetime_complete", None)
    return (end - start).total_seconds() if start is not None and end is not None else None


# -- reading a study ------------------------------------------------------------------------------------------
def records(study, states: Sequence[TrialState] | None = None) -> list[TrialRecord]:
    """Every trial of ``study`` (or those in ``states``) as a record, by number, with its re-rank results."""
    trials = study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)
    reranked = rerank_results(study.user_attrs)
    return [TrialRecord.from_trial(t, reranked.get(t.number, ())) for t in trials]


def objective_names(study) -> tuple[str, ...]:
    """The study's objective names: its ``objectives`` attribute, else its metric names, else ``value0, ...``."""
    names = study.user_attrs.get("objectives") or study.metric_names
    if names and len(names) == len(study.directions):
        return tuple(str(n) for n in names)
    return tuple(f"value{i}" for i in range(len(study.directions)))


def study_objectives(study) -> tuple[tuple[str, StudyDirection], ...]:
    """The study's own objectives as Optuna compares them: ``(value<i>, direction)`` for every ``values[i]``."""
    return tuple((f"value{i}", d) for i, d in enumerate(study.directions))


# -- the Pareto front ------------------------------------------------------------------------------------------
def _direction(direction: StudyDirection | str) -> StudyDirection:
    if isinstance(direction, StudyDirection):
        return direction
    try:
        return StudyDirection[str(direction).upper()]
    except KeyError:
        raise ValueError(f"direction {direction!r} is invalid: expected 'maximize' or 'minimize'") from None


def _losses(pool: Sequence[TrialRecord], objectives: Objectives) -> np.ndarray:
    """Everything minimised; a missing value is the worst possible."""
    signs = [-1.0 if _direction(d) == StudyDirection.MAXIMIZE else 1.0 for _, d in objectives]
    loss = np.array([[s * r.objective(key) for (key, _), s in zip(objectives, signs, strict=True)] for r in pool],
                    dtype=float).reshape(len(pool), len(objectives))
    return np.where(np.isnan(loss), np.inf, loss)


def pareto_front(candidates: Iterable[TrialRecord], objectives: Objectives = ACCURACY_COST) -> list[TrialRecord]:
    """The trained records no other trained record dominates, cheapest first.

    Args:
        candidates: records (untrained ones are left out).
        objectives: ``(key, direction)`` pairs; ``key`` as in :meth:`TrialRecord.objective`, ``direction`` a
            :class:`~optuna.study.StudyDirection` or ``"maximize"`` / ``"minimize"``. Default: accuracy up,
            MFLOPs down; :func:`study_objectives` gives the study's own (its ``values``, as ``best_trials``).

    Returns:
        The front sorted by MFLOPs, then accuracy (higher first), then number. Records with equal values do not
        dominate each other, so duplicates are all on the front (as in Optuna).
    """
    pool = [r for r in candidates if r.trained]
    loss = _losses(pool, objectives)
    front = [r for r, row in zip(pool, loss, strict=True)
             if not ((loss <= row).all(axis=1) & (loss < row).any(axis=1)).any()]
    return sorted(front, key=_cheapest_first)


def _cheapest_first(r: TrialRecord) -> tuple[float, float, int]:
    mflops = r.mflops if r.mflops is not None else math.inf
    return mflops, -(r.val_acc if r.val_acc is not None else -math.inf), r.number
