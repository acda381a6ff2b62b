"""nasprune.export: trial selection (best, knee, N), the format writers and their checks, the model card.

One real export of a trained child (tests/export_study.py) is shared by the round-trip tests.
"""

from __future__ import annotations

import json
import re

import numpy as np
import optuna
import pytest
import torch
from export_study import (
    BUDGET,
    CHILD_A,
    COST_A,
    DATA,
    DEPLOY,
    RETRAIN,
    SEED,
    STUDY,
    TRAIN,
    shared_study,
)
from optuna.trial import TrialState, create_trial

from nasprune.checkpoint import load
from nasprune.cost import count
from nasprune.errors import NaspruneError
from nasprune.export import (
    FORMATS,
    ExportConfig,
    Tolerance,
    architecture_rows,
    export,
    knee_index,
    parse_formats,
    select_trial,
    staged_directory,
)
from nasprune.search.record import TrialRecord, pareto_front
from nasprune.spec import ArchSpec
from nasprune.train import evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two cores shared by many processes: one intra-op thread avoids spin-wait slowdowns."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- selection --------------------------------------------------------------------------------------------------
def _values_study(points: dict[int, tuple[float, float, bool]], budget: float = 40.0) -> optuna.Study:
    """An in-memory study whose trial i has (accuracy, MFLOPs) and a budget constraint (feasible flag)."""
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="hand")
    study.set_user_attr("budget_mflops", budget)
    for i in range(max(points) + 1):
        if i not in points:
            study.add_trial(create_trial(state=TrialState.PRUNED))
            continue
        acc, mflops, feasible = points[i]
        study.add_trial(create_trial(values=[acc, mflops], user_attrs={"mflops": mflops},
                                     constraints={"mflops": (-1.0 if feasible else 1.0)}))
    return study


# Feasible front (10, .80) (20, .88) (30, .90) (40, .91); trial 4 is dominated, 5 over budget, 6 pruned.
# Scaled over the front: x = 0, 1/3, 2/3, 1 and y = 0, .08/.11, .10/.11, 1; y - x = 0, .394, .242, 0 -> knee 20.
HAND = {0: (0.80, 10.0, True), 1: (0.88, 20.0, True), 2: (0.90, 30.0, True), 3: (0.91, 40.0, True),
        4: (0.85, 25.0, True), 5: (0.95, 50.0, False), 7: (0.70, 35.0, True)}


def test_knee_index_matches_hand_computation():
    points = [(10.0, 0.80), (20.0, 0.88), (30.0, 0.90), (40.0, 0.91)]
    assert knee_index(points) == 1
    assert knee_index([(5.0, 0.5), (10.0, 0.9), (40.0, 0.95)]) == 1  # y - x = 0, 8/9 - 1/7, 0
    assert knee_index([(1.0, 0.1), (2.0, 0.2), (3.0, 0.9)]) == 0  # y - x = 0, -0.375, 0: a tie goes to the cheaper
    assert knee_index([(10.0, 0.5), (20.0, 0.9)]) == 1  # two points: the most accurate
    assert knee_index([(10.0, 0.5)]) == 0


def test_pareto_front_drops_dominated_and_sorts_by_mflops():
    study = _values_study(HAND)
    front = pareto_front([TrialRecord.from_trial(t) for t in study.trials])  # 5: over budget, 6: pruned
    assert [r.number for r in front] == [0, 1, 2, 3]


def test_knee_of_a_front_with_duplicates_is_the_lowest_numbered():
    study = _values_study({**HAND, 8: (0.88, 20.0, True)})  # the same point as trial 1
    selection = select_trial(study, "knee")
    assert selection.trial.number == 1 and "(5 trials)" in selection.reason  # duplicates stay on the front


def test_select_best_knee_and_number():
    study = _values_study(HAND)
    assert select_trial(study, "best").trial.number == 3  # 5 is more accurate but over budget
    assert select_trial(study, "knee").trial.number == 1
    assert select_trial(study, "best", budget_mflops=26.0).trial.number == 1
    assert select_trial(study, "knee", budget_mflops=30.0).trial.number == 1  # front 10, 20, 30: y - x = 0, .3, 0
    assert select_trial(study, 5).trial.number == 5  # an explicit number may be over budget
    assert "over the study's budget" in select_trial(study, "5").reason


@pytest.mark.parametrize(("which", "budget", "message"), [
    ("best", 5.0, "study 'hand' has no feasible completed trial within 5 MFLOPs (7 completed)"),
    (99, None, "trial 99 does not exist in study 'hand': trials are 0-7"),
    (6, None, "trial 6 of study 'hand' is PRUNED, not COMPLETE: completed trials are 0-5, 7"),
    ("best", 41.0, "--budget 41 is looser than study 'hand''s budget 40 MFLOPs"),
    (2, 25.0, "trial 2 needs 30.00 MFLOPs, over --budget 25"),
    ("middle", None, "--trial 'middle' is invalid: expected one of best, knee or a trial number"),
])
def test_select_rejects_bad_input(which, budget, message):
    with pytest.raises(NaspruneError, match="^" + re.escape(message)):
        select_trial(_values_study(HAND), which, budget)


def test_select_reads_old_list_constraints_and_feasible_attr():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.9, 50.0], system_attrs={"constraints": [10.0]}))
    study.add_trial(create_trial(values=[0.8, 30.0], user_attrs={"feasible": False}))
    study.add_trial(create_trial(values=[0.7, 20.0], system_attrs={"constraints": [-20.0]}))
    assert select_trial(study, "best").trial.number == 2


# -- formats and the model card on a real trained child ----------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    info = shared_study()
    out = tmp_path_factory.mktemp("export") / "out"
    result = export(ExportConfig(study=STUDY, storage=info.url, out=out, latency_runs=3))
    return info, result


def test_export_writes_every_file_and_nothing_else(exported):
    info, result = exported
    names = sorted(p.name for p in result.out.iterdir())
    assert names == sorted(["arch.json", "model.pt", "model.ts", "model.onnx", "MODEL_CARD.md", "export.json"])
    assert [p.name for p in result.out.parent.iterdir()] == ["out"]  # no staging directory left
    assert result.selection.trial.number == 0


def test_arch_json_rebuilds_with_the_trials_exact_macs_and_params(exported):
    _, result = exported
    spec = ArchSpec.from_json((result.out / "arch.json").read_text())
    assert spec.name == f"{STUDY}_trial0"  # its own name, not the child_spec's (a parent's name)
    assert spec.replace(name=CHILD_A.name) == CHILD_A and spec.resolution == DEPLOY
    cost = count(spec)
    attrs = result.selection.trial.user_attrs
    assert (cost.macs, cost.params) == (attrs["macs"], attrs["params"]) == (COST_A.macs, COST_A.params)


def test_model_pt_loads_strictly_and_reproduces_val_acc(exported):
    info, result = exported
    model = load(result.out / "model.pt")
    assert model.spec.resolution == TRAIN
    assert model.spec.replace(resolution=DEPLOY).hash == CHILD_A.hash
    assert evaluate(model, DATA, "val") == info.val_acc_a == result.selection.trial.user_attrs["val_acc"]
    for key, value in info.model_a.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.metadata["study"] == STUDY and model.metadata["trial"] == 0 and model.metadata["seed"] == SEED


def test_torchscript_matches_pytorch(exported):
    info, result = exported
    scripted = torch.jit.load(str(result.out / "model.ts"))
    for batch in (1, 3):
        x = torch.randn(batch, 1, TRAIN, TRAIN)
        with torch.inference_mode():
            assert (scripted(x) - info.model_a(x)).abs().max().item() <= 1e-5


def test_onnx_matches_pytorch_on_batches_1_and_3(exported):
    import onnx
    import onnxruntime as ort

    info, result = exported
    proto = onnx.load(str(result.out / "model.onnx"))
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    assert result.checks["onnx"]["opset"] >= 18
    session = ort.InferenceSession(str(result.out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, resolution in ((1, TRAIN), (3, TRAIN), (1, DEPLOY)):
        x = torch.randn(batch, 1, resolution, resolution)
        with torch.inference_mode():
            expected = info.model_a(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        diff = float(np.abs(got - expected).max())
        print(f"onnx vs pytorch, batch {batch} @{resolution}: max abs diff {diff:.3g}")
        assert got.shape == (batch, 4) and diff <= 1e-4
    assert [(c["batch"], c["resolution"]) for c in result.checks["onnx"]["cases"]] == [(1, 16), (3, 16), (1, 224)]


def test_architecture_rows_sum_to_the_totals():
    rows = architecture_rows(CHILD_A, TRAIN)
    assert [r.layer for r in rows] == ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert sum(r.macs for r in rows) == COST_A.macs and sum(r.params for r in rows) == COST_A.params
    assert [r.se for r in rows] == [0, 8, 8, 0, 0]
    assert [r.mid_channels for r in rows] == [None, 8, 24, 40, 32]
    assert [r.size_deploy for r in rows] == [112, 56, 56, 28, 1]
    assert [r.size_train for r in rows] == [8, 4, 4, 2, 1]


def test_model_card_states_the_facts(exported):
    info, result = exported
    card = (result.out / "MODEL_CARD.md").read_text()
    assert f"| validation accuracy (recorded by the search, at 16x16) | {100 * info.val_acc_a:.2f} % |" in card
    assert f"| MACs at 224x224 (conv + linear, BN folded) | {COST_A.macs:,} ({COST_A.mflops:.2f} MFLOPs) |" in card
    assert f"| parameters | {COST_A.params:,} |" in card
    assert f"| study budget | {BUDGET:g} MFLOPs (within budget) |" in card
    assert "| blocks.1 | ir | 16 | 24 | 16 | 3 | 1 | 8 | hswish | 56 | 4 |" in card
    assert "| blocks.2.conv_pw | 48 | 40 |" in card
    assert "| PyTorch (eager) |" in card and "| onnxruntime |" in card
    onnx = result.checks["onnx"]
    assert onnx["rtol"] == 1e-4 and onnx["atol"] == 1e-5 and 0 <= onnx["max_rel_diff"] <= 1e-4
    assert (f"onnxruntime vs PyTorch on random inputs: max abs {onnx['max_abs_diff']:.3g}, relative to the output's "
            f"scale {onnx['max_rel_diff']:.3g} (max abs per input: batch 1 @16: ") in card
    assert "- `model.pt` reloads strictly; difference to the exported model: max abs 0, relative to the output's " \
           "scale 0." in card
    assert ("- Required of each file, per input and logit: `|a - b| <= atol + rtol * max|b|` (max|b|: the input's "
            "largest absolute logit), with rtol 0.0001 and atol 1e-05 (`--tolerance 0.0001,1e-05`).") in card
    assert "required <= 1e-4" not in card
    assert "- seed: 7" in card and "- study: `tiny` in `sqlite:///" in card and "- trial: 0 (" in card
    assert RETRAIN.format(arch="arch.json") in card
    manifest = json.loads((result.out / "export.json").read_text())
    assert manifest["macs"] == COST_A.macs and manifest["trial"] == 0 and manifest["seed"] == SEED
    assert {r["runtime"] for r in manifest["latency"]} == {"PyTorch (eager)", "onnxruntime"}
    assert manifest["checks"]["onnx"]["max_rel_diff"] == onnx["max_rel_diff"]
    assert manifest["checks"]["pt"]["rtol"] == 1e-4 and manifest["checks"]["torchscript"]["atol"] == 1e-5
    assert all(r["median_ms"] > 0 for r in manifest["latency"])


def test_failed_check_leaves_nothing_behind(exported, tmp_path):
    info, _ = exported
    out = tmp_path / "deep" / "er" / "out"
    exact = Tolerance(rtol=0, atol=0)  # onnxruntime's float32 rounding differs from PyTorch's (~1e-7)
    with pytest.raises(NaspruneError, match=r"^model.onnx \(onnxruntime\) differs from the trained PyTorch model by "
                                            r"\S+ \(max abs\), .* loosen it with --tolerance 1e-0\d,0$"):
        export(ExportConfig(study=STUDY, storage=info.url, out=out, tolerance=exact, formats=("json", "onnx"),
                            onnx_exporter="legacy", latency_runs=0))
    assert list(tmp_path.iterdir()) == []  # neither the staging directory nor the parents it created


# -- helpers ----------------------------------------------------------------------------------------------------
def test_parse_formats_orders_by_registry_and_rejects_unknown():
    assert parse_formats("onnx, json") == ("json", "onnx")
    assert tuple(FORMATS) == ("json", "pt", "torchscript", "onnx")
    with pytest.raises(NaspruneError, match="^--format 'tflite' is invalid: expected a comma-separated list of "
                                            "json, pt, torchscript, onnx$"):
        parse_formats("json,tflite")


def test_staged_directory_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_directory(out) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with staged_directory(out) as staging:
        (staging / "a.txt").write_text("whole")
    assert [p.name for p in out.iterdir()] == ["a.txt"] and oct(out.stat().st_mode & 0o777) != "0o700"
    with pytest.raises(NaspruneError, match="exists and is not empty: pass --force"), staged_directory(out):
        pass
    with staged_directory(out, force=True) as staging:
        (staging / "b.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
