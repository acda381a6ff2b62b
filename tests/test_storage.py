"""nasprune.storage without a server: URLs, one-line errors, SQLite and journal files shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest

from nasprune.errors import NaspruneError
from nasprune.storage import (
    default_storage_url,
    list_studies,
    load_study,
    normalize_url,
    open_storage,
    optimize_until,
    redact_url,
)

WORKER = Path(__file__).with_name("storage_workers.py")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def start_workers(n: int, *args: object) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(n)]


def wait_all(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def new_study(url: str, name: str = "s") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=open_storage(url))


# -- URLs ------------------------------------------------------------------------------------------------------


def test_default_storage_url():
    assert default_storage_url("quick") == "sqlite:///studies/quick.db"
    assert default_storage_url("quick", "/data/runs") == "sqlite:////data/runs/quick.db"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:///studies/a.db", "sqlite:///studies/a.db"),
    ("journal:studies/a.log", "journal:studies/a.log"),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql+psycopg://alice:s3cr%40t@db.lab:5433/nas") == \
        "postgresql+psycopg://alice:***@db.lab:5433/nas"
    assert redact_url("sqlite:///studies/a.db") == "sqlite:///studies/a.db"


@pytest.mark.parametrize("url", ["studies/a.db", "http://u:hunter2@host/x", "postgres+nope://u:hunter2@h/db",
                                 "journal:", "sqlite//studies/a.db"])
def test_malformed_url_is_one_line_naming_url_and_accepted_forms(url):
    with pytest.raises(NaspruneError) as info:
        open_storage(url)
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert redact_url(url) in message or url in message
    assert "journal:PATH" in message


def test_unreachable_server_is_one_line_naming_host_and_port():
    from pgserver import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(NaspruneError) as info:
        open_storage(f"postgresql://nas:hunter2@127.0.0.1:{port}/studies")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "'studies'" in message and "refused" in message
    assert "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize("command", [["trials", "--study", "s"], ["report", "--study", "s"],
                                     ["export", "--study", "s", "--trial", "0"], ["dashboard", "--study", "s"],
                                     ["search", "--data", "synthetic", "--trials", "2", "--no-progress"]])
def test_cli_storage_errors_are_one_line_exit_2(run_cli, command):
    from pgserver import free_port

    cmd = command + ["--storage", f"postgresql+psycopg2://nas:hunter2@127.0.0.1:{free_port()}/db"]
    proc = run_cli(*cmd, timeout=120)
    if "invalid choice" in proc.stderr or "unrecognized arguments" in proc.stderr:
        pytest.skip(f"'nasprune {command[0]}' with these options is not in this checkout")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasprune: error: ") and "127.0.0.1:" in lines[0]
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


# -- files -----------------------------------------------------------------------------------------------------


def test_sqlite_round_trip_listing_and_unknown_study(tmp_path):
    url = f"sqlite:///{tmp_path}/sub/dir/s.db"  # missing directories are created
    for name in ("beta", "alpha"):
        new_study(url, name).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert list_studies(url) == ["alpha", "beta"]
    assert [t.state.name for t in load_study("beta", url).trials] == ["COMPLETE", "COMPLETE"]
    with pytest.raises(NaspruneError, match=r"no study 'gamma' .*studies there: alpha, beta$"):
        load_study("gamma", url)
    assert (tmp_path / "sub/dir/s.db").read_bytes()[:16] == b"SQLite format 3\x00"


@pytest.mark.parametrize("url", ["sqlite:///{d}/none.db", "journal:{d}/none.log"])
def test_readers_never_create_a_storage(tmp_path, url):
    url = url.format(d=tmp_path)
    with pytest.raises(NaspruneError, match="does not exist"):
        list_studies(url)
    with pytest.raises(NaspruneError, match="does not exist"):
        load_study("s", url)
    assert list(tmp_path.iterdir()) == []


def test_load_study_defaults_to_the_sqlite_file_in_studies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    new_study(default_storage_url("q"), "q").optimize(lambda t: 1.0, n_trials=1)
    assert len(load_study("q").trials) == 1


def test_journal_round_trip(tmp_path):
    url = f"journal:{tmp_path}/j.log"
    new_study(url, "j").optimize(lambda t: t.suggest_int("k", 0, 9), n_trials=3)
    assert list_studies(url) == ["j"] and len(load_study("j", url).trials) == 3


def test_unusable_sqlite_path_is_one_line(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(NaspruneError, match="names a directory"):
        open_storage(f"sqlite:///{tmp_path}/dir.db")


# -- heartbeats ------------------------------------------------------------------------------------------------


def test_heartbeat_settings_and_retry_callback(tmp_path, monkeypatch):
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    url = f"sqlite:///{tmp_path}/h.db"
    storage = open_storage(url, heartbeat_interval=2, grace_period=7)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 7)
    assert isinstance(storage.heartbeat_stale_trial_callback, RetryHeartbeatStaleTrialCallback)
    assert open_storage(url, heartbeat=False).heartbeat_interval is None
    monkeypatch.setenv("NASPRUNE_HEARTBEAT_INTERVAL", "3")
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "9")
    assert (open_storage(url).heartbeat_interval, open_storage(url).grace_period) == (3, 9)
    monkeypatch.setenv("NASPRUNE_GRACE_PERIOD", "soon")
    with pytest.raises(NaspruneError, match="NASPRUNE_GRACE_PERIOD='soon' is invalid"):
        open_storage(url)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_stale_trial_is_failed_and_retried_once(tmp_path):
    """A RUNNING trial without heartbeats becomes FAIL and a WAITING copy with the same parameters appears."""
    import time

    url = f"sqlite:///{tmp_path}/stale.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat_interval=1, grace_period=2))
    dead = study.ask()
    dead.suggest_float("x", 0, 1)
    study._storage.record_heartbeat(dead._trial_id)  # its worker beat once, then died
    time.sleep(3.5)  # SQLite timestamps have whole seconds: wait for more than grace + 1
    optuna.storages.fail_stale_trials(study)
    optuna.storages.fail_stale_trials(study)  # a second worker checking too must not add a second copy
    states = [(t.number, t.state.name) for t in study.get_trials()]
    assert states == [(0, "FAIL"), (1, "WAITING")]
    retry = study.get_trials()[1]
    assert retry.params == dead.params and retry.system_attrs["failed_trial"] == 0


# -- many processes on one file -------------------------------------------------------------------------------


def test_sqlite_four_processes_never_database_locked(tmp_path):
    url = f"sqlite:///{tmp_path}/hammer.db"
    new_study(url)
    results = wait_all(start_workers(4, "hammer", url, "s", 20, "--writes", 5))
    for code, _, stderr in results:
        assert code == 0 and "locked" not in stderr, stderr[-2000:]
    trials = load_study("s", url).trials
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 80}
    assert sorted(t.number for t in trials) == list(range(80))
    assert all(t.user_attrs["a4"] == 4 for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 4


def test_sqlite_enqueued_trials_are_each_popped_by_one_process(tmp_path):
    """Stock Optuna on SQLite lets two processes pop the same WAITING trial (measured: 70 pops of 60 trials);
    the serialised transactions of open_storage must not."""
    url = f"sqlite:///{tmp_path}/pop.db"
    study = new_study(url)
    for i in range(40):
        study.enqueue_trial({"x": i / 40})
    results = wait_all(start_workers(4, "pop", url, "s", 0))
    popped = [int(n) for code, stdout, stderr in results for n in stdout.split()]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results[0][2][-2000:]
    assert sorted(popped) == list(range(40))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_optimize_until_stops_at_exactly_the_total(tmp_path, kind):
    url = {"sqlite": f"sqlite:///{tmp_path}/u.db", "journal": f"journal:{tmp_path}/u.log"}[kind]
    new_study(url)
    results = wait_all(start_workers(4, "until", url, "s", 18, "--sleep", 0.2))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results[0][2][-2000:]
    trials = load_study("s", url).trials
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 18}
    assert sorted(t.number for t in trials) == list(range(18))


def test_optimize_until_in_process_counts_pruned_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    study = new_study(url)

    def func(trial):
        if trial.number % 3 == 0:
            raise optuna.TrialPruned()
        return 1.0

    assert optimize_until(study, func, total=5, url=url) == 5
    assert optimize_until(study, func, total=5, url=url) == 0  # already there: nothing more
    assert optimize_until(study, func, total=7, url=url) == 2  # resume to a larger total
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 4, "PRUNED": 3}
