"""nasprune.search.record: one typed record per trial, one feasibility rule, one meaning of trained, one front.

Trials are built with ``optuna.trial.create_trial``; the Pareto helper is checked against a brute-force front
on seeded random points (ties included) and against Optuna's own ``best_trials``.
"""

from __future__ import annotations

import itertools
import random

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from nasprune.errors import NaspruneError
from nasprune.search.record import (
    ACCURACY_COST,
    TrialRecord,
    is_feasible,
    objective_names,
    pareto_front,
    records,
    study_objectives,
)

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
optuna.logging.set_verbosity(optuna.logging.WARNING)

SEARCH_ATTRS = {
    "macs": 12_345_678, "params": 54_321, "mflops": 12.345678, "schedule": "fast", "downsample_layers": [0, 2],
    "width": 0.5, "se_blocks": [1, 3], "se_count": 2, "criterion": "gamma", "feature_sizes": [112, 56, 56, 28],
    "layers": [{"name": "blocks.0.conv_pw", "before": 32, "after": 16}], "child_spec": {"name": "child"},
    "parent_hash": "abc", "parent_mode": "shared", "parent_cached": True, "val_acc_history": [0.5, 0.75],
    "val_acc": 0.75, "latency_ms": 1.25, "latency_ort_ms": 0.5, "artifact_id": "art-1", "seconds": 9.5,
    "feasible": True,
}


def _trial(values=(0.75, 12.3), state=TrialState.COMPLETE, attrs=None, constraints=None, **kw):
    if state != TrialState.COMPLETE:
        values = None
    return create_trial(state=state, values=list(values) if values else None, user_attrs=attrs or {},
                        constraints=constraints, **kw)


# -- from_trial ----------------------------------------------------------------------------------------------
def test_from_trial_reads_every_search_attribute():
    t = _trial(attrs={**SEARCH_ATTRS, "baseline": "fd_mobilenet_0.5"}, constraints={"budget": -27.7})
    r = TrialRecord.from_trial(t)
    assert (r.state, r.values, r.constraints, r.constraint) == (TrialState.COMPLETE, (0.75, 12.3),
                                                                {"budget": -27.7}, -27.7)
    assert (r.feasible, r.trained, r.val_acc, r.mflops, r.macs, r.params) == (True, True, 0.75, 12.345678,
                                                                              12_345_678, 54_321)
    assert (r.latency_ms, r.latency_ort_ms, r.schedule, r.width, r.se_blocks, r.se_count) == (1.25, 0.5, "fast", 0.5,
                                                                                            (1, 3), 2)
    assert (r.downsample_layers, r.criterion, r.baseline, r.artifact_id, r.seconds) == ((0, 2), "gamma",
                                                                                        "fd_mobilenet_0.5", "art-1",
                                                                                        9.5)
    assert r.layers == ({"name": "blocks.0.conv_pw", "before": 32, "after": 16},)
    assert (r.feature_sizes, r.child_spec, r.val_acc_history) == ((112, 56, 56, 28), {"name": "child"}, (0.5, 0.75))
    assert (r.parent_hash, r.parent_mode, r.parent_cached) == ("abc", "shared", True)
    assert r.duration_s is not None and r.duration_s >= 0


def test_from_trial_of_a_bare_trial_falls_back_to_values():
    r = TrialRecord.from_trial(_trial(values=(0.6, 20.0)))
    assert (r.val_acc, r.mflops, r.feasible, r.trained, r.constraint) == (0.6, 20.0, True, True, None)
    assert (r.macs, r.latency_ms, r.latency_ort_ms, r.schedule, r.baseline, r.se_count) == (None,) * 6
    assert r.layers == () and r.val_acc_history == ()
    assert TrialRecord.from_trial(_trial(attrs={"macs": 3_500_000})).mflops == 3.5
    assert TrialRecord.from_trial(_trial(attrs={"se_blocks": [0, 4, 5]})).se_count == 3
    assert TrialRecord.from_trial(_trial(attrs={"baseline": ""})).baseline is None


def test_a_pruned_trial_keeps_its_last_reported_accuracy_and_is_not_trained():
    r = TrialRecord.from_trial(_trial(state=TrialState.PRUNED, intermediate_values={0: 0.5, 3: 0.6, 1: 0.7}))
    assert (r.val_acc, r.values, r.trained) == (0.6, None, False)
    r = TrialRecord.from_trial(_trial(state=TrialState.PRUNED, attrs={"val_acc": 0.65},
                                      intermediate_values={0: 0.5}))
    assert (r.val_acc, r.trained) == (0.65, False)


def test_a_malformed_attribute_is_one_error_naming_it():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(_trial(attrs={"macs": "many"}))
    with pytest.raises(NaspruneError, match=r"^trial 0 has a malformed 'macs' attribute 'many'"):
        records(study)


def test_from_a_live_trial_inside_the_objective():
    seen = []

    def objective(trial):
        trial.set_user_attr("baseline", "mobilenet_v1_0.25")
        trial.set_user_attr("mflops", 30.0)
        trial.set_constraint("budget", -10.0)
        seen.append(TrialRecord.from_trial(trial))
        return 0.5, 30.0

    optuna.create_study(directions=["maximize", "minimize"]).optimize(objective, n_trials=1)
    r = seen[0]
    assert (r.number, r.state, r.baseline, r.mflops, r.feasible, r.trained) == (0, TrialState.RUNNING,
                                                                               "mobilenet_v1_0.25", 30.0, True, False)


# -- feasibility and trained ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("constraints", "attrs", "expected"), [
    ({"budget": 0.0}, {}, True),                        # on the budget is within it
    ({"budget": 0.5}, {}, False),
    ({"budget": -3.0}, {"feasible": False}, True),      # the constraint wins over the attribute
    ({"budget": -3.0, "latency": 1.0}, {}, False),      # every constraint must hold (Optuna's rule)
    (None, {"feasible": False}, False),                 # no constraint: the recorded attribute
    (None, {"feasible": True}, True),
    (None, {}, True),                                   # neither: feasible, as Optuna treats such a trial
])
def test_one_feasibility_rule(constraints, attrs, expected):
    t = _trial(attrs=attrs, constraints=constraints)
    assert is_feasible(t) is expected and TrialRecord.from_trial(t).feasible is expected


def test_old_list_constraints_count():
    t = _trial(system_attrs={"constraints": [10.0]})
    assert not TrialRecord.from_trial(t).feasible
    assert TrialRecord.from_trial(t).constraints == {"0": 10.0}


def test_the_dashboard_list_copy_is_left_out_of_the_constraints():
    t = _trial(system_attrs={"constraints": [-2.0], "constraints:budget": -2.0})
    assert TrialRecord.from_trial(t).constraints == {"budget": -2.0}


@pytest.mark.parametrize(("state", "constraints", "attrs", "trained"), [
    (TrialState.COMPLETE, {"budget": -1.0}, {"val_acc": 0.8}, True),
    (TrialState.COMPLETE, {"budget": 1.0}, {"val_acc": 0.8}, False),   # over budget, even if it has an accuracy
    (TrialState.COMPLETE, {"budget": 1.0}, {}, False),                 # over budget: values[0] is not an accuracy
    (TrialState.PRUNED, {"budget": -1.0}, {"val_acc": 0.8}, False),    # stopped early
    (TrialState.FAIL, {"budget": -1.0}, {"val_acc": 0.8}, False),
    (TrialState.RUNNING, {"budget": -1.0}, {"val_acc": 0.8}, False),
])
def test_one_meaning_of_trained(state, constraints, attrs, trained):
    r = TrialRecord.from_trial(_trial(state=state, attrs=attrs, constraints=constraints))
    assert r.trained is trained
    assert (r.val_acc is None) == (state == TrialState.COMPLETE and not attrs)


# -- the Pareto front -----------------------------------------------------------------------------------------
def _record(number, *values, trained=True):
    return TrialRecord(number=number, state=TrialState.COMPLETE if trained else TrialState.PRUNED,
                       values=tuple(values), val_acc=values[0], mflops=values[1],
                       latency_ms=values[2] if len(values) > 2 else None)


def _brute_force(pool, directions):
    def better_or_equal(a, b, d):
        return a >= b if d == MAX else a <= b

    def dominates(p, q):
        pairs = list(zip(p.values, q.values, directions, strict=True))
        return all(better_or_equal(a, b, d) for a, b, d in pairs) and any(a != b for a, b, _ in pairs)

    trained = [p for p in pool if p.trained]
    return {p.number for p in trained if not any(dominates(q, p) for q in trained)}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("directions", [(MAX, MIN), (MAX, MIN, MIN), (MIN, MIN, MIN)])
def test_pareto_front_equals_the_brute_force_front(seed, directions):
    rng = random.Random(seed)
    pool = [_record(i, *(rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for _ in directions), trained=rng.random() > 0.2)
            for i in range(30)]  # five levels per objective: many ties and duplicates
    objectives = [(f"value{i}", d) for i, d in enumerate(directions)]
    front = pareto_front(pool, objectives)
    assert {r.number for r in front} == _brute_force(pool, directions)
    assert [(r.mflops, -r.val_acc, r.number) for r in front] == sorted((r.mflops, -r.val_acc, r.number) for r in front)


@pytest.mark.parametrize(("points", "directions", "expected"), [
    ([(0.9, 10), (0.8, 10), (0.9, 5), (0.95, 20)], (MAX, MIN), [2, 3]),
    ([(0.5, 1), (0.5, 1)], (MAX, MIN), [0, 1]),                    # duplicates do not dominate each other
    ([(1, 1, 1), (0, 0, 2), (1, 1, 2)], (MIN, MIN, MIN), [1, 0]),   # sorted by the second value, then number
])
def test_pareto_front_small_cases(points, directions, expected):
    pool = [_record(i, *p) for i, p in enumerate(points)]
    front = pareto_front(pool, [(f"value{i}", d) for i, d in enumerate(directions)])
    assert [r.number for r in front] == expected


def test_pareto_front_matches_optuna_best_trials():
    rng = random.Random(3)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for _ in range(40):
        over = rng.random() < 0.25
        study.add_trial(_trial(values=(rng.choice([0.7, 0.8, 0.9]), rng.choice([10.0, 20.0, 30.0]),
                                       rng.choice([1.0, 2.0])), constraints={"budget": 1.0 if over else -1.0}))
    expected = {t.number for t in study.best_trials}
    assert {r.number for r in pareto_front(records(study), study_objectives(study))} == expected


def test_pareto_front_by_name_and_missing_values():
    pool = [_record(0, 0.8, 10.0), _record(1, 0.9, 20.0, 1.0), _record(2, 0.7, 5.0, 0.5), _record(3, 0.95, 40.0)]
    assert [r.number for r in pareto_front(pool)] == [2, 0, 1, 3]  # ACCURACY_COST
    by_latency = pareto_front(pool, [("val_acc", "maximize"), ("latency_ms", "minimize")])
    assert [r.number for r in by_latency] == [2, 1, 3]  # 0 has no latency (worst): 1 dominates it
    assert pareto_front([], ACCURACY_COST) == []
    with pytest.raises(ValueError, match="objective 'accuracy' is not a numeric trial attribute"):
        pareto_front(pool, [("accuracy", "maximize")])
    with pytest.raises(ValueError, match="direction 'up' is invalid"):
        pareto_front(pool, [("val_acc", "up")])


def test_study_objective_names():
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert objective_names(study) == ("value0", "value1")
    study.set_user_attr("objectives", ["val_acc", "mflops"])
    assert objective_names(study) == ("val_acc", "mflops")
    assert study_objectives(study) == (("value0", MAX), ("value1", MIN))
    study.set_user_attr("objectives", ["val_acc"])  # does not match the directions: not used
    assert objective_names(study) == ("value0", "value1")


def test_records_of_a_study_by_state():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE):
        study.add_trial(_trial(state=state))
    assert [r.number for r in records(study)] == [0, 1, 2, 3]
    assert [r.number for r in records(study, (TrialState.COMPLETE,))] == [0, 3]
    assert list(itertools.compress(range(4), (r.trained for r in records(study)))) == [0, 3]


def test_report_search_and_export_read_one_front():
    from report_study import PARETO, TRAINED, create_study

    from nasprune.export import select_trial
    from nasprune.report import build_tables
    from nasprune.search.runner import pareto_table
    from nasprune.search.table import trials_frame

    study = create_study(None)  # in memory: 6 trained, 2 over budget, 1 stopped early, 1 failed
    tables = build_tables(study)
    assert tables.pareto["number"].tolist() == pareto_table(study)["trial"].tolist() == PARETO
    assert select_trial(study, "knee").trial.number in PARETO
    assert select_trial(study, "best").trial.number == max(TRAINED, key=lambda n: TRAINED[n][0])
    trained = set(tables.trials.loc[tables.trials["trained"], "number"])
    frame = trials_frame(study)
    assert trained == set(frame.loc[frame["trained"], "number"]) == set(TRAINED)
