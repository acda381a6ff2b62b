"""``nasprune report``: one self-contained HTML page (plotly.js inline, opens offline) for a study."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write a study's Pareto report: one self-contained HTML page (and its tables as CSV with --csv)"


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """``--study NAME`` and ``--storage URL`` (default ``sqlite:///studies/NAME.db``)."""
    parser.add_argument("--study", required=True, metavar="NAME", help="study name")
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="Optuna storage URL, as for search (default: sqlite:///studies/NAME.db)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=HELP, description=HELP)
    add_study_args(p)
    p.add_argument("--out", metavar="FILE", default=None, help="HTML file to write (default: reports/NAME.html)")
    p.add_argument("--csv", metavar="DIR", default=None,
                   help="also write the tables behind the figures as DIR/NAME_<table>.csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from nasprune.cli.common import check_output_dir, check_output_file
    from nasprune.errors import NaspruneError
    from nasprune.report import make_page, write_report
    from nasprune.report.page import PageOptions
    from nasprune.storage import default_storage_url, load_study, redact_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = check_output_file(Path(args.out) if args.out else Path("reports") / f"{args.study}.html", "--out",
                            "an HTML file path")
    if args.csv:
        check_output_dir(args.csv, "--csv")
    url = args.storage or default_storage_url(args.study)
    study = load_study(args.study, url)
    tables, page = make_page(study, storage_arg=args.storage, options=PageOptions(source=redact_url(url)))
    try:  # checked before the work, but a disk can fill or a mount turn read-only meanwhile
        write_report(out, page)
    except OSError as exc:
        raise NaspruneError(f"--out {str(out)!r} could not be written: {exc.strerror or exc}") from None
    trained = int(tables.trials["trained"].sum())
    print(f"wrote {out} ({len(tables.trials)} finished trials, {trained} trained, "
          f"{len(tables.pareto)} Pareto-optimal)")
    if args.csv:
        for path in tables.to_csv(args.csv):
            print(f"wrote {path}")
    return 0
