"""Re-ranking the top trials (nasprune.search.rerank): the halving schedule, resume after a crash, two workers,
the real trainers, the export of the re-ranked winner with its card, the report's table, the CLI's bad input.

Most tests use a hand-made SQLite study of tiny untrained networks and a stand-in trainer whose accuracies are
fixed per (trial, epochs), so the expected rungs and winner are known exactly and nothing slow is trained.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pgserver
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState, create_trial

from nasprune.builder import build
from nasprune.checkpoint import load, save_checkpoint
from nasprune.cli import main
from nasprune.errors import NaspruneError
from nasprune.search import rerank
from nasprune.search.recipe import Recipe, RerankConfig, parse_recipe
from nasprune.search.record import RungResult, TrialRecord, records
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, StemSpec
from nasprune.storage import load_study, open_storage
from nasprune.threads import torch_threads

pg_server = pgserver.pg_server  # a throwaway PostgreSQL cluster, for the one test that asks for it

SPEC = ArchSpec(name="tiny", in_channels=1, resolution=224, num_classes=4, stem=StemSpec(out_channels=8, stride=2),
                blocks=(DWSBlockSpec(in_channels=8, out_channels=16, stride=2),), head=HeadSpec())
PROXY = {0: 0.60, 1: 0.70, 2: 0.65, 3: 0.55, 4: 0.50, 5: 0.40}  # proxy order: 1, 2, 0, 3, 4, 5
# the stand-in trainer's accuracy per (trial, epochs): the proxy's best (1) loses at rung 1 to trial 0
ACCURACY = {(1, 2): 0.80, (2, 2): 0.70, (0, 2): 0.75, (3, 2): 0.60, (1, 4): 0.81, (0, 4): 0.85, (0, 8): 0.90}


def recipe_dict(**rerank_keys) -> dict:
    return parse_recipe({
        "study": "rr", "budget_mflops": 50, "space": "fd_mobilenet", "trials": len(PROXY),
        "data": {"name": "synthetic", "resolution": 16, "subset": 64, "val_size": 32},
        "parent": {"epochs": 1, "batch_size": 32, "lr": 0.05}, "finetune": {"epochs": 1, "batch_size": 32},
        "rerank": {"top": 4, **rerank_keys},
    }, "rr.yaml").to_dict()


def make_study(root: Path, url: str | None = None, **rerank_keys) -> tuple[optuna.Study, str]:
    """Six trained trials (PROXY accuracies) with untrained tiny checkpoints, one FAIL, one over budget.

    Every trial holds the one tiny network, so the re-rank here treats them as distinct (``distinct: false``)
    unless a test says otherwise: these tests are about rungs, claims and storage, not about duplicates.
    """
    rerank_keys = {"distinct": False, **rerank_keys}
    url = url or f"sqlite:///{root / 'rr.db'}"
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name="rr", storage=open_storage(url), directions=["maximize", "minimize"])
    for key, value in {"budget_mflops": 50, "recipe": recipe_dict(**rerank_keys), "artifacts_dir": str(artifacts),
                       "deploy_resolution": 224, "train_resolution": 16}.items():
        study.set_user_attr(key, value)
    torch.manual_seed(0)
    save_checkpoint(root / "c.pt", build(SPEC), {"role": "search_child"})
    artifact = upload_artifact(artifact_store=FileSystemArtifactStore(artifacts), file_path=str(root / "c.pt"),
                               study_or_trial=study)
    attrs = {"child_spec": SPEC.to_dict(), "artifact_id": artifact, "mflops": 1.0}
    study.add_trials([create_trial(values=[acc, 1.0], user_attrs={**attrs, "val_acc": acc},
                                   constraints={"budget": -49.0}) for acc in PROXY.values()])
    study.add_trials([create_trial(state=TrialState.FAIL),
                      create_trial(values=[0.99, 60.0], user_attrs={**attrs, "val_acc": 0.99, "mflops": 60.0},
                                   constraints={"budget": 10.0})])
    return study, url


class StandIn:
    """A trainer returning ACCURACY[(trial, epochs)] and an untrained net; counts its calls (thread-safe)."""

    def __init__(self, fail_at_epochs: int | None = None, pause: float = 0.0) -> None:
        self.calls: list[tuple[int, int]] = []
        self.threads: set[int] = set()
        self.fail_at_epochs, self.pause = fail_at_epochs, pause
        self.lock = threading.Lock()

    def __call__(self, record: TrialRecord, epochs: int, seed: int, ctx):
        if epochs == self.fail_at_epochs:
            self.fail_at_epochs = None  # the next run gets through
            raise RuntimeError("simulated crash in rung 1")
        with self.lock:
            self.calls.append((record.number, epochs))
            self.threads.add(threading.get_ident())
        time.sleep(self.pause)
        return build(SPEC), ACCURACY[(record.number, epochs)]


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASPRUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "3")
    with torch_threads(1):  # a busy 2-core machine: one intra-op thread trains many times faster than two
        yield tmp_path


def run(study, url, **keys):
    recipe = Recipe.from_dict(study.user_attrs["recipe"])
    config = RerankConfig(**{"top": 4, "distinct": False, **keys})   # make_study: one network in every trial
    return rerank.run_rerank(study, recipe, config, url=url, artifacts=study.user_attrs["artifacts_dir"], poll=0.2)


# -- the schedule and the plan -----------------------------------------------------------------------------------
@pytest.mark.parametrize("config, available, expected", [
    (RerankConfig(top=4), 10, [(0, 4, 2), (1, 2, 4), (2, 1, 8)]),
    (RerankConfig(top=5, epochs=1, growth=3), 10, [(0, 5, 1), (1, 3, 3), (2, 2, 9), (3, 1, 27)]),
    (RerankConfig(top=4), 3, [(0, 3, 2), (1, 2, 4), (2, 1, 8)]),
    (RerankConfig(top=1, epochs=3), 5, [(0, 1, 3)]),
    (RerankConfig(top=2, growth=1), 5, [(0, 2, 2), (1, 1, 2)]),
    (RerankConfig(top=0), 5, []),
    (RerankConfig(top=4), 0, []),
])
def test_schedule_halves_down_to_one_with_more_epochs(config, available, expected):
    assert [tuple(r) for r in rerank.schedule(config, available)] == expected


def _record(number: int, acc: float, results=()) -> TrialRecord:
    return TrialRecord(number=number, state=TrialState.COMPLETE, values=(acc, 1.0), val_acc=acc, mflops=1.0,
                       rerank=tuple(results))


def _result(rung: int, acc: float, epochs: int | None = None, **kw) -> RungResult:
    return RungResult(rung=rung, epochs=epochs or 2 * 2 ** rung, seeds=1, source="weights", val_acc=acc, **kw)


def test_plan_takes_the_better_half_and_ignores_results_trained_otherwise():
    config = RerankConfig(top=4)
    recs = [_record(0, 0.6, [_result(0, 0.75), _result(1, 0.85)]), _record(1, 0.7, [_result(0, 0.8)]),
            _record(2, 0.65, [_result(0, 0.7)]), _record(3, 0.55, [_result(0, 0.6)]),
            _record(4, 0.5, [_result(0, 0.99, epochs=3)]),  # not in the top 4, and trained for other epochs
            TrialRecord(number=5, state=TrialState.PRUNED, val_acc=0.9)]  # not trained: never a candidate
    plan = rerank.build_plan(recs, config)
    assert [r.number for r in plan.proxy] == [1, 2, 0, 3, 4]
    assert [r.members for r in plan.rungs] == [(1, 2, 0, 3), (1, 0)]
    assert plan.rungs[0].ranking(plan.proxy_rank) == (1, 0, 2, 3)
    assert plan.pending() == (plan.rungs[1], (1,)) and not plan.complete
    assert plan.decided is plan.rungs[0] and plan.winner == 1  # unfinished: the best of rung 0 so far
    recs[1] = _record(1, 0.7, [_result(0, 0.8), _result(1, 0.81)])
    plan = rerank.build_plan(recs, config)
    assert [r.members for r in plan.rungs] == [(1, 2, 0, 3), (1, 0), (0,)] and plan.pending() == (plan.rungs[2], (0,))
    recs[0] = _record(0, 0.6, [_result(0, 0.75), _result(1, 0.85), _result(2, 0.9)])
    plan = rerank.build_plan(recs, config)
    assert plan.complete and plan.winner == 0 and plan.pending() is None
    assert rerank.build_plan(recs, RerankConfig(top=4, seeds=2)).decided is None  # 1-seed results do not count


def test_a_network_trained_by_several_trials_is_one_candidate():
    nets = [SPEC.replace(bn_eps=e).to_dict() for e in (1e-5, 1e-4, 1e-3)]   # three networks (hashes differ)
    recs = [dataclasses.replace(_record(n, acc), child_spec=nets[k])
            for n, acc, k in ((0, 0.7, 0), (1, 0.7, 0), (2, 0.7, 0), (3, 0.6, 1), (4, 0.5, 2), (5, 0.4, 1))]
    plan = rerank.build_plan(recs, RerankConfig(top=3))
    assert plan.rungs[0].members == (0, 3, 4)        # trials 1 and 2 retrain trial 0's network; 5 is trial 3's
    assert [r.number for r in plan.proxy] == [0, 1, 2, 3, 4, 5]                  # the proxy order keeps them all
    assert rerank.build_plan(recs, RerankConfig(top=3, distinct=False)).rungs[0].members == (0, 1, 2)
    assert [r.number for r in rerank.distinct_networks([_record(7, 0.1), _record(8, 0.1)])] == [7, 8]  # no spec


def test_a_rerank_stored_before_distinct_existed_keeps_its_candidates():
    old = {"top": 4, "epochs": 2, "growth": 2, "seeds": 1, "from": "weights"}
    assert rerank.stored_config({"rerank_config": old}) == RerankConfig(top=4, distinct=False)
    assert rerank.stored_config({"rerank_config": {**old, "distinct": True}}).distinct


def test_equal_rerank_accuracy_goes_to_the_better_proxy_rank():
    recs = [_record(0, 0.6, [_result(0, 0.8)]), _record(1, 0.7, [_result(0, 0.8)])]
    plan = rerank.build_plan(recs, RerankConfig(top=2))
    assert plan.rungs[0].ranking(plan.proxy_rank) == (1, 0) and plan.rungs[1].members == (1,)


# -- running it ----------------------------------------------------------------------------------------------------
def test_rerank_trains_each_rung_once_and_records_it_on_the_study(env, monkeypatch):
    study, url = make_study(env)
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    plan = run(study, url)
    assert trainer.calls == [(1, 2), (2, 2), (0, 2), (3, 2), (1, 4), (0, 4), (0, 8)]  # 4 at 2, 2 at 4, 1 at 8
    assert plan.complete and plan.winner == 0 and plan.proxy_rank[0] == 3
    by_number = {r.number: r for r in records(study)}
    assert [(r.rung, r.epochs, r.val_acc) for r in by_number[0].rerank] == [(0, 2, 0.75), (1, 4, 0.85), (2, 8, 0.9)]
    assert by_number[3].rerank[0].val_accs == (0.6,) and not by_number[4].rerank
    assert json.loads(json.dumps(study.user_attrs["rerank:0"]))[2]["from"] == "weights"
    assert study.user_attrs["rerank_config"] == {"top": 4, "epochs": 2, "growth": 2, "seeds": 1, "from": "weights",
                                                 "distinct": False}
    assert all(v is None for k, v in study.user_attrs.items() if k.startswith("rerank_claim:"))
    store = FileSystemArtifactStore(study.user_attrs["artifacts_dir"])  # every rung's weights, as a study artifact
    with store.open_reader(by_number[0].rerank[2].artifact_id) as reader:
        Path("w.pt").write_bytes(reader.read())
    assert load("w.pt").metadata["rung"] == 2 and load("w.pt").spec.hash == SPEC.hash
    assert run(study, url).winner == 0 and len(trainer.calls) == 7  # run again: nothing retrained
    assert run(study, url, top=3).winner == 0 and len(trainer.calls) == 7  # top 3: rungs 3, 2, 1, all recorded


def test_trials_lists_the_rerank_where_users_list_trials(env, monkeypatch):
    from nasprune.search.table import trials_frame, trials_records

    study, url = make_study(env)
    monkeypatch.setitem(rerank.TRAINERS, "weights", StandIn())
    run(study, url)
    rows = {row["number"]: row for row in trials_records(study)}
    assert (rows[0]["rerank_rung"], rows[0]["rerank_epochs"], rows[0]["rerank_val_acc"]) == (2, 8, 0.9)
    assert rows[0]["rerank_winner"] and not any(rows[n]["rerank_winner"] for n in rows if n != 0)
    assert (rows[3]["rerank_rung"], rows[3]["rerank_val_acc"]) == (0, 0.6)
    assert rows[4]["rerank_rung"] is None and rows[4]["rerank_val_acc"] is None  # not a finalist: null in JSON
    csv = trials_frame(study).to_csv(index=False)
    assert "rerank_val_acc" in csv.splitlines()[0] and "rerank_winner" in csv.splitlines()[0]


def test_resume_after_a_crash_in_rung_1_keeps_rung_0(env, monkeypatch):
    study, url = make_study(env)
    trainer = StandIn(fail_at_epochs=4)
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(study, url)
    assert trainer.calls == [(1, 2), (2, 2), (0, 2), (3, 2)]
    assert study.user_attrs["rerank_claim:1:1"] is None  # the rung in progress was released, to be redone
    plan = run(study, url)
    assert trainer.calls[4:] == [(1, 4), (0, 4), (0, 8)]  # rung 0 not retrained
    assert plan.winner == 0


def test_a_claim_of_a_dead_process_is_taken_over(env, monkeypatch):
    study, url = make_study(env)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    claim = {"owner": "gone", "host": socket.gethostname(), "pid": int(dead.stdout), "beat": time.time()}
    assert not rerank._live(claim, 60)
    assert rerank._live({**claim, "pid": None, "host": "elsewhere"}, 60)  # another machine: its heartbeat decides
    assert not rerank._live({**claim, "host": "elsewhere", "beat": time.time() - 61}, 60)
    study.set_user_attr("rerank_claim:1:0", claim)
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    assert run(study, url).winner == 0 and (1, 2) in trainer.calls


def test_two_workers_share_the_work_and_agree(env, monkeypatch):
    _two_workers(*make_study(env), monkeypatch)


@pytest.mark.postgres
def test_two_workers_share_the_work_on_postgresql(env, monkeypatch, pg_server):
    _two_workers(*make_study(env, url=pg_server.url()), monkeypatch)  # the study lock: an advisory lock


def _two_workers(study, url, monkeypatch) -> None:
    trainer = StandIn(pause=0.3)
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    winners, errors = [], []

    def worker() -> None:
        try:  # each worker with its own storage and study object, as two processes would have
            winners.append(run(load_study("rr", url), url).winner)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and winners == [0, 0]
    assert sorted(trainer.calls) == sorted([(1, 2), (2, 2), (0, 2), (3, 2), (1, 4), (0, 4), (0, 8)])  # once each
    assert len(trainer.threads) == 2  # both trained (rung 0 has four trainings of 0.3 s)
    assert [len(r.rerank) for r in sorted(records(study), key=lambda r: r.number)[:4]] == [3, 2, 1, 1]


def test_search_stage_runs_once_the_study_holds_its_trials(env, monkeypatch):
    from nasprune.search.runner import _rerank

    study, url = make_study(env)
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    recipe = Recipe.from_dict(study.user_attrs["recipe"])
    artifacts = Path(study.user_attrs["artifacts_dir"])
    assert _rerank(study, recipe.override(trials=9), url, artifacts) is None and not trainer.calls  # not done yet
    assert _rerank(study, recipe.override(rerank=RerankConfig(top=0)), url, artifacts) is None
    assert _rerank(study, recipe, url, artifacts).winner == 0 and len(trainer.calls) == 7


@pytest.mark.parametrize("source", list(rerank.TRAINERS))
def test_real_trainers_keep_the_first_seeds_weights(env, source):
    study, url = make_study(env, url=None)
    plan = run(study, None, top=2, epochs=1, seeds=2, source=source)
    assert plan.complete and [r.members for r in plan.rungs] == [(1, 2), (plan.winner,)]
    result = plan.rungs[1].results[plan.winner]
    assert (result.epochs, result.seeds, result.source, len(result.val_accs)) == (2, 2, source, 2)
    assert result.val_acc == pytest.approx(sum(result.val_accs) / 2) and 0 <= result.val_acc <= 1
    store = FileSystemArtifactStore(study.user_attrs["artifacts_dir"])
    with store.open_reader(result.artifact_id) as reader:
        Path("w.pt").write_bytes(reader.read())
    model = load("w.pt")
    assert model.metadata["val_acc"] == result.val_accs[0] and model.metadata["from"] == source
    from nasprune.train import evaluate

    ctx = rerank.RerankContext(recipe=Recipe.from_dict(study.user_attrs["recipe"]), study=study,
                               artifacts=Path(study.user_attrs["artifacts_dir"]))
    assert evaluate(model, ctx.data, "val") == pytest.approx(result.val_accs[0])  # the kept weights are seed 0's


def test_no_trained_trial_is_one_error(env):
    study = optuna.create_study(study_name="empty", directions=["maximize", "minimize"])
    study.add_trial(create_trial(state=TrialState.FAIL))
    recipe = parse_recipe({"budget_mflops": 50, "data": {"name": "synthetic"}}, "x.yaml")
    with pytest.raises(NaspruneError, match="no feasible trained trial to re-rank"):
        rerank.run_rerank(study, recipe, RerankConfig(distinct=False), url=None, artifacts=env)


# -- export picks the re-ranked winner ----------------------------------------------------------------------------
def test_export_best_is_the_rerank_winner_with_its_weights_and_evidence(env, monkeypatch, capsys):
    import export_study

    from nasprune.export import select_trial
    from nasprune.train import evaluate

    info = export_study.make_study(env)  # trained trials by proxy: 0 (the best), 5, 1, 3

    def perturbed(record, epochs, seed, ctx):  # the trial's own weights, changed so the export can tell them apart
        model = rerank._trial_weights(record, ctx)
        with torch.no_grad():
            model.head.classifier.bias.add_(0.5)
        return model, {0: 0.5, 5: 0.9}[record.number]

    monkeypatch.setitem(rerank.TRAINERS, "weights", perturbed)
    # trials 0 and 5 hold one network (5 is 0's deploy copy): re-rank them as two candidates all the same
    stored = load_study("tiny", info.url)
    stored.set_user_attr("recipe", {**stored.user_attrs["recipe"], "rerank": {"distinct": False}})
    assert main(["rerank", "--study", "tiny", "--storage", info.url, "--top", "2"]) == 0
    assert "winner: trial 5 (proxy rank 2)" in capsys.readouterr().out
    assert main(["export", "--study", "tiny", "--storage", info.url, "--format", "json,pt", "--out", "exp",
                 "--latency-runs", "0"]) == 0
    out = capsys.readouterr().out
    assert "trial 5 of study 'tiny': re-ranked winner: survivor of all 2 rungs of successive halving over the top 2 " \
           "trained trials (proxy rank 2)" in out
    study = load_study("tiny", info.url)
    chosen = {r.number: r for r in records(study)}[5].rerank[1]
    store = FileSystemArtifactStore(info.artifacts)
    with store.open_reader(chosen.artifact_id) as reader:
        Path("chosen.pt").write_bytes(reader.read())
    exported, weights = load("exp/model.pt"), load("chosen.pt")
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), weights.state_dict().values(),
                                                  strict=True))
    assert not torch.equal(exported.head.classifier.bias, info.model_a.head.classifier.bias)
    assert exported.metadata["val_acc"] == 0.9 and exported.metadata["role"] == "rerank"
    test_acc = evaluate(exported, export_study.DATA, "test")
    card = Path("exp/MODEL_CARD.md").read_text()
    assert "## How it was chosen" in card
    proxy = f"{100 * (info.val_acc_a - 0.1):.2f} %"
    assert (f"- proxy rank 2 of 4 trained trials (search validation accuracy {proxy}); re-ranked by successive "
            "halving over the top 2, fine-tuned from its search weights, 1 seed per rung") in card
    assert "- rung 0 (2 epochs): validation accuracy 90.00 %, place 1 of 2" in card
    assert "- rung 1 (4 epochs): validation accuracy 90.00 %, place 1 of 1" in card
    assert "| validation accuracy of the exported (re-ranked) weights, at 16x16 | 90.00 % |" in card
    assert f"test images of synthetic at 16x16) | {100 * test_acc:.2f} % |" in card
    manifest = json.loads(Path("exp/export.json").read_text())
    assert manifest["test_acc"] == test_acc and len(manifest["evidence"]) == 3

    # a tighter --budget leaving the winner out: the proxy's rule among what is left, saying why
    picked = select_trial(study, "best", export_study.COST_B.mflops + 0.1)
    assert picked.trial.number == 1 and "the re-rank's winner, trial 5, is over --budget" in picked.reason
    # unfinished (rung 1 of trial 5 gone): the best of rung 0, with rung 0's weights
    study.set_user_attr("rerank:5", study.user_attrs["rerank:5"][:1])
    picked = select_trial(study, "best")
    assert picked.trial.number == 5 and "unfinished" in picked.reason
    assert picked.artifact_id == study.user_attrs["rerank:5"][0]["artifact_id"]
    # a re-rank with no finished rung (trial 1 now in the top 3, not yet trained): the proxy's best
    study.set_user_attr("rerank_config", {**study.user_attrs["rerank_config"], "top": 3})
    picked = select_trial(study, "best")
    assert picked.trial.number == 0 and picked.artifact_id is None and "no finished rung" in picked.reason
    assert picked.evidence == ()


# -- the report --------------------------------------------------------------------------------------------------
def test_report_table_and_figure_of_proxy_against_reranked_accuracy(env, monkeypatch):
    from nasprune.report import build_sections, build_tables

    study, url = make_study(env)
    sections = {s.key: s for s in build_sections(build_tables(study), study)}
    assert sections["rerank"].figure is None and "not re-ranked" in sections["rerank"].note
    monkeypatch.setitem(rerank.TRAINERS, "weights", StandIn())
    run(study, url)
    tables = build_tables(study)
    rows = tables.rerank[["number", "proxy_rank", "proxy_acc", "rung", "epochs", "val_acc", "advanced", "winner"]]
    assert [tuple(r) for r in rows.itertuples(index=False)] == [
        (1, 1, 0.70, 0, 2, 0.80, True, False), (0, 3, 0.60, 0, 2, 0.75, True, False),
        (2, 2, 0.65, 0, 2, 0.70, False, False), (3, 4, 0.55, 0, 2, 0.60, False, False),
        (0, 3, 0.60, 1, 4, 0.85, True, False), (1, 1, 0.70, 1, 4, 0.81, False, False),
        (0, 3, 0.60, 2, 8, 0.90, False, True)]
    assert "rerank" in tables.frames()
    figure = {s.key: s for s in build_sections(tables, study)}["rerank"].figure
    assert [t.name for t in figure.data] == ["rung 0 (2 epochs)", "rung 1 (4 epochs)", "rung 2 (8 epochs)", "winner",
                                             "equal accuracy"]


# -- recipe and command line -----------------------------------------------------------------------------------
def test_recipe_rerank_section_round_trips_and_null_is_off():
    recipe = parse_recipe({"budget_mflops": 40, "rerank": {"top": 3, "from": "scratch", "seeds": 2}}, "x.yaml")
    assert recipe.rerank == RerankConfig(top=3, seeds=2, source="scratch")
    assert recipe.to_dict()["rerank"] == {"top": 3, "epochs": 2, "growth": 2, "seeds": 2, "from": "scratch",
                                        "distinct": True}
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert parse_recipe({"budget_mflops": 40, "rerank": {}}, "x.yaml").rerank == RerankConfig()
    for off in ({}, {"rerank": None}):
        assert parse_recipe({"budget_mflops": 40, **off}, "x.yaml").rerank is None
    assert not RerankConfig(top=0).enabled and RerankConfig().rung_epochs(2) == 8


@pytest.mark.parametrize("section, expected", [
    ({"top": -1}, "x.yaml: rerank.top=-1 is invalid: expected an integer >= 0"),
    ({"from": "parent"}, "x.yaml: rerank.from='parent' is invalid: expected one of weights, scratch"),
    ({"epochs": 0}, "x.yaml: rerank.epochs=0 is invalid: expected an integer >= 1"),
    ({"rungs": 3}, "x.yaml: unknown key 'rerank.rungs' (value 3): expected one of top, epochs, growth, seeds, from, "
                   "distinct"),
    ("weights", "x.yaml: rerank='weights' is invalid: expected a mapping with keys among top, epochs, growth, seeds, "
                "from, distinct or null"),
    ({"distinct": "yes"}, "x.yaml: rerank.distinct='yes' is invalid: expected true or false"),
])
def test_recipe_rerank_bad_values_are_one_line(section, expected):
    with pytest.raises(NaspruneError) as info:
        parse_recipe({"budget_mflops": 40, "rerank": section}, "x.yaml")
    assert str(info.value) == expected


def test_cli_reranks_and_resumes(env, monkeypatch, capsys):
    _, url = make_study(env)
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    assert main(["rerank", "--study", "rr", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "re-rank rung 2 (8 epochs): trial 0 validation accuracy 90.00 %" in out
    assert "  rung 1 (4 epochs): trial 0 85.00 %, trial 1 81.00 %" in out and "winner: trial 0 (proxy rank 3)" in out
    assert main(["rerank", "--study", "rr", "--storage", url]) == 0 and len(trainer.calls) == 7


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _no_recipe(env, url):
    study = optuna.create_study(study_name="bare", storage=url, directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.5, 1.0]))


def _untrained(env, url):
    study = optuna.create_study(study_name="bare", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("recipe", recipe_dict())
    study.add_trials([create_trial(state=TrialState.FAIL),
                      create_trial(values=[0.0, 60.0], user_attrs={"feasible": False}, constraints={"budget": 10.0})])


@pytest.mark.parametrize("argv, setup, expected", [
    (["--top", "0"], None, "argument --top: 0 is invalid: expected an integer >= 1"),
    (["--top", "two"], None, "argument --top: 'two' is not an integer: expected an integer >= 1"),
    (["--threads", "0"], None, "argument --threads: 0 is invalid"),
    (["--storage", "nonsense"], None, "malformed storage URL 'nonsense'"),
    (["--study", "nope"], None, "no study 'nope' in storage"),
    (["--artifacts", "rr.db"], None, "--artifacts 'rr.db' is a file: expected a directory"),
    (["--study", "bare"], _no_recipe, "study 'bare' has no stored recipe"),
    (["--study", "bare"], _untrained, "study 'bare' has no feasible trained trial to re-rank"),
])
def test_cli_bad_input_is_one_line_exit_2_before_any_training(env, monkeypatch, capsys, argv, setup, expected):
    _, url = make_study(env)
    if setup is not None:
        setup(env, url)
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    full = ["rerank", "--study", given.pop("--study", "rr"), "--storage", given.pop("--storage", url)]
    assert _exit_code([*full, *(x for kv in given.items() for x in kv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasprune: error: ") and expected in err and err.count("\n") == 1
    assert not trainer.calls


def test_cli_requires_a_study(capsys):
    assert _exit_code(["rerank"]) == 2
    assert "the following arguments are required: --study" in capsys.readouterr().err


def test_a_top_trial_without_weights_is_refused_before_any_training(env, monkeypatch):
    trainer = StandIn()
    monkeypatch.setitem(rerank.TRAINERS, "weights", trainer)
    study = optuna.create_study(study_name="bare", directions=["maximize", "minimize"])
    study.add_trials([create_trial(values=[acc, 1.0], user_attrs={"val_acc": acc, "child_spec": SPEC.to_dict()})
                      for acc in (0.5, 0.6)])
    recipe = Recipe.from_dict(recipe_dict())
    with pytest.raises(NaspruneError, match=r"trial 1 of the top 2 has no 'artifact_id' attribute to re-rank from "
                                            r"\(re-rank with 'from: scratch'\)"):
        rerank.run_rerank(study, recipe, RerankConfig(distinct=False), url=None, artifacts=env)
    assert not trainer.calls
