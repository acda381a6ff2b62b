"""Benchmark: do PyTorch (eager) and onnxruntime rank the searched networks' CPU latency alike?

Runs a small quickstart-style search (default: the quickstart recipe cut to ``--trials`` trials, a
``--subset`` of Fashion-MNIST, short parent training: the latency ranks do not depend on accuracy; the synthetic
dataset where Fashion-MNIST is not installed), or opens an existing study (``--study NAME --storage URL``), and
prints, over its trained trials, Kendall's tau-b between ``latency_ms`` (PyTorch) and ``latency_ort_ms``
(onnxruntime), both measured by the search (batch 1, the recipe's ``latency.threads`` and ``latency.runs``),
and what measuring onnxruntime added to each trial.

On a shared machine a latency figure is noisy, so the trained networks (their specs; latency does not depend on
the weights) are then measured again, twice in each runtime, interleaved, with ``--remeasure-runs`` timed runs:
tau between the runtimes on these, and each runtime's tau with its own repeat (how far noise alone moves the
ranks).

    .venv/bin/python benchmarks/latency_rank.py [RECIPE] [--trials 12] [--subset 2000]
    .venv/bin/python benchmarks/latency_rank.py --study quickstart [--storage sqlite:///studies/quickstart.db]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from search_common import load, machine, run_fresh

from nasprune.search.fidelity import kendall_tau_b
from nasprune.search.record import TrialRecord, records


def _data_overrides(recipe, subset: int) -> dict:
    """A ``subset`` of the recipe's data; synthetic data where its dataset is not installed."""
    from nasprune.data import DataError, load_data

    data = {**recipe.data, "subset": subset, "val_size": min(recipe.data.get("val_size") or 0, subset // 4) or None}
    try:
        load_data(recipe.override(data=data).data_config())
    except DataError as exc:
        print(f"{recipe.data['name']} not available ({exc}); using the synthetic dataset")
        data = {**data, "name": "synthetic", "subset": None, "val_size": 200}
    return {"data": data}


def run_study(args: argparse.Namespace):
    recipe = load(args.recipe)
    overrides = {"trials": args.trials, "parent": {**recipe.parent, "epochs": args.parent_epochs},
                 "finetune": {**recipe.finetune, "epochs": 1}, **_data_overrides(recipe, args.subset)}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nasprune-latency-rank-"))
    study, wall = run_fresh(recipe, workdir, name="latency_rank", **overrides)
    print(f"ran {args.trials} trials in {wall:.0f} s ({workdir})")
    return study


def open_study(args: argparse.Namespace):
    from nasprune.storage import default_storage_url, load_study

    return load_study(args.study, args.storage or default_storage_url(args.study))


def rank_summary(trained: Sequence[TrialRecord]) -> dict:
    """Kendall's tau-b, the latency ratio and the per-trial cost of the onnxruntime figure."""
    both = [r for r in trained if r.latency_ms is not None and r.latency_ort_ms is not None]
    costs = [1e3 * r.latency_ort_seconds for r in both if r.latency_ort_seconds is not None]
    shares = [r.latency_ort_seconds / r.seconds for r in both if r.latency_ort_seconds and r.seconds]
    return {
        "trained_trials": len(trained), "measured_both": len(both),
        "kendall_tau_b": kendall_tau_b([r.latency_ms for r in both], [r.latency_ort_ms for r in both]),
        "median_pytorch_over_ort": statistics.median(r.latency_ms / r.latency_ort_ms for r in both) if both
        else float("nan"),
        "ort_measurement_ms_median": statistics.median(costs) if costs else float("nan"),
        "ort_measurement_ms_max": max(costs, default=float("nan")),
        "ort_share_of_trial_median": statistics.median(shares) if shares else float("nan"),
    }


def remeasure(trained: Sequence[TrialRecord], runs: int, threads: int) -> dict:
    """Both runtimes, twice each, interleaved per network: tau across runtimes and each one's repeatability."""
    from nasprune import build
    from nasprune.cost import measure_latency
    from nasprune.spec import ArchSpec

    figures: dict[str, list[float]] = {"pytorch_1": [], "ort_1": [], "pytorch_2": [], "ort_2": []}
    for r in trained:
        model = build(ArchSpec.from_dict(r.child_spec))
        for name in figures:
            runtime = "pytorch" if name.startswith("pytorch") else "onnxruntime"
            figures[name].append(measure_latency(model, runs=runs, threads=threads, runtime=runtime).median_ms)
    return {
        "runs": runs, "threads": threads,
        "kendall_tau_b_pytorch_vs_ort": kendall_tau_b(figures["pytorch_1"], figures["ort_1"]),
        "kendall_tau_b_pytorch_repeat": kendall_tau_b(figures["pytorch_1"], figures["pytorch_2"]),
        "kendall_tau_b_ort_repeat": kendall_tau_b(figures["ort_1"], figures["ort_2"]),
        "ms": {name: [round(v, 3) for v in values] for name, values in figures.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe (default: quickstart)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--subset", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--parent-epochs", type=int, default=2)
    parser.add_argument("--study", default=None, help="open this study instead of running one")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--remeasure-runs", type=int, default=50, help="0: skip the re-measurement")
    parser.add_argument("--threads", type=int, default=1, help="threads for the re-measurement (default 1)")
    args = parser.parse_args()
    study = open_study(args) if args.study else run_study(args)
    trained = sorted((r for r in records(study) if r.trained), key=lambda r: r.number)
    print(f"{'trial':>5} {'MFLOPs':>7} {'PyTorch ms':>10} {'ORT ms':>7} {'ORT cost ms':>11}")
    for r in trained:
        cost = f"{1e3 * r.latency_ort_seconds:.0f}" if r.latency_ort_seconds is not None else "-"
        ort = f"{r.latency_ort_ms:.3f}" if r.latency_ort_ms is not None else "-"
        print(f"{r.number:>5} {r.mflops:>7.2f} {r.latency_ms:>10.3f} {ort:>7} {cost:>11}")
    result = {"search": rank_summary(trained)}
    if args.remeasure_runs > 0:
        result["remeasured"] = remeasure([r for r in trained if r.child_spec], args.remeasure_runs, args.threads)
    print(json.dumps(result, indent=2))
    print(machine())


if __name__ == "__main__":
    main()
