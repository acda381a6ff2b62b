"""nasprune.storage against a real PostgreSQL server started on loopback by the tests (see tests/pgserver.py)."""

from __future__ import annotations

from collections import Counter

import optuna
import pgserver
import pytest
from test_storage import start_workers, wait_all

from nasprune.errors import NaspruneError
from nasprune.storage import list_studies, load_study, open_storage

pytestmark = pytest.mark.postgres
pg_server = pgserver.pg_server  # the cluster fixture: started once for this module's tests, always stopped


def one_line_error(url: str) -> str:
    with pytest.raises(NaspruneError) as info:
        open_storage(url)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_password_names_host_port_and_user_never_the_password(pg_server):
    message = one_line_error(pg_server.url(password="hunter2"))
    assert f"127.0.0.1:{pg_server.port}" in message and "password authentication failed" in message
    assert repr(pg_server.user) in message and "hunter2" not in message and pg_server.password not in message


def test_unknown_database_and_user_are_one_line(pg_server):
    url = pg_server.url().rsplit("/", 1)[0] + "/nosuchdb"
    assert 'database "nosuchdb" does not exist' in one_line_error(url)
    url = pg_server.url().replace(f"//{pg_server.user}:", "//nobody:")
    assert f"127.0.0.1:{pg_server.port}" in one_line_error(url)


def test_stopped_server_port_is_refused(pg_server):
    from pgserver import free_port

    message = one_line_error(pg_server.url(port=free_port()))
    assert "Connection refused" in message and "is the server running" in message


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgres"])
def test_every_postgres_spelling_opens_the_same_storage(pg_server, driver):
    storage = open_storage(pg_server.url(driver=driver), heartbeat_interval=5, grace_period=20)
    assert storage.engine.dialect.driver == "psycopg" and storage.heartbeat_interval == 5
    assert storage.engine.pool._pre_ping
    name = f"spelling-{driver}"
    optuna.create_study(study_name=name, storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                   n_trials=2)
    assert name in list_studies(pg_server.url())
    assert len(load_study(name, pg_server.url(driver="postgresql")).trials) == 2


def test_unknown_study_lists_the_studies_on_the_server(pg_server):
    optuna.create_study(study_name="listed", storage=open_storage(pg_server.url()), load_if_exists=True)
    with pytest.raises(NaspruneError, match=r"no study 'absent' in storage '.*:\*\*\*@.*'; studies there: .*listed"):
        load_study("absent", pg_server.url())


def test_four_workers_finish_exactly_the_requested_trials(pg_server):
    url = pg_server.url()
    optuna.create_study(study_name="four", storage=open_storage(url))
    results = wait_all(start_workers(4, "until", url, "four", 20, "--sleep", 0.2, "--writes", 3))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results[0][2][-2000:]
    trials = load_study("four", url).trials
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 20}
    assert sorted(t.number for t in trials) == list(range(20))
    assert all(t.user_attrs["a2"] == 2 and t.values is not None for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) >= 2


def test_enqueued_trials_are_each_popped_by_one_worker(pg_server):
    url = pg_server.url()
    study = optuna.create_study(study_name="pop", storage=open_storage(url))
    for i in range(30):
        study.enqueue_trial({"x": i / 30})
    results = wait_all(start_workers(4, "pop", url, "pop", 0))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results[0][2][-2000:]
    assert sorted(int(n) for _, stdout, _ in results for n in stdout.split()) == list(range(30))
