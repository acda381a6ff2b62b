"""``nasprune prune``: sparse-train (or start from a checkpoint), rank, prune, fine-tune, report before/after."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasprune.cli.choices import registry
from nasprune.cli.common import (
    check_output_dir,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    print_json,
    seed_int,
)
from nasprune.errors import NaspruneError

HELP = "structured pruning (gamma x S and peers): sparse-train, prune channels, fine-tune, report before/after"
CRITERIA_NAMES = registry("nasprune.prune.importance:CRITERIA")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
OUT_FILES = ("pruned.pt", "spec.json", "result.json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help=HELP, description=HELP + ". Costs are counted at the deployment resolution "
                       "(224 unless --deploy-resolution); accuracies are on the validation split.")
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT",
                   help="a zoo name, a spec JSON file (trained from scratch with the sparsity penalty), or a "
                        "checkpoint (.pt) to prune as it is")
    p.add_argument("--data", required=True, metavar="NAME",
                   help="dataset: fashion-mnist, cifar10, cifar100, synthetic or imagefolder:PATH")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ratio", type=float, metavar="P",
                     help="global pruning ratio in [0, 1): one threshold over all prunable channels")
    how.add_argument("--per-layer", metavar="FILE", help='JSON object {"blocks.1.conv_pw": 0.5, ...}: a ratio per '
                     "layer (layers not named keep every channel)")
    p.add_argument("--criterion", choices=CRITERIA_NAMES, default="gamma_sparsity", metavar="NAME",
                   help="channel importance, one of %(choices)s (default: gamma_sparsity = |gamma| * S)")
    p.add_argument("--floor", type=positive_int, default=8,
                   help="every layer keeps at least min(channels, FLOOR) channels (default 8)")
    p.add_argument("--multiple", type=positive_int, default=1,
                   help="round kept channels up to a multiple of this (default 1: no rounding)")
    p.add_argument("--sparsity-lambda", type=nonnegative_float, default=1e-5, metavar="L",
                   help="L1 penalty on BN scales during sparse training (default 1e-5, the paper's)")
    p.add_argument("--sparse-epochs", type=nonnegative_int, default=None, metavar="E1",
                   help="sparse-training epochs (default 3 for a zoo model or spec, 0 for a checkpoint)")
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=2, metavar="E2",
                   help="fine-tuning epochs after pruning, no penalty (default 2)")
    p.add_argument("--optimizer", choices=registry("nasprune.train:OPTIMIZERS"), default="adam", metavar="NAME",
                   help="optimizer for both phases, one of %(choices)s (default adam, the paper's)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate, cosine schedule (default 1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--resolution", type=positive_int, default=None,
                   help="training resolution (default 32, or the checkpoint's)")
    p.add_argument("--deploy-resolution", type=positive_int, default=224,
                   help="resolution at which params and MACs are counted (default 224)")
    p.add_argument("--width", type=positive_float, default=None, help="width multiplier for a zoo model")
    p.add_argument("--subset", type=positive_int, default=None, help="train on the first N training images")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the initial weights, training and the random criterion")
    p.add_argument("--device", choices=registry("nasprune.train:DEVICES"), default="auto", metavar="DEVICE",
                   help="%(choices)s (default auto)")
    p.add_argument("--out", metavar="DIR", help="write pruned.pt (checkpoint), spec.json and result.json here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _is_checkpoint(model: str) -> bool:
    path = Path(model)
    return path.suffix in CHECKPOINT_SUFFIXES or (path.is_file() and path.suffix != ".json")


def _read_per_layer(path: str) -> dict[str, float]:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise NaspruneError(f"cannot read --per-layer file {path!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise NaspruneError(f"--per-layer file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise NaspruneError(f"--per-layer file {path!r} is invalid: expected a non-empty JSON object "
                            '{"blocks.1.conv_pw": 0.5, ...}')
    return raw


def _prune_config(args: argparse.Namespace):
    from nasprune.prune import PruneConfig

    per_layer = _read_per_layer(args.per_layer) if args.per_layer else None
    return PruneConfig(ratio=0.0 if per_layer else args.ratio, per_layer=per_layer, criterion=args.criterion,
                       floor=args.floor, multiple=args.multiple, seed=args.seed)


def _parent(args: argparse.Namespace):
    """``(model or None, spec)``: a loaded checkpoint, or the spec of a zoo model / spec file to build later."""
    if _is_checkpoint(args.model):
        from nasprune.checkpoint import load

        model = load(args.model)
        return model, model.spec
    from nasprune.cli.common import resolve_model_spec

    return None, resolve_model_spec(args.model, width=args.width)


def _train_resolution(args: argparse.Namespace, spec) -> int:
    return args.resolution or (spec.resolution if _is_checkpoint(args.model) else 32)


def _check_sizes(args: argparse.Namespace, spec) -> None:
    """The network must fit in memory at its training and its deployment (counting) resolution."""
    from nasprune.cost import check_memory

    for resolution in sorted({_train_resolution(args, spec), args.deploy_resolution}):
        check_memory(spec.replace(resolution=resolution))  # one too small for the strides: SpecError


def _data(args: argparse.Namespace, spec):
    from nasprune.data import DataConfig, load_data

    return load_data(DataConfig(name=args.data, data_dir=args.data_dir, resolution=_train_resolution(args, spec),
                                subset=args.subset, seed=args.seed))


def _fit_model(model, spec, data, seed: int):
    """Build a fresh network for ``data`` (initialised from ``seed``), or check that a checkpoint fits it."""
    import torch

    import nasprune

    if model is None:
        torch.manual_seed(seed)
        return nasprune.build(spec.replace(resolution=data.resolution, num_classes=data.num_classes,
                                           in_channels=data.in_channels))
    if (spec.in_channels, spec.num_classes) != (data.in_channels, data.num_classes):
        raise NaspruneError(f"checkpoint has {spec.in_channels} input channels and {spec.num_classes} classes, "
                            f"dataset {data.name!r} has {data.in_channels} and {data.num_classes}")
    if spec.resolution != data.resolution:
        model.spec = spec.replace(resolution=data.resolution)
    return model


def _train_configs(args: argparse.Namespace, from_checkpoint: bool):
    from nasprune.train import TrainConfig

    sparse_epochs = args.sparse_epochs if args.sparse_epochs is not None else (0 if from_checkpoint else 3)
    common = dict(batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, device=args.device,
                  seed=args.seed)
    sparse = TrainConfig(epochs=sparse_epochs, sparsity_lambda=args.sparsity_lambda, **common) \
        if sparse_epochs else None
    finetune = TrainConfig(epochs=args.finetune_epochs, **common) if args.finetune_epochs else None
    return sparse, finetune


def _save(out: str, result, summary: dict) -> list[str]:
    from nasprune.checkpoint import save_checkpoint
    from nasprune.fsutil import atomic_write_text

    out_dir = Path(out)
    metadata = {k: v for k, v in summary.items() if k != "child_spec"}
    paths = [save_checkpoint(out_dir / "pruned.pt", result.model, {"pruning": metadata}),
             atomic_write_text(out_dir / "spec.json", result.child_spec.to_json() + "\n"),
             atomic_write_text(out_dir / "result.json", json.dumps(summary, indent=2) + "\n")]
    return [str(p) for p in paths]


def run(args: argparse.Namespace) -> int:
    from nasprune.prune import check_ratio, run_pipeline
    from nasprune.prune.pipeline import check_prunable

    if args.ratio is not None:
        check_ratio(args.ratio, "--ratio")
    if args.out:
        check_output_dir(args.out, "--out", OUT_FILES)
    config = _prune_config(args)
    model, spec = _parent(args)
    check_prunable(spec, config)
    _check_sizes(args, spec)
    data = _data(args, spec)
    model = _fit_model(model, spec, data, args.seed)
    sparse, finetune = _train_configs(args, _is_checkpoint(args.model))
    result = run_pipeline(model, data, config, sparse=sparse, finetune=finetune,
                          deploy_resolution=args.deploy_resolution)
    summary = result.to_dict()
    summary.update(data=data.name, train_images=len(data.train), seed=args.seed)
    if args.out:
        summary["files"] = _save(args.out, result, summary)
    if args.json:
        print_json(summary)
    else:
        _print_summary(summary)
    return 0


def _pct(after: float, before: float) -> str:
    return f"{(after / before - 1) * 100:+.1f}%"


def _print_summary(s: dict) -> None:
    how = f"global ratio {s['ratio']:.0%}" if s["ratio"] is not None else "per-layer ratios"
    print(f"{s['model']} on {s['data']} ({s['train_resolution']}x{s['train_resolution']}, {s['train_images']} "
          f"training images): {s['criterion']}, {how}, floor {s['floor']}")
    print(f"{'layer':<20}{'before':>8}{'after':>8}")
    for row in s["layers"]:
        print(f"{row['name']:<20}{row['before']:>8}{row['after']:>8}")
    r = s["deploy_resolution"]
    print(f"params:       {s['params_before']:,} -> {s['params_after']:,} "
          f"({_pct(s['params_after'], s['params_before'])})")
    print(f"MACs at {r}: {s['macs_before'] / 1e6:.2f} M -> {s['macs_after'] / 1e6:.2f} M "
          f"({_pct(s['macs_after'], s['macs_before'])})")
    tuned = f"{s['val_acc_after']:.2%} after fine-tuning" if s["finetune"] else "no fine-tuning"
    print(f"val acc:      {s['val_acc_before']:.2%} before, {s['val_acc_pruned']:.2%} right after pruning (BN "
          f"statistics recalibrated on {s['recalibrate_batches']} training batches; {s['val_acc_pruned_raw']:.2%} "
          f"with the parent's), {tuned}")
    for path in s.get("files", []):
        print(f"wrote {path}", file=sys.stderr)
