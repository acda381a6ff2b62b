"""Benchmark (b): hypervolume after the same number of trials for TPE, NSGA-II and random, as ratios to random.

Every sampler runs the same recipe (default: quickstart with fine-tuning replaced by BN recalibration, so a
trial costs seconds) for ``--trials`` trials and each of ``--seeds`` seeds; all share one parent cache, so the
shared parents are trained once. Hypervolume: area dominated by the feasible trials in (accuracy, MFLOPs),
reference point (accuracy 0, budget), divided by the budget (so it is in [0, 1]).

    .venv/bin/python benchmarks/search_samplers.py [RECIPE] [--trials 30] [--seeds 0 1] [--finetune-epochs 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from search_common import load, machine, run_fresh, summary

from nasprune.report.tables import hypervolume_2d
from nasprune.search.record import records

SAMPLERS = ("random", "tpe", "nsga2")


def hypervolume(study, budget: float) -> float:
    ok = [r for r in records(study) if r.trained]
    return hypervolume_2d([r.val_acc for r in ok], [r.mflops for r in ok], budget) / budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nasprune-bench-"))
    base = load(args.recipe, trials=args.trials)
    base = base.override(finetune={**base.finetune, "epochs": args.finetune_epochs})
    rows = {}
    for sampler in SAMPLERS:
        volumes = []
        for seed in args.seeds:
            name = f"{sampler}_{seed}"
            study, wall = run_fresh(base, workdir, name=name, sampler=sampler, seed=seed,
                                    artifacts=workdir / "shared.artifacts")  # one parent cache for every run
            volumes.append(hypervolume(study, base.budget_mflops))
            s = summary(study, wall)
            print(f"{name}: hypervolume {volumes[-1]:.4f}, {s['trained']} trained / {s['finished']} trials, "
                  f"best {s['best_val_acc']:.4f}, {wall:.0f} s", flush=True)
        rows[sampler] = statistics.mean(volumes)
    ratios = {k: v / rows["random"] for k, v in rows.items()}
    print(json.dumps({"hypervolume": rows, "ratio_to_random": ratios}, indent=2))
    print(f"{machine()}")


if __name__ == "__main__":
    main()
