"""``nasprune zoo``: list the registered networks, or print one as an editable spec JSON."""

from __future__ import annotations

import argparse

from nasprune.cli.common import positive_float, positive_int, print_json

HELP = "list the zoo (MFLOPs and params at 224x224, 1000 classes) or print one network's spec JSON"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help=HELP, description=HELP)
    p.add_argument("name", nargs="?", metavar="NAME", help="print this network's spec as JSON")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier (default 1.0)")
    p.add_argument("--resolution", type=positive_int, default=224, help="input resolution (default 224)")
    p.add_argument("--classes", type=positive_int, default=1000, help="number of classes (default 1000)")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels (default 3)")
    p.add_argument("--json", action="store_true", help="print the listing as a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasprune.zoo import ZOO, get_spec

    if args.name:
        spec = get_spec(args.name, width=args.width, resolution=args.resolution, num_classes=args.classes,
                        in_channels=args.in_channels)
        print(spec.to_json())
        return 0
    from nasprune.cost import check_memory, count

    specs = {name: fn(width=args.width, resolution=args.resolution, num_classes=args.classes,
                      in_channels=args.in_channels) for name, fn in ZOO.items()}
    for spec in specs.values():  # every one before counting any
        check_memory(spec)
    rows = []
    for name, fn in ZOO.items():
        spec = specs[name]
        cost = count(spec, layers=False)
        rows.append({"name": name, "width": args.width, "resolution": args.resolution, "macs": cost.macs,
                     "mflops": cost.mflops, "params": cost.params, "blocks": len(spec.blocks),
                     "doc": (fn.__doc__ or "").strip().splitlines()[0]})
    if args.json:
        print_json(rows)
        return 0
    print(f"{'name':<22}{'width':>6}{'MFLOPs':>10}{'params':>12}  description")
    for r in rows:
        print(f"{r['name']:<22}{r['width']:>6g}{r['mflops']:>10.2f}{r['params']:>12,}  {r['doc']}")
    return 0
