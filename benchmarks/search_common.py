"""Helpers shared by the search benchmarks: run a recipe into a fresh directory, summarise a study."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from nasprune.search.recipe import Recipe, load_recipe
from nasprune.search.record import records
from nasprune.search.runner import RunOptions, run_search


def run_fresh(recipe: Recipe, workdir: Path, *, name: str, timeout: float | None = None, cache: bool = True,
              artifacts: Path | None = None, **overrides):
    """Run ``recipe`` as study ``name`` with its own journal storage (and artifacts, unless given) in ``workdir``.

    Journal storage keeps the benchmarks independent of the SQLite settings; the storage does not matter for
    these figures (a few milliseconds per trial).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = recipe.override(study=name, storage=f"journal:{workdir / name}.journal",
                             artifacts=str(artifacts or workdir / f"{name}.artifacts"), **overrides)
    start = time.perf_counter()
    result = run_search(recipe, RunOptions(progress=False, timeout=timeout, cache=cache))
    return result.study, time.perf_counter() - start


def summary(study, wall: float) -> dict:
    """Counts and time shares of a finished study (durations from Optuna's start/complete stamps)."""
    trials = [r for r in records(study) if r.duration_s is not None]
    over = [r for r in trials if not r.feasible]
    trained = [r for r in trials if r.trained]
    over_s = [r.duration_s for r in over]
    return {
        "finished": len(trials), "over_budget": len(over), "trained": len(trained), "wall_s": wall,
        "over_budget_s": sum(over_s), "over_budget_share": sum(over_s) / wall if wall else float("nan"),
        "over_budget_mean_s": statistics.mean(over_s) if over_s else float("nan"),
        "over_budget_max_s": max(over_s, default=float("nan")),
        "trials_per_hour": 3600 * len(trials) / wall, "trained_per_hour": 3600 * len(trained) / wall,
        "best_val_acc": max((r.val_acc for r in trained), default=float("nan")),
    }


def load(path: str | None, **overrides) -> Recipe:
    return load_recipe(path or "quickstart", **overrides)


def machine() -> str:
    load1, load5, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load1:.1f} (1 min) / {load5:.1f} (5 min) at the end"
