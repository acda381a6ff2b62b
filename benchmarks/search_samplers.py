"""Benchmark (b): samplers, the budget band and the seed designs, on the same recipe and budget.

For every sampler (random, TPE, NSGA-II) x band (on at the recipe's floor / off) x seed designs (on / off) x
seed, the recipe (default: quickstart, fine-tuning replaced by BN recalibration so a trial costs seconds) runs
``--trials`` trials into a fresh study. All runs share one parent cache, so the shared parents are trained once.
Per run it records:

* hypervolume: area dominated by the trained trials in (accuracy, MFLOPs), reference (accuracy 0, budget),
  divided by the budget (in [0, 1]);
* the best validation accuracy within the budget (what an export picks);
* the share of trained trials whose MFLOPs lie in [floor, 1] x budget (floor 0.85 for both arms, so the
  band-off arm shows where an unbanded search spends);
* trials and trained trials per hour.

Runs are cached one JSON line each in ``--cache`` (default ``reports/search_samplers.runs.jsonl``), so an
interrupted benchmark resumes; the summary prints mean and standard deviation over seeds and each arm's
hypervolume ratio to random in the same arm.

    .venv/bin/python benchmarks/search_samplers.py [RECIPE] [--trials 30] [--seeds 0 1 2] [--finetune-epochs 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path

from search_common import load, machine, run_fresh, summary

from nasprune.report.tables import hypervolume_2d
from nasprune.search.record import records

SAMPLERS = ("random", "tpe", "nsga2")
BAND_FLOOR = 0.85  # the quickstart's floor: the band-off arm is measured against the same interval
CACHE = Path(__file__).resolve().parents[1] / "reports" / "search_samplers.runs.jsonl"


def hypervolume(study, budget: float) -> float:
    ok = [r for r in records(study) if r.trained]
    return hypervolume_2d([r.val_acc for r in ok], [r.mflops for r in ok], budget) / budget


def measure(study, budget: float, wall: float) -> dict:
    trained = [r for r in records(study) if r.trained]
    s = summary(study, wall)
    in_band = [r for r in trained if BAND_FLOOR * budget <= r.mflops <= budget]
    return {"hypervolume": hypervolume(study, budget), "best_val_acc": s["best_val_acc"],
            "trained": len(trained), "finished": s["finished"], "band_share": len(in_band) / max(1, len(trained)),
            "median_mflops_share": statistics.median([r.mflops / budget for r in trained]) if trained else None,
            "trials_per_hour": s["trials_per_hour"], "trained_per_hour": s["trained_per_hour"], "wall_s": wall}


def _cached(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["key"]: row for row in rows}


def _report(rows: list[dict]) -> None:
    def stats(values):
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    print("| sampler | band | seed designs | seeds | hypervolume | ratio to random | best val acc | in band | "
          "trials/h |")
    print("|---|---|---|---|---|---|---|---|---|")
    arms = {}
    for row in rows:
        arms.setdefault((row["sampler"], row["band"], row["seed_designs"]), []).append(row)
    for (sampler, band, seeds), runs in sorted(arms.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        hv, hv_sd = stats([r["hypervolume"] for r in runs])
        acc, acc_sd = stats([r["best_val_acc"] for r in runs])
        base = arms.get(("random", band, seeds))
        ratio = hv / statistics.mean(r["hypervolume"] for r in base) if base else float("nan")
        share = statistics.mean(r["band_share"] for r in runs)
        tph = statistics.mean(r["trials_per_hour"] for r in runs)
        print(f"| {sampler} | {'on' if band else 'off'} | {'on' if seeds else 'off'} | {len(runs)} | "
              f"{hv:.3f} ± {hv_sd:.3f} | {ratio:.2f} | {acc:.2%} ± {acc_sd:.2%} | {share:.0%} | {tph:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--shard", default="0/1", help="I/N: run only every N-th missing run from the I-th "
                        "(two processes on two cores share one cache)")
    args = parser.parse_args()
    index, shards = map(int, args.shard.split("/"))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nasprune-bench-"))
    base = load(args.recipe, trials=args.trials)
    base = base.override(finetune={**base.finetune, "epochs": args.finetune_epochs})
    grid = list(itertools.product((True, False), (True, False), args.seeds, args.samplers))
    for k, (band, seeds, seed, sampler) in enumerate(grid):
        key = f"{sampler}-band{int(band)}-seeds{int(seeds)}-s{seed}-t{args.trials}-f{args.finetune_epochs}"
        if key in _cached(args.cache) or k % shards != index:
            continue
        study, wall = run_fresh(base, workdir, name=key, sampler=sampler, seed=seed,
                                budget_floor=BAND_FLOOR if band else 0.0, seed_designs=seeds,
                                artifacts=workdir / "shared.artifacts")  # one parent cache for every run
        row = {"key": key, "sampler": sampler, "band": band, "seed_designs": seeds, "seed": seed,
               "trials": args.trials, "finetune_epochs": args.finetune_epochs,
               **measure(study, base.budget_mflops, wall)}
        with open(args.cache, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{key}: hypervolume {row['hypervolume']:.4f}, best {row['best_val_acc']:.4f}, "
              f"{row['trained']} trained, {row['band_share']:.0%} in band, {wall:.0f} s", flush=True)
    rows = [r for r in _cached(args.cache).values()
            if r["trials"] == args.trials and r["finetune_epochs"] == args.finetune_epochs]
    _report(rows)
    print(machine())


if __name__ == "__main__":
    main()
