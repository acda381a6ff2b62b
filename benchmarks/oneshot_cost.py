"""Benchmark: what a one-shot search costs per network and per parent, at 32 and 64 px (the quickstart's recipe).

For each training resolution, on the quickstart's data (Fashion-MNIST, 3000 training / 2000 validation images):

* **parent epoch**: one epoch of the shared parent's sparse training, and one epoch of its one-shot (sandwich)
  training with the recipe's ``oneshot.children``, for the fast and the slow schedule's parent;
* **per network**: cutting a band-filled child from the one-shot parent, recalibrating its BN statistics
  (``recalibrate.batches``) and validating it; and, for comparison, one fine-tune epoch of the same child.

Resolutions are measured interleaved (``--repeats`` rounds), one torch thread, and the 64/32 ratio is printed per
row. Parent figures are per epoch: multiply by the recipe's epochs for a parent's cost.

    nice -n 5 .venv/bin/python benchmarks/oneshot_cost.py --resolutions 32 64 --repeats 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from search_common import load, machine

from nasprune import build
from nasprune.data import load_data
from nasprune.search.objective import cut_child
from nasprune.search.oneshot import OneShotConfig, child_pool, order_channels, train_oneshot
from nasprune.search.space import FixedParams, resolve
from nasprune.train import TrainConfig, evaluate, fit, recalibrate_bn


def _timed(run) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def measure(recipe, resolution: int, schedule: str) -> dict[str, float]:
    r = recipe.override(data={**recipe.data, "resolution": resolution})
    data = load_data(r.data_config())
    shape = (data.in_channels, data.num_classes)
    spec = resolve(r.space, r.space.sample(FixedParams({"schedule": schedule})), mode="shared",
                   resolution=r.deploy_resolution, in_channels=shape[0], num_classes=shape[1]).parent
    pool = child_pool(r, spec, shape, 8)
    torch.manual_seed(0)
    parent = build(spec)
    one = TrainConfig(**{**r.train_config("parent").to_dict(), "epochs": 1})
    shared = _timed(lambda: fit(parent, data, one))
    ordered = order_channels(parent, r.space.criteria[0])
    settings = OneShotConfig(**{**r.oneshot.to_dict(), "epochs": 1})
    sandwich = _timed(lambda: train_oneshot(ordered, data, one, settings, pool))
    se_ratio = r.space.se_ratio
    recal, tune = [], []
    for design in pool[:2]:
        child = cut_child(ordered, design, None, se_ratio=se_ratio)

        def score(child=child):
            recalibrate_bn(child, data, batches=r.recalibrate_batches, batch_size=r.recalibrate_batch_size)
            evaluate(child, data, "val")

        recal.append(_timed(score))
        tuned = copy.deepcopy(child)
        tune.append(_timed(lambda tuned=tuned: fit(tuned, data, TrainConfig(
            **{**r.train_config("finetune").to_dict(), "epochs": 1}))))
    return {"shared parent epoch": shared, "one-shot epoch": sandwich, "network: recalibrate + validate":
            statistics.median(recal), "network: 1 fine-tune epoch": statistics.median(tune)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load(args.recipe)
    rows: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.repeats):
        for schedule in ("fast", "slow"):
            for res in args.resolutions:
                for name, seconds in measure(recipe, res, schedule).items():
                    rows.setdefault((schedule, name, res), []).append(seconds)
    base = args.resolutions[0]
    head = " | ".join(f"{res} px (s)" for res in args.resolutions)
    ratios = " | ".join(f"{res}/{base}" for res in args.resolutions[1:])
    print(f"{machine()}, 1 torch thread, median of {args.repeats}\n")
    print(f"| schedule | what | {head} | {ratios} |")
    print("|---|---|" + "---|" * (2 * len(args.resolutions) - 1))
    for schedule in ("fast", "slow"):
        for name in ("shared parent epoch", "one-shot epoch", "network: recalibrate + validate",
                     "network: 1 fine-tune epoch"):
            med = {res: statistics.median(rows[(schedule, name, res)]) for res in args.resolutions}
            cells = " | ".join(f"{med[res]:.2f}" for res in args.resolutions)
            ratio = " | ".join(f"{med[res] / med[base]:.2f}" for res in args.resolutions[1:])
            print(f"| {schedule} | {name} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
