#!/usr/bin/env python
"""Time one training epoch of each kind of network in the budget table at a training resolution (sizing).

    nice -n 5 .venv/bin/python benchmarks/budget_sizing.py [--resolution 64] [--subset 1024]

Trains every hand-designed network of the table and the MobileNetV3-Large parent(s) for one epoch of the table
recipe on ``--subset`` images with 1 torch thread, then tests it on the 10000 test images, and prints seconds
per 1000 training images and the test seconds for each; the search, pruned and pruned-from-scratch rows are
estimated from these in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch
from budget_select import BUDGETS, fashion_spec, hand_designed, v3_parent_width
from budget_table import TableRecipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--subset", type=int, default=1024)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from nasprune import build
    from nasprune.data import DataConfig, load_data
    from nasprune.train import evaluate, fit

    recipe = dataclasses.replace(TableRecipe(), epochs=1, subset=args.subset, resolution=args.resolution)
    data = load_data(DataConfig(resolution=args.resolution, subset=args.subset, val_size=500))
    specs = {f"{c.model} {c.width:g}x @{c.deploy_resolution} (train {c.train_resolution})": c.spec
             for cands in hand_designed(BUDGETS, args.resolution, args.resolution).values() for c in cands}
    for width in dict.fromkeys(v3_parent_width(b) for b in BUDGETS):
        specs[f"mobilenet_v3_large {width:g}x parent"] = fashion_spec("mobilenet_v3_large", width)
    for name, spec in specs.items():
        start = time.perf_counter()
        model = build(spec)
        fit(model, data, recipe.train_config(0))
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(model, data, "test")
        test = time.perf_counter() - start
        print(f"{name}: {seconds:.1f} s for 1 epoch of {args.subset} images = "
              f"{1000 * seconds / args.subset:.2f} s per 1000 images; test {test:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
