"""Atomic files and inter-process locks, for files several workers (or machines) share.

* :func:`atomic_write` — write to a temporary file in the target's directory, fsync, then ``os.replace``:
  a reader sees the old file or the new one, never half of one, and a crash leaves the old file intact. The
  file ends with the mode an ordinary ``open(path, "w")`` would give it (``0o666 & ~umask``), not
  ``mkstemp``'s private 0600, so a second user's worker on a shared artifact directory can read it.
* :func:`file_lock` — an exclusive ``flock`` on ``<path>.lock`` so two workers needing the same file do not
  both produce it. ``flock`` locks are released by the kernel when a process dies (``kill -9`` included).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text", "file_lock", "normal_mode",
           "umask"]


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: swap and restore (not atomic with respect to other threads)
    os.umask(mask)
    return mask


def normal_mode(path: str | Path, *, directory: bool = False) -> None:
    """Give ``path`` the mode an ordinary create would: ``0o666 & ~umask`` (``0o777`` for directories)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on clean exit its content replaces ``path`` atomically, on error nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())  # mkstemp made it 0600
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_save(path: str | Path, save: Callable[[IO], None]) -> Path:
    """``save(fh)`` writes into a temporary file that then replaces ``path`` (e.g. ``torch.save(obj, fh)``)."""
    with atomic_write(path, "wb") as fh:
        save(fh)
    return Path(path)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``<path>.lock`` (blocking) for the duration of the ``with`` block."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield lock_path
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
