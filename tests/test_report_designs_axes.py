"""The report names the hand designs a study started from and marks them; its percentage axes never repeat a
label; the re-rank plot keeps a readable range when its points are equal; importance says when no trials differ."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from nasprune.report import build_tables
from nasprune.report.figures import importance_figure, pareto_front_figure, rerank_figure
from nasprune.report.page import render_page
from nasprune.report.tables import percent_ticks

DISTRIBUTIONS = {"width": CategoricalDistribution([0.25, 0.5]), "ratio_0": FloatDistribution(0.0, 0.5, step=0.1)}


def _study(points: list[tuple[float, float, str | None]]) -> optuna.Study:
    """Trials (accuracy, MFLOPs, seed design) within a 40-MFLOPs budget; params differ from trial to trial."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("budget_mflops", 40.0)
    study.set_user_attr("objectives", ["val_acc", "mflops"])
    for i, (acc, mflops, design) in enumerate(points):
        attrs = {"val_acc": acc, "mflops": mflops, "macs": int(mflops * 1e6), "feasible": True, "schedule": "fast",
                 "width": 0.25 * (1 + i % 2)}
        if design:
            attrs["seed_design"] = design
        study.add_trial(create_trial(values=[acc, mflops], params={"width": attrs["width"], "ratio_0": i % 6 / 10},
                                     distributions=DISTRIBUTIONS, user_attrs=attrs,
                                     constraints={"mflops": mflops - 40.0}))
    return study


def _tick_labels(axis: dict) -> list[str]:
    low, high = axis["range"]
    first = math.ceil(low / axis["dtick"] - 1e-9)
    values = [k * axis["dtick"] for k in range(first, int(math.floor(high / axis["dtick"] + 1e-9)) + 1)]
    return [format(v, axis["tickformat"]) for v in values]


@pytest.mark.parametrize("values, step, fmt", [
    ([0.27, 0.285], 0.0025, ".2%"),      # the 28 %, 28 %, 27 %: now 27.00 % ... 28.50 %
    ([0.804, 0.8095], 0.001, ".1%"),
    ([0.8, 0.86], 0.01, ".0%"),
    ([0.1, 0.9], 0.2, ".0%"),
    ([0.5, 0.5], 0.002, ".1%"),          # equal values: a one-point window around them
])
def test_percent_ticks_step_and_decimals(values, step, fmt):
    axis = percent_ticks(values)
    assert axis["dtick"] == pytest.approx(step) and axis["tickformat"] == fmt
    labels = _tick_labels(axis)
    assert len(labels) >= 4 and len(set(labels)) == len(labels), labels
    assert axis["range"][0] <= min(values) and axis["range"][1] >= max(values)


@pytest.mark.parametrize("seed", range(20))
def test_percent_ticks_never_repeat_a_label(seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, 5) * 10.0 ** -rng.integers(0, 4) + rng.uniform(0, 0.9)
    labels = _tick_labels(percent_ticks(values.tolist(), pad=0.08))
    assert len(set(labels)) == len(labels) >= 3, labels


def test_seed_designs_are_named_in_the_tables_the_plot_and_the_page():
    study = _study([(0.80, 30.0, "fd_mobilenet_0.5"), (0.82, 38.0, None), (0.75, 12.0, "mobilenet_v1_0.25@band"),
                    (0.78, 20.0, None)])
    tables = build_tables(study)
    assert tables.trials["design"].tolist() == ["fd_mobilenet_0.5", "", "mobilenet_v1_0.25@band", ""]
    assert tables.pareto.set_index("number")["design"].to_dict() == {2: "mobilenet_v1_0.25@band", 3: "", 0:
                                                                     "fd_mobilenet_0.5", 1: ""}
    fig = pareto_front_figure(tables, study)
    designs = next(t for t in fig.data if t.name.startswith("hand design"))
    assert list(designs.text) == ["fd_mobilenet_0.5", "mobilenet_v1_0.25@band"]
    assert designs.marker.symbol == "diamond" and list(designs.marker.color) == ["#d62728", "#d62728"]
    others = [t for t in fig.data if t.name in ("Pareto-optimal", "dominated")]
    assert sorted(n for t in others for n in t.y) == [0.78, 0.82]  # each trial drawn once
    page = render_page(tables, [])
    assert "<th class=\"l\">design</th>" in page and "<td class=\"l\">mobilenet_v1_0.25@band</td>" in page


def test_pareto_axis_of_close_accuracies_reads_correctly():
    study = _study([(0.2705, 30.0, None), (0.2790, 38.0, None), (0.2740, 12.0, None), (0.2760, 20.0, None)])
    y = pareto_front_figure(build_tables(study), study).layout.yaxis
    assert y.tickformat == ".1%" and y.dtick == pytest.approx(0.002)
    assert y.range[0] < 0.2705 and y.range[1] > 0.2790


def test_rerank_plot_of_equal_points_spans_one_point_not_minus_50_to_120():
    rerank = pd.DataFrame({"number": [1, 2], "proxy_rank": [1, 2], "proxy_acc": [0.5, 0.5], "rung": [0, 0],
                           "epochs": [1, 1], "seeds": [1, 1], "from": ["weights"] * 2, "val_acc": [0.5, 0.5],
                           "seconds": [1.0, 1.0], "advanced": [True, False], "winner": [False, False]})
    study = _study([(0.5, 30.0, None), (0.5, 20.0, None)])
    tables = build_tables(study)
    fig = rerank_figure(tables.__class__(**{**tables.__dict__, "rerank": rerank}), study)
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.range[0] < 0.5 < axis.range[1] and axis.range[1] - axis.range[0] < 0.02  # about one point
        assert axis.tickformat == ".1%"


def test_importance_says_no_trials_differ_instead_of_equal_bars():
    study = _study([(0.5, 30.0, None), (0.5, 30.0, None), (0.5, 30.0, None)])
    tables = build_tables(study)
    assert tables.importance.empty
    assert tables.importance_note.startswith("No trials that differ: every trained feasible trial has the same "
                                             "val_acc and mflops")
    assert importance_figure(tables, study) == tables.importance_note


def test_importance_leaves_out_an_objective_equal_in_every_trial():
    study = _study([(0.5, 30.0, None), (0.5, 20.0, None), (0.5, 12.0, None), (0.5, 25.0, None)])
    tables = build_tables(study)
    assert set(tables.importance["target"]) == {"pareto", "mflops"} and tables.importance_note is None
    fig = importance_figure(tables, study)
    assert "(val_acc left out: equal in every trial)" in fig.layout.title.text


def test_hypervolume_axis_starts_at_zero_even_when_flat():
    from nasprune.report.figures import hypervolume_figure

    study = _study([(0.5, 30.0, None), (0.5, 30.0, None)])
    tables = build_tables(study)
    assert tables.hypervolume["hypervolume"].nunique() == 1
    y = hypervolume_figure(tables, study).layout.yaxis
    assert y.range[0] == 0 and y.range[1] == pytest.approx(1.15 * tables.hypervolume["hypervolume"].max())
