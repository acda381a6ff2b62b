"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from nasprune.errors import NaspruneError
from nasprune.spec import ArchSpec, SpecError

__all__ = ["add_model_args", "positive_float", "positive_int", "print_json", "resolve_model_spec", "spec_from_file"]


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer: expected an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is invalid: expected an integer >= {minimum}")
        return value

    return parse


positive_int = _int_at_least(1)
nonnegative_int = _int_at_least(0)


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
