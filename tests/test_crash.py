"""Workers that die: ``kill -9`` and Ctrl-C in the middle of a trial, on SQLite (no server) and PostgreSQL.

Storage level: the workers of ``tests/storage_workers.py`` run a tiny objective through
:func:`nasprune.storage.optimize_until`. CLI level: separate ``nasprune search`` processes (one per "machine")
share one study on the synthetic dataset at tiny fidelity; a hook around the CLI makes the first parent
training hang so the kill lands mid-trial while that worker holds the parent's cache lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pgserver
import pytest
import yaml
from interruptible import sigint_default
from test_storage import WORKER, wait_all

from nasprune.storage import load_study, open_storage

HEARTBEAT = {"NASPRUNE_HEARTBEAT_INTERVAL": "1", "NASPRUNE_GRACE_PERIOD": "3"}
pg_server = pgserver.pg_server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    """A SQLite file of the test's own, or the test PostgreSQL server (study names are unique per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/crash.db"
    return request.getfixturevalue("pg_server").url()


def start(n: int, *args: object, env: dict | None = None) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **HEARTBEAT, **(env or {})}
    return [subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, preexec_fn=sigint_default)
            for _ in range(n)]


def wait_for_file(path: Path, procs: list[subprocess.Popen], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            outputs = [p.communicate()[0][-1500:] + p.communicate()[1][-1500:] for p in procs]
            raise AssertionError(f"no worker reached the hang point: {[p.poll() for p in procs]} {outputs}")
        time.sleep(0.1)
    return path.read_text()


def study_name(tmp_path: Path) -> str:
    return f"crash-{tmp_path.name}"


# -- storage level ---------------------------------------------------------------------------------------------


def test_kill_9_mid_trial_fails_and_retries_it_and_reaches_the_total(storage_url, tmp_path):
    name, total = study_name(tmp_path), 10
    optuna.create_study(study_name=name, storage=open_storage(storage_url))
    hang = tmp_path / "hang"
    procs = start(3, "until", storage_url, name, total, "--sleep", 0.2, "--hang", hang)
    pid, number = map(int, wait_for_file(hang, procs).split())
    os.kill(pid, signal.SIGKILL)
    results = {p.pid: r for p, r in zip(procs, wait_all(procs), strict=True)}
    assert results.pop(pid)[0] == -signal.SIGKILL
    assert all(code == 0 for code, _, _ in results.values()), [r[2][-2000:] for r in results.values()]

    trials = load_study(name, storage_url).trials
    assert Counter(t.state.name for t in trials) == {"COMPLETE": total, "FAIL": 1}
    assert sorted(t.number for t in trials) == list(range(total + 1))  # each number once, none lost
    dead = trials[number]
    assert dead.state.name == "FAIL" and dead.user_attrs["pid"] == pid
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == dead.params


def test_ctrl_c_mid_trial_leaves_storage_consistent_and_a_rerun_resumes(storage_url, tmp_path):
    name, total = study_name(tmp_path), 6
    optuna.create_study(study_name=name, storage=open_storage(storage_url))
    hang = tmp_path / "hang"
    procs = start(1, "until", storage_url, name, total, "--sleep", 0.1, "--hang", hang)
    pid, number = map(int, wait_for_file(hang, procs).split())
    procs[0].send_signal(signal.SIGINT)
    (code, _, stderr), = wait_all(procs)
    assert code != 0 and "KeyboardInterrupt" in stderr

    trials = load_study(name, storage_url).trials
    assert [t.state.name for t in trials][number] == "FAIL"  # marked at once: no heartbeat wait needed
    assert "RUNNING" not in {t.state.name for t in trials} and number == len(trials) - 1
    assert all(t.state.name == "COMPLETE" for t in trials[:number])

    (code, _, stderr), = wait_all(start(1, "until", storage_url, name, total))
    assert code == 0, stderr[-2000:]
    trials = load_study(name, storage_url).trials
    assert Counter(t.state.name for t in trials) == {"COMPLETE": total, "FAIL": 1}
    assert sorted(t.number for t in trials) == list(range(total + 1))


# -- the real CLI ----------------------------------------------------------------------------------------------

RECIPE = {"space": "fd_mobilenet", "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
          "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
          "budget_mflops": 40, "trials": 5, "sampler": "random",
          "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
          "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2}}

# Runs the real CLI after wrapping the parent training: every call is logged (start/end, pid, spec hash) and the
# first one over all processes (the one that creates NASPRUNE_TEST_HANG) hangs, holding the parent's cache lock.
HOOK = r"""
import os, sys, time
from nasprune.search import objective

train_parent = objective.Objective._train_parent

def log(event, model):
    with open(os.environ["NASPRUNE_TEST_LOG"], "a") as fh:
        fh.write(f"{event} {os.getpid()} {model.spec.hash}\n")

def hooked(self, model):
    log("start", model)
    try:
        fd = os.open(os.environ["NASPRUNE_TEST_HANG"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pass
    else:
        os.write(fd, f"{os.getpid()} 0\n".encode())
        os.close(fd)
        time.sleep(600)
    metadata = train_parent(self, model)
    log("end", model)
    return metadata

objective.Objective._train_parent = hooked
from nasprune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_cli(n: int, tmp_path: Path, url: str, name: str, *extra: str) -> list[subprocess.Popen]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "study": name}))
    env = {**os.environ, **HEARTBEAT, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "NASPRUNE_TEST_LOG": str(tmp_path / "parents.log"), "NASPRUNE_TEST_HANG": str(tmp_path / "hang")}
    cmd = [sys.executable, "-c", HOOK, "search", str(recipe), "--storage", url, "--artifacts",
           str(tmp_path / "artifacts"), "--no-progress", *extra]
    return [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=sigint_default)
            for _ in range(n)]


def parent_log(tmp_path: Path) -> list[tuple[str, int, str]]:
    lines = (tmp_path / "parents.log").read_text().split("\n")
    return [(event, int(pid), spec) for event, pid, spec in (line.split() for line in lines if line)]


def check_parent_cache(tmp_path: Path, killed: int) -> None:
    """Each parent was trained to the end exactly once; the killed trainer's parent was trained by another
    worker; every cache file is a complete checkpoint and no temporary file was left behind by a survivor."""
    from nasprune.checkpoint import read_checkpoint

    log = parent_log(tmp_path)
    ended = Counter(spec for event, _, spec in log if event == "end")
    assert set(ended.values()) == {1}, log
    hung = [spec for event, pid, spec in log if event == "start" and pid == killed]
    assert len(hung) == 1 and hung[0] in ended, log
    files = sorted((tmp_path / "artifacts/parents").glob("*.pt"))
    assert sorted(f.name.split("-")[0] for f in files) == sorted(ended)
    for f in files:
        assert read_checkpoint(f)["metadata"]["role"] == "parent"


@pytest.mark.slow
def test_cli_kill_9_during_parent_training_loses_nothing(storage_url, tmp_path):
    name = study_name(tmp_path)
    procs = start_cli(2, tmp_path, storage_url, name)
    killed = int(wait_for_file(tmp_path / "hang", procs, timeout=300).split()[0])
    os.kill(killed, signal.SIGKILL)
    results = {p.pid: r for p, r in zip(procs, wait_all(procs, timeout=600), strict=True)}
    assert results.pop(killed)[0] == -signal.SIGKILL
    (code, stdout, stderr), = results.values()
    assert code == 0, stderr[-3000:]

    trials = load_study(name, storage_url).trials
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] + states["PRUNED"] == RECIPE["trials"] and states["FAIL"] == 1, states
    assert set(states) <= {"COMPLETE", "PRUNED", "FAIL"}
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    dead, = [t for t in trials if t.state.name == "FAIL"]
    retry, = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state.name in ("COMPLETE", "PRUNED") and retry.params == dead.params
    check_parent_cache(tmp_path, killed)


def assert_exact(trials: list, total: int) -> None:
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] + states["PRUNED"] == total, states
    assert sorted(t.number for t in trials) == list(range(len(trials)))


@pytest.mark.slow
@pytest.mark.postgres
def test_cli_four_machines_share_one_postgres_study_exactly(pg_server, tmp_path):
    """Four ``nasprune search`` commands (one per machine) on one study: the requested total exactly, each
    parent trained once although all four draw the same first parameters (same seed)."""
    name = study_name(tmp_path)
    (tmp_path / "hang").write_text("0 0\n")  # nobody hangs here
    procs = start_cli(4, tmp_path, pg_server.url(), name)
    for code, _, stderr in wait_all(procs, timeout=600):
        assert code == 0, stderr[-3000:]
    assert_exact(load_study(name, pg_server.url()).trials, RECIPE["trials"])
    log = parent_log(tmp_path)
    assert Counter(spec for event, _, spec in log if event == "end") == Counter(
        spec for event, _, spec in log if event == "start") and set(Counter(
            spec for event, _, spec in log if event == "end").values()) == {1}


@pytest.mark.slow
def test_cli_workers_on_sqlite_reach_exactly_the_total(tmp_path):
    name = study_name(tmp_path)
    url = f"sqlite:///{tmp_path}/w.db"
    (code, stdout, stderr), = wait_all(start_cli(1, tmp_path, url, name, "--workers", "3"), timeout=600)
    assert code == 0, stderr[-3000:]
    assert_exact(load_study(name, url).trials, RECIPE["trials"])
    for f in (tmp_path / "artifacts/parents").glob("*.pt"):
        from nasprune.checkpoint import read_checkpoint

        assert read_checkpoint(f)["metadata"]["role"] == "parent"


@pytest.mark.slow
def test_cli_ctrl_c_exits_130_and_a_rerun_resumes(tmp_path):
    name = study_name(tmp_path)
    url = f"sqlite:///{tmp_path}/c.db"
    procs = start_cli(1, tmp_path, url, name)
    wait_for_file(tmp_path / "hang", procs, timeout=300)
    procs[0].send_signal(signal.SIGINT)
    (code, _, stderr), = wait_all(procs)
    assert code == 130 and stderr.strip().endswith("nasprune: interrupted"), stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]  # one line, not Optuna's 25
    trials = load_study(name, url).trials
    started = [t for t in trials if t.state.name != "WAITING"]  # seed designs not reached yet stay queued
    assert "RUNNING" not in {t.state.name for t in trials} and started[-1].state.name == "FAIL"

    (code, stdout, stderr), = wait_all(start_cli(1, tmp_path, url, name), timeout=600)
    assert code == 0 and "Pareto front" in stdout, stderr[-3000:]
    assert_exact(load_study(name, url).trials, RECIPE["trials"])
