"""Benchmark (a): share of a search's wall time spent on over-budget networks (none of them is trained).

Runs the quickstart recipe (or RECIPE) for ``--trials`` trials in a fresh directory, then reports how many
trials were over budget, their total and per-trial time, and that total as a share of the search's wall time.

    .venv/bin/python benchmarks/search_budget_share.py [RECIPE] [--trials 25] [--workdir DIR]
    .venv/bin/python benchmarks/search_budget_share.py --study NAME --storage URL   # an existing study

For an existing study the wall time is from its first trial's start to its last trial's end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from search_common import load, machine, run_fresh, summary

from nasprune.storage import load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--study", default=None)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    if args.study:
        study = load_study(args.study, args.storage)
        done = [t for t in study.trials if t.datetime_complete is not None]
        wall = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    else:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nasprune-bench-"))
        study, wall = run_fresh(load(args.recipe, trials=args.trials), workdir, name="budget_share")
    s = summary(study, wall)
    print(json.dumps(s, indent=2))
    print(f"{s['over_budget']} of {s['finished']} trials over budget: {s['over_budget_s']:.1f} s of "
          f"{wall:.0f} s wall = {100 * s['over_budget_share']:.2f} % (mean {s['over_budget_mean_s']:.2f} s, "
          f"max {s['over_budget_max_s']:.2f} s per over-budget trial); {machine()}")


if __name__ == "__main__":
    main()
