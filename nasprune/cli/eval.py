"""``nasprune eval``: accuracy of any nasprune checkpoint on a dataset split."""

from __future__ import annotations

import argparse

from nasprune.cli.choices import registry
from nasprune.cli.common import positive_int, print_json
from nasprune.errors import NaspruneError

HELP = "evaluate a checkpoint (from train, prune, search or export) on a dataset split (test set by default)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nasprune.cli.train import add_data_args

    p = sub.add_parser("eval", help=HELP, description=HELP)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by nasprune")
    add_data_args(p, resolution_default=None)
    p.add_argument("--split", choices=registry("nasprune.train:SPLITS"), default="test", metavar="SPLIT",
                   help="%(choices)s (default test)")
    p.add_argument("--batch-size", type=positive_int, default=512, help="default 512")
    p.add_argument("--device", choices=registry("nasprune.train:DEVICES"), default="auto", metavar="DEVICE",
                   help="%(choices)s (default auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _data_config(args: argparse.Namespace, model):
    """The data as the model was trained: resolution and validation carve from the checkpoint's metadata; an image
    folder's images converted to the model's input channels (greyscale or RGB)."""
    from nasprune.cli.train import data_config
    from nasprune.data import IMAGEFOLDER

    stored = model.metadata.get("data_config") if isinstance(model.metadata, dict) else None
    stored = stored if isinstance(stored, dict) else {}
    resolution = args.resolution or stored.get("resolution") or model.spec.resolution
    overrides = {"resolution": resolution}
    if args.data.startswith(IMAGEFOLDER):
        overrides["channels"] = model.spec.in_channels
    if args.val_size is None and isinstance(stored.get("val_size"), int):
        overrides["val_size"] = stored["val_size"]
    seed = stored.get("seed", 0) if isinstance(stored.get("seed", 0), int) else 0
    return data_config(args, seed=seed, **overrides)


def run(args: argparse.Namespace) -> int:
    from nasprune.checkpoint import load
    from nasprune.cost import check_memory
    from nasprune.data import load_data
    from nasprune.train import evaluate, resolve_device

    device = resolve_device(args.device)
    model = load(args.checkpoint)
    config = _data_config(args, model)
    check_memory(model.spec.replace(resolution=config.resolution))  # too small (SpecError) or too large: now
    data = load_data(config)
    spec = model.spec
    if (spec.in_channels, spec.num_classes) != (data.in_channels, data.num_classes):
        raise NaspruneError(f"checkpoint {args.checkpoint!r} expects {spec.in_channels}-channel input and "
                            f"{spec.num_classes} classes, but {data.name!r} has {data.in_channels} and "
                            f"{data.num_classes}: evaluate it on the data it was trained for")
    acc = evaluate(model, data, args.split, device=device, batch_size=args.batch_size)
    result = {"checkpoint": args.checkpoint, "model": spec.name, "hash": spec.hash, "data": data.name,
              "split": args.split, "resolution": data.resolution, "images": len(getattr(data, args.split)),
              "accuracy": acc}
    if args.json:
        print_json(result)
    else:
        print(f"{spec.name} on {data.name} {args.split} ({result['images']} images, {data.resolution}px): "
              f"accuracy {acc:.2%}")
    return 0
