"""Benchmark: how well the search's proxy accuracy ranks networks, and whether the pruning criterion matters.

1. Takes a finished study (default: a fresh run of the quickstart recipe cut to ``--trials`` trials into
   ``--workdir``; or ``--study NAME --storage URL``), picks ``--k`` trained trials spread over the proxy-accuracy
   range (the ``--top`` best always in; ``--below-band`` more below the budget band), and retrains each from
   scratch with a final recipe (its ``child_spec``; ``--retrain-epochs`` on ``--retrain-subset`` images; test
   accuracy; ``--top-seeds`` seeds for the best ones).
2. Re-scores the same trials' architectures under proxy variants (:data:`VARIANTS`: fine-tune epochs, parent
   epochs, parent sparsity, subset, resolution): each trial's child is re-derived from the shared parent trained
   under the variant's recipe (:func:`nasprune.search.fidelity.trial_design` / ``prune_trial``, its recorded
   criterion and band-filled ratios) and fine-tuned per the variant. Also "fine-tune the trial's own weights
   for 1 more epoch" against "retrain from scratch for 1 epoch", both on the retrain data.
3. For the criterion: the BN scales' spread per parent recipe, and the accuracy right after pruning (BN
   recalibration only) of every criterion at the trials' ratios (``--random-seeds`` seeds for ``random``).

Every measurement is cached in ``--cache`` (JSON lines, one per run), so a rerun resumes; the tables (Kendall
tau-b, Spearman rho, top-1 / top-3 retrieval, regret, in the budget band and overall) are printed and written to
``--out``. Stages run in the order of ``--stages`` (most important first).

    nice -n 5 .venv/bin/python benchmarks/proxy_fidelity.py                  # everything, resumable
    nice -n 5 .venv/bin/python benchmarks/proxy_fidelity.py --stages report  # tables from the cache only
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from search_common import load, machine, run_fresh

from nasprune.search.fidelity import gamma_spread, prune_trial, rank_agreement, spread_picks, trial_design
from nasprune.search.record import TrialRecord, records

# variant -> recipe overrides, merged into the study recipe's mapping of the same name
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "ft0": {"finetune": {"epochs": 0}},
    "ft1": {"finetune": {"epochs": 1}},
    "ft2": {},                                   # the study's own proxy (recorded; re-scored by the check stage)
    "ft4": {"finetune": {"epochs": 4}},
    "lambda1e-3": {"parent": {"sparsity_lambda": 1e-3}},
    "parent3": {"parent": {"epochs": 3}},
    "subset2000": {"data": {"subset": 2000}},
    "res48": {"data": {"resolution": 48}},
    "lambda1e-3 ft0": {"parent": {"sparsity_lambda": 1e-3}, "finetune": {"epochs": 0}},
}
CRITERIA = ("gamma_sparsity", "gamma", "l1", "random")
# criteria are compared right after pruning (BN recalibration) on the parents of these variants (0 fine-tune epochs)
CRITERION_VARIANTS = ("ft0", "lambda1e-3 ft0")
STAGES = ("study", "retrain", "retrain_seeds", "ft", "criterion", "lambda", "parents", "weights", "res48",
          "check", "report")
DEFAULT_STAGES = tuple(s for s in STAGES if s not in ("res48", "check"))


# -- the cache -------------------------------------------------------------------------------------------------
class Cache:
    """One JSON object per line, ``{"key": {...}, ...}``; a key is looked up by its canonical JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[self._id(row["key"])] = row

    @staticmethod
    def _id(key: Mapping) -> str:
        return json.dumps(key, sort_keys=True)

    def get(self, key: Mapping) -> dict | None:
        return self.rows.get(self._id(key))

    def put(self, key: Mapping, row: Mapping) -> dict:
        row = {"key": dict(key), **row}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
        self.rows[self._id(key)] = row
        return row


# -- context -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Pick:
    """A retrained trial: its record, parameters' design and whether it lies in the budget band."""

    record: TrialRecord
    design: Any
    in_band: bool
    finetune_seconds: float | None

    @property
    def child(self) -> str:
        return self.design.child.hash


@dataclass(kw_only=True)
class Context:
    recipe: Any
    study: Any
    picks: list[Pick]
    cache: Cache
    study_parents: Path
    work_parents: Path
    artifacts: Path
    final: dict[str, Any]
    readonly: bool = False
    _data: dict[str, Any] = field(default_factory=dict)
    _parents: dict[str, Any] = field(default_factory=dict)

    def data(self, config):
        from nasprune.data import load_data

        key = json.dumps(config.to_dict(), sort_keys=True)
        if key not in self._data:
            self._data[key] = load_data(config)
        return self._data[key]

    def variant(self, name: str):
        return self.recipe.override(**{k: {**getattr(self.recipe, k), **v} for k, v in VARIANTS[name].items()})

    def compute(self, key: Mapping, run: Callable[[], Mapping]) -> dict | None:
        """The cached row of ``key``, else (unless read-only) ``run()`` stored under it."""
        hit = self.cache.get(key)
        if hit is not None or self.readonly:
            return hit
        return self.cache.put(key, run())


# -- study and picks -------------------------------------------------------------------------------------------
def open_or_run(args: argparse.Namespace):
    """The study and its recipe (run fresh into ``--workdir`` unless ``--study`` is given)."""
    from nasprune.search.recipe import Recipe
    from nasprune.storage import default_storage_url, load_study

    if args.study:
        study = load_study(args.study, args.storage or default_storage_url(args.study))
        return study, Recipe.from_dict(study.user_attrs["recipe"], source=f"study {args.study!r} recipe")
    recipe = load(args.recipe)
    study, wall = run_fresh(recipe, Path(args.workdir), name="proxy_fidelity", trials=args.trials)
    print(f"study: {len(study.trials)} trials, {wall:.0f} s this run ({args.workdir})")
    return study, Recipe.from_dict(study.user_attrs["recipe"], source="study recipe")


def choose(study, recipe, k: int, top: int, below_band: int = 0) -> list[Pick]:
    """``k`` trained trials spread over the proxy-accuracy range, the ``top`` best in, best first; then up to
    ``below_band`` more of the best below the budget band (unpruned seed designs), if the spread has none."""
    from nasprune.search.objective import data_shape

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    trained = [r for r in records(study) if r.trained and r.child_spec]
    chosen = [trained[i] for i in spread_picks([r.val_acc for r in trained], k, top)]
    low = recipe.budget_floor * recipe.budget_mflops
    if not any(r.mflops < low for r in chosen):
        chosen += sorted((r for r in trained if r.mflops < low), key=lambda r: -r.val_acc)[:below_band]
    picks = []
    for r in chosen:
        t = trials[r.number]
        design = trial_design(recipe, t.params, baseline=bool(r.baseline), seed_design=r.seed_design,
                              shape=data_shape(recipe))
        if design.child.to_dict() != r.child_spec:
            raise RuntimeError(f"trial {r.number}: re-derived child {design.child.hash} is not the recorded one")
        picks.append(Pick(record=r, design=design, in_band=low <= r.mflops <= recipe.budget_mflops,
                          finetune_seconds=t.user_attrs.get("finetune_seconds")))
    return picks


# -- parents -----------------------------------------------------------------------------------------------------
def parent(ctx: Context, variant, spec):
    """The trained parent of ``spec`` under ``variant``'s recipe (from the parent cache, else trained now) and its
    row (training seconds, val acc, BN scale spread)."""
    from nasprune.checkpoint import read_checkpoint
    from nasprune.search.parents import ParentCache
    from nasprune.train import fit

    pkey = variant.parent_key()
    root = ctx.study_parents if pkey == ctx.recipe.parent_key() else ctx.work_parents
    cache = ctx._parents.setdefault(pkey, ParentCache(root, pkey, seed=variant.train_config("parent").seed))
    key = {"kind": "parent", "parent_key": pkey, "spec": spec.hash}
    if ctx.readonly and (ctx.cache.get(key) is None or not cache.path(spec).is_file()):
        return None, ctx.cache.get(key)

    def train(model) -> dict:
        result = fit(model, ctx.data(variant.data_config()), variant.train_config("parent"))
        return {"val_acc": result.val_acc, "train_seconds": result.train_seconds, "epochs": result.epochs}

    model, _ = cache.get(spec, train)

    def describe() -> dict:
        meta = read_checkpoint(cache.path(spec))["metadata"]
        return {"name": spec.name, "parent": dict(variant.parent), "data": dict(variant.data),
                "seconds": meta.get("train_seconds"), "val_acc": meta.get("val_acc"),
                "gamma": gamma_spread(model).to_dict()}

    return model, ctx.compute(key, describe)


# -- scoring a trial under a proxy -------------------------------------------------------------------------------
def score(ctx: Context, name: str, pick: Pick, criterion: str | None = None, seed: int | None = None) -> dict | None:
    """Val accuracy of ``pick``'s architecture under variant ``name`` (cut with ``criterion``, default its own)."""
    from nasprune.train import evaluate, fit, recalibrate_bn

    v = ctx.variant(name)
    criterion = criterion or pick.record.criterion
    seed = ctx.recipe.seed if seed is None else seed
    key = {"kind": "proxy", "parent_key": v.parent_key(), "finetune": dict(v.finetune), "data": dict(v.data),
           "child": pick.child, "criterion": criterion, "seed": seed}
    if ctx.readonly:
        return ctx.cache.get(key)

    def run() -> dict:
        model, _ = parent(ctx, v, pick.design.parent)
        data = ctx.data(v.data_config())
        t0 = time.perf_counter()
        child = prune_trial(model, pick.design, criterion, seed=seed,
                            se_ratio=v.space.member(pick.record.family or v.space.family).se_ratio)
        if v.finetune_epochs < 1:
            recalibrate_bn(child, data)
            val_acc = evaluate(child, data, "val")
        else:
            val_acc = fit(child, data, v.train_config("finetune")).val_acc
        return {"variant": name, "trial": pick.record.number, "val_acc": val_acc,
                "seconds": time.perf_counter() - t0}

    return ctx.compute(key, run)


# -- the final ranking: retraining from scratch, and the from-weights re-rank --------------------------------------
def final_setup(ctx: Context, epochs: int, seed: int, lr: float | None = None):
    from nasprune.data import DataConfig
    from nasprune.train import TrainConfig

    data = DataConfig(**{**ctx.recipe.data, "subset": ctx.final["subset"], "val_size": ctx.final["val_size"]})
    train = TrainConfig(epochs=epochs, batch_size=64, lr=lr or ctx.final["lr"], augment=False, seed=seed)
    return data, train


def retrain(ctx: Context, pick: Pick, seed: int, epochs: int | None = None) -> dict | None:
    """Test (and val) accuracy of ``pick``'s architecture trained from scratch with the final recipe."""
    from nasprune import build
    from nasprune.spec import ArchSpec
    from nasprune.train import evaluate, fit

    data_config, train = final_setup(ctx, epochs or ctx.final["epochs"], seed)
    key = {"kind": "retrain", "child": pick.child, "data": data_config.to_dict(), "train": train.to_dict()}

    def run() -> dict:
        import torch

        data = ctx.data(data_config)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build(ArchSpec.from_dict(pick.record.child_spec))
        result = fit(model, data, train)
        return {"trial": pick.record.number, "val_acc": result.val_acc, "test_acc": evaluate(model, data, "test"),
                "seconds": result.train_seconds, "history": [h["val_acc"] for h in result.history]}

    return ctx.compute(key, run)


def from_weights(ctx: Context, pick: Pick, epochs: int = 1) -> dict | None:
    """Val accuracy after ``epochs`` more epochs of the trial's own (searched) weights on the retrain data."""
    from optuna.artifacts import FileSystemArtifactStore

    from nasprune.checkpoint import load as load_checkpoint
    from nasprune.train import fit

    data_config, train = final_setup(ctx, epochs, 0, lr=ctx.recipe.finetune.get("lr", 0.02))
    key = {"kind": "from_weights", "child": pick.child, "artifact": pick.record.artifact_id,
           "data": data_config.to_dict(), "train": train.to_dict()}

    def run() -> dict:
        with tempfile.TemporaryDirectory() as tmp, FileSystemArtifactStore(str(ctx.artifacts)).open_reader(
                pick.record.artifact_id) as reader:
            path = Path(tmp) / "child.pt"
            path.write_bytes(reader.read())
            model = load_checkpoint(path)
        result = fit(model, ctx.data(data_config), train)
        return {"trial": pick.record.number, "val_acc": result.val_acc, "seconds": result.train_seconds}

    return ctx.compute(key, run)


# -- stages -----------------------------------------------------------------------------------------------------
def run_stage(ctx: Context, stage: str, args: argparse.Namespace) -> None:
    top = ctx.picks[:args.top]
    jobs: dict[str, Callable[[], None]] = {
        "retrain": lambda: [retrain(ctx, p, 0) for p in ctx.picks],
        "retrain_seeds": lambda: [retrain(ctx, p, s) for s in range(1, args.top_seeds) for p in top],
        "ft": lambda: [score(ctx, n, p) for n in ("ft0", "ft1", "ft4") for p in ctx.picks],
        "criterion": lambda: criteria(ctx, "ft0", args.random_seeds),
        "lambda": lambda: ([score(ctx, "lambda1e-3", p) for p in ctx.picks],
                           criteria(ctx, "lambda1e-3 ft0", args.random_seeds)),
        "parents": lambda: [score(ctx, n, p) for n in ("parent3", "subset2000") for p in ctx.picks],
        "weights": lambda: [(from_weights(ctx, p), retrain(ctx, p, ctx.final["scratch_seed"], epochs=1))
                            for p in ctx.picks],
        "res48": lambda: [score(ctx, "res48", p) for p in ctx.picks],
        "check": lambda: check(ctx),
    }
    t0 = time.perf_counter()
    jobs[stage]()
    print(f"stage {stage}: {time.perf_counter() - t0:.0f} s", flush=True)


def criteria(ctx: Context, variant: str, random_seeds: int) -> None:
    """Accuracy right after pruning (``variant`` has 0 fine-tune epochs) of every criterion at the picks' ratios."""
    for p in ctx.picks:
        for c in CRITERIA:
            for seed in range(random_seeds if c == "random" else 1):
                score(ctx, variant, p, c, seed)


def check(ctx: Context) -> None:
    """Re-score the best pick under the study's own recipe: the search's figure must come out again."""
    pick = ctx.picks[0]
    row = score(ctx, "ft2", pick)
    print(f"check: trial {pick.record.number} recorded {pick.record.val_acc:.4f}, re-scored {row['val_acc']:.4f}")


# -- the report ----------------------------------------------------------------------------------------------------
def truth(ctx: Context, pick: Pick, seeds: int) -> float | None:
    rows = [retrain(ctx, pick, s) for s in range(seeds)]
    accs = [r["test_acc"] for r in rows if r]
    return statistics.mean(accs) if accs else None


def agreement_rows(ctx: Context, proxies: Mapping[str, Callable[[Pick], float | None]], seeds: int) -> list[dict]:
    """Rank agreement of every proxy with the retrained ranking, overall and in the band."""
    targets = {id(p): truth(ctx, p, seeds) for p in ctx.picks}
    out = []
    for name, get in proxies.items():
        pairs = [(get(p), targets[id(p)], p) for p in ctx.picks]
        pairs = [(x, y, p) for x, y, p in pairs if x is not None and y is not None]
        if len(pairs) < 3:
            continue
        row = {"proxy": name}
        for scope, chosen in (("all", pairs), ("band", [t for t in pairs if t[2].in_band])):
            a = rank_agreement([x for x, _, _ in chosen], [y for _, y, _ in chosen])
            row.update({f"{scope}_{k}": v for k, v in a.to_dict().items()})
        out.append(row)
    return out


def proxy_getters(ctx: Context, args) -> dict[str, Callable[[Pick], float | None]]:
    def variant(name):
        return lambda p: (score(ctx, name, p) or {}).get("val_acc")

    getters: dict[str, Callable[[Pick], float | None]] = {"ft2 (search)": lambda p: p.record.val_acc}
    getters.update({n: variant(n) for n in ("ft0", "ft1", "ft4", "lambda1e-3", "parent3", "subset2000", "res48")})
    getters["weights+1ep"] = lambda p: (from_weights(ctx, p) or {}).get("val_acc")
    getters["scratch 1ep"] = lambda p: (retrain(ctx, p, ctx.final["scratch_seed"], epochs=1) or {}).get("val_acc")
    return getters


def _f(value, fmt: str = ".3f") -> str:
    return "—" if value is None or value != value else format(value, fmt)


def _pct(value) -> str:
    return _f(None if value is None else 100 * value, ".2f")


def proxy_seconds(ctx: Context, name: str) -> float | None:
    """Seconds per trial of a proxy: its own per-trial work plus its parents' training spread over the study's
    trained trials (the weights / scratch re-rankers: their own work only)."""
    n_trained = sum(r.trained for r in records(ctx.study))
    if name == "ft2 (search)":
        own = [p.finetune_seconds for p in ctx.picks if p.finetune_seconds is not None]
        variant = ctx.recipe
    elif name in ("weights+1ep", "scratch 1ep"):
        getter = (lambda p: from_weights(ctx, p)) if name == "weights+1ep" else (
            lambda p: retrain(ctx, p, ctx.final["scratch_seed"], epochs=1))
        rows = [r for r in map(getter, ctx.picks) if r]
        return statistics.mean(r["seconds"] for r in rows) if rows else None
    else:
        rows = [r for r in (score(ctx, name, p) for p in ctx.picks) if r]
        own = [r["seconds"] for r in rows]
        variant = ctx.variant(name)
    specs = {p.design.parent.hash: p.design.parent for p in ctx.picks}
    parents = [parent(ctx, variant, spec)[1] for spec in specs.values()]
    if not own or any(row is None for row in parents):
        return None
    return statistics.mean(own) + sum(row["seconds"] for row in parents) / max(1, n_trained)


def agreement_table(ctx: Context, args) -> list[str]:
    lines = ["| proxy | s / trial | τ (all) | ρ (all) | top-1 | top-3 | regret (pp) | n band | τ (band) | "
             "ρ (band) | top-1 (band) | top-3 (band) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in agreement_rows(ctx, proxy_getters(ctx, args), args.top_seeds):
        seconds = proxy_seconds(ctx, row["proxy"])
        lines.append(f"| {row['proxy']} | {_f(seconds, '.1f')} | {_f(row['all_tau'], '.2f')} | "
                     f"{_f(row['all_rho'], '.2f')} | {_f(row['all_top1'], '.0f')} | {_f(row['all_top3'], '.2f')} | "
                     f"{_pct(row['all_regret'])} | {row['band_n']} | {_f(row['band_tau'], '.2f')} | "
                     f"{_f(row['band_rho'], '.2f')} | {_f(row['band_top1'], '.0f')} | {_f(row['band_top3'], '.2f')} |")
    return lines


def picks_table(ctx: Context, args) -> list[str]:
    getters = proxy_getters(ctx, args)
    names = [n for n in getters if any(getters[n](p) is not None for p in ctx.picks)]
    lines = ["| trial | MFLOPs | band | criterion | " + " | ".join(names) + " | retrained (seeds) | retrained mean |",
             "|---" * (len(names) + 6) + "|"]
    for p in ctx.picks:
        seeds = [r["test_acc"] for r in (retrain(ctx, p, s) for s in range(args.top_seeds)) if r]
        lines.append(f"| {p.record.number} | {p.record.mflops:.1f} | {'yes' if p.in_band else 'no'} | "
                     f"{p.record.criterion} | " + " | ".join(_pct(getters[n](p)) for n in names) +
                     f" | {', '.join(_pct(a) for a in seeds)} | {_pct(statistics.mean(seeds) if seeds else None)} |")
    return lines


def noise_lines(ctx: Context, args) -> list[str]:
    """How far two retrain seeds agree (the truth's own noise floor)."""
    pairs = [(retrain(ctx, p, 0), retrain(ctx, p, 1)) for p in ctx.picks[:args.top]]
    pairs = [(a["test_acc"], b["test_acc"]) for a, b in pairs if a and b]
    if len(pairs) < 2:
        return []
    a = rank_agreement([x for x, _ in pairs], [y for _, y in pairs])
    diff = statistics.mean(abs(x - y) for x, y in pairs)
    return [f"Retrain seeds 0 and 1 on the proxy's top {len(pairs)}: τ {a.tau:.2f}, mean |difference| "
            f"{100 * diff:.2f} pp (the retrained ranking's own noise)."]


def gamma_table(ctx: Context) -> list[str]:
    lines = ["| parent recipe | parent | epochs | λ | subset | parent val acc | train s | mean abs(γ) | CV of abs(γ) | "
             "share < 0.01 |", "|---|---|---|---|---|---|---|---|---|---|"]
    specs = {p.design.parent.hash: p.design.parent for p in ctx.picks}
    for name in ("ft2", "lambda1e-3", "parent3", "subset2000", "res48"):
        v = ctx.variant(name)
        for spec in specs.values():
            row = parent(ctx, v, spec)[1]
            if row is None:
                continue
            g, tc = row["gamma"], v.train_config("parent")
            lines.append(f"| {name} | {row['name']} | {tc.epochs} | {tc.sparsity_lambda:g} | {v.data.get('subset')} | "
                         f"{_pct(row['val_acc'])} | {_f(row['seconds'], '.0f')} | {g['mean']:.3f} | {g['cv']:.3f} | "
                         f"{100 * g['share_below']:.1f} % |")
    return lines


def criterion_table(ctx: Context, args) -> list[str]:
    """Accuracy right after pruning per criterion (mean, min, max over the picks) and wins against random."""
    lines = ["| parent recipe | criterion | mean acc (%) | min | max | beats random mean (trials) |",
             "|---|---|---|---|---|---|"]
    for variant in CRITERION_VARIANTS:
        per: dict[str, list[float]] = {}
        for c in CRITERIA:
            seeds = range(args.random_seeds if c == "random" else 1)
            rows = [[score(ctx, variant, p, c, s) for s in seeds] for p in ctx.picks]
            if all(r and all(rows_i for rows_i in r) for r in rows):
                per[c] = [statistics.mean(x["val_acc"] for x in r) for r in rows]
        for c, accs in per.items():
            wins = "—" if c == "random" or "random" not in per else \
                f"{sum(a > b for a, b in zip(accs, per['random'], strict=True))} of {len(accs)}"
            label = "ft2 (study parent)" if variant == "ft0" else variant.removesuffix(" ft0")
            lines.append(f"| {label} | {c} | {statistics.mean(accs) * 100:.2f} | {min(accs) * 100:.2f} | "
                         f"{max(accs) * 100:.2f} | {wins} |")
    return lines


def write_report(ctx: Context, args, out: Path) -> None:
    """Print the tables and write them to ``out`` (markdown)."""
    n_trained = sum(r.trained for r in records(ctx.study))
    head = [f"Study {ctx.study.study_name!r}: {len(ctx.study.trials)} trials, {n_trained} trained; {len(ctx.picks)} "
            f"picked ({args.top} best by proxy + a spread). Retrained from scratch: {args.retrain_epochs} epochs, "
            f"{args.retrain_subset} images at {ctx.recipe.data['resolution']} px, SGD lr {args.retrain_lr}, batch 64, "
            f"no augmentation; truth = test accuracy (10 000 images), mean over seeds ({args.top_seeds} for the "
            f"top {args.top}, 1 for the others). Proxies: val accuracy (2000 images)."]
    sections = [("Picks", picks_table(ctx, args)), ("Rank agreement with the retrained ranking",
                agreement_table(ctx, args) + [""] + noise_lines(ctx, args)),
                ("BN scale spread of the shared parents", gamma_table(ctx)),
                ("Accuracy right after pruning (BN recalibration only) per criterion", criterion_table(ctx, args))]
    text = "\n".join(head + [""] + [line for title, body in sections for line in (f"### {title}", "", *body, "")])
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Proxy fidelity and the criterion\n\nWritten by `benchmarks/proxy_fidelity.py`.\n\n{text}")


def main() -> None:
    import torch

    args = parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    study, recipe = open_or_run(args)
    artifacts = Path(study.user_attrs["artifacts_dir"])
    ctx = Context(recipe=recipe, study=study, picks=choose(study, recipe, args.k, args.top, args.below_band),
                  cache=Cache(Path(args.cache)), study_parents=artifacts / "parents",
                  work_parents=Path(args.workdir) / "parents", artifacts=artifacts,
                  final={"epochs": args.retrain_epochs, "subset": args.retrain_subset, "val_size": 2000,
                         "lr": args.retrain_lr, "scratch_seed": args.top_seeds + 1})
    print("picks:", ", ".join(f"{p.record.number} ({p.record.val_acc:.4f}, {p.record.mflops:.1f} MFLOPs"
                              f"{'' if p.in_band else ', below band'})" for p in ctx.picks), flush=True)
    for stage in args.stages:
        if stage not in ("study", "report"):
            run_stage(ctx, stage, args)
    write_report(replace(ctx, readonly=True), args, Path(args.out))
    print(f"total {time.perf_counter() - start:.0f} s; {machine()}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe of the fresh study (default: quickstart)")
    parser.add_argument("--trials", type=int, default=36, help="trials of the fresh study (default 36)")
    parser.add_argument("--study", default=None, help="use this finished study instead of running one")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--workdir", default="runs/proxy_fidelity", help="fresh study and variant parents")
    parser.add_argument("--k", type=int, default=8, help="trials to retrain (default 8)")
    parser.add_argument("--top", type=int, default=5, help="of which the proxy's best (default 5)")
    parser.add_argument("--below-band", type=int, default=1,
                        help="add this many of the best trials below the budget band when the spread has none")
    parser.add_argument("--top-seeds", type=int, default=2, help="retrain seeds for the best ones (default 2)")
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.add_argument("--retrain-subset", type=int, default=12000)
    parser.add_argument("--retrain-lr", type=float, default=0.05)
    parser.add_argument("--random-seeds", type=int, default=3, help="seeds of the random criterion (default 3)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(DEFAULT_STAGES))
    parser.add_argument("--cache", default="reports/proxy_fidelity.runs.jsonl")
    parser.add_argument("--out", default="reports/proxy_fidelity.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
