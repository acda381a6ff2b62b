"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

from nasprune.errors import NaspruneError
from nasprune.spec import ArchSpec, SpecError

__all__ = ["add_model_args", "check_output_dir", "check_output_file", "int_between", "nonnegative_float",
           "nonnegative_int", "positive_float", "positive_int", "print_json", "resolve_model_spec", "seed_int",
           "spec_from_file", "threads_int"]

SEED_MAX = 2**32 - 1  # numpy's RandomState (inside Optuna's samplers) takes seeds in [0, 2**32 - 1]


def int_between(minimum: int, maximum: int | None = None, note: str = ""):
    """An argparse ``type``: an integer in ``[minimum, maximum]`` (no upper bound with ``maximum=None``)."""
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]{note}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer: expected {expected}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is invalid: expected {expected}")
        return value

    return parse


positive_int = int_between(1)
nonnegative_int = int_between(0)
seed_int = int_between(0, SEED_MAX)


def threads_int(text: str) -> int:
    """Torch threads: 1 up to this machine's logical CPUs (more only oversubscribe; a huge count hangs torch)."""
    cpus = os.cpu_count() or 1
    return int_between(1, cpus, note=" (this machine's CPUs)")(text)


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: expected a number >= 0") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is invalid: expected a finite number >= 0")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1) (e.g. ``--budget-floor``)."""
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is invalid: expected a number in [0, 1)")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: expected a number > 0") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is invalid: expected a finite number > 0")
    return value


def add_model_args(parser: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    """``MODEL`` (zoo name or spec JSON file) plus the zoo's knobs."""
    parser.add_argument("model", metavar="MODEL",
                        help=model_help or "a zoo name (see 'nasprune zoo') or a spec JSON file")
    parser.add_argument("--width", type=positive_float, default=None,
                        help="width multiplier for a zoo model (default 1.0)")
    parser.add_argument("--resolution", type=positive_int, default=None,
                        help="input resolution (default: 224 for zoo models, the file's for a spec)")
    parser.add_argument("--classes", type=positive_int, default=None, help="number of classes (default 1000)")
    parser.add_argument("--in-channels", type=positive_int, default=None, help="input channels (default 3)")


def spec_from_file(path: str | Path) -> ArchSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NaspruneError(f"cannot read spec file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a spec JSON file (not UTF-8 text)") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise SpecError(f"{path}: malformed spec: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: not a spec JSON file: nested too deep to read") from None
    except NaspruneError:
        raise
    except ValueError as exc:  # an integer of more than 4300 digits (Python's int-to-str limit)
        raise SpecError(f"{path}: not a spec JSON file: {str(exc).split(':')[0][:200]}") from None


def resolve_model_spec(model: str, *, width: float | None = None, resolution: int | None = None,
                       classes: int | None = None, in_channels: int | None = None) -> ArchSpec:
    """A zoo name or a spec JSON file, with the given overrides applied."""
    from nasprune.zoo import ZOO, get_spec

    if model in ZOO or not (model.endswith(".json") or Path(model).exists()):
        kwargs = {k: v for k, v in (("width", width), ("resolution", resolution), ("num_classes", classes),
                                    ("in_channels", in_channels)) if v is not None}
        return get_spec(model, **kwargs)
    spec = spec_from_file(model)
    if width is not None:
        raise NaspruneError(f"--width {width} applies to zoo models only: {model!r} is a spec file "
                            "with explicit channels")
    changes = {k: v for k, v in (("resolution", resolution), ("num_classes", classes),
                                 ("in_channels", in_channels)) if v is not None}
    return spec.replace(**changes) if changes else spec


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# -- output locations: checked before any work starts, so nothing finished is lost at the end ----------------------
def _writable_ancestor(path: Path, start: Path, flag: str) -> None:
    """The nearest existing one of ``start`` and its ancestors must be a writable directory (the rest is created)."""
    ancestor = next((p for p in (start, *start.parents) if p.exists()), Path("."))
    if not ancestor.is_dir():
        raise NaspruneError(f"{flag} {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a directory: "
                            "expected a path under a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise NaspruneError(f"{flag} {str(path)!r} cannot be written: directory {str(ancestor)!r} is not writable "
                            "by this user: expected a location you can write to")
    try:  # os.access trusts the mode bits: root passes it for /proc, a read-only mount, a full disk
        fd, probe = tempfile.mkstemp(prefix=".nasprune-probe-", dir=ancestor)
    except OSError as exc:
        raise NaspruneError(f"{flag} {str(path)!r} cannot be written: creating a file in {str(ancestor)!r} failed "
                            f"({exc.strerror}): expected a location you can write to") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | Path, flag: str, files: tuple[str, ...] = ()) -> Path:
    """Refuse an output directory that cannot be created or written (before training, not after it).

    Args:
        path: the directory to be (it may exist; missing parents are created later).
        flag: the option that named it, for the message (e.g. ``"--out"``).
        files: names of the files the command writes into it; none may be a directory already.

    Raises:
        NaspruneError: ``path`` is a file, lies under a file, is not writable, or holds a directory where one of
            ``files`` goes.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NaspruneError(f"{flag} {str(path)!r} is a file: expected a directory (existing or to be created)")
    for name in files:
        if (path / name).is_dir():
            raise NaspruneError(f"{flag} {str(path)!r} holds a directory {name!r} where the file {name} is to be "
                                "written: expected a directory without it")
    _writable_ancestor(path, path if path.is_dir() else path.parent, flag)
    return path


def check_output_file(path: str | Path, flag: str, expected: str = "a file path") -> Path:
    """Refuse an output file that is a directory, lies under a file or cannot be written (before any work).

    ``expected`` describes the file in the message (e.g. ``"an HTML file path"``).

    Raises:
        NaspruneError: naming ``flag``, the path and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise NaspruneError(f"{flag} {str(path)!r} is a directory: expected {expected}")
    _writable_ancestor(path, path.parent, flag)
    return path

