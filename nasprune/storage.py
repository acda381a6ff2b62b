"""Optuna storage from a URL, with heartbeats, crash recovery and one-line errors.

Accepted URLs (``--storage``):

=====================================================  ===========================================================
``sqlite:///studies/NAME.db``                          one file, one machine, any number of worker processes
                                                       (WAL journal + a long busy timeout: no "database is locked")
``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``    a server shared by workers on many machines; ``postgresql://``
                                                       and ``postgresql+psycopg2://`` mean the same (psycopg 3)
``mysql+pymysql://USER:PASSWORD@HOST:PORT/DB``         a MySQL server (needs ``pip install pymysql``)
``journal:PATH``                                       Optuna's journal file, no server and no SQL (no heartbeats:
                                                       a trial whose worker was killed stays RUNNING)
=====================================================  ===========================================================

Refused: storages that keep nothing once the process ends (``sqlite://``, ``sqlite:///:memory:`` and the other
in-memory SQLite spellings): every nasprune study is meant to be resumed, exported and reported later, and its
checkpoints would outlive the study that names them. :func:`check_url` says so before any work.

Relational storages get Optuna's heartbeats: each running trial's worker writes a heartbeat every
``heartbeat_interval`` seconds; a trial without one for ``grace_period`` seconds is marked FAIL by the next worker
that starts a trial, and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues a WAITING copy of it
(same parameters) so the study still reaches its requested number of trials. The environment variables
``NASPRUNE_HEARTBEAT_INTERVAL`` and ``NASPRUNE_GRACE_PERIOD`` (seconds) override the defaults, e.g. in tests.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nasprune.errors import NaspruneError
from nasprune.fsutil import file_lock

if TYPE_CHECKING:
    import optuna
    from sqlalchemy.engine import URL

__all__ = [
    "FINISHED_STATES",
    "DEFAULT_GRACE_PERIOD",
    "MissingStorage",
    "check_url",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "SQLITE_TIMEOUT_S",
    "default_storage_url",
    "list_studies",
    "load_study",
    "normalize_url",
    "open_storage",
    "optimize_until",
    "redact_url",
    "study_mutex",
]

DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
DEFAULT_GRACE_PERIOD = 60  # seconds without a heartbeat before a RUNNING trial counts as dead
DEFAULT_MAX_RETRY = 3  # how often one trial is re-enqueued after its worker died
SQLITE_TIMEOUT_S = 120.0  # how long a SQLite writer waits for the lock before giving up
PG_CONNECT_TIMEOUT_S = 10  # an unreachable host fails after this long instead of hanging
FINISHED_STATES = ("COMPLETE", "PRUNED")  # what counts towards a study's requested number of trials

ACCEPTED = ("sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB (or postgresql://, "
            "postgresql+psycopg2://), mysql+pymysql://USER:PASSWORD@HOST:PORT/DB, or journal:PATH")

_PG_DRIVERS = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}


class MissingStorage(NaspruneError):
    """A reader asked for a SQLite or journal file that does not exist (``open_storage(..., create=False)``)."""


def default_storage_url(study_name: str, directory: str | Path = "studies") -> str:
    """The SQLite file ``<directory>/<study_name>.db`` as a storage URL."""
    return f"sqlite:///{Path(directory) / f'{study_name}.db'}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def normalize_url(url: str) -> str:
    """Map the PostgreSQL spellings to psycopg 3 (the installed driver); other URLs pass unchanged."""
    head, sep, rest = url.partition("://")
    if sep and head in _PG_DRIVERS:
        return f"postgresql+psycopg://{rest}"
    return url


def check_url(url: str) -> None:
    """Refuse a malformed storage URL, or one that keeps nothing (module doc), without connecting to anything.

    Raises:
        NaspruneError: one line naming the URL (password hidden) and the accepted forms.
    """
    if url.startswith("journal:"):
        _journal_path(url)
        return
    parsed = _parse(url)
    if parsed.get_backend_name() not in _OPENERS:
        raise NaspruneError(f"unsupported storage URL {redact_url(url)!r}: expected {ACCEPTED}")
    if parsed.get_backend_name() == "sqlite" and _in_memory(parsed):
        raise NaspruneError(f"storage {redact_url(url)!r} is an in-memory SQLite database: the study and every trial "
                            "would be lost when this process ends (and nasprune studies are resumed, exported and "
                            "reported later): expected a file, sqlite:///PATH")


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    mode = url.query.get("mode")
    return database in ("", ":memory:") or database.startswith("file::memory:") or mode == "memory" or \
        (isinstance(mode, tuple) and "memory" in mode)


def open_storage(url: str | None, *, heartbeat: bool = True, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, max_retry: int | None = DEFAULT_MAX_RETRY,
                 create: bool = True) -> optuna.storages.BaseStorage:
    """Turn a storage URL into an Optuna storage, connecting once to check it works.

    Args:
        url: one of the forms in this module's docstring; ``None`` means an in-memory storage.
        heartbeat: record heartbeats so trials of dead workers are failed and retried (relational storages).
        heartbeat_interval: seconds between heartbeats (default ``NASPRUNE_HEARTBEAT_INTERVAL`` or 10).
        grace_period: seconds without a heartbeat before a trial is stale (``NASPRUNE_GRACE_PERIOD`` or 60).
        max_retry: how often a stale trial is re-enqueued (``None``: without limit).
        create: create a missing SQLite or journal file; when False a missing file is an error (for readers).

    Raises:
        NaspruneError: a malformed URL, an unreachable server, bad credentials or an unusable file; the
            one-line message names the URL (password hidden), the host or file, and the accepted forms.
    """
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:"):
        return _open_journal(url, create=create)
    check_url(url)
    parsed = _parse(url)
    opener = _OPENERS[parsed.get_backend_name()]
    kwargs = _heartbeat_kwargs(heartbeat, heartbeat_interval, grace_period, max_retry)
    return opener(parsed, kwargs, create=create)


def list_studies(url: str) -> list[str]:
    """Names of the studies in the storage at ``url`` (sorted); the storage must exist."""
    import optuna

    storage = open_storage(url, heartbeat=False, create=False)
    return sorted(optuna.get_all_study_names(storage))


def load_study(name: str, url: str | None = None) -> optuna.Study:
    """Load study ``name``; ``url`` defaults to :func:`default_storage_url` of the name.

    Raises:
        NaspruneError: the storage is missing or unusable, or has no study ``name`` (the message lists the
            studies it does hold).
    """
    import optuna

    url = url or default_storage_url(name)
    storage = open_storage(url, heartbeat=False, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        held = ", ".join(names) if names else "none"
        raise NaspruneError(f"no study {name!r} in storage {redact_url(url)!r}; studies there: {held}") from None


# -- workers sharing one study ----------------------------------------------------------------------------------


def optimize_until(study: optuna.Study, func: Callable, *, total: int, url: str | None, timeout: float | None = None,
                   catch: tuple[type[Exception], ...] = (), callbacks: Sequence[Callable] = (),
                   poll: float = 2.0, before_release: Callable[[optuna.Trial], object] | None = None) -> int:
    """Run trials of ``func`` until the study holds exactly ``total`` finished (COMPLETE or PRUNED) trials.

    Any number of processes, on any number of machines, may call this on the same study at once. A trial is
    started only while ``finished + running < total``; the decision and the trial's creation happen under
    :func:`study_mutex`, so no two workers take the last slot. Each trial runs through ``study.optimize``
    (heartbeats, FAIL on an exception, re-raised Ctrl-C). A worker that finds every remaining slot taken
    waits, failing stale trials meanwhile: if the worker of a running trial died, the trial turns FAIL, its
    retry copy is enqueued (WAITING) and popped by the next trial started here.

    Args:
        study: the shared study (from :func:`open_storage` storage).
        func: the objective.
        total: the finished trials to reach.
        url: the study's storage URL (keys the mutex); ``None`` for an in-memory study.
        timeout: start no new trial after this many seconds.
        catch: exceptions of ``func`` that fail one trial instead of stopping the worker.
        callbacks: ``callback(study, frozen_trial)`` after each trial, as in ``study.optimize``.
        poll: seconds between checks while waiting for other workers' trials.
        before_release: called with the new trial while the admission mutex is still held (e.g. to suggest its
            parameters, so the next worker's sampler sees them); its return value is dropped.

    Returns:
        The number of trials this call ran.
    """
    import optuna

    start, ran = time.monotonic(), 0
    while timeout is None or time.monotonic() - start < timeout:
        with contextlib.ExitStack() as held:
            held.enter_context(study_mutex(study.study_name, url))
            with _quiet_experimental():
                optuna.storages.fail_stale_trials(study)
            finished, running = _progress(study)
            if finished >= total:
                return ran
            if finished + running < total:
                # ask() happens inside optimize, still under the mutex; the objective's first act releases it.
                study.optimize(_ReleaseThenRun(func, held, before_release), n_trials=1, catch=catch,
                               callbacks=list(callbacks), gc_after_trial=False)
                ran += 1
                continue
        time.sleep(poll)
    return ran


def _progress(study: optuna.Study) -> tuple[int, int]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return sum(states.count(s) for s in FINISHED_STATES), states.count("RUNNING")


class _ReleaseThenRun:
    """The objective, releasing the admission mutex as soon as Optuna has created (or popped) the trial (and
    ``before_release`` has run on it)."""

    def __init__(self, func: Callable, held: contextlib.ExitStack,
                 before_release: Callable[[optuna.Trial], object] | None = None) -> None:
        self.func, self.held, self.before_release = func, held, before_release

    def __call__(self, trial: optuna.Trial):
        try:
            if self.before_release is not None:
                self.before_release(trial)
        finally:
            self.held.close()
        return self.func(trial)


@contextlib.contextmanager
def study_mutex(study_name: str, url: str | None) -> Iterator[None]:
    """Mutual exclusion among every worker of one study: a PostgreSQL advisory lock (held by a connection,
    so it ends with a dead worker's session), else an ``flock`` beside the SQLite or journal file."""
    if url is None:
        with _LOCAL_MUTEX:
            yield
        return
    if url.startswith("journal:"):
        with file_lock(f"{url.removeprefix('journal:')}.{study_name}.claim"):
            yield
        return
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        with file_lock(f"{parsed.database}.{study_name}.claim"):
            yield
    elif parsed.get_backend_name() == "postgresql":
        with _pg_advisory_lock(parsed, study_name):
            yield
    else:
        with _LOCAL_MUTEX:  # one process (in-memory SQLite, MySQL): threads only
            yield


_LOCAL_MUTEX = threading.RLock()


@contextlib.contextmanager
def _pg_advisory_lock(url: URL, study_name: str) -> Iterator[None]:
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha256(f"nasprune:{study_name}".encode()).digest()[:8], "big", signed=True)
    with _pg_lock_engine(url.render_as_string(hide_password=False)).connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@functools.cache
def _pg_lock_engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})


# -- parsing and heartbeats ------------------------------------------------------------------------------------


def _parse(url: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(normalize_url(url))
    except (ArgumentError, ValueError):
        hint = " (a SQLite file is sqlite:///PATH)" if "://" not in url else ""
        raise NaspruneError(f"malformed storage URL {redact_url(url)!r}{hint}: expected {ACCEPTED}") from None
    return parsed


def _env_seconds(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise NaspruneError(f"{name}={text!r} is invalid: expected a whole number of seconds >= 1")
    return value


def _heartbeat_kwargs(enabled: bool, interval: int | None, grace: int | None, max_retry: int | None) -> dict:
    if not enabled:
        return {}
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    interval = interval or _env_seconds("NASPRUNE_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL)
    grace = grace or _env_seconds("NASPRUNE_GRACE_PERIOD", max(DEFAULT_GRACE_PERIOD, 2 * interval))
    if grace <= interval:
        raise NaspruneError(f"grace period {grace}s must exceed the heartbeat interval {interval}s")
    with _quiet_experimental():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    return {"heartbeat_interval": int(interval), "grace_period": int(grace),
            "heartbeat_stale_trial_callback": retry}


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Heartbeats are marked experimental in Optuna 5; we rely on them on purpose."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


# -- one opener per backend ------------------------------------------------------------------------------------


def _rdb(url: URL, heartbeat: dict, engine_kwargs: dict, describe: Callable[[Exception], str]):
    import optuna
    import sqlalchemy.exc

    text = url.render_as_string(hide_password=False)
    last: Exception | None = None
    for _ in range(3):  # two workers creating the tables at the same moment: the loser retries
        try:
            with _quiet_experimental():
                return optuna.storages.RDBStorage(text, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise NaspruneError(describe(exc)) from None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            last = exc
        except ImportError:
            raise NaspruneError(f"storage {url.render_as_string()!r} needs its database driver "
                                f"'{url.get_driver_name()}': pip install it") from None
    raise NaspruneError(describe(last))


def _driver_reason(exc: BaseException) -> str:
    """The driver's own reason, one line, without any password."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = line.split(" failed: ")[-1].replace("FATAL:", "").strip()
    return redact_url(re.sub(r"\s+", " ", line))


def _open_postgres(url: URL, heartbeat: dict, *, create: bool):
    del create  # a server storage always exists once the server does
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    shown = url.render_as_string(hide_password=True)

    def describe(exc: Exception) -> str:
        reason = _driver_reason(exc)
        hint = ""
        if "password" in reason or "authentication" in reason:
            hint = f" (check user {url.username!r} and its password)"
        elif "resolve" in reason:
            hint = " (check the host name)"
        elif "refused" in reason or "timeout" in reason.lower():
            hint = " (is the server running and listening there?)"
        return f"cannot open PostgreSQL storage {shown!r} at {where}, database {url.database!r}: {reason}{hint}"

    engine_kwargs = {"pool_pre_ping": True, "pool_recycle": 1800,
                     "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "nasprune"}}
    return _rdb(url, heartbeat, engine_kwargs, describe)


def _open_mysql(url: URL, heartbeat: dict, *, create: bool):
    del create
    where = f"{url.host or 'localhost'}:{url.port or 3306}"
    shown = url.render_as_string(hide_password=True)

    def describe(exc: Exception) -> str:
        return f"cannot open MySQL storage {shown!r} at {where}, database {url.database!r}: {_driver_reason(exc)}"

    return _rdb(url, heartbeat, {"pool_pre_ping": True, "pool_recycle": 1800}, describe)


def _open_sqlite(url: URL, heartbeat: dict, *, create: bool):
    path = Path(url.database)  # not in memory: check_url refused that
    if not create and not path.is_file():
        raise MissingStorage(f"no storage file {str(path)!r} (from {url.render_as_string()!r}): it does not exist")
    if path.is_dir():
        raise NaspruneError(f"storage {url.render_as_string()!r} names a directory, expected a SQLite file")

    def describe(exc: Exception) -> str:
        return f"cannot open SQLite storage {str(path)!r}: {_driver_reason(exc)}"

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NaspruneError(f"cannot create the directory of storage file {str(path)!r}: {exc.strerror}") from None
    engine_kwargs = {"poolclass": _sqlite_pool_class(), "connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    with file_lock(path):  # workers starting together: one creates the tables, the others wait
        _enable_wal(path, describe)
        # Creating or migrating the tables nests two connections in one thread, which a serialised pool would
        # deadlock on: do that with a plain engine first (held lock: no other process is doing it meanwhile).
        # Its schema check does the same, so the serialised storage skips both.
        _rdb(url, {}, {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}, describe).engine.dispose()
        checked = {"skip_table_creation": True, "skip_compatibility_check": True}
        return _rdb(url, {**heartbeat, **checked}, engine_kwargs, describe)


@functools.cache
def _sqlite_pool_class() -> type:
    """A connection pool whose every checkout starts ``BEGIN IMMEDIATE``.

    Optuna reads a row and then updates it (``WAITING -> RUNNING`` when popping an enqueued or retried trial,
    ``RUNNING -> FAIL`` for a stale one). Python's sqlite3 starts a transaction only at the first write, so two
    processes could both read WAITING and both run the trial. Taking the write lock when a transaction starts
    (waiting up to the busy timeout) makes each read-modify-write atomic across processes, and a transaction
    never has to upgrade a read lock, which is what otherwise ends in "database is locked". Storage calls are
    milliseconds long next to trials of seconds, so serialising them costs nothing measurable. The pool class
    travels in ``engine_kwargs``, so it survives the storage being pickled to another process.
    """
    from sqlalchemy import event
    from sqlalchemy.pool import QueuePool

    class _SerializedSQLitePool(QueuePool):
        pass

    _SerializedSQLitePool.__qualname__ = "_SerializedSQLitePool"  # picklable through the module __getattr__

    @event.listens_for(_SerializedSQLitePool, "connect")
    def _manual_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 must not BEGIN on its own

    @event.listens_for(_SerializedSQLitePool, "checkout")
    def _begin_immediate(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute("BEGIN IMMEDIATE")

    return _SerializedSQLitePool


def __getattr__(name: str):
    if name == "_SerializedSQLitePool":  # defined lazily so importing this module does not import SQLAlchemy
        return _sqlite_pool_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _enable_wal(path: Path, describe: Callable[[Exception], str]) -> None:
    """Write-ahead logging (persistent in the file): readers never block the writer and vice versa."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise NaspruneError(describe(exc)) from None


def _journal_path(url: str) -> Path:
    text = url.removeprefix("journal:")
    if not text.strip() or Path(text).name in ("", ".", ".."):
        raise NaspruneError(f"malformed storage URL {url!r}: expected journal:PATH, PATH a file (e.g. "
                            "journal:studies/NAME.log)")
    path = Path(text)
    if path.exists() and not path.is_file():
        raise NaspruneError(f"storage {url!r} names {'a directory' if path.is_dir() else 'a special file'}, not a "
                            "journal file: expected journal:PATH, PATH a regular file or a new one")
    return path


def _open_journal(url: str, *, create: bool):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = _journal_path(url)
    if not create and not path.is_file():
        raise MissingStorage(f"no journal file {str(path)!r} (from {url!r}): it does not exist")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise NaspruneError(f"cannot open journal file {str(path)!r}: {exc.strerror}") from None


_OPENERS: dict[str, Callable] = {"sqlite": _open_sqlite, "postgresql": _open_postgres, "mysql": _open_mysql}
