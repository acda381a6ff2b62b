"""``nasprune trials``: every trial of a study as a table (pandas), CSV or JSON."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("trials", help="list a study's trials: objectives, constraint, parameters, attributes",
                       description="One row per trial, one column per objective (values_<name>), constraint "
                                   "(constraint_<name>), parameter (params_<name>) and attribute (user_attrs_<key>).")
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("--storage", default=None, metavar="URL", help="default: sqlite:///studies/<study>.db")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", default=None, metavar="FILE", help="write CSV ('-' for stdout)")
    out.add_argument("--json", action="store_true",
                     help="print JSON records (strict JSON: NaN and infinite numbers are null)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasprune.cli.common import check_output_file
    from nasprune.fsutil import atomic_write_text
    from nasprune.search.table import trials_frame, trials_records
    from nasprune.storage import load_study

    if args.csv and args.csv != "-":
        check_output_file(args.csv, "--csv")
    study = load_study(args.study, args.storage)
    if args.json:
        import json

        print(json.dumps(trials_records(study), indent=2, allow_nan=False))  # strict JSON: NaN, inf are null
        return 0
    frame = trials_frame(study)
    if args.csv == "-":
        frame.to_csv(sys.stdout, index=False)
    elif args.csv:
        atomic_write_text(args.csv, frame.to_csv(index=False))
        print(f"wrote {len(frame)} trials to {args.csv}", file=sys.stderr)
    else:
        import pandas as pd

        brief = [c for c in frame.columns if not c.startswith("params_") and c not in
                 ("user_attrs_child_spec", "user_attrs_layers", "user_attrs_feature_sizes", "datetime_start",
                  "datetime_complete")]
        with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 30):
            print(frame[brief].to_string(index=False))
    return 0
