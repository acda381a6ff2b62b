"""Which trial to export: ``best``, ``knee`` or a trial number, optionally under a tighter budget.

Trials are read through :class:`~nasprune.search.record.TrialRecord`: ``best`` and ``knee`` choose among the
trained trials (complete, feasible by the record's rule, with an accuracy) whose MFLOPs are within
``--budget``; ``knee`` is taken on :func:`~nasprune.search.record.pareto_front` (accuracy up, MFLOPs down).

``best`` in a re-ranked study (:mod:`nasprune.search.rerank`) is the re-rank's winner: the survivor of its last
rung (of its deepest complete rung while it is unfinished), exported with that rung's weights; a study without a
re-rank, or whose winner is over ``--budget``, keeps the proxy rule (the most accurate trained trial).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from nasprune.errors import NaspruneError

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from nasprune.search.record import TrialRecord

__all__ = ["Selection", "describe_numbers", "knee_index", "select_trial"]


class Selection(NamedTuple):
    """The chosen trial and a one-line reason (shown by the CLI and in the model card).

    ``evidence`` lists what a re-ranked choice rests on (proxy rank, each rung's accuracy and place);
    ``artifact_id`` names the weights it was chosen with (``None``: the trial's own checkpoint) and
    ``val_acc`` their validation accuracy.
    """

    trial: FrozenTrial
    rule: str
    reason: str
    evidence: tuple[str, ...] = ()
    artifact_id: str | None = None
    val_acc: float | None = None


def describe_numbers(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (for error messages naming the trials that exist)."""
    numbers = sorted(numbers)
    if not numbers:
        return "none"
    parts, start, prev = [], numbers[0], numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _completed(study: Study) -> dict[int, tuple[FrozenTrial, TrialRecord]]:
    """The completed trials with their records (re-rank results included), by number."""
    from optuna.trial import TrialState

    from nasprune.search.record import TrialRecord, rerank_results

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reranked = rerank_results(study.user_attrs)
    return {t.number: (t, TrialRecord.from_trial(t, reranked.get(t.number, ()))) for t in trials}


def _within(record: TrialRecord, budget: float | None) -> bool:
    return budget is None or (record.mflops is not None and record.mflops <= budget)


def knee_index(points: Sequence[tuple[float, float]]) -> int:
    """Index of the knee of a front given as ``(mflops, accuracy)`` points sorted by MFLOPs.

    Both axes are scaled to [0, 1] over the front; the knee is the point farthest above the chord from the
    cheapest to the most accurate point, i.e. the largest ``acc_scaled - mflops_scaled`` (ties: the cheaper).
    A front of one or two points has no knee; the most accurate point (the last) is returned.
    """
    if len(points) <= 2:
        return len(points) - 1
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    dx = (max(xs) - min(xs)) or 1.0
    dy = (max(ys) - min(ys)) or 1.0
    gains = [(y - min(ys)) / dy - (x - min(xs)) / dx for x, y in zip(xs, ys, strict=True)]
    return max(range(len(points)), key=lambda i: (gains[i], -i))


def _pool(study: Study, budget: float | None) -> tuple[dict[int, FrozenTrial], list[TrialRecord]]:
    """The trained records within ``budget``, and the trials by number."""
    completed = _completed(study)
    pool = [r for _, r in completed.values() if r.trained and _within(r, budget)]
    if not pool:
        within = f" within {budget:g} MFLOPs" if budget is not None else ""
        raise NaspruneError(
            f"study {study.study_name!r} has no feasible completed trial{within} ({len(completed)} completed): "
            "run more trials ('nasprune search') or pass a larger --budget / an explicit --trial N"
        )
    return {n: t for n, (t, _) in completed.items()}, pool


def _reranked(study: Study, trials: dict[int, FrozenTrial], pool: list[TrialRecord]) -> Selection | str | None:
    """The re-rank's winner if it is in ``pool``; else why not (a note for the proxy's reason), ``None`` for a
    study that was never re-ranked."""
    from nasprune.search.rerank import build_plan, evidence, stored_config

    config = stored_config(study.user_attrs)
    if config is None or not config.enabled:
        return None
    plan = build_plan([r for _, r in _completed(study).values()], config)
    rung = plan.decided
    if rung is None:
        return "the re-rank has no finished rung yet: 'nasprune rerank' completes it"
    winner = plan.winner
    if winner not in {r.number for r in pool}:
        return f"the re-rank's winner, trial {winner}, is over --budget"
    result = rung.results[winner]
    last = len(plan.sizes) - 1
    state = (f"survivor of all {len(plan.sizes)} rungs" if plan.complete
             else f"best of rung {rung.index} of 0-{last} (the re-rank is unfinished: 'nasprune rerank' completes it)")
    reason = (f"re-ranked winner: {state} of successive halving over the top {plan.sizes[0].size} trained trials "
              f"(proxy rank {plan.proxy_rank[winner]})")
    own = result.val_accs[0] if result.val_accs else result.val_acc
    return Selection(trials[winner], "best", reason, evidence(plan, winner), result.artifact_id, own)


def _select_best(study: Study, budget: float | None) -> Selection:
    trials, pool = _pool(study, budget)
    reranked = _reranked(study, trials, pool)
    if isinstance(reranked, Selection):
        return reranked
    best = min(pool, key=lambda r: (-r.val_acc, r.mflops, r.number))
    plural = "s" if len(pool) != 1 else ""
    note = f" ({reranked})" if reranked else ""
    return Selection(trials[best.number], "best", f"most accurate of {len(pool)} feasible trial{plural}{note}")


def _select_knee(study: Study, budget: float | None) -> Selection:
    from nasprune.search.record import ACCURACY_COST, pareto_front

    trials, pool = _pool(study, budget)
    front = pareto_front(pool, ACCURACY_COST)
    i = knee_index([(r.mflops, r.val_acc) for r in front])
    return Selection(trials[front[i].number], "knee", f"knee of the feasible Pareto front ({len(front)} trials)")


def _select_number(study: Study, number: int, budget: float | None) -> Selection:
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        raise NaspruneError(f"trial {number} does not exist in study {study.study_name!r}: "
                            f"trials are {describe_numbers(list(by_number))}")
    trial = by_number[number]
    completed = _completed(study)
    if number not in completed:
        raise NaspruneError(f"trial {number} of study {study.study_name!r} is {trial.state.name}, not COMPLETE: "
                            f"completed trials are {describe_numbers(list(completed))}")
    record = completed[number][1]
    if not _within(record, budget):
        needs = "an unknown number of" if record.mflops is None else f"{record.mflops:.2f}"
        raise NaspruneError(f"trial {number} needs {needs} MFLOPs, over --budget {budget:g}")
    state = "feasible" if record.feasible else "over the study's budget"
    return Selection(trial, "number", f"trial {number} as requested ({state})")


SELECTORS = {"best": _select_best, "knee": _select_knee}


def select_trial(study: Study, which: str | int = "best", budget_mflops: float | None = None) -> Selection:
    """Pick the trial to export.

    Args:
        study: a multi-objective study following the search contract (values[0] accuracy, values[1] MFLOPs).
        which: ``"best"`` (most accurate feasible trial; ties go to fewer MFLOPs, then the lower number),
            ``"knee"`` (see :func:`knee_index`) or a trial number.
        budget_mflops: a budget tighter than the study's; trials above it are not considered.

    Raises:
        NaspruneError: nothing feasible, unknown or unfinished trial number, or an unknown rule.
    """
    study_budget = study.user_attrs.get("budget_mflops")
    if budget_mflops is not None and study_budget is not None and budget_mflops > study_budget:
        raise NaspruneError(f"--budget {budget_mflops:g} is looser than study {study.study_name!r}'s budget "
                            f"{study_budget:g} MFLOPs: expected a value <= {study_budget:g}")
    if isinstance(which, int) or str(which).isdigit():
        return _select_number(study, int(which), budget_mflops)
    if which not in SELECTORS:
        raise NaspruneError(f"--trial {which!r} is invalid: expected one of {', '.join(SELECTORS)} or a trial number")
    return SELECTORS[which](study, budget_mflops)
