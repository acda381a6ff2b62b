"""Inputs that escaped the one-line error (issue 20): storages that keep nothing, output files the system refuses,
missing artifacts, a study killed in its first trial, values JSON cannot hold, a re-rank whose finalist lost its
weights. Each gets exit code 2 and one ``nasprune: error:`` line before any work, with nothing saved changed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from cli_errors import error_line as _error
from cli_errors import forbid as _forbid
from cli_errors import synthetic_recipe

from nasprune.cli import main
from nasprune.storage import load_study

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SYNTHETIC = synthetic_recipe("esc")


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASPRUNE_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "60")

    def write(**changes) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**SYNTHETIC, **changes}))
        return path

    return write


# -- 2. storages that keep nothing -----------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("sqlite://", "storage 'sqlite://' is an in-memory SQLite database"),
    ("sqlite:///:memory:", "storage 'sqlite:///:memory:' is an in-memory SQLite database"),
    ("sqlite:///file::memory:?cache=shared", "is an in-memory SQLite database"),
    ("journal:", "malformed storage URL 'journal:': expected journal:PATH"),
    ("journal:   ", "malformed storage URL 'journal:   ': expected journal:PATH"),
    ("journal:adir", "storage 'journal:adir' names a directory, not a journal file"),
    ("journal:/dev/null", "storage 'journal:/dev/null' names a special file, not a journal file"),
])
@pytest.mark.parametrize("where", ["flag", "recipe"])
def test_storages_that_keep_nothing_are_refused_before_any_work(recipe, tmp_path, monkeypatch, capsys, url,
                                                                 expected, where):
    (tmp_path / "adir").mkdir()
    _forbid(monkeypatch, "nasprune.data.load_data", "loading the data")
    argv = ["search", recipe(), "--storage", url] if where == "flag" else ["search", recipe(storage=url)]
    assert expected in _error([*argv, "--no-progress"], capsys)
    assert not (tmp_path / "studies").exists()


# -- 3. tracebacks still reachable -----------------------------------------------------------------------------
@pytest.fixture
def killed_study(recipe, tmp_path):
    """A study whose search was killed (SIGKILL) during its first trial: that trial RUNNING, without a duration,
    the other seed designs WAITING; a search does exactly this up to its first trial."""
    from nasprune.search.recipe import load_recipe
    from nasprune.search.runner import artifacts_dir_for, open_study, storage_url
    from nasprune.search.seeds import enqueue_seed_designs

    r = load_recipe(recipe())
    url = storage_url(r)
    study = open_study(r, url, artifacts_dir_for(r, url), heartbeat=False)
    enqueue_seed_designs(study, r, (1, 4))
    study.ask()  # the first seed design, RUNNING for good
    return "esc"


def test_trials_of_a_study_killed_in_its_first_trial(killed_study, capsys):
    assert main(["trials", "--study", killed_study]) == 0
    assert "RUNNING" in capsys.readouterr().out
    assert main(["trials", "--study", killed_study, "--csv", "-"]) == 0
    assert "duration_s" in capsys.readouterr().out.splitlines()[0]
    assert main(["trials", "--study", killed_study, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in records][:2] == ["RUNNING", "WAITING"]
    assert all(r["duration_s"] is None for r in records)


@pytest.mark.parametrize("argv", [["report", "--study", "esc", "--out", "/proc/x.html"],
                                  ["trials", "--study", "esc", "--csv", "/proc/x.csv"],
                                  ["report", "--study", "esc", "--csv", "/proc/tables"]])
def test_outputs_the_system_refuses_are_refused_before_any_work(recipe, monkeypatch, capsys, argv):
    # as root os.access says /proc is writable; creating a file there fails
    _forbid(monkeypatch, "nasprune.storage.load_study", "reading the study")
    assert "cannot be written" in _error(argv, capsys)


# -- 5. values JSON cannot hold ----------------------------------------------------------------------------------
def test_trials_json_writes_null_for_nan_and_infinity(recipe, capsys):
    import optuna

    from nasprune.storage import open_storage

    study = optuna.create_study(study_name="esc", storage=open_storage("sqlite:///studies/esc.db", heartbeat=False),
                                directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["val_acc", "mflops"])
    trial = study.ask()
    trial.set_user_attr("val_acc", math.nan)
    trial.set_user_attr("val_acc_history", [0.5, math.inf, -math.inf])
    study.tell(trial, [math.inf, 3.0])
    capsys.readouterr()
    assert main(["trials", "--study", "esc", "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    record = json.loads(out)[0]
    assert record["values_val_acc"] is None and record["values_mflops"] == 3.0
    assert record["user_attrs_val_acc"] is None and record["user_attrs_val_acc_history"] == [0.5, None, None]


# -- 8. a re-rank refuses a finalist without weights before training any ------------------------------------------
def test_rerank_checks_every_finalists_weights_before_any_training(recipe, monkeypatch, capsys):
    from nasprune.search.record import records
    from nasprune.search.rerank import build_plan

    assert main(["search", str(recipe(trials=4, budget_mflops=40)), "--no-progress"]) == 0
    study = load_study("esc")
    from nasprune.search.recipe import RerankConfig

    plan = build_plan(records(study), RerankConfig(top=6))
    assert len(plan.rungs[0].members) >= 2
    last = plan.rungs[0].members[-1]  # the finalist trained last: others would be trained before its turn
    artifact = plan.record(last).artifact_id
    (Path(study.user_attrs["artifacts_dir"]) / artifact).unlink()
    before = dict(study.user_attrs)
    _forbid(monkeypatch, "nasprune.search.rerank.train_rung", "training a rung")
    err = _error(["rerank", "--study", "esc", "--top", "6"], capsys)
    assert f"trial {last}'s checkpoint artifact {artifact} is not in " in err and "nothing was trained" in err
    assert load_study("esc").user_attrs == before
    # --artifacts naming a directory that does not exist: the same refusal, and the directory is not created
    err = _error(["rerank", "--study", "esc", "--top", "6", "--artifacts", "missing"], capsys)
    assert "is not in 'missing'" in err and not Path("missing").exists()
