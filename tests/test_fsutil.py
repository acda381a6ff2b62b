"""Atomic writes end with the mode an ordinary write would have (umask applied), not mkstemp's 0600."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

import nasprune
from nasprune.checkpoint import save_checkpoint
from nasprune.fsutil import atomic_save, atomic_write, atomic_write_bytes, atomic_write_text, normal_mode, umask


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_umask_is_read_without_change(mask):
    with _umask(mask):
        assert umask() == mask
        assert umask() == mask


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
@pytest.mark.parametrize("write", [
    lambda p: atomic_write_text(p, "x"),
    lambda p: atomic_write_bytes(p, b"x"),
    lambda p: atomic_save(p, lambda fh: fh.write(b"x")),
], ids=["text", "bytes", "save"])
def test_atomic_writes_get_the_ordinary_mode(tmp_path, mask, write):
    with _umask(mask):
        ordinary = tmp_path / "ordinary"
        ordinary.write_text("x")
        atomic = tmp_path / "sub" / "atomic"
        write(atomic)
        assert _mode(atomic) == _mode(ordinary) == 0o666 & ~mask


def test_checkpoint_readable_by_others(tmp_path):
    with _umask(0o022):
        model = nasprune.build(nasprune.fd_mobilenet(width=0.25, resolution=32, num_classes=4, in_channels=1))
        path = save_checkpoint(tmp_path / "m.pt", model)
    assert _mode(path) == 0o644


def test_failed_write_keeps_the_old_file_and_mode(tmp_path):
    target = tmp_path / "f.txt"
    with _umask(0o022):
        atomic_write_text(target, "old")
        with pytest.raises(RuntimeError), atomic_write(target, "w") as fh:
            fh.write("new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_normal_mode_for_directories(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    with _umask(0o027):
        normal_mode(d, directory=True)
    assert _mode(d) == 0o750
