"""``nasprune train``: train a zoo model or a spec file on a dataset and save a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasprune.cli.choices import registry
from nasprune.cli.common import (
    check_output_dir,
    nonnegative_float,
    positive_float,
    positive_int,
    print_json,
    resolve_model_spec,
    seed_int,
    threads_int,
)

OUT_FILES = ("model.pt", "result.json")

HELP = "train a zoo model or a spec JSON file (e.g. an exported arch.json, from scratch) and save a checkpoint"
EPILOG = """examples:
  nasprune train fd_mobilenet --width 0.5 --data fashion-mnist --epochs 1 --subset 10000 --resolution 32
  nasprune train arch.json --data cifar10 --data-dir ~/data --epochs 30 --sparsity-lambda 1e-5 --json
"""


def add_data_args(parser: argparse.ArgumentParser, *, resolution_default: int | None = 32) -> None:
    """``--data``, ``--data-dir``, ``--resolution``, ``--val-size`` (shared by train and eval)."""
    parser.add_argument("--data", required=True, metavar="NAME",
                        help="fashion-mnist, cifar10, cifar100, imagefolder:PATH or synthetic (tests only)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="directory with the dataset files (default: $NASPRUNE_DATA, then the system path; "
                             "Fashion-MNIST: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--resolution", type=positive_int, default=resolution_default,
                        help="training resolution: images are resized to it once at load"
                             + (f" (default {resolution_default})" if resolution_default else ""))
    parser.add_argument("--val-size", type=positive_int, default=None,
                        help="training images held out for validation (default 5000, at most a tenth)")


def _channels(text: str) -> int:
    if text not in ("1", "3"):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected 1 (greyscale) or 3 (RGB)")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a zoo name (see 'nasprune zoo') or a spec JSON file; its "
                   "input channels, classes and resolution are adapted to the data")
    p.add_argument("--width", type=positive_float, default=None, help="width multiplier for a zoo model (default 1)")
    add_data_args(p)
    p.add_argument("--channels", type=_channels, default=None, metavar="1|3",
                   help="imagefolder: convert every image to 1 (greyscale) or 3 (RGB) channels (default: 3 if any "
                        "image is in a colour mode, else 1)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N images of a fixed shuffle of the training split")
    p.add_argument("--epochs", type=positive_int, default=10, help="default 10")
    p.add_argument("--batch-size", type=positive_int, default=128, help="default 128")
    p.add_argument("--optimizer", choices=registry("nasprune.train:OPTIMIZERS"), default="sgd", metavar="NAME",
                   help="%(choices)s (default sgd, Nesterov)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: 0.1 sgd, 2e-3 adam)")
    p.add_argument("--schedule", choices=registry("nasprune.train:SCHEDULES"), default="cosine", metavar="NAME",
                   help="%(choices)s (default cosine)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=5e-5,
                   help="decay of conv/linear weights, not BN or biases (default 5e-5)")
    p.add_argument("--label-smoothing", type=nonnegative_float, default=0.0, help="default 0")
    p.add_argument("--sparsity-lambda", type=nonnegative_float, default=0.0,
                   help="L1 penalty on BN scale factors for sparse training (e.g. 1e-5; default 0 = off)")
    p.add_argument("--no-augment", action="store_true", help="no random crop / horizontal flip")
    p.add_argument("--seed", type=seed_int, default=0, help="default 0")
    p.add_argument("--device", choices=registry("nasprune.train:DEVICES"), default="auto", metavar="DEVICE",
                   help="%(choices)s (default auto)")
    p.add_argument("--threads", type=threads_int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is often faster on a busy machine)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory for model.pt and result.json (default runs/<model>-<hash>-<data>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result")
    p.set_defaults(func=run)


def data_config(args: argparse.Namespace, *, seed: int = 0, subset: int | None = None, **overrides):
    from nasprune.data import DataConfig

    kwargs = {"name": args.data, "data_dir": args.data_dir, "resolution": args.resolution, "subset": subset,
              "seed": seed}
    if args.val_size is not None:
        kwargs["val_size"] = args.val_size
    if getattr(args, "channels", None) is not None:
        kwargs["channels"] = args.channels
    kwargs.update(overrides)
    return DataConfig(**kwargs)


def _out_dir(args: argparse.Namespace, spec) -> Path:
    if args.out:
        return Path(args.out)
    data = args.data.split(":", 1)[0]
    return Path("runs") / f"{spec.name}-{spec.hash[:8]}-{data}-seed{args.seed}"


def run(args: argparse.Namespace) -> int:
    import torch

    from nasprune.builder import build
    from nasprune.checkpoint import save_checkpoint
    from nasprune.cost import check_memory
    from nasprune.data import load_data
    from nasprune.fsutil import atomic_write_text
    from nasprune.train import TrainConfig, evaluate, fit, resolve_device

    resolve_device(args.device)  # bad input fails before any data is read
    check_memory(resolve_model_spec(args.model, width=args.width, resolution=args.resolution))
    if args.out:
        check_output_dir(args.out, "--out", OUT_FILES)
    data = load_data(data_config(args, seed=0, subset=args.subset))
    spec = resolve_model_spec(args.model, width=args.width, resolution=data.resolution,
                              classes=data.num_classes, in_channels=data.in_channels)
    out = check_output_dir(_out_dir(args, spec), "--out" if args.out else "default --out", OUT_FILES)
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 2e-3)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=lr,
                         weight_decay=args.weight_decay, schedule=args.schedule,
                         label_smoothing=args.label_smoothing, sparsity_lambda=args.sparsity_lambda,
                         augment=not args.no_augment, device=args.device, seed=args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build(spec)
    result = fit(model, data, config, progress=not args.no_progress)
    test_acc = evaluate(model, data, "test")
    summary = {
        "model": spec.name, "hash": spec.hash, "data": data.name, "resolution": data.resolution,
        "val_acc": result.val_acc, "test_acc": test_acc, "epochs": result.epochs,
        "train_seconds": round(result.train_seconds, 3), "images_per_s": round(result.images_per_s, 1),
        "train_images": len(data.train), "checkpoint": str(out / "model.pt"),
    }
    metadata = {**summary, "train_config": config.to_dict(), **data.checkpoint_metadata(),
                "history": result.history}
    save_checkpoint(out / "model.pt", model, metadata)
    atomic_write_text(out / "result.json", json.dumps(metadata, indent=2) + "\n")
    if args.json:
        print_json(summary)
    else:
        print(f"{spec.name} on {data.name} ({data.resolution}px, {len(data.train)} training images, "
              f"{result.epochs} epochs): val {result.val_acc:.2%}, test {test_acc:.2%}; "
              f"{result.train_seconds:.1f} s, {result.images_per_s:.0f} img/s; checkpoint {out / 'model.pt'}")
    sys.stdout.flush()
    return 0
