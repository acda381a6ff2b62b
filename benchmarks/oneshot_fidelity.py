"""Benchmark: does a one-shot parent rank the search's children like retraining them does, and at what cost?

1. Takes a finished one-shot study (``--study NAME --storage URL``; default: a fresh run of ``RECIPE``, the
   quickstart with ``parent.mode: oneshot``, into ``--workdir``), and picks ``--k`` distinct trained networks
   spread over its proxy accuracy (the ``--top`` best always in).
2. Scores the same networks with four proxies (same recipe, seeds and data):

   * ``oneshot+recal``: the study's own score (cut from the one-shot parent, BN recalibrated, validated);
   * ``oneshot+ft1``: the same child, then 1 fine-tune epoch;
   * ``shared+ft4``: today's proxy, cut from the shared parent with the trial's criterion, 4 fine-tune epochs;
   * ``shared+recal``: adaptive BN (EagleEye) from the shared parent: recalibration only;

   plus one-shot parents trained with other settings (``--variants``: epochs, children, distillation).
3. Truth: every pick retrained from scratch (``benchmarks/proxy_fidelity.py``'s final recipe: 4 epochs on 12 000
   images at the study's resolution, test accuracy), ``--seeds`` seeds; the seed-to-seed agreement is the noise
   floor.

Costs are seconds per trial at equal footing: the proxy's own work per network plus its parents' training spread
over ``--study-size`` networks (parent training is paid once per study), and how many networks each proxy
evaluates in ``--minutes`` on this machine. Everything is cached in ``--cache`` (JSON lines), so a rerun resumes.

    nice -n 5 .venv/bin/python benchmarks/oneshot_fidelity.py --study os --storage sqlite:///runs/os/os.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from proxy_fidelity import Cache, Context, choose, retrain, score
from search_common import load, machine, run_fresh

from nasprune.search.fidelity import kendall_tau_b, rank_agreement
from nasprune.search.oneshot import OneShotParents
from nasprune.search.record import records

PROXIES = ("oneshot+recal", "oneshot+ft1", "shared+ft4", "shared+recal")
SHARED = {"shared+ft4": "ft4", "shared+recal": "ft0"}  # proxy_fidelity.VARIANTS that score them


def open_study(args):
    from nasprune.search.recipe import Recipe
    from nasprune.storage import load_study

    if args.study:
        study = load_study(args.study, args.storage)
    else:
        recipe = load(args.recipe)
        study, wall = run_fresh(recipe, Path(args.workdir), name="oneshot_fidelity", trials=args.trials)
        print(f"study: {len(study.trials)} trials, {wall:.0f} s ({args.workdir})")
    return study, Recipe.from_dict(study.user_attrs["recipe"], source="study recipe")


def oneshot_parents(ctx: Context, recipe, root: Path) -> OneShotParents:
    from nasprune.search.objective import Objective

    objective = Objective(recipe, root, data=ctx.data(recipe.data_config()))
    return objective.oneshot


def oneshot_score(ctx: Context, recipe, parents: OneShotParents, pick, epochs: int, label: str) -> dict | None:
    """The pick's child cut from ``recipe``'s one-shot parent, recalibrated, fine-tuned ``epochs``, validated."""
    from nasprune.search.objective import cut_child
    from nasprune.train import evaluate, fit, recalibrate_bn

    key = _row_key(recipe, pick, epochs)

    def run() -> dict:
        model, _ = parents.get(pick.design.parent)
        data = ctx.data(recipe.data_config())
        t0 = time.perf_counter()
        child = cut_child(model, pick.design, None, se_ratio=recipe.space.member(pick.record.family).se_ratio)
        recalibrate_bn(child, data, batches=recipe.recalibrate_batches, batch_size=recipe.recalibrate_batch_size,
                       seed=recipe.seed)
        if epochs:
            tune = recipe.override(finetune={**recipe.finetune, "epochs": epochs}).train_config("finetune")
            val_acc = fit(child, data, tune).val_acc
        else:
            val_acc = evaluate(child, data, "val")
        return {"proxy": label, "trial": pick.record.number, "val_acc": val_acc,
                "seconds": time.perf_counter() - t0}

    return ctx.compute(key, run)


def parent_seconds(path: Path) -> float | None:
    from nasprune.checkpoint import read_checkpoint

    if not path.is_file():
        return None
    meta = read_checkpoint(path)["metadata"]
    return meta.get("oneshot_seconds", meta.get("train_seconds"))


def variant_recipe(recipe, spec: str):
    """``epochs=3,children=1,distill=false`` -> the recipe with those one-shot settings."""
    values = {}
    for part in spec.split(","):
        name, _, raw = part.partition("=")
        values[name] = json.loads(raw.lower()) if raw.lower() in ("true", "false") else float(raw)
        if name in ("epochs", "children", "batch_size", "pool"):
            values[name] = int(values[name])
    return recipe.override(oneshot={**recipe.oneshot.to_dict(), **values})


def main() -> None:
    args = parse_args()
    study, recipe = open_study(args)
    root = Path(study.user_attrs["artifacts_dir"])
    cache = Cache(Path(args.cache))
    trained = [r for r in records(study) if r.trained and r.duplicate_of is None]
    ctx = Context(recipe=recipe, study=study, picks=[], cache=cache, study_parents=root / "parents",
                  work_parents=Path(args.workdir) / "parents", artifacts=root,
                  final={"subset": 12000, "val_size": 2000, "epochs": 4, "lr": 0.05, "scratch_seed": 7})
    ctx.picks = [p for p in choose(study, recipe, args.k, args.top, args.below_band) if p.record.duplicate_of is None]
    print(f"{len(trained)} distinct trained networks; {len(ctx.picks)} picked", flush=True)
    proxies = {"oneshot+recal": lambda p: p.record.val_acc}
    study_parents = oneshot_parents(ctx, recipe, root)
    cost = {}
    jobs = [("truth", s) for s in range(args.seeds)] + [(name, None) for name in PROXIES[1:]]
    jobs += [(f"oneshot[{v.partition(':')[0]}]+{v.partition(':')[2] or 'recal'}", v) for v in args.variants]
    for name, extra in jobs:
        if name == "truth":
            for p in ctx.picks:
                retrain(ctx, p, extra)
            continue
        if name == "oneshot+ft1":
            rows = {p.child: oneshot_score(ctx, recipe, study_parents, p, 1, name) for p in ctx.picks}
        elif name in SHARED:
            rows = {p.child: score(ctx, SHARED[name], p) for p in ctx.picks}
        else:
            settings, _, tune = extra.partition(":ft")
            v = variant_recipe(recipe, settings)
            parents = oneshot_parents(ctx, v, Path(args.workdir) / "variants")
            rows = {p.child: oneshot_score(ctx, v, parents, p, int(tune or 0), name) for p in ctx.picks}
            cost[name] = (v, parents, int(tune or 0))
        proxies[name] = (lambda r: lambda p: (r.get(p.child) or {}).get("val_acc"))(rows)
        print(f"{name}: done", flush=True)
    report(ctx, args, proxies, study_parents, cost, len(records(study)))


def proxy_cost(ctx: Context, args, name: str, study_parents, cost) -> tuple[float, float] | None:
    """(own seconds per network, parents' seconds for the study) of a proxy."""
    specs = {p.design.parent.hash: p.design.parent for p in ctx.picks}
    shared = [parent_seconds(ctx.study_parents / f"{h}-{ctx.recipe.parent_key()}.pt") for h in specs]
    if name == "oneshot+recal":
        own = [r.finetune_seconds for r in (p.record for p in ctx.picks) if r.finetune_seconds is not None]
        paths = [study_parents.path(s) for s in specs.values()]
    elif name in cost or name == "oneshot+ft1":
        recipe, parents, tune = cost.get(name, (ctx.recipe, study_parents, 1))
        own = [(ctx.cache.get(_row_key(recipe, p, tune)) or {}).get("seconds") for p in ctx.picks]
        paths = [parents.path(s) for s in specs.values()]
    else:
        own = [(score(ctx, SHARED[name], p) or {}).get("seconds") for p in ctx.picks]
        paths = []
    own = [s for s in own if s is not None]
    extra = [parent_seconds(p) for p in paths]
    if not own or None in shared or None in extra:
        return None
    return statistics.mean(own), sum(shared) + sum(extra)


def _row_key(recipe, pick, finetune: int) -> dict:
    """The cache key of a pick's score under ``recipe``'s one-shot parent with ``finetune`` epochs."""
    from nasprune.search.oneshot import oneshot_key

    return {"kind": "oneshot", "oneshot_key": oneshot_key(recipe), "child": pick.child, "finetune": finetune,
            "recalibrate": [recipe.recalibrate_batches, recipe.recalibrate_batch_size]}


def _f(value, fmt: str) -> str:
    return "—" if value is None or value != value else format(value, fmt)


def report(ctx: Context, args, proxies, study_parents, cost, n_trials: int) -> None:
    truths = {p.child: [r["test_acc"] for r in (retrain(ctx, p, s) for s in range(args.seeds)) if r]
              for p in ctx.picks}
    truth = {c: statistics.mean(v) for c, v in truths.items() if v}
    lines = [f"# One-shot proxy fidelity ({time.strftime('%Y-%m-%d')}; {machine()})", "",
             f"Study {ctx.study.study_name!r}: {n_trials} trials, {len(ctx.picks)} distinct networks picked over its "
             f"proxy range; truth = test accuracy after retraining from scratch (4 epochs, 12 000 images, "
             f"mean of {args.seeds} seeds). Costs: own seconds per network + parents' seconds / "
             f"{args.study_size} networks; networks in {args.minutes} min = (wall - parents) / own.", "",
             "| proxy | own s / network | parents s | s / network at study size | networks in "
             f"{args.minutes} min | τ (all) | ρ (all) | top-1 | top-3 | regret (pp) | n band | τ (band) | ρ (band) | "
             "top-1 (band) | top-3 (band) | regret band (pp) |", "|" + "---|" * 16]
    for name, get in proxies.items():
        pairs = [(get(p), truth.get(p.child), p) for p in ctx.picks]
        pairs = [t for t in pairs if t[0] is not None and t[1] is not None]
        if len(pairs) < 3:
            continue
        a = rank_agreement([x for x, _, _ in pairs], [y for _, y, _ in pairs])
        band = [t for t in pairs if t[2].in_band]
        b = rank_agreement([x for x, _, _ in band], [y for _, y, _ in band])
        c = proxy_cost(ctx, args, name, study_parents, cost)
        own, par = c if c else (None, None)
        per = own + par / args.study_size if c else None
        n10 = (args.minutes * 60 - par) / own if c else None
        lines.append(f"| {name} | {_f(own, '.2f')} | {_f(par, '.0f')} | {_f(per, '.2f')} | {_f(n10, '.0f')} | "
                     f"{a.tau:.2f} | {a.rho:.2f} | {a.top1:.0f} | {a.top3:.2f} | {100 * a.regret:.2f} | {b.n} | "
                     f"{_f(b.tau, '.2f')} | {_f(b.rho, '.2f')} | {_f(b.top1, '.0f')} | {_f(b.top3, '.2f')} | "
                     f"{_f(100 * b.regret, '.2f')} |")
    pairs = [v for v in truths.values() if len(v) >= 2]
    if len(pairs) >= 3:
        noise = kendall_tau_b([v[0] for v in pairs], [v[1] for v in pairs])
        diff = statistics.mean(abs(v[0] - v[1]) for v in pairs)
        lines += ["", f"Noise floor: retrain seeds 0 and 1 agree with τ {noise:.2f} over {len(pairs)} networks "
                  f"(mean |difference| {100 * diff:.2f} pp)."]
    lines += ["", "| trial | MFLOPs | band | " + " | ".join(proxies) + " | truth (seeds) |",
              "|" + "---|" * (4 + len(proxies))]
    for p in ctx.picks:
        cells = [_f(None if get(p) is None else 100 * get(p), ".2f") for get in proxies.values()]
        seeds = ", ".join(f"{100 * t:.2f}" for t in truths.get(p.child, []))
        lines.append(f"| {p.record.number} | {p.record.mflops:.1f} | {'yes' if p.in_band else 'no'} | "
                     + " | ".join(cells) + f" | {seeds} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", help="recipe of the fresh study (default: quickstart)")
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--study", default=None)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--workdir", default="runs/oneshot_fidelity")
    parser.add_argument("--k", type=int, default=14, help="networks to retrain (default 14)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--below-band", type=int, default=0, help="also the best networks below the band")
    parser.add_argument("--seeds", type=int, default=2, help="retrain seeds per network (default 2)")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="other one-shot settings, e.g. epochs=3,children=1 distill=false; ':ft1' adds a "
                             "fine-tune epoch (epochs=3,children=1:ft1)")
    parser.add_argument("--study-size", type=int, default=240, help="networks a study evaluates (parents spread)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cache", default="reports/oneshot_fidelity.runs.jsonl")
    parser.add_argument("--out", default="reports/oneshot_fidelity.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
