"""``nasprune export`` at the command line: what it prints, where it writes, and one-line errors (exit 2)
that leave nothing half-written behind."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import optuna
import pytest
import torch
from export_study import BUDGET, CHILD_A, COST_A, COST_B, DEPLOY, RETRAIN, STUDY, TRAIN, shared_study
from optuna.trial import create_trial

from nasprune.checkpoint import load
from nasprune.cli import main
from nasprune.spec import ArchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def study():
    return shared_study()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_best_prints_the_checks(study, tmp_path, capsys):
    out = tmp_path / "best"
    code, stdout, stderr = run(capsys, "--study", STUDY, "--storage", study.url, "--out", str(out),
                               "--onnx-exporter", "legacy", "--latency-runs", "2")
    print(stdout)
    assert code == 0, stderr
    assert stdout.startswith("trial 0 of study 'tiny': most accurate of 4 feasible trials; val acc "
                             f"{100 * study.val_acc_a:.2f} %, {COST_A.mflops:.2f} MFLOPs at 224x224\n")
    assert f"arch.json   {COST_A.macs:,} MACs, {COST_A.params:,} params at 224x224 = the trial's record" in stdout
    found = re.search(r"model.onnx  opset \d+ \(legacy exporter, input normalised float32\), onnxruntime vs "
                      r"PyTorch max abs diff (\S+), "
                      r"relative (\S+) \(tolerance rtol 0.0001, atol 1e-05\) \(b1@16 ", stdout)
    assert float(found.group(1)) <= 1e-4 and float(found.group(2)) <= 1e-4
    assert "model.pt    reloaded, max abs diff 0.00e+00, relative 0.00e+00 (tolerance rtol 0.0001, atol 1e-05)" \
        in stdout
    assert stdout.rstrip().endswith(f"exported trial 0 to {out}/ (arch.json, model.pt, model.ts, model.onnx, "
                                    "MODEL_CARD.md, export.json)")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["arch.json", "model.pt", "model.ts", "model.onnx", "MODEL_CARD.md", "export.json"])


def test_default_out_is_reports_export_study_trial(study, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capsys, "--study", STUDY, "--storage", study.url, "--trial", "knee", "--format", "json",
                          "--latency-runs", "0")
    assert code == 0, stderr
    out = tmp_path / "reports" / "export" / "tiny-trial0"  # a front of two trials: its most accurate one
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "arch.json", "export.json"]
    assert sorted(p.name for p in (tmp_path / "reports" / "export").iterdir()) == ["tiny-trial0"]


def test_tighter_budget_exports_the_spec_without_weights(study, tmp_path, capsys):
    out = tmp_path / "small"
    budget = f"{(COST_A.mflops + COST_B.mflops) / 2:.3f}"
    code, stdout, stderr = run(capsys, "--study", STUDY, "--storage", study.url, "--budget", budget,
                               "--format", "json", "--out", str(out), "--latency-runs", "0")
    assert code == 0, stderr
    assert stdout.startswith("trial 1 of study 'tiny'")
    exported = ArchSpec.from_json((out / "arch.json").read_text()).to_dict()
    assert exported["name"] == f"{STUDY}_trial1"  # its own name; otherwise the trial's child_spec
    assert {**exported, "name": "child_b"} == \
        optuna.load_study(study_name=STUDY, storage=study.url).trials[1].user_attrs["child_spec"]


def test_checkpoint_saved_at_deploy_resolution_exports_at_train_resolution(study, tmp_path, capsys):
    out = tmp_path / "t5"
    code, _, stderr = run(capsys, "--study", STUDY, "--storage", study.url, "--trial", "5", "--format", "pt,json",
                          "--out", str(out), "--latency-runs", "0")
    assert code == 0, stderr
    model = load(out / "model.pt")
    assert model.spec.resolution == TRAIN and model.metadata["deploy_resolution"] == DEPLOY
    for key, value in study.model_a.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_force_replaces_a_non_empty_out(study, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    argv = ("--study", STUDY, "--storage", study.url, "--format", "json", "--out", str(out), "--latency-runs", "0")
    code, stdout, stderr = run(capsys, *argv)
    assert code == 2 and stdout == ""
    assert stderr == (f"nasprune: error: --out '{out}' exists and is not empty: pass --force to replace it, or "
                      "choose another directory\n")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    code, _, stderr = run(capsys, *argv, "--force")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "arch.json", "export.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.fixture(scope="module")
def nothing_feasible(tmp_path_factory):
    """A second storage whose only completed trial is over budget."""
    url = f"sqlite:///{tmp_path_factory.mktemp('nothing') / 'nothing.db'}"
    s = optuna.create_study(study_name="nothing", storage=url, directions=["maximize", "minimize"])
    s.set_user_attr("budget_mflops", 1.0)
    s.add_trial(create_trial(values=[0.9, 2.0], constraints={"mflops": 1.0}))
    return url


def _bad_cases(study, nothing_url: str, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    base = ["--study", STUDY, "--storage", study.url]
    retrain = RETRAIN.format(arch="{out}/arch.json")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    empty = tmp_path / "empty_store"
    empty.mkdir()
    return {
        "no feasible trial": (["--study", "nothing", "--storage", nothing_url],
                              "study 'nothing' has no feasible completed trial (1 completed): run more trials "
                              "('nasprune search') or pass a larger --budget / an explicit --trial N"),
        "unknown trial": ([*base, "--trial", "42"], "trial 42 does not exist in study 'tiny': trials are 0-5"),
        "failed trial": ([*base, "--trial", "4"],
                         "trial 4 of study 'tiny' is FAIL, not COMPLETE: completed trials are 0-3, 5"),
        "no artifact_id": ([*base, "--trial", "1"],
                           "trial 1 of study 'tiny' has no trained weights (no 'artifact_id' attribute): export its "
                           f"spec alone with '--format json' and retrain it with '{retrain}'"),
        "artifact missing": ([*base, "--trial", "3"],
                             f"trial 3 of study 'tiny' has no trained weights (artifact {'0' * 32} not found in "
                             f"'{study.artifacts}'): export its spec alone with '--format json' and retrain it with "
                             f"'{retrain}'"),
        "wrong store": ([*base, "--artifacts", str(empty)],
                        "trial 0 of study 'tiny' has no trained weights (artifact "),
        "unwritable (parent is a file)": ([*base, "--format", "json", "--out", str(blocker / "x")],
                                          f"--out '{blocker / 'x'}' cannot be created: '{blocker}' is a file, not a "
                                          "directory: expected a path under a directory"),
        "out is a file": ([*base, "--out", str(blocker)],
                          f"--out '{blocker}' is a file: expected a directory (existing or to be created)"),
        "unknown format": ([*base, "--format", "json,tflite"],
                           "--format 'tflite' is invalid: expected a comma-separated list of json, pt, torchscript, "
                           "onnx"),
        "budget looser than the study's": ([*base, "--budget", "500"],
                                           f"--budget 500 is looser than study 'tiny''s budget {BUDGET:g} MFLOPs: "
                                           f"expected a value <= {BUDGET:g}"),
        "unknown study": (["--study", "nope", "--storage", study.url], "no study 'nope' in storage"),
        "missing storage": (["--study", STUDY, "--storage", f"sqlite:///{tmp_path / 'none.db'}"],
                            f"no storage file '{tmp_path / 'none.db'}'"),
        "bad --trial": ([*base, "--trial", "first"], "argument --trial: 'first' is invalid: expected best, knee or "
                                                     "a trial number >= 0"),
        "bad --tolerance": ([*base, "--tolerance", "1e-4,-1"], "argument --tolerance: '1e-4,-1' is invalid: expected "
                                                                "RTOL or RTOL,ATOL, numbers >= 0 (e.g. 1e-4,1e-5)"),
        "unparsable --tolerance": ([*base, "--tolerance", "loose"], "argument --tolerance: 'loose' is invalid: "
                                                                    "expected RTOL or RTOL,ATOL"),
    }


CASES = ["no feasible trial", "unknown trial", "failed trial", "no artifact_id", "artifact missing", "wrong store",
         "unwritable (parent is a file)", "out is a file", "unknown format", "budget looser than the study's",
         "unknown study", "missing storage", "bad --trial", "bad --tolerance", "unparsable --tolerance"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, study, nothing_feasible, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, message = _bad_cases(study, nothing_feasible, tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    if "--t" in case:  # argparse's own check of the value
        with pytest.raises(SystemExit) as exc:
            main(["export", *argv])
        code, err = exc.value.code, capsys.readouterr().err
    else:
        code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nasprune: error: ")
    assert message.format(out="reports/export/tiny-trial" + (argv[-1] if argv[-1].isdigit() else "0")) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no reports/, no staging directory


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(study, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run(capsys, "--study", STUDY, "--storage", study.url, "--format", "json", "--out",
                       str(locked / "x"))
    assert code == 2 and "Permission denied" in err and err.count("\n") == 1
    assert list(locked.iterdir()) == []


def test_the_cards_retrain_command_runs_on_the_exported_arch(study, tmp_path, capsys, monkeypatch):
    """The command printed in MODEL_CARD.md works as written (run inside the export directory)."""
    pytest.importorskip("nasprune.cli.train")
    out = tmp_path / "exp"
    assert run(capsys, "--study", STUDY, "--storage", study.url, "--format", "json", "--out", str(out),
               "--latency-runs", "0")[0] == 0
    card = (out / "MODEL_CARD.md").read_text()
    command = RETRAIN.format(arch="arch.json")
    assert f"```sh\n{command}\n```" in card
    monkeypatch.chdir(out)
    code = main([*shlex.split(command)[1:], "--out", "retrained", "--no-progress", "--json"])
    stdout = capsys.readouterr().out
    assert code == 0
    model = load(out / "retrained" / "model.pt")
    assert model.spec.replace(resolution=DEPLOY, name=CHILD_A.name) == CHILD_A  # same architecture
    assert json.loads(stdout)["epochs"] == 3


def test_nasprune_eval_reproduces_the_val_acc_of_the_exported_model(study, tmp_path, capsys):
    pytest.importorskip("nasprune.cli.eval")
    out = tmp_path / "exp"
    assert run(capsys, "--study", STUDY, "--storage", study.url, "--format", "pt", "--out", str(out),
               "--latency-runs", "0")[0] == 0
    assert main(["eval", str(out / "model.pt"), "--data", "synthetic", "--split", "val", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == study.val_acc_a and result["resolution"] == TRAIN
    card_eval = re.search(r"```sh\n(nasprune eval model.pt .*)\n```", (out / "MODEL_CARD.md").read_text()).group(1)
    assert card_eval == "nasprune eval model.pt --data synthetic"
    assert main([*shlex.split(card_eval)[1:-3], str(out / "model.pt"), *shlex.split(card_eval)[-2:], "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0


def test_tolerance_flag_is_used_and_printed_in_the_card(study, tmp_path, capsys):
    out = tmp_path / "loose"
    code, stdout, stderr = run(capsys, "--study", STUDY, "--storage", study.url, "--out", str(out), "--format",
                               "json,pt", "--tolerance", "0.01,0.002", "--latency-runs", "0")
    assert code == 0, stderr
    assert "model.pt    reloaded, max abs diff 0.00e+00, relative 0.00e+00 (tolerance rtol 0.01, atol 0.002)" in stdout
    card = (out / "MODEL_CARD.md").read_text()
    assert "with rtol 0.01 and atol 0.002 (`--tolerance 0.01,0.002`)." in card
    checks = json.loads((out / "export.json").read_text())["checks"]
    assert (checks["pt"]["rtol"], checks["pt"]["atol"]) == (0.01, 0.002)


def test_a_failed_check_says_how_to_loosen_it_and_that_flag_passes(study, tmp_path, capsys):
    argv = ["--study", STUDY, "--storage", study.url, "--format", "onnx", "--onnx-exporter", "legacy",
            "--latency-runs", "0"]
    code, stdout, stderr = run(capsys, *argv, "--out", str(tmp_path / "exact"), "--tolerance", "0,0")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("nasprune: error: model.onnx (onnxruntime) differs from the trained PyTorch model by ")
    assert list(tmp_path.iterdir()) == []
    suggested = re.search(r"loosen it with --tolerance (\S+)\n$", stderr).group(1)
    assert re.fullmatch(r"1e-0\d,0", suggested)
    code, stdout, stderr = run(capsys, *argv, "--out", str(tmp_path / "loosened"), "--tolerance", suggested)
    assert code == 0, stderr
    assert f"(tolerance rtol {suggested.split(',')[0]}, atol 0)" in stdout
