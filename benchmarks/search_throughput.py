"""Benchmark (c): trials per hour on the quickstart recipe with and without the parent cache / shared parent.

Each configuration runs from a cold start (fresh storage and artifacts) for ``--seconds`` (Optuna's timeout:
no trial starts after it; the running one finishes) and counts finished trials and trained (feasible) trials.

    .venv/bin/python benchmarks/search_throughput.py [RECIPE] [--seconds 240]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from search_common import load, machine, run_fresh, summary

CONFIGS = {  # name -> (parent mode, parent cache)
    "shared parent + cache": ("shared", True),
    "per-trial parents + cache": ("per_trial", True),
    "per-trial parents, no cache": ("per_trial", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nasprune-bench-"))
    results = {}
    for i, (name, (mode, cache)) in enumerate(CONFIGS.items()):
        recipe = load(args.recipe, trials=10_000).override(parent_mode=mode)
        study, wall = run_fresh(recipe, workdir, name=f"throughput_{i}", timeout=args.seconds, cache=cache)
        results[name] = summary(study, wall)
        r = results[name]
        print(f"{name}: {r['finished']} trials ({r['trained']} trained) in {wall:.0f} s = "
              f"{r['trials_per_hour']:.0f} trials/h, {r['trained_per_hour']:.0f} trained/h", flush=True)
    print(json.dumps(results, indent=2))
    print(machine())


if __name__ == "__main__":
    main()
