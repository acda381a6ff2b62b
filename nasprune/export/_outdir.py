"""All-or-nothing output directories: write into a hidden sibling, rename it into place at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nasprune.errors import NaspruneError
from nasprune.fsutil import normal_mode

__all__ = ["check_target", "staged_directory"]


def check_target(out: Path, force: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty directory without ``force``."""
    if out.exists() and not out.is_dir():
        raise NaspruneError(f"--out {str(out)!r} exists and is not a directory: choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise NaspruneError(f"--out {str(out)!r} exists and is not empty: pass --force to replace it, or choose "
                            "another directory")


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones created (deepest first) to undo on failure."""
    missing = []
    for d in (directory, *directory.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        d.mkdir()
    return missing


def _oserror(out: Path, exc: OSError) -> NaspruneError:
    return NaspruneError(f"cannot write the export to {str(out)!r}: {exc.strerror or exc}")


def _normal_permissions(staging: Path) -> None:
    """``mkdtemp`` and atomic writes create private (0700 / 0600) entries; give them the usual umask modes."""
    normal_mode(staging, directory=True)
    for path in staging.rglob("*"):
        normal_mode(path, directory=path.is_dir())


def _publish(staging: Path, out: Path) -> None:
    _normal_permissions(staging)
    if not out.exists() or not any(out.iterdir()):
        os.replace(staging, out)  # an empty directory is replaced in one step
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(out: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty hidden directory next to ``out``; on success it becomes ``out``, on error it vanishes.

    ``out`` is checked first (see :func:`check_target`); with ``force`` an existing ``out`` is replaced only
    once everything was written. Directories created for ``out``'s parents are removed again on error.

    Raises:
        NaspruneError: ``out`` is unusable (exists and is not empty without ``force``, is a file, or its
            directory cannot be created or written).
    """
    out = Path(out)
    check_target(out, force)
    created: list[Path] = []
    try:
        created = _make_parents(out.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise _oserror(out, exc) from None
    try:
        yield staging
        _publish(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        if isinstance(exc, OSError):
            raise _oserror(out, exc) from None
        raise
