"""The report's tables against a hand-built study whose Pareto front and hypervolume are known exactly."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from report_study import BUDGET, FINAL_HYPERVOLUME, OVER_BUDGET, PARETO, TRAINED, create_study, feature_sizes

from nasprune.errors import NaspruneError
from nasprune.report import build_sections, build_tables, hypervolume_2d


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> optuna.Study:
    return create_study(f"sqlite:///{tmp_path_factory.mktemp('report') / 'demo.db'}")


@pytest.fixture(scope="module")
def tables(study):
    return build_tables(study)


def test_trials_table_has_every_finished_trial_with_its_status(tables):
    trials = tables.trials.set_index("number")
    assert list(trials.index) == [0, 1, 2, 3, 4, 5, 6, 7, 9]  # 8 failed
    expected = {0: "dominated", 1: "pareto", 2: "dominated", 3: "over budget", 4: "pareto", 5: "stopped early",
                6: "pareto", 7: "pareto", 9: "over budget"}
    assert trials["status"].to_dict() == expected
    assert set(trials.index[~trials["feasible"]]) == set(OVER_BUDGET)
    assert set(trials.index[trials["trained"]]) == set(TRAINED)  # not the over-budget or the stopped trial
    assert trials.loc[3, "constraint"] == pytest.approx(55.0 - BUDGET)
    assert trials.loc[0, "baseline"] == "fd_mobilenet" and trials.loc[7, "baseline"] == "mobilenet_v1"
    assert (trials.drop(index=[0, 7])["baseline"] == "").all()
    assert tables.state_counts == {"COMPLETE": 8, "PRUNED": 1, "FAIL": 1}


def test_accuracy_and_cost_columns(tables):
    trials = tables.trials.set_index("number")
    for number, (acc, mflops, width, schedule, *_rest) in TRAINED.items():
        row = trials.loc[number]
        assert (row["val_acc"], row["mflops"], row["width"], row["schedule"]) == (acc, mflops, width, schedule)
        assert row["macs"] == round(mflops * 1e6) and row["params"] == 100_000 + 1000 * number
    assert math.isnan(trials.loc[3, "val_acc"]) and math.isnan(trials.loc[9, "val_acc"])  # never trained
    assert trials.loc[5, "val_acc"] == 0.6  # the pruner-stopped trial's last reported accuracy
    assert trials.loc[1, "se_count"] == 2 and trials.loc[1, "se_blocks"] == "4 5"
    assert trials.loc[1, "downsample_layers"] == "1 3 5"


def test_latency_columns_pytorch_and_onnxruntime(tables):
    trials = tables.trials.set_index("number")
    for number in set(TRAINED) - {0}:
        assert trials.loc[number, "latency_ms"] == 1.5 + number / 10
        assert trials.loc[number, "latency_ort_ms"] == 0.25 + number / 100
    assert math.isnan(trials.loc[0, "latency_ort_ms"]) and trials.loc[0, "latency_ms"] == 1.5  # older trial
    assert trials.loc[[3, 9], "latency_ort_ms"].isna().all()  # over budget: never measured
    assert tables.pareto["latency_ort_ms"].tolist() == [0.25 + n / 100 for n in PARETO]
    assert list(tables.trials.columns).index("latency_ort_ms") == list(tables.trials.columns).index("latency_ms") + 1


def test_pareto_table_sorted_by_cost_with_export_commands(tables):
    assert tables.pareto["number"].tolist() == PARETO
    assert tables.pareto["mflops"].tolist() == [12.0, 25.0, 38.0, 39.5]
    assert tables.pareto["export"].tolist() == [f"nasprune export --study demo --trial {n}" for n in PARETO]
    assert (tables.pareto["mflops"] <= BUDGET).all()


def test_export_commands_repeat_a_given_storage(study):
    pareto = build_tables(study, storage_arg="sqlite:///my dir/s.db").pareto
    assert pareto["export"].iloc[0] == "nasprune export --study demo --trial 4 --storage 'sqlite:///my dir/s.db'"


def test_budget_objectives_and_reference(tables):
    assert tables.budget_mflops == BUDGET and tables.reference_mflops == BUDGET
    assert tables.objectives == ("val_acc", "mflops")


def test_hypervolume_grows_to_the_hand_computed_area(tables):
    hv = tables.hypervolume.set_index("number")["hypervolume"]
    assert list(hv.index) == tables.trials["number"].tolist()
    assert hv.loc[0] == pytest.approx(0.80 * (BUDGET - 30.0) / BUDGET)
    assert hv.loc[1] == pytest.approx((0.80 * 8 + 0.85 * 2) / BUDGET)
    assert hv.loc[3] == hv.loc[2] == hv.loc[1]  # dominated and over-budget trials add nothing
    assert hv.iloc[-1] == pytest.approx(FINAL_HYPERVOLUME)
    assert (np.diff(hv.to_numpy()) >= 0).all()


def test_layers_and_features_of_the_pareto_trials(tables):
    assert tables.layers["number"].tolist() == [n for n in PARETO for _ in range(2)]
    row = tables.layers[(tables.layers["number"] == 4) & (tables.layers["layer"] == "blocks.3.conv_pw")].iloc[0]
    assert (row["before"], row["after"], row["kept"]) == (64, 16, 0.25)  # width 0.5, ratio 0.75
    full = tables.layers[tables.layers["number"] == 7]
    assert (full["before"] == full["after"]).all()  # the unpruned baseline
    features = tables.features
    for number in PARETO:
        rows = features[features["number"] == number]
        schedule = TRAINED[number][3]
        assert rows["size"].tolist() == feature_sizes(schedule)
        assert rows["layer"].tolist() == ["stem"] + [f"block {i}" for i in range(6)]
        se = [4, 5] if TRAINED[number][4] else []
        assert rows.loc[rows["se"], "position"].tolist() == [b + 1 for b in se]
    assert features.loc[(features["number"] == 4) & features["downsample"], "layer"].tolist() == \
        ["block 0", "block 1", "block 3"]


def test_importance_covers_every_parameter_per_target(tables):
    assert tables.importance_note is None
    imp = tables.importance
    assert imp["target"].unique().tolist() == ["pareto", "val_acc", "mflops"]
    for _, rows in imp.groupby("target"):
        assert sorted(rows["param"]) == ["ratio_1", "ratio_3", "schedule", "se_last", "width"]
        assert rows["importance"].sum() == pytest.approx(1.0)


def test_csv_round_trip(tables, tmp_path):
    paths = tables.to_csv(tmp_path / "csv")
    assert [p.name for p in paths] == [f"demo_{name}.csv" for name in tables.frames()]
    back = pd.read_csv(tmp_path / "csv" / "demo_pareto.csv")
    assert back["number"].tolist() == PARETO and back["export"].tolist() == tables.pareto["export"].tolist()
    assert pd.read_csv(paths[2])["hypervolume"].iloc[-1] == pytest.approx(FINAL_HYPERVOLUME)


def test_no_completed_trial_is_an_error(tmp_path):
    study = create_study(f"sqlite:///{tmp_path / 'x.db'}", name="empty", numbers=[8, 5])  # failed, pruned
    with pytest.raises(NaspruneError, match=r"study 'empty' has no completed trials yet \(1 fail, 1 pruned\)"):
        build_tables(study)


def test_too_few_trials_become_notes_not_errors(tmp_path):
    study = create_study(f"sqlite:///{tmp_path / 'x.db'}", name="one", numbers=[4, 3])  # one trained trial
    tables = build_tables(study)
    assert tables.pareto["number"].tolist() == [0]  # renumbered: trial 4 of the fixture is trial 0 here
    assert tables.importance.empty and "at least 2 completed feasible trials" in tables.importance_note
    sections = {s.key: s for s in build_sections(tables, study)}
    assert sections["importance"].figure is None and sections["parallel"].figure is None
    assert sections["pareto_front"].figure is not None and sections["parallel"].note


def test_only_over_budget_trials_so_far(tmp_path):
    study = create_study(f"sqlite:///{tmp_path / 'x.db'}", name="over", numbers=[3, 9])
    tables = build_tables(study)
    assert tables.trials["status"].tolist() == ["over budget", "over budget"]
    assert tables.pareto.empty and tables.layers.empty and tables.features.empty
    assert tables.hypervolume["hypervolume"].tolist() == [0.0, 0.0]
    sections = {s.key: s for s in build_sections(tables, study)}
    assert sections["channels"].note and sections["resolution"].note and sections["importance"].note
    assert sum(len(t.x) for t in sections["pareto_front"].figure.data) == 2


def test_hypervolume_2d_closed_form():
    assert hypervolume_2d([0.5], [10.0], 40.0) == pytest.approx(15.0)
    assert hypervolume_2d([0.5, 0.8], [10.0, 20.0], 40.0) == pytest.approx(0.5 * 10 + 0.8 * 20)
    assert hypervolume_2d([0.9, 0.8], [50.0, math.nan], 40.0) == 0.0  # beyond the reference, or unknown
    assert hypervolume_2d([0.6, 0.5], [10.0, 20.0], 40.0) == pytest.approx(0.6 * 30)  # the 2nd is dominated


def test_figures_hold_one_point_per_row(tables, study):
    sections = {s.key: s for s in build_sections(tables, study)}
    front = sections["pareto_front"].figure
    assert sum(len(t.x) for t in front.data) == len(tables.trials) + len(tables.pareto)
    assert [t.name for t in front.data][-1] == "infeasible (not trained: over budget or below the band)"
    assert sorted(front.data[-1].x) == [47.0, 55.0]
    channels = sections["channels"].figure
    assert sum(len(t.y) for t in channels.data) == 2 * len(tables.layers)
    hover = next(text for trace in front.data for text in (trace.text or ()) if "<b>trial 4</b>" in text)
    assert hover.endswith("latency 1.90 ms PyTorch, 0.29 ms onnxruntime")
    old = next(text for trace in front.data for text in (trace.hovertext or trace.text or ())
               if "<b>trial 0</b>" in text)
    assert old.endswith("latency 1.50 ms PyTorch")  # measured before onnxruntime was
    resolution = sections["resolution"].figure
    assert sum(len(t.x) for t in resolution.data) == len(tables.features) + int(tables.features["se"].sum())


def test_distinct_networks_count_a_duplicate_once(tmp_path):
    from optuna.trial import create_trial

    from nasprune.report.page import _summary

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("budget_mflops", 40.0)
    attrs = {"mflops": 39.0, "feasible": True}
    study.add_trials([
        create_trial(values=[0.8, 39.0], user_attrs={**attrs, "val_acc": 0.8, "network": "oneshot:prefix:a"}),
        create_trial(values=[0.7, 38.0], user_attrs={**attrs, "val_acc": 0.7, "network": "oneshot:prefix:b"}),
        create_trial(values=[0.8, 39.0], user_attrs={**attrs, "val_acc": 0.8, "network": "oneshot:prefix:a",
                                                     "duplicate_of": 0}),
    ])
    trials = build_tables(study).trials.set_index("number")
    assert trials["network"].nunique() == 2 and trials.loc[2, "duplicate_of"] == 0
    assert pd.isna(trials.loc[0, "duplicate_of"])
    assert "<b>2</b>distinct networks trained" in _summary(build_tables(study))
