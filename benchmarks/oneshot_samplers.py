"""Benchmark: samplers at the one-shot scale (hundreds of networks per study), judged by the re-ranked winner.

For every sampler x seed, the recipe (default: the quickstart, a one-shot search) runs ``--trials`` trials into a
fresh study, then its re-rank (the recipe's ``rerank``: the top distinct networks fine-tuned from their own
weights by successive halving). Every run shares one artifacts directory, so the one-shot parents (keyed by the
parent's seed, fixed here) are trained once for all runs; the sampler's seed is the study's ``seed``.

Per run it records: distinct networks evaluated, duplicates, wall time of the trials, the best proxy accuracy in the
budget band, the re-rank's winner, its re-ranked (last rung) validation accuracy, and whether the winner is one of
the search's own seed designs or a sampled network. Runs are cached one JSON line each in ``--cache``, so an
interrupted benchmark resumes; the summary gives mean and standard deviation over seeds per sampler.

    nice -n 5 .venv/bin/python benchmarks/oneshot_samplers.py --trials 150 --seeds 0 1 2 --shard 0/2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from search_common import load, machine, run_fresh

from nasprune.search.record import records
from nasprune.search.rerank import stored_plan

SAMPLERS = ("random", "tpe", "nsga2")
CACHE = Path(__file__).resolve().parents[1] / "reports" / "oneshot_samplers.runs.jsonl"


def measure(study, recipe, wall: float) -> dict:
    recs = records(study)
    trained = [r for r in recs if r.trained]
    low = recipe.budget_floor * recipe.budget_mflops
    band = [r for r in trained if low <= r.mflops <= recipe.budget_mflops]
    plan = stored_plan(study, trained)
    winner = next((r for r in recs if plan is not None and r.number == plan.winner), None)
    last = max(winner.rerank, key=lambda x: x.rung) if winner is not None and winner.rerank else None
    best = max(band, key=lambda r: r.val_acc, default=None)
    return {
        "trials": len(recs), "trained": len(trained), "distinct": len({r.network for r in trained}),
        "duplicates": sum(r.duplicate_of is not None for r in recs), "wall_s": wall,
        "best_proxy_band": best.val_acc if best else None,
        "best_proxy_design": (best.seed_design or "sampled") if best else None,
        "winner": winner.number if winner else None, "winner_val_acc": last.val_acc if last else None,
        "winner_epochs": last.epochs if last else None, "winner_mflops": winner.mflops if winner else None,
        "winner_design": (winner.seed_design or "sampled") if winner else None,
    }


def _cached(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["key"]: row for row in rows}


def _stats(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * spread:.2f}"


def report(rows: list[dict]) -> str:
    lines = ["| sampler | runs | distinct networks | duplicates | wall, re-rank included (s) | "
             "best proxy in band (%) | re-ranked winner (%) | winners: seed design / sampled |",
             "|---|---|---|---|---|---|---|---|"]
    for sampler in SAMPLERS:
        mine = [r for r in rows if r["sampler"] == sampler]
        if not mine:
            continue
        seeds = sum(r["winner_design"] not in ("sampled", None) for r in mine)
        lines.append(f"| {sampler} | {len(mine)} | {statistics.mean(r['distinct'] for r in mine):.0f} | "
                     f"{statistics.mean(r['duplicates'] for r in mine):.0f} | "
                     f"{statistics.mean(r['wall_s'] for r in mine):.0f} | "
                     f"{_stats(r['best_proxy_band'] for r in mine)} | "
                     f"{_stats(r['winner_val_acc'] for r in mine)} | {seeds} / {len(mine) - seeds} |")
    lines += ["", "| sampler | seed | distinct | winner | its design | MFLOPs | re-ranked val acc (%) | "
              "best proxy in band (%) | its design |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (SAMPLERS.index(r["sampler"]), r["seed"])):
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['distinct']} | {r['winner']} | {r['winner_design']} | "
                     f"{r['winner_mflops']:.1f} | {100 * r['winner_val_acc']:.2f} | "
                     f"{100 * r['best_proxy_band']:.2f} | {r['best_proxy_design']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--workdir", default="runs/oneshot_samplers")
    parser.add_argument("--shard", default="0/1", help="I/N: run only every N-th missing run from the I-th")
    args = parser.parse_args()
    index, count = (int(x) for x in args.shard.split("/"))
    base = load(args.recipe)
    base = base.override(parent={**base.parent, "seed": base.train_config("parent").seed})  # one parent for all
    workdir = Path(args.workdir)
    done = _cached(args.cache)
    todo = [(s, seed) for seed in args.seeds for s in args.samplers]
    for position, (sampler, seed) in enumerate(todo):
        key = json.dumps({"sampler": sampler, "seed": seed, "trials": args.trials, "recipe": base.to_dict()},
                         sort_keys=True, default=str)
        if key in done or position % count != index:
            continue
        name = f"{sampler}_s{seed}_t{args.trials}"
        start = time.perf_counter()
        study, _ = run_fresh(base, workdir, name=name, artifacts=workdir / "artifacts", sampler=sampler, seed=seed,
                             trials=args.trials)
        row = {"key": key, "sampler": sampler, "seed": seed, **measure(study, base, time.perf_counter() - start)}
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        with args.cache.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        done[key] = row
        print(f"{name}: {row['distinct']} distinct, winner {row['winner']} ({row['winner_design']}) "
              f"{100 * row['winner_val_acc']:.2f} %, {row['wall_s']:.0f} s", flush=True)
    rows = [r for r in done.values() if json.loads(r["key"])["trials"] == args.trials]
    print(f"\n{machine()}\n")
    print(report(rows))


if __name__ == "__main__":
    main()
