"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary directory on loopback.

The cluster listens on 127.0.0.1 only, on a free port, with its unix socket inside the temporary directory,
and accepts TCP logins by password (scram-sha-256) for one test user who owns one test database. PostgreSQL
refuses to run as root, so under root (as in CI) the server runs as Debian's ``postgres`` system user via
``runuser``, with the temporary directory owned by that user. Tests skip only when no PostgreSQL binaries
exist (``scripts/setup.sh`` installs Debian's ``postgresql`` package).

Use the session fixture ``pg_server`` (import it into a test module) or :class:`PgCluster` as a context manager.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PgCluster", "PgServer", "find_bin_dir", "pg_server"]

ADMIN = "admin"


@dataclass(frozen=True)
class PgServer:
    """Where a running test cluster listens and how the test user logs in."""

    host: str
    port: int
    user: str
    password: str
    database: str
    socket_dir: Path

    def url(self, *, password: str | None = None, port: int | None = None, driver: str = "postgresql+psycopg") -> str:
        """A storage URL for the test database (optionally with a wrong password or port)."""
        pw = self.password if password is None else password
        return f"{driver}://{self.user}:{pw}@{self.host}:{port or self.port}/{self.database}"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl`` (or ``None``)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").exists()]
    if not found:
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None
    return max(found, key=lambda d: float(d.parent.name) if d.parent.name.replace(".", "").isdigit() else 0)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """Start a cluster on ``__enter__`` (or :meth:`start`), stop it and delete its files on :meth:`stop`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.server: PgServer | None = None
        self._as_postgres = os.geteuid() == 0

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and proc.returncode != 0:
            log = self._log_tail()
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    def _log_tail(self) -> str:
        log = self.root / "server.log" if self.root else None
        return log.read_text()[-2000:] if log and log.exists() else ""

    def start(self) -> PgServer:
        self.root = Path(tempfile.mkdtemp(prefix="nasprune-pg-"))
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", ADMIN, "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--no-locale", "--encoding=UTF8", "--no-sync")
        for attempt in range(3):
            port = free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
                    "-c shared_buffers=16MB")
            proc = self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.root / "server.log"),
                             "-w", "-t", "60", "start", check=attempt == 2)
            if proc.returncode == 0:
                break
        self.server = PgServer("127.0.0.1", port, "nasprune", secrets.token_hex(8), "nasprune", self.root)
        self._create_user_and_database()
        return self.server

    def _create_user_and_database(self) -> None:
        s = self.server
        self.admin_sql(f"CREATE ROLE {s.user} LOGIN PASSWORD '{s.password}'")
        self.admin_sql(f"CREATE DATABASE {s.database} OWNER {s.user}")

    def admin_sql(self, sql: str) -> str:
        """Run ``sql`` as the superuser over the unix socket (trusted); returns psql's output."""
        proc = self._run("psql", "-h", str(self.root), "-p", str(self.server.port), "-U", ADMIN, "-d", "postgres",
                         "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
        return proc.stdout.strip()

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


@pytest.fixture(scope="session")
def pg_server():
    """A running PostgreSQL cluster for the whole test session, always stopped at the end."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH; "
                    "install Debian's 'postgresql' package (scripts/setup.sh does)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root but 'runuser' is missing, and PostgreSQL refuses to run as root")
    cluster = PgCluster(bin_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
