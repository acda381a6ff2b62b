"""Resuming a study keeps it the study it was (issue 20, item 1): the stored recipe against the given one, key by
key, every difference refused except the keys of ``RESUME_FREE``, before the data loads and with nothing saved
changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cli_errors import synthetic_recipe

from nasprune.cli import main
from nasprune.errors import NaspruneError
from nasprune.search.recipe import Recipe, parse_recipe
from nasprune.search.resume import RESUME_FREE, recipe_differences
from nasprune.search.runner import check_existing, open_study
from nasprune.storage import load_study

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SYNTHETIC = synthetic_recipe("res")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "search.md"


def _recipe(**changes) -> Recipe:
    return parse_recipe({**SYNTHETIC, **changes}, "r.yaml")


def _keys(stored: Recipe, given: Recipe) -> list[str]:
    return [key for key, _, _ in recipe_differences(stored, given)]


@pytest.mark.parametrize("changes, key", [
    ({"data": {**SYNTHETIC["data"], "name": "fashion-mnist"}}, "data.name"),
    ({"data": {**SYNTHETIC["data"], "resolution": 32}}, "data.resolution"),
    ({"space": "mobilenets"}, "space.name"),
    ({"space_overrides": {"free_placement": None, "width": [0.25]}}, "space.width"),
    ({"space_overrides": {"free_placement": None, "width": [0.25, 0.5], "se": {"blocks": [0, 1]}}},
     "space.se.blocks"),
    ({"budget_mflops": 60}, "budget_mflops"),
    ({"budget_floor": 0.5}, "budget_floor"),
    ({"deploy_resolution": 160}, "deploy_resolution"),
    ({"objectives": ["val_acc", "mflops", "params"]}, "objectives"),
    ({"sampler": "tpe"}, "sampler"),
    ({"seed": 3}, "seed"),
    ({"parent": {**SYNTHETIC["parent"], "epochs": 10}}, "parent.epochs"),
    ({"parent": {**SYNTHETIC["parent"], "mode": "per_trial"}}, "parent.mode"),
    ({"finetune": {**SYNTHETIC["finetune"], "epochs": 3}}, "finetune.epochs"),
    ({"pruner": "median"}, "pruner.name"),
    ({"latency": {"runs": 1, "threads": 2}}, "latency.threads"),
    ({"seed_designs": False}, "seed_designs"),
    ({"with_baselines": True}, "with_baselines"),
])
def test_every_key_that_changes_a_trial_is_a_difference(changes, key):
    assert key in _keys(_recipe(), _recipe(**changes))


@pytest.mark.parametrize("changes", [
    {"trials": 50},
    {"storage": "sqlite:///elsewhere/res.db"},
    {"artifacts": "other.artifacts"},  # judged on its own: the recorded directory by any path
    {"data": {**SYNTHETIC["data"], "data_dir": "/mnt/data"}},
    {"parent": {**SYNTHETIC["parent"], "cache": False, "device": "cpu"}},
    {"finetune": {**SYNTHETIC["finetune"], "device": "cpu"}},
    {"rerank": {"top": 3, "epochs": 1}},
    {"parent": {**SYNTHETIC["parent"], "momentum": 0.9, "seed": 0}},  # TrainConfig's defaults written out
])
def test_keys_that_leave_trials_alone_are_no_difference(changes):
    assert _keys(_recipe(), _recipe(**changes)) == []


def test_every_stored_key_outside_the_table_is_compared():
    from nasprune.search.resume import _diff

    stored = _recipe().to_dict()
    for key in stored:  # keys added to Recipe later are in to_dict() too: covered without a change here
        out: list = []
        _diff(stored, {**stored, key: "changed"}, "", out)
        assert [k for k, _, _ in out] == ([] if key in RESUME_FREE else [key]), key


@pytest.mark.parametrize("changes, key", [
    ({"recalibrate": {"batches": 5}}, "recalibrate.batches"),
    ({"parent": {**SYNTHETIC["parent"], "mode": "oneshot"},
      "space_overrides": {**SYNTHETIC["space_overrides"], "prune": {"criteria": ["l1"]}}}, "parent.mode"),
])
def test_newer_recipe_keys_are_compared_too(changes, key):
    base = _recipe(space_overrides=changes.get("space_overrides", SYNTHETIC["space_overrides"]))
    assert key in _keys(base, _recipe(**changes))


def test_a_stored_recipe_without_newer_keys_compares_with_their_defaults():
    stored = _recipe().to_dict()
    for newer in ("seed_designs", "budget_floor", "rerank"):  # as an older nasprune stored it
        del stored[newer]
    older = Recipe.from_dict(stored)
    assert _keys(older, _recipe()) == []
    assert _keys(older, _recipe(seed_designs=False, budget_floor=0.5)) == ["budget_floor", "seed_designs"]


def test_docs_show_the_table_the_check_uses():
    text = DOCS.read_text()
    section = text.split("### What a resume may change", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.M)
    assert [key for key, _ in rows] == list(RESUME_FREE)
    for key, why in rows:
        assert why.replace("`", "") == RESUME_FREE[key], key


# -- the command line ------------------------------------------------------------------------------------------
@pytest.fixture
def study(tmp_path, monkeypatch):
    """A study created by its recipe file (no trial run): the path, the storage URL and the artifacts."""
    monkeypatch.chdir(tmp_path)
    path, url = tmp_path / "r.yaml", f"sqlite:///{tmp_path / 'res.db'}"
    path.write_text(yaml.safe_dump(SYNTHETIC))
    open_study(parse_recipe(SYNTHETIC, path, storage=url), url, tmp_path / "res.artifacts", heartbeat=False)
    return path, url


def _forbid_work(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the data was loaded before the resume was refused")

    monkeypatch.setattr("nasprune.data.load_data", fail)


@pytest.mark.parametrize("argv, recipe_changes, shown", [
    (["--data", "fashion-mnist"], {}, "data.name='synthetic', not 'fashion-mnist'"),
    (["--space", "mobilenets"], {}, "space.name='fd_mobilenet', not 'mobilenets'"),
    (["--budget-floor", "0.5"], {}, "budget_floor=0.85, not 0.5"),
    (["--seed", "7"], {}, "seed=0, not 7 (and 2 more: parent.seed, finetune.seed)"),  # their default seed
    (["--no-seed-designs"], {}, "seed_designs=True, not False"),
    ([], {"parent": {**SYNTHETIC["parent"], "epochs": 10}, "finetune": {**SYNTHETIC["finetune"], "epochs": 3}},
     "parent.epochs=1, not 10 (and 1 more: finetune.epochs):"),
])
def test_a_resume_that_changes_the_study_is_refused_before_any_work(study, monkeypatch, capsys, argv,
                                                                    recipe_changes, shown):
    path, url = study
    if recipe_changes:
        path.write_text(yaml.safe_dump({**SYNTHETIC, **recipe_changes}))
    before = load_study("res", url)
    _forbid_work(monkeypatch)
    assert main(["search", str(path), "--storage", url, "--trials", "7", "--workers", "2", "--no-progress",
                 *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasprune: error: study 'res' in sqlite:///") and err.count("\n") == 1, err
    assert f"was created with {shown}" in err and "resuming must not change what its trials mean" in err
    after = load_study("res", url)
    assert after.user_attrs == before.user_attrs and after.trials == []


def test_a_resume_may_change_trials_data_dir_and_rerank(study, tmp_path):
    path, url = study
    recipe = parse_recipe({**SYNTHETIC, "rerank": {"top": 2}}, path, storage=f"sqlite:///{tmp_path}/../"
                          f"{tmp_path.name}/res.db", trials=9, data_dir=str(tmp_path))
    check_existing(recipe, url, tmp_path / "res.artifacts")  # no error
    with pytest.raises(NaspruneError, match=r"created with data\.subset=120, not 60: "):
        check_existing(parse_recipe({**SYNTHETIC, "data": {**SYNTHETIC["data"], "subset": 60}}, path), url,
                       tmp_path / "res.artifacts")


# -- a seed design interrupted by Ctrl-C is redone (item 6) --------------------------------------------------------
def test_a_seed_design_stopped_by_ctrl_c_is_redone_on_resume(tmp_path, monkeypatch, capsys):
    import nasprune.train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASPRUNE_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "60")
    path = tmp_path / "r.yaml"
    # widths 0.25, 0.5 at 40 MFLOPs: fd_mobilenet 0.25 (the first trial), 0.5, mobilenet_v1 0.25, and v1 0.5@band
    path.write_text(yaml.safe_dump({**SYNTHETIC, "trials": 4}))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(nasprune.train, "fit", interrupted)
        assert main(["search", str(path), "--no-progress"]) == 130
    study = load_study("res")
    [failed] = [t for t in study.trials if t.state.name == "FAIL"]
    designs = {t.user_attrs["seed_design"] for t in study.trials}
    assert failed.user_attrs["seed_design"] == "fd_mobilenet_0.25" and len(designs) == 4
    capsys.readouterr()
    assert main(["search", str(path), "--no-progress"]) == 0
    finished = [t for t in load_study("res").trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(t.user_attrs.get("seed_design") or "" for t in finished) == sorted(designs)
    redone = next(t for t in finished if t.user_attrs["seed_design"] == "fd_mobilenet_0.25")
    assert redone.params == failed.params


def test_a_hand_design_that_keeps_failing_is_enqueued_at_most_three_times():
    import optuna

    from nasprune.search.seeds import MAX_ATTEMPTS, _enqueue

    study = optuna.create_study(directions=["maximize", "minimize"])
    for attempt in range(MAX_ATTEMPTS + 1):
        names = _enqueue(study, [("fd_mobilenet_0.25", {"width": 0.25})], "seed_design")
        assert names == (["fd_mobilenet_0.25"] if attempt < MAX_ATTEMPTS else [])
        if names:
            trial = study.ask()
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert _enqueue(study, [("fd_mobilenet_0.5", {"width": 0.5})], "seed_design") == ["fd_mobilenet_0.5"]
    assert _enqueue(study, [("fd_mobilenet_0.5", {"width": 0.5})], "seed_design") == []  # WAITING: held
