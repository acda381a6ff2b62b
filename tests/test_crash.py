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
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(n)]


def wait_for_file(path: Path, procs: list[subprocess.Popen], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
            raise AssertionError(f"no worker reached the hang point: {[p.poll() for p in procs]}")
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
