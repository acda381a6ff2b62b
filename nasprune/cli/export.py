"""``nasprune export``: write a searched network as spec, weights, TorchScript, ONNX and a model card."""

from __future__ import annotations

import argparse

from nasprune.cli.choices import registry
from nasprune.cli.common import check_output_dir, positive_float, threads_int

HELP = "export a trial of a study: arch.json, model.pt, model.ts, model.onnx (checked) and MODEL_CARD.md"
FORMAT_NAMES = registry("nasprune.export:FORMATS", sep=",")


def _trial(text: str) -> str:
    if text in ("best", "knee") or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected best, knee or a trial number >= 0")


def _runs(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected an integer >= 0")
    return int(text)


def _tolerance(text: str):
    from nasprune.errors import NaspruneError
    from nasprune.export._tolerance import EXPECTED, Tolerance  # nasprune.export only when the flag is given

    try:
        return Tolerance.parse(text)
    except NaspruneError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected {EXPECTED}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP + ". Everything is written into a hidden "
                       "directory next to --out and renamed into place only when every check passed.")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="storage URL (default: sqlite:///studies/STUDY.db)")
    p.add_argument("--trial", type=_trial, default="best", metavar="best|knee|N",
                   help="best: most accurate feasible trial; knee: knee of the feasible Pareto front; "
                        "N: that trial (default: best)")
    p.add_argument("--budget", type=positive_float, default=None, metavar="MFLOPS",
                   help="only consider trials within this budget (tighter than the study's)")
    p.add_argument("--format", default=FORMAT_NAMES, metavar="LIST",
                   help="comma-separated subset of %(default)s (default: all; the model card is always "
                        "written; 'json' alone needs no trained weights)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: reports/export/STUDY-trialN)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.add_argument("--artifacts", default=None, metavar="DIR",
                   help="artifact store directory holding the checkpoints (default: the study's artifacts_dir)")
    p.add_argument("--latency-runs", type=_runs, default=30, metavar="N",
                   help="timed forward passes per latency figure in the card (0: skip; default 30)")
    p.add_argument("--latency-threads", type=threads_int, default=None, metavar="N",
                   help="CPU threads for the card's latency (default: the recipe's, as the search measured)")
    p.add_argument("--tolerance", type=_tolerance, default=None, metavar="RTOL[,ATOL]",
                   help="accepted difference between each exported file's outputs and PyTorch's, "
                        "|a - b| <= ATOL + RTOL * max|b| per input (max|b|: its largest absolute logit); "
                        "ATOL defaults to 1e-5 (default: 1e-4,1e-5)")
    p.add_argument("--onnx-exporter", choices=registry("nasprune.export._onnx:ONNX_EXPORTERS"), default="dynamo",
                   metavar="EXPORTER", help="torch.onnx exporter, one of %(choices)s: dynamo (torch.export-based, "
                   "current; default) or legacy "
                        "(TorchScript-based, deprecated, much faster)")
    p.add_argument("--bake-preprocessing", action="store_true",
                   help="model.onnx takes uint8 pixels (N x C x H x W, 0-255; converted and resized as the card "
                        "says) and normalises them in its graph, exactly as training did")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasprune.export import ExportConfig, Tolerance, export, parse_formats

    if args.out:
        check_output_dir(args.out, "--out")
    config = ExportConfig(study=args.study, storage=args.storage, trial=args.trial, budget_mflops=args.budget,
                          formats=parse_formats(str(args.format)), out=args.out, force=args.force,
                          artifacts=args.artifacts, latency_runs=args.latency_runs,
                          latency_threads=args.latency_threads, tolerance=args.tolerance or Tolerance(),
                          onnx_exporter=args.onnx_exporter, bake_preprocessing=args.bake_preprocessing)
    result = export(config, log=print)
    for row in result.latency:
        print(f"  latency     {row.runtime} {row.resolution}x{row.resolution}: {row.median_ms:.3f} ms (batch 1)")
    print(f"exported trial {result.selection.trial.number} to {result.out}/ "
          f"({', '.join(p.name for p in result.files.values())})")
    return 0
