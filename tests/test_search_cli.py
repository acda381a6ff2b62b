"""``nasprune search`` and ``nasprune trials`` end to end: real (tiny) searches, resume, workers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nasprune.cli import main
from nasprune.spec import ArchSpec
from nasprune.storage import load_study
from nasprune.zoo import get_spec

SYNTHETIC = {"study": "syn", "space": "fd_mobilenet",
             "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
             "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
             "budget_mflops": 12, "trials": 4, "sampler": "tpe",
             "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
             "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2}}


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # no test here kills a worker: a generous grace keeps a busy worker's trial from being failed as stale on a
    # loaded machine (the crash tests in test_crash.py use short ones on purpose)
    monkeypatch.setenv("NASPRUNE_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "60")

    def write(**changes) -> str:
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**SYNTHETIC, **changes}))
        return str(path)

    return write


def _finished(study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_search_runs_resumes_and_lists_trials(recipe, tmp_path, capsys):
    path = recipe()
    assert main(["search", path, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "study 'syn' (sqlite:///studies/syn.db): " in out and "Pareto front" in out
    study = load_study("syn")
    assert len(_finished(study)) == 4 and Path("studies/syn.artifacts").is_dir()
    assert study.user_attrs["budget_mflops"] == 12 and study.user_attrs["objectives"] == ["val_acc", "mflops"]
    assert study.user_attrs["train_resolution"] == 16 and study.user_attrs["deploy_resolution"] == 224
    assert Path(study.user_attrs["artifacts_dir"]) == (tmp_path / "studies/syn.artifacts").resolve()
    # re-running the same command with a larger total resumes the study: 2 more trials, none repeated
    assert main(["search", path, "--trials", "6", "--no-progress"]) == 0
    assert "2 finished in this run" in capsys.readouterr().out
    assert len(_finished(load_study("syn"))) == 6
    assert main(["search", path, "--trials", "6", "--no-progress"]) == 0  # already complete: nothing to do
    assert "0 finished in this run" in capsys.readouterr().out

    assert main(["trials", "--study", "syn", "--csv", "t.csv"]) == 0
    frame = pd.read_csv("t.csv")
    assert len(frame) == 6
    for column in ("number", "state", "values_val_acc", "values_mflops", "constraint_budget", "params_schedule",
                   "params_width", "params_criterion", "params_ratio_0", "user_attrs_macs", "user_attrs_child_spec",
                   "user_attrs_feasible", "user_attrs_se_count", "user_attrs_layers", "duration_s"):
        assert column in frame.columns, column
    assert (frame.values_mflops == frame.user_attrs_mflops).all()
    assert ((frame.constraint_budget <= 0) == frame.user_attrs_feasible).all()
    assert main(["trials", "--study", "syn", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in records] == list(range(6))
    assert isinstance(records[0]["user_attrs_child_spec"], dict) and isinstance(records[0]["user_attrs_layers"], list)


def test_two_workers_share_sqlite_and_the_parent_cache(recipe):
    path = recipe(study="two", trials=5, budget_mflops=40)
    assert main(["search", path, "--workers", "2", "--no-progress"]) == 0
    study = load_study("two")
    finished = _finished(study)
    assert len(finished) == 5  # exactly: a trial starts only while finished + running < total
    assert all(t.state.name != "FAIL" for t in study.trials)
    trained = [t for t in finished if t.user_attrs.get("feasible")]
    schedules = {t.user_attrs["parent_hash"] for t in trained}
    # every shared parent was trained once: one file per distinct parent, and one trial per parent trained it
    assert len(list(Path("studies/two.artifacts/parents").glob("*.pt"))) == len(schedules)
    assert sum(not t.user_attrs["parent_cached"] for t in trained) == len(schedules)


def test_baselines_are_enqueued_and_trained(recipe):
    # at 224 with 1 channel and 4 classes: FD 0.25x 9.98, FD 0.5x 36.01, V1 0.25x 38.97, V1 0.5x 145.37 MFLOPs
    path = recipe(study="base", trials=3, budget_mflops=39, with_baselines=True, seed_designs=False)
    assert main(["search", path, "--no-progress"]) == 0
    study = load_study("base")
    baselines = {t.user_attrs.get("baseline"): t for t in study.trials if t.user_attrs.get("baseline")}
    assert set(baselines) == {"fd_mobilenet_0.25", "fd_mobilenet_0.5", "mobilenet_v1_0.25"}
    for name, t in baselines.items():
        zoo, width = name.rsplit("_", 1)
        expected = get_spec(zoo, width=float(width), in_channels=1, num_classes=4)
        assert ArchSpec.from_dict(t.user_attrs["child_spec"]).hash == expected.hash
        assert t.user_attrs["parent_mode"] == "per_trial" and t.user_attrs["se_count"] == 0
        assert t.user_attrs["layers"] == [{**row, "after": row["before"]} for row in t.user_attrs["layers"]]


@pytest.mark.parametrize("argv, expected", [
    (["--budget", "0"], "argument --budget: 0 is invalid: expected a finite number > 0"),
    (["--budget", "1"], "budget 1 MFLOPs is below the smallest network space"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open PostgreSQL storage"),
    (["--storage", "nonsense"], "malformed storage URL 'nonsense'"),
    (["--data", "imagefolder:/no/such/dir"], "/no/such/dir"),
    (["--space", "nope"], "space 'nope' not found"),
])
def test_bad_input_is_one_line_exit_2(recipe, capsys, argv, expected):
    assert main_exit(["search", recipe(), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasprune: error: ") and expected in err and err.count("\n") == 1
    assert "secret" not in err


def test_budget_below_smallest_names_that_cost(recipe, capsys):
    from nasprune.cost import count
    from nasprune.prune import child_spec, prunable_layers
    from nasprune.search.recipe import load_recipe
    from nasprune.search.runner import check_budget
    from nasprune.zoo import fd_mobilenet

    # shared parents: the widest (0.5x) fast network; width 0.25 and ratio 0.6 keep 0.5 * 0.4 of every layer
    parent = fd_mobilenet(0.5, in_channels=1, num_classes=4)
    smallest = count(child_spec(parent, {k: 0.8 for k in prunable_layers(parent)}), layers=False).macs / 1e6
    assert main_exit(["search", recipe(budget_mflops=1)]) == 2
    err = capsys.readouterr().err
    assert f"can produce: {smallest:.2f} MFLOPs (fast schedule, width 0.25, every layer pruned 0.6, no SE, " \
           "shared parents, 224x224)" in err
    check_budget(load_recipe(recipe(budget_mflops=smallest)), (1, 4))  # exactly the smallest: accepted


def test_unknown_recipe_key_and_missing_study(recipe, capsys):
    assert main_exit(["search", recipe(colour="red")]) == 2
    assert "recipe.yaml: unknown key 'colour' (value 'red'): expected one of study" in capsys.readouterr().err
    assert main_exit(["trials", "--study", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err


def main_exit(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_subset_search(recipe, capsys):
    path = recipe(study="fm", budget_mflops=40, trials=3,
                  data={"name": "fashion-mnist", "resolution": 16, "subset": 1500, "val_size": 500},
                  parent={"mode": "shared", "epochs": 3, "batch_size": 32, "lr": 0.05, "augment": False,
                          "sparsity_lambda": 1e-4},
                  finetune={"epochs": 1, "batch_size": 32, "lr": 0.02, "augment": False})
    assert main(["search", path, "--no-progress"]) == 0
    study = load_study("fm")
    trained = [t for t in study.trials if t.state.name == "COMPLETE" and t.user_attrs["feasible"]]
    assert trained, "no feasible trial in 3"
    assert max(t.user_attrs["val_acc"] for t in trained) > 0.2  # 10 classes: chance is 0.1
    assert all(t.user_attrs["mflops"] <= 40 for t in trained)


def test_ctrl_c_fails_the_running_trial_and_the_rerun_redoes_it(recipe, monkeypatch, capsys):
    import nasprune.train

    path = recipe(study="intr", trials=2, budget_mflops=40)
    real_fit = nasprune.train.fit

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nasprune.train, "fit", interrupted_fit)
    assert main(["search", path, "--no-progress"]) == 130
    assert "nasprune: interrupted" in capsys.readouterr().err
    states = [t.state.name for t in load_study("intr").trials if t.state.name != "WAITING"]  # seed designs queued
    assert states[-1] == "FAIL" and "RUNNING" not in states
    monkeypatch.setattr(nasprune.train, "fit", real_fit)
    assert main(["search", path, "--no-progress"]) == 0
    study = load_study("intr")
    assert len(_finished(study)) == 2 and "RUNNING" not in [t.state.name for t in study.trials]
