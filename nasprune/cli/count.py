"""``nasprune count``: MACs (the papers' FLOPs), params, a per-layer table and device memory for one network."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nasprune.cli.common import add_model_args, print_json, resolve_model_spec

if TYPE_CHECKING:
    from nasprune.cost import Memory

HELP = ("count MACs (conv + linear multiply-adds), params, per-layer cost, peak activation memory and weight bytes "
        "of a zoo model or spec file")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("count", help=HELP, description=HELP)
    add_model_args(p)
    p.add_argument("--latency", action="store_true",
                   help="also measure CPU latency (batch 1, median) in PyTorch (eager) and in onnxruntime")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = resolve_model_spec(args.model, width=args.width, resolution=args.resolution, classes=args.classes,
                              in_channels=args.in_channels)
    # torch: only once the input is known to be good
    from nasprune.cost import check_memory, count, memory
    from nasprune.latency import measure_latency, measure_latency_ort

    check_memory(spec)
    cost = count(spec)
    mem = memory(spec)
    result = {
        "name": spec.name, "hash": spec.hash, "resolution": spec.resolution, "in_channels": spec.in_channels,
        "num_classes": spec.num_classes, "macs": cost.macs, "mflops": cost.mflops, "params": cost.params,
        "all_ops": cost.all_ops,
        "layers": [{"name": r.name, "kind": r.kind, "macs": r.macs, "params": r.params,
                    "out_channels": r.out_channels, "out_size": r.out_size} for r in cost.layers],
    }
    result.update(mem.figures())
    if cost.unsupported_ops:
        result["unsupported_ops"] = cost.unsupported_ops
    if args.latency:
        lat = measure_latency(spec)
        ort = measure_latency_ort(spec, threads=lat.threads)
        result.update(latency_ms=lat.median_ms, latency_p90_ms=lat.p90_ms, latency_threads=lat.threads,
                      latency_ort_ms=ort.median_ms, latency_ort_p90_ms=ort.p90_ms)
    if args.json:
        print_json(result)
        return 0
    print(f"{spec.name}  ({spec.resolution}x{spec.resolution}x{spec.in_channels}, {spec.num_classes} classes)")
    print(f"{'layer':<12}{'kind':<6}{'out':>6}{'size':>6}{'MACs':>14}{'params':>12}")
    for r in cost.layers:
        print(f"{r.name:<12}{r.kind:<6}{r.out_channels:>6}{r.out_size:>6}{r.macs:>14,}{r.params:>12,}")
    print(f"total: {cost.macs:,} MACs ({cost.mflops:.2f} MFLOPs), {cost.params:,} params; "
          f"all ops {cost.all_ops / 1e6:.2f} M")
    print(_memory_line(mem, spec.resolution))
    if args.latency:
        print(f"latency: {result['latency_ms']:.2f} ms median in PyTorch, {result['latency_ort_ms']:.2f} ms in "
              f"onnxruntime (batch 1, {result['latency_threads']} threads)")
    return 0


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _memory_line(mem: Memory, resolution: int) -> str:
    """Peak activation memory and weights at both dtypes (MCUNet's convention, ``docs/foundation.md``)."""
    return (f"memory: peak activation {mem.peak_activation:,} values at {mem.peak_layer}, "
            f"{_kib(mem.activation_bytes('float32'))} float32 / {_kib(mem.activation_bytes('int8'))} int8 "
            f"(batch 1, {resolution}x{resolution}); weights {_kib(mem.weight_bytes('float32'))} float32 / "
            f"{_kib(mem.weight_bytes('int8'))} int8")
