"""The ``nasprune`` command line.

Each command lives in its own module of this package and exposes ``add_parser(subparsers)`` (which sets
``func`` on its parser); ``COMMANDS`` lists them in the order ``--help`` shows. Modules import heavy
dependencies inside their functions so ``nasprune --help`` stays fast.

Bad input raises one of :data:`nasprune.errors.USER_ERRORS` and becomes a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from nasprune.errors import USER_ERRORS

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[str, ...] = (
    "zoo", "count", "train", "eval", "prune", "search", "rerank", "trials", "report", "dashboard", "export",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"nasprune: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nasprune",
        description="Joint architecture search and structured pruning for tiny MobileNet-family networks "
                    "under a FLOP budget (FLOPs = multiply-adds of conv and linear layers at 224x224).",
    )
    from nasprune import __version__

    parser.add_argument("--version", action="version", version=f"nasprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"nasprune.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"nasprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasprune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nasprune zoo --json | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
