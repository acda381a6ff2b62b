"""A study's trials as one pandas table: the data behind ``nasprune trials`` (and its CSV and JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

from nasprune.search.record import records as all_records

__all__ = ["trials_frame", "trials_records"]

ATTRS = ("number", "state", "values", "params", "user_attrs", "datetime_start", "datetime_complete", "duration")


def _objective_names(study) -> list[str]:
    names = study.user_attrs.get("objectives")
    return list(names) if names else [f"{i}" for i in range(len(study.directions))]


def trials_frame(study, *, encode: bool = True):
    """One row per trial; columns ``number, state, values_<objective>, constraint_<name>, feasible, trained,
    params_<name>, user_attrs_<key>, duration_s`` (``feasible`` and ``trained``: the rules of
    :class:`~nasprune.search.record.TrialRecord`). With ``encode``, list and dict attributes become JSON strings
    (for CSV)."""
    import pandas as pd

    frame = study.trials_dataframe(attrs=ATTRS, multi_index=False)
    if frame.empty:
        return frame
    names = _objective_names(study)
    frame = frame.rename(columns={f"values_{i}": f"values_{n}" for i, n in enumerate(names)})
    if "values" in frame.columns:  # a single-objective study
        frame = frame.rename(columns={"values": f"values_{names[0]}"})
    records = all_records(study)
    keys = sorted({k for r in records for k in r.constraints})
    position = frame.columns.get_loc(f"values_{names[-1]}") + 1 if f"values_{names[-1]}" in frame else 2
    for column, values in reversed(list(_rerank_columns(study, records).items())):
        frame.insert(position, column, values)
    frame.insert(position, "trained", [r.trained for r in records])
    frame.insert(position, "feasible", [r.feasible for r in records])
    for key in reversed(keys):
        frame.insert(position, f"constraint_{key}", [r.constraints.get(key, math.nan) for r in records])
    if "duration" in frame.columns:
        # a study whose every trial is RUNNING or WAITING (killed in its first trial) has no duration at all:
        # the column is then all None, not timedeltas
        frame["duration"] = pd.to_timedelta(frame["duration"]).dt.total_seconds()
        frame = frame.rename(columns={"duration": "duration_s"})
    if encode:
        for col in frame.columns:
            frame[col] = frame[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return frame.reset_index(drop=True)


def _rerank_columns(study, records) -> dict[str, list]:
    """``rerank_rung`` (the deepest rung a trial reached, NaN if it was not re-ranked), ``rerank_epochs`` and
    ``rerank_val_acc`` there, and ``rerank_winner`` (the survivor that ``export --trial best`` takes)."""
    from nasprune.search.rerank import stored_plan

    plan = stored_plan(study, [r for r in records if r.trained])
    winner = plan.winner if plan is not None and plan.complete else None
    if plan is None:
        last = {r.number: max(r.rerank, key=lambda x: x.rung) for r in records if r.rerank}
    else:  # only the results of the stored plan's settings (epochs, seeds, from); a deeper rung replaces
        last = {}
        for rung in plan.rungs:
            last.update(rung.results)
    return {"rerank_rung": [last[r.number].rung if r.number in last else math.nan for r in records],
            "rerank_epochs": [last[r.number].epochs if r.number in last else math.nan for r in records],
            "rerank_val_acc": [last[r.number].val_acc if r.number in last else math.nan for r in records],
            "rerank_winner": [r.number == winner for r in records]}


def _plain(value: Any) -> Any:
    """``value`` as strict JSON data: NaN and infinities (a value, a constraint or an attribute, at any depth)
    become ``None`` (JSON ``null``: JSON has no such numbers), timestamps ISO strings, numpy scalars Python's."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return None if str(value) == "NaT" else value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trials_records(study) -> list[dict[str, Any]]:
    """The same table as strict JSON records (attributes keep their list and dict values; NaN and infinite
    numbers are ``None``)."""
    frame = trials_frame(study, encode=False)
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
