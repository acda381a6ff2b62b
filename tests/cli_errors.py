"""Shared by the bad-input tests: run the CLI and expect one error line, forbid work, a tiny synthetic recipe."""

from __future__ import annotations

from nasprune.cli import main


def synthetic_recipe(study: str) -> dict:
    """A two-trial recipe on the synthetic data that trains in seconds."""
    return {"study": study, "space": "fd_mobilenet", "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
            "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
            "budget_mflops": 40, "trials": 2, "sampler": "random",
            "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 1}}


def error_line(argv, capsys) -> str:
    """Run the CLI in this process; assert exit 2 and one ``nasprune: error:`` line; return that line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("nasprune: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def forbid(monkeypatch, target: str, what: str) -> None:
    """Make ``target`` fail the test if it is called (work that must not start before the refusal)."""
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} started before the bad input was refused")

    monkeypatch.setattr(target, fail)
