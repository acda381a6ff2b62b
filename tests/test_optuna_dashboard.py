"""A nasprune study as the real optuna-dashboard server and plain Optuna read it: objective names, constraints.

One small study on SQLite, written by the real :func:`~nasprune.search.runner.open_study` and
:class:`~nasprune.search.objective.Objective` on synthetic data (budget 12 MFLOPs; at 224x224, 1 channel, 4
classes FD-MobileNet 0.25x is 9.98 MFLOPs, 0.5x 36.01, MobileNet V1 0.5x 145.37). Trials 0 and 1 are over budget
(never trained); trial 2 is trained. ``optuna-dashboard`` is then started on 127.0.0.1 against that storage and its
JSON API (``/api/studies``, ``/api/studies/<id>``, ``/artifacts/<study>/<trial>/<artifact>``) is read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest

from nasprune.search.constraints import named_constraints
from nasprune.search.objective import Objective
from nasprune.search.recipe import parse_recipe
from nasprune.search.runner import artifacts_dir_for, open_study
from nasprune.search.table import trials_frame
from nasprune.threads import torch_threads

BUDGET = 12.0
RECIPE = {"study": "dash", "budget_mflops": BUDGET, "space": "fd_mobilenet",
          "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
          "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
          "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
          "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2},
          "budget_floor": 0, "seed_designs": False}  # the trials as enqueued: two over budget, one within
#            (width, schedule, pruning ratio of every layer)
ENQUEUED = [(0.5, "fast", 0.0), (0.5, "slow", 0.0), (0.25, "fast", 0.3)]
INFEASIBLE = {0, 1}
START_TIMEOUT_S = 60.0


def _params(width: float, schedule: str, ratio: float) -> dict:
    return {"schedule": schedule, "width": width, "criterion": "gamma_sparsity",
            **{f"ratio_{i}": ratio for i in range(13)}, **{f"se_{i}": False for i in range(13)}}


@pytest.fixture(scope="module")
def study_on_disk(tmp_path_factory):
    """``(study, url, artifacts dir, best_trials while only infeasible trials had finished)``."""
    root = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{root / 'dash.db'}"
    recipe = parse_recipe(RECIPE, root / "recipe.yaml")
    artifacts = artifacts_dir_for(recipe, url)
    study = open_study(recipe, url, artifacts, heartbeat=False)
    for width, schedule, ratio in ENQUEUED:
        study.enqueue_trial(_params(width, schedule, ratio))
    objective = Objective(recipe, artifacts)
    with torch_threads(1):
        study.optimize(objective, n_trials=len(INFEASIBLE))
        best_when_none_feasible = study.best_trials
        study.optimize(objective, n_trials=len(ENQUEUED) - len(INFEASIBLE))
    return study, url, artifacts, best_when_none_feasible


def test_plain_optuna_reads_the_budget_constraint(study_on_disk):
    study, _, _, best_when_none_feasible = study_on_disk
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * len(ENQUEUED)
    assert {t.number for t in trials if not t.user_attrs["feasible"]} == INFEASIBLE
    for t in trials:
        over = t.user_attrs["mflops"] - BUDGET
        assert named_constraints(t) == {"budget": pytest.approx(over)}
        assert t.constraints == {"budget": pytest.approx(over), "0": pytest.approx(over)}  # named and list form
        assert (over > 0) == (t.number in INFEASIBLE)
    # (0, mflops) over budget is dominated once one feasible trial exists: the telling moment is before that
    assert best_when_none_feasible == []
    assert [t.number for t in study.best_trials] == [2]
    assert study.metric_names == ["val_acc", "mflops"]


def test_trials_table_has_one_column_per_named_constraint(study_on_disk):
    frame = trials_frame(study_on_disk[0])
    assert [c for c in frame.columns if c.startswith("constraint_")] == ["constraint_budget"]
    assert list(frame.constraint_budget > 0) == [n in INFEASIBLE for n in frame.number]


def test_resuming_an_older_study_names_its_objectives(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    recipe = parse_recipe({**RECIPE, "study": "old"}, tmp_path / "recipe.yaml")
    old = optuna.create_study(study_name="old", storage=url, directions=["maximize", "minimize"])
    assert old.metric_names is None  # as nasprune created studies before it named the objectives
    study = open_study(recipe, url, artifacts_dir_for(recipe, url), heartbeat=False)
    assert study.metric_names == ["val_acc", "mflops"] == optuna.load_study(study_name="old",
                                                                           storage=url).metric_names


def test_resuming_keeps_metric_names_already_set(tmp_path):
    url = f"sqlite:///{tmp_path / 'named.db'}"
    recipe = parse_recipe({**RECIPE, "study": "named"}, tmp_path / "recipe.yaml")
    named = optuna.create_study(study_name="named", storage=url, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        named.set_metric_names(["accuracy", "MFLOPs"])
    assert open_study(recipe, url, artifacts_dir_for(recipe, url), heartbeat=False).metric_names == ["accuracy",
                                                                                                     "MFLOPs"]


# -- the real optuna-dashboard server --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return response.read()


def _wait_until_up(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"optuna-dashboard exited with {proc.returncode}: {log.read_text()!r}")
        with contextlib.suppress(OSError):
            _get(base, "/api/meta")
            return
        time.sleep(0.2)
    raise AssertionError(f"optuna-dashboard did not answer on {base} within {START_TIMEOUT_S:g} s")


@pytest.fixture(scope="module")
def dashboard(study_on_disk):
    """The base URL of an ``optuna-dashboard`` server on the study's storage and artifacts (stopped after)."""
    _, url, artifacts, _ = study_on_disk
    port = _free_port()
    command = Path(sys.executable).with_name("optuna-dashboard")
    log = Path(artifacts).with_name("optuna-dashboard.log")
    with log.open("w") as sink:  # a file, not a pipe: a chatty server cannot fill it and stall
        proc = subprocess.Popen([str(command), url, "--host", "127.0.0.1", "--port", str(port),
                                 "--artifact-dir", str(artifacts), "--quiet"],
                                stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _detail(study, base: str) -> tuple[int, dict]:
    summaries = json.loads(_get(base, "/api/studies"))["study_summaries"]
    study_id = next(s["study_id"] for s in summaries if s["study_name"] == study.study_name)
    return study_id, json.loads(_get(base, f"/api/studies/{study_id}"))


def test_dashboard_shows_objective_names_and_constraints(study_on_disk, dashboard):
    study = study_on_disk[0]
    _, detail = _detail(study, dashboard)
    assert detail["objective_names"] == ["val_acc", "mflops"]
    by_number = {t.number: t for t in study.trials}
    assert sorted(t["number"] for t in detail["trials"]) == sorted(by_number)
    for shown in detail["trials"]:
        trial = by_number[shown["number"]]
        assert shown["constraints"] == [pytest.approx(trial.user_attrs["mflops"] - BUDGET)]
        if shown["number"] in INFEASIBLE:
            assert shown["constraints"][0] > 0
        else:
            assert shown["constraints"][0] <= 0
    assert [t["number"] for t in detail["best_trials"]] == [2]


def test_dashboard_serves_the_trained_childs_artifact(study_on_disk, dashboard):
    study, _, artifacts, _ = study_on_disk
    study_id, detail = _detail(study, dashboard)
    trained = next(t for t in study.trials if t.number not in INFEASIBLE)
    shown = next(t for t in detail["trials"] if t["number"] == trained.number)
    artifact_id = trained.user_attrs["artifact_id"]
    assert [a["artifact_id"] for a in shown["artifacts"]] == [artifact_id]
    assert all(t["artifacts"] == [] for t in detail["trials"] if t["number"] in INFEASIBLE)
    body = _get(dashboard, f"/artifacts/{study_id}/{shown['trial_id']}/{artifact_id}")
    assert body == (Path(artifacts) / artifact_id).read_bytes()
