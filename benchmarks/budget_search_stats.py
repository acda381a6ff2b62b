#!/usr/bin/env python
"""What the budget table's searches did: per study, how many distinct networks its trials trained, how many sat in
the band, how many were seed designs, and where the re-rank's winner came from.

    .venv/bin/python benchmarks/budget_search_stats.py [--stem budget_table] [--floor 0.85]

Reads the searches that the table's run cache (``reports/<stem>.runs.jsonl``) names, from their journal
(``runs/<stem>/searches.journal``), read-only; prints one Markdown table. Two trials train
the same network when their child specs hash alike: TPE re-proposing the best trial's parameters, or two ratio
vectors that the band's keep-scale maps to one child.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def study_stats(study, floor: float, winner_number: int) -> dict[str, object]:
    from nasprune.search.record import records
    from nasprune.spec import ArchSpec

    budget = float(study.user_attrs["budget_mflops"])
    trained = [r for r in records(study) if r.trained]
    hashes = [ArchSpec.from_dict(r.child_spec).hash for r in trained if r.child_spec]
    winner = next((r for r in trained if r.number == winner_number), None)
    return {
        "budget": budget, "trained": len(trained), "distinct": len(set(hashes)),
        "in_band": sum(floor * budget <= r.mflops <= budget for r in trained),
        "seeds": sum(r.seed_design is not None for r in trained),
        "families": ", ".join(f"{f} {sum(r.family == f for r in trained)}" for f in ("dws", "ir")),
        "winner": "" if winner is None else (f"#{winner.number} {winner.seed_design or 'sampled'} "
                                             f"({winner.mflops:.1f} MFLOPs, {100 * winner.mflops / budget:.0f} %)"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stem", default="budget_table", help="the table: reports/<stem>.runs.jsonl, runs/<stem>/")
    p.add_argument("--floor", type=float, default=0.85, help="the band's floor (fraction of the budget)")
    args = p.parse_args(argv)
    journal = ROOT / "runs" / args.stem / "searches.journal"
    cache = ROOT / "reports" / f"{args.stem}.runs.jsonl"
    if not journal.is_file() or not cache.is_file():
        print(f"budget_search_stats: error: --stem {args.stem!r} has no {journal} or no {cache}: expected a budget "
              "table that ran its searches here", file=sys.stderr)
        return 2
    from budget_runs import RunCache

    from nasprune.storage import load_study

    searches = [r for r in RunCache(cache).records() if r.get("kind") == "search"]
    rows = [study_stats(load_study(f"budget_{r['budget']}_{r['key']}", f"journal:{journal}"), args.floor,
                        r["best_trial"]) for r in searches]
    print("| budget | trained | distinct networks | in the band | seed designs | dws / ir | re-rank winner |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["budget"]):
        print(f"| {r['budget']:g} | {r['trained']} | {r['distinct']} | {r['in_band']} | {r['seeds']} | "
              f"{r['families']} | {r['winner']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
