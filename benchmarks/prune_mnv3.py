"""Reproduce the gamma x S structured pruning of MobileNetV3-Large (Liu & Lei 2022) at proxy scale.

One sparse-trained parent (MobileNetV3-Large, 10 classes, Fashion-MNIST at a proxy resolution) is pruned at
global ratios 0-60 % with gamma x S (the paper's Table 3) and at 50 % with every criterion (Table 4), each
child fine-tuned with the same short recipe and seed; the per-layer channels at 50 % sit beside Table 5.
Params and MACs are counted at 224x224 (the paper's deployment input), accuracies on a held-out validation
split. Results are written after every run, so a long run leaves partial tables behind.

    nice -n 10 .venv/bin/python benchmarks/prune_mnv3.py            # about 30 min on 2 busy CPU cores
    .venv/bin/python benchmarks/prune_mnv3.py --quick                 # a smoke run of a few minutes
    nice -n 10 .venv/bin/python benchmarks/prune_mnv3.py --sparsity-lambda 1e-3 --sparse-epochs 24 \
        --tag lambda1e-3_e24                                          # a variant, compared with the main run

Outputs: ``reports/prune_mnv3.md``, ``reports/prune_mnv3_ratios.csv``, ``reports/prune_mnv3_criteria.csv``,
``reports/prune_mnv3_layers.csv``, the parent checkpoint ``reports/prune_mnv3_parent.pt`` (reused by reruns
with the same recipe), and the section "Structured pruning of MobileNetV3-Large" of ``benchmarks/README.md``.
A run with ``--tag TAG`` writes ``reports/prune_mnv3_TAG*`` (plus ``_diag.json``, the spread of γ) and, instead of
that section, a sub-section "With stronger sparsity (λ, epochs)" at its end, compared with the main run's files;
the main run keeps these sub-sections when it rewrites its section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import torch

import nasprune
from nasprune.checkpoint import load, save_checkpoint
from nasprune.cost import count
from nasprune.data import DataConfig, load_data
from nasprune.fsutil import atomic_write_text
from nasprune.prune import CRITERIA, PruneConfig, compute_scores, layer_report, prune_by_config
from nasprune.train import TrainConfig, evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Structured pruning of MobileNetV3-Large (γ × S)"
# Runs with --tag write their own files and a sub-section of SECTION starting with this heading, which the main
# (untagged) run keeps when it rewrites SECTION.
VARIANT = "### With stronger sparsity"

# Table 3 of the paper (CIFAR-10, 224x224): ratio -> (acc %, params M, params -%, FLOPs, FLOPs -%).
PAPER_TABLE3 = {0: (88.28, 4.22, 0.0, 2.30e8, 0.0), 10: (87.86, 3.68, 12.8, 2.17e8, 5.7),
                20: (88.26, 3.26, 22.7, 2.00e8, 13.0), 30: (88.23, 2.89, 31.5, 1.81e8, 21.3),
                40: (88.69, 2.61, 38.2, 1.61e8, 30.0), 50: (88.55, 2.34, 44.5, 1.38e8, 40.0),
                60: (87.99, 2.16, 48.8, 9.87e7, 57.1)}
# Table 5: expansion channels per bneck before -> after 50 % (bneck 0 included: the paper's layout has a 1x1
# conv there, torchvision's has none).
PAPER_TABLE5 = [(16, 9), (64, 49), (72, 42), (72, 72), (120, 102), (120, 89), (240, 223), (200, 144),
                (184, 139), (184, 112), (480, 209), (672, 38), (672, 540), (960, 484), (960, 255)]


@dataclasses.dataclass(frozen=True)
class Recipe:
    resolution: int = 32
    subset: int = 6000
    val_size: int = 2000
    sparse_epochs: int = 4
    finetune_epochs: int = 1
    sparsity_lambda: float = 1e-4
    lr: float = 1e-3
    finetune_lr: float = 5e-4
    batch_size: int = 64
    bn_momentum: float = 0.1
    seed: int = 0


def parse_args() -> tuple[argparse.Namespace, Recipe]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(Recipe):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.add_argument("--ratios", default="0,0.1,0.2,0.3,0.4,0.5,0.6")
    p.add_argument("--criteria-ratio", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (subset 512, 1 epoch each)")
    p.add_argument("--reports", type=Path, default=ROOT / "reports")
    p.add_argument("--tag", default="", help="variant name, e.g. 'lambda1e-3': files reports/prune_mnv3_TAG*, "
                   "a README sub-section compared with the main run, and its own parent checkpoint")
    args = p.parse_args()
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)})
    if args.quick:
        recipe = dataclasses.replace(recipe, subset=512, val_size=500, sparse_epochs=1, finetune_epochs=1)
        args.reports = Path("/tmp/prune_mnv3_quick")  # never overwrite the real report with a smoke run
    return args, recipe


def parent_model(recipe: Recipe, data, path: Path):
    """The sparse-trained parent, trained once and reused by every ratio and criterion (and by reruns)."""
    key = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    if path.exists():
        model = load(path)
        if model.metadata.get("recipe") == key:
            print(f"reusing parent {path}", flush=True)
            return model, model.metadata["train"]
    spec = nasprune.get_spec("mobilenet_v3_large", num_classes=data.num_classes, in_channels=data.in_channels,
                             resolution=recipe.resolution).replace(bn_momentum=recipe.bn_momentum)
    model = nasprune.build(spec)
    config = TrainConfig(epochs=recipe.sparse_epochs, optimizer="adam", lr=recipe.lr, batch_size=recipe.batch_size,
                         sparsity_lambda=recipe.sparsity_lambda, seed=recipe.seed, device="cpu")
    result = fit(model, data, config, progress=True)
    train = {"val_acc": result.val_acc, "seconds": result.train_seconds, "images_per_s": result.images_per_s}
    save_checkpoint(path, model, {"recipe": key, "train": train})
    return model.eval(), train


def prune_and_finetune(parent, data, recipe: Recipe, criterion: str, ratio: float) -> dict:
    start = time.perf_counter()
    child, _ = prune_by_config(parent, PruneConfig(ratio=ratio, criterion=criterion, seed=recipe.seed))
    val_pruned = evaluate(child, data, "val")
    config = TrainConfig(epochs=recipe.finetune_epochs, optimizer="adam", lr=recipe.finetune_lr,
                         batch_size=recipe.batch_size, seed=recipe.seed, device="cpu")
    fit(child, data, config)
    before, after = count(parent.spec, resolution=224, layers=False), count(child.spec, resolution=224, layers=False)
    return {
        "criterion": criterion, "ratio_pct": round(ratio * 100),
        "params": after.params, "params_red_pct": 100 * (1 - after.params / before.params),
        "macs": after.macs, "macs_red_pct": 100 * (1 - after.macs / before.macs),
        "all_ops": after.all_ops, "all_ops_red_pct": 100 * (1 - after.all_ops / before.all_ops),
        "val_acc_pruned": 100 * val_pruned, "val_acc_after": 100 * evaluate(child, data, "val"),
        "seconds": time.perf_counter() - start, "layers": layer_report(parent.spec, child.spec),
    }


COLUMNS = ["criterion", "ratio_pct", "params", "params_red_pct", "macs", "macs_red_pct", "all_ops", "all_ops_red_pct",
           "val_acc_pruned", "val_acc_after", "seconds", "layers"]


def ranking_diagnostics(parent) -> dict:
    """How much sparse training spread the BN scales, and which factor drives the gamma x S ranking."""
    gamma = torch.cat(list(compute_scores(parent, "gamma").values()))
    sparsity = torch.cat(list(compute_scores(parent, "sparsity").values()))

    def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
        ranks = torch.stack([a.argsort().argsort().double(), b.argsort().argsort().double()])
        return float(torch.corrcoef(ranks)[0, 1])

    return {"gamma_min": float(gamma.min()), "gamma_mean": float(gamma.mean()),
            "gamma_below_001": float((gamma < 0.01).double().mean()),
            "gamma_cv": float(gamma.std() / gamma.mean()), "s_cv": float(sparsity.std() / sparsity.mean()),
            "rho_gamma": spearman(gamma, gamma * sparsity), "rho_s": spearman(sparsity, gamma * sparsity)}


# -- tables ------------------------------------------------------------------------------------------------
def ratio_table(rows: list[dict], parent_acc: float) -> pd.DataFrame:
    df = pd.DataFrame([r for r in rows if r["criterion"] == "gamma_sparsity"], columns=COLUMNS)
    df = df.drop_duplicates("ratio_pct")
    df = df.sort_values("ratio_pct")
    paper = pd.DataFrame([{"ratio_pct": k, "paper_acc": v[0], "paper_params_M": v[1], "paper_params_red_pct": v[2],
                           "paper_flops": v[3], "paper_flops_red_pct": v[4]} for k, v in PAPER_TABLE3.items()])
    df = df.merge(paper, on="ratio_pct", how="left")
    df.insert(1, "val_acc_parent", 100 * parent_acc)
    return df.drop(columns=["layers", "criterion"])


def criteria_table(rows: list[dict], ratio_pct: int) -> pd.DataFrame:
    df = pd.DataFrame([r for r in rows if r["ratio_pct"] == ratio_pct], columns=COLUMNS).drop_duplicates("criterion")
    return df.drop(columns=["layers"])


def layers_table(rows: list[dict], ratio_pct: int) -> pd.DataFrame | None:
    match = [r for r in rows if r["criterion"] == "gamma_sparsity" and r["ratio_pct"] == ratio_pct]
    if not match:
        return None
    ours = {int(x["name"].split(".")[1]): x for x in match[0]["layers"]}
    table = []
    for i, (p_before, p_after) in enumerate(PAPER_TABLE5):
        row = ours.get(i)
        table.append({"bneck": i, "paper": f"{p_before}→{p_after}",
                      "ours": f"{row['before']}→{row['after']}" if row else "not prunable (no expansion conv)",
                      "ours_kept_pct": round(100 * row["after"] / row["before"], 1) if row else None,
                      "paper_kept_pct": round(100 * p_after / p_before, 1)})
    return pd.DataFrame(table)


def _fmt_ratio_rows(df: pd.DataFrame) -> str:
    lines = ["| ratio | params (M) | params −% | MACs@224 (M) | MACs −% | all ops −% | acc parent | acc pruned | "
             "acc fine-tuned | paper params −% | paper FLOPs −% | paper acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.ratio_pct} % | {r.params / 1e6:.2f} | {r.params_red_pct:.1f} | {r.macs / 1e6:.1f} | "
                     f"{r.macs_red_pct:.1f} | {r.all_ops_red_pct:.1f} | {r.val_acc_parent:.2f} | "
                     f"{r.val_acc_pruned:.2f} | {r.val_acc_after:.2f} | {r.paper_params_red_pct:.1f} | "
                     f"{r.paper_flops_red_pct:.1f} | {r.paper_acc:.2f} |")
    return "\n".join(lines)


def _fmt_criteria_rows(df: pd.DataFrame) -> str:
    lines = ["| criterion | params −% | MACs −% | acc pruned | acc fine-tuned |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.criterion} | {r.params_red_pct:.1f} | {r.macs_red_pct:.1f} | {r.val_acc_pruned:.2f} | "
                     f"{r.val_acc_after:.2f} |")
    return "\n".join(lines)


def _fmt_layers(df: pd.DataFrame | None) -> str:
    if df is None:
        return "(not measured yet)"
    lines = ["| bneck | paper (CIFAR-10) | ours | ours kept % | paper kept % |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        kept = "—" if pd.isna(r.ours_kept_pct) else f"{r.ours_kept_pct:.1f}"
        lines.append(f"| {r.bneck} | {r.paper} | {r.ours} | {kept} | {r.paper_kept_pct:.1f} |")
    return "\n".join(lines)


def markdown(recipe: Recipe, parent_train: dict, ratios: pd.DataFrame, criteria: pd.DataFrame,
             layers: pd.DataFrame | None, criteria_pct: int, complete: bool, data, diag: dict) -> str:
    base = count(nasprune.get_spec("mobilenet_v3_large", num_classes=10, in_channels=3), layers=False)
    gray = count(nasprune.get_spec("mobilenet_v3_large", num_classes=10, in_channels=1), layers=False)
    status = "" if complete else "\n**Partial results: the run was still going when this was written.**\n"
    return f"""{SECTION}

Written by `benchmarks/prune_mnv3.py` on {time.strftime('%Y-%m-%d')}.{status}
Setup: MobileNetV3-Large (torchvision layout, 10-class head, {data.in_channels} input channel) on Fashion-MNIST
at {recipe.resolution}×{recipe.resolution} (proxy for the paper's CIFAR-10 at 224), {len(data.train)} training and
{len(data.val)} validation images. One parent, sparse-trained once: Adam lr {recipe.lr}, {recipe.sparse_epochs}
epochs, batch {recipe.batch_size}, λ = {recipe.sparsity_lambda} on every BN γ (raised from the paper's 1e-5 to
make up for the short schedule), BN momentum {recipe.bn_momentum} (torchvision's 0.01 leaves the running
statistics unsettled after a few hundred steps); parent val acc {100 * parent_train['val_acc']:.2f} % after
{parent_train['seconds']:.0f} s. Every child: {recipe.finetune_epochs} epoch(s) of fine-tuning, Adam lr
{recipe.finetune_lr}, no penalty, seed {recipe.seed}. Params and MACs at **224×224**, 10 classes, counted by
fvcore on the pruned network (1 input channel here: the stem has {base.params - gray.params} params and
{(base.macs - gray.macs) / 1e6:.2f} M MACs fewer than with RGB input). "MACs" are conv + linear multiply-adds
({base.macs / 1e6:.1f} M unpruned with RGB input); "all ops" also counts BN, activations, pooling and SE
products, which is how the paper's 2.30e8 "FLOPs" come out ({base.all_ops / 1e6:.1f} M).
Accuracies are % on the validation split.

### Global ratio with γ × S (paper's Table 3)

{_fmt_ratio_rows(ratios)}

### Criteria at {criteria_pct} % (paper's Table 4)

{_fmt_criteria_rows(criteria)}

### Expansion channels per bneck at {criteria_pct} % with γ × S (paper's Table 5)

{_fmt_layers(layers)}

Why γ × S ranks like S here: after this short sparse training the BN scales of the prunable layers have
barely spread (|γ| from {diag['gamma_min']:.3f}, mean {diag['gamma_mean']:.3f}, coefficient of variation
{diag['gamma_cv']:.3f}) while S varies more (coefficient of variation {diag['s_cv']:.3f}), so the γ × S ranking
follows S (Spearman ρ = {diag['rho_s']:.2f}) far more than γ (ρ = {diag['rho_gamma']:.2f}). The paper's 200
epochs of sparse training push many γ towards 0, which is what makes γ (and γ × S) informative.
The sub-sections "With stronger sparsity" below test this.

Notes: torchvision's first bneck (16→16, expansion 1) has no expansion conv, so it cannot be pruned here, unlike
the paper's 16→9. Every layer keeps at least 8 channels (the floor); the paper's 60 % ratio is the largest it
could run. This is a short proxy schedule (minutes, not 200 + 150 epochs); the accuracy columns compare
criteria and ratios under one recipe, not with the paper's CIFAR-10 numbers.
"""


def stem(args) -> str:
    """File-name stem of this run's outputs: ``prune_mnv3`` or ``prune_mnv3_TAG``."""
    return f"prune_mnv3_{args.tag}" if args.tag else "prune_mnv3"


def baseline(reports: Path) -> dict | None:
    """The main run's 50 % criteria accuracies, 50 % γ × S row and γ spread, for a variant to compare against."""
    crit, ratios, parent = (reports / f"prune_mnv3{x}" for x in ("_criteria.csv", "_ratios.csv", "_parent.pt"))
    if not (crit.exists() and ratios.exists()):
        return None
    base = {"criteria": pd.read_csv(crit).set_index("criterion")["val_acc_after"].to_dict(),
            "ratios": pd.read_csv(ratios).set_index("ratio_pct")}
    if parent.exists():
        model = load(parent)
        base.update(ranking_diagnostics(model), recipe=json.loads(model.metadata["recipe"]))
    return base


def _compare(ratios: pd.DataFrame, criteria: pd.DataFrame, pct: int, base: dict | None) -> str:
    acc = criteria.set_index("criterion")["val_acc_after"].to_dict()
    row = ratios.set_index("ratio_pct")
    parts = []
    if "gamma_sparsity" in acc:
        ranked = sorted(acc.items(), key=lambda kv: -kv[1])
        parts.append(f"At {pct} % after fine-tuning: " + ", ".join(f"{c} {a:.2f}" for c, a in ranked)
                     + f"; γ × S is {acc['gamma_sparsity'] - acc.get('gamma', float('nan')):+.2f} points from γ and "
                     f"{acc['gamma_sparsity'] - acc.get('random', float('nan')):+.2f} from random.")
    if pct in row.index and 0 in row.index:
        drop = row.loc[pct, "val_acc_after"] - row.loc[0, "val_acc_after"]
        parts.append(f"Against this run's unpruned, fine-tuned model ({row.loc[0, 'val_acc_after']:.2f}) γ × S at "
                     f"{pct} % is {drop:+.2f} points (the paper: within half a point, +0.27 at 50 %).")
    if base and "gamma_sparsity" in base["criteria"]:
        b = base["criteria"]
        lam = base.get("recipe", {}).get("sparsity_lambda", "?")
        parts.append(f"Main run (λ = {lam}): γ × S {b['gamma_sparsity']:.2f}, "
                     f"γ {b.get('gamma', float('nan')):.2f}, random {b.get('random', float('nan')):.2f}"
                     + (f", |γ| CV {base['gamma_cv']:.3f}." if "gamma_cv" in base else "."))
    return " ".join(parts)


def _adam_bound(recipe: Recipe) -> str:
    steps = recipe.sparse_epochs * -(-recipe.subset // recipe.batch_size)
    return (f"{steps} Adam steps of sparse training at lr {recipe.lr:g}: Adam moves a parameter by at most about lr "
            f"per step, so no γ (initialised at 1) can have moved by more than about {steps * recipe.lr:.2f}.")


def variant_markdown(recipe: Recipe, parent_train: dict, ratios: pd.DataFrame, criteria: pd.DataFrame,
                     layers: pd.DataFrame | None, criteria_pct: int, complete: bool, diag: dict,
                     base: dict | None) -> str:
    """A sub-section of SECTION for a run that differs from the main one only in its sparse training."""
    status = "" if complete else "\n**Partial results: the run was still going when this was written.**\n"
    diff = ""
    if base and "recipe" in base:
        changed = {k: v for k, v in dataclasses.asdict(recipe).items() if base["recipe"].get(k) != v}
        diff = "Differs from the main run only in: " + ", ".join(
            f"{k} {base['recipe'].get(k)} → {v}" for k, v in changed.items()) + " (same data, seed and fine-tuning)."
    return f"""{VARIANT} (λ = {recipe.sparsity_lambda:g}, {recipe.sparse_epochs} sparse epochs)
{status}
{diff} {_adam_bound(recipe)}
Parent val acc {100 * parent_train['val_acc']:.2f} % after {parent_train['seconds']:.0f} s of sparse
training. Spread of the BN scales of the prunable layers: |γ| from {diag['gamma_min']:.3f}, mean
{diag['gamma_mean']:.3f}, coefficient of variation **{diag['gamma_cv']:.3f}**{
f" (main run: from {base['gamma_min']:.3f}, mean {base['gamma_mean']:.3f}, CV {base['gamma_cv']:.3f})"
if base and "gamma_cv" in base else ""}; **{100 * diag['gamma_below_001']:.1f} %** of them below 0.01{
f" (main run {100 * base['gamma_below_001']:.1f} %)" if base and "gamma_below_001" in base else ""};
S coefficient of variation {diag['s_cv']:.3f}; Spearman ρ of the γ × S ranking with γ {diag['rho_gamma']:.2f},
with S {diag['rho_s']:.2f}.

{_fmt_ratio_rows(ratios)}

Criteria at {criteria_pct} %:

{_fmt_criteria_rows(criteria)}

{_compare(ratios, criteria, criteria_pct, base)}

Expansion channels per bneck at {criteria_pct} % with γ × S:

{_fmt_layers(layers)}
"""


def write_reports(args, recipe, parent_train, rows, data, diag: dict, complete: bool) -> None:
    reports: Path = args.reports
    name = stem(args)
    criteria_pct = round(args.criteria_ratio * 100)
    ratios = ratio_table(rows, parent_train["val_acc"])
    criteria = criteria_table(rows, criteria_pct)
    layers = layers_table(rows, criteria_pct)
    atomic_write_text(reports / f"{name}_ratios.csv", ratios.to_csv(index=False))
    atomic_write_text(reports / f"{name}_criteria.csv", criteria.to_csv(index=False))
    if layers is not None:
        atomic_write_text(reports / f"{name}_layers.csv", layers.to_csv(index=False))
    if args.tag:
        text = variant_markdown(recipe, parent_train, ratios, criteria, layers, criteria_pct, complete, diag,
                                baseline(args.reports))
    else:
        text = markdown(recipe, parent_train, ratios, criteria, layers, criteria_pct, complete, data, diag)
    atomic_write_text(reports / f"{name}.md", text)
    if not args.quick:
        (update_variant if args.tag else update_readme)(ROOT / "benchmarks" / "README.md", text)


def update_readme(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``benchmarks/README.md`` (or append it), leaving the rest alone.

    The file belongs to the benchmarks page as a whole; if it does not exist yet it is left to its owner.
    """
    if not path.exists():
        print(f"{path} does not exist yet: section not written (it is in reports/prune_mnv3.md)", flush=True)
        return
    text = path.read_text()
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        old = text[start:end] if end >= 0 else text[start:]
        kept = old[old.find("\n" + VARIANT):].rstrip() + "\n" if "\n" + VARIANT in old else ""
        text = text[:start] + section.rstrip() + "\n" + kept + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    atomic_write_text(path, text)


def update_variant(path: Path, subsection: str) -> None:
    """Put a variant's sub-section at the end of SECTION, replacing the one with the same heading line."""
    if not path.exists() or SECTION not in path.read_text():
        print(f"{SECTION!r} not in {path}: variant sub-section not written", flush=True)
        return
    text = path.read_text()
    heading = subsection.split("\n", 1)[0]
    start = text.find(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    end = len(text) if end < 0 else end + 1
    body = text[start:end]
    at = body.find("\n" + heading + "\n")
    if at >= 0:
        nxt = body.find("\n" + VARIANT, at + 1)
        body = body[:at + 1] + subsection.rstrip() + "\n" + (body[nxt:] if nxt >= 0 else "\n")
    else:
        body = body.rstrip() + "\n\n" + subsection.rstrip() + "\n\n"
    atomic_write_text(path, text[:start] + body + text[end:])


def main() -> None:
    args, recipe = parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(DataConfig(name="fashion-mnist", resolution=recipe.resolution, subset=recipe.subset,
                                val_size=recipe.val_size, seed=recipe.seed))
    parent, parent_train = parent_model(recipe, data, args.reports / f"{stem(args)}_parent.pt")
    diag = ranking_diagnostics(parent)
    print(f"parent val acc {100 * parent_train['val_acc']:.2f} %; |gamma| CV {diag['gamma_cv']:.3f}, "
          f"min {diag['gamma_min']:.3f}; S CV {diag['s_cv']:.3f}; rho(gxS, g) {diag['rho_gamma']:.2f}, "
          f"rho(gxS, S) {diag['rho_s']:.2f}", flush=True)
    atomic_write_text(args.reports / f"{stem(args)}_diag.json", json.dumps(diag, indent=1))
    ratios = [float(r) for r in args.ratios.split(",")]
    runs = [("gamma_sparsity", r) for r in ratios]
    runs += [(c, args.criteria_ratio) for c in CRITERIA if c != "gamma_sparsity"]
    rows: list[dict] = []
    for criterion, ratio in runs:
        row = prune_and_finetune(parent, data, recipe, criterion, ratio)
        rows.append(row)
        print(f"{criterion} {ratio:.0%}: params -{row['params_red_pct']:.1f}%, MACs -{row['macs_red_pct']:.1f}%, "
              f"acc pruned {row['val_acc_pruned']:.2f}, after {row['val_acc_after']:.2f} ({row['seconds']:.0f} s)",
              flush=True)
        write_reports(args, recipe, parent_train, rows, data, diag, complete=False)
    write_reports(args, recipe, parent_train, rows, data, diag, complete=True)


if __name__ == "__main__":
    main()
