"""Measured CPU latency: one timing loop (:func:`time_calls`) behind every figure, in PyTorch or onnxruntime.

Latency is measured, not modelled: batch 1, CPU, eval mode, the median of ``runs`` timed calls after ``warmup``
untimed ones, with a fixed number of threads that the result records. This module sits below :mod:`nasprune.cost`
(which re-exports it), :mod:`nasprune.search` and :mod:`nasprune.export`, and above only :mod:`nasprune.onnxrt`,
the builder, the spec and the thread helper: nothing here imports the count or the export.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from nasprune.builder import build
from nasprune.spec import ArchSpec
from nasprune.threads import torch_threads

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["LATENCY_RUNTIMES", "ORT_LATENCY_EXPORTER", "Latency", "device_of", "eval_mode", "measure_latency",
           "measure_latency_ort", "ort_latency", "ort_timings", "time_calls"]


@dataclass(frozen=True)
class Latency:
    """CPU latency of one forward pass at batch 1, in milliseconds, over ``runs`` timed runs.

    ``runtime`` is a key of :data:`LATENCY_RUNTIMES`: ``pytorch`` (eager) or ``onnxruntime``.
    """

    median_ms: float
    p90_ms: float
    threads: int
    runs: int
    device: str = "cpu"
    runtime: str = "pytorch"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for a measurement and give the caller back the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a module without parameters)."""
    return next(model.parameters(), torch.zeros(())).device


def time_calls(call: Callable[[], object], *, runs: int, warmup: int) -> list[float]:
    """Sorted wall times (ms) of ``runs`` calls of ``call`` after ``warmup`` untimed ones.

    The one timing loop behind every latency figure (PyTorch, onnxruntime, and the exported network's card).
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)


def ort_timings(session: onnxruntime.InferenceSession, in_channels: int, resolution: int, *, runs: int = 30,
                warmup: int = 5) -> list[float]:
    """Sorted milliseconds of ``runs`` onnxruntime forward passes at batch 1 (the loop of ``measure_latency``)."""
    from nasprune.onnxrt import ort_call

    return time_calls(ort_call(session, in_channels, resolution), runs=runs, warmup=warmup)


def ort_latency(session: onnxruntime.InferenceSession, in_channels: int, resolution: int, *, runs: int = 30,
                warmup: int = 5) -> float:
    """Median milliseconds of one onnxruntime forward pass at batch 1 (as ``measure_latency`` for PyTorch)."""
    return statistics.median(ort_timings(session, in_channels, resolution, runs=runs, warmup=warmup))


def _time_pytorch(model: nn.Module, spec: ArchSpec, *, runs: int, warmup: int, threads: int) -> list[float]:
    """Eager forward passes under ``inference_mode`` with ``threads`` torch intra-op threads."""
    x = torch.randn(1, spec.in_channels, spec.resolution, spec.resolution)
    with eval_mode(model), torch_threads(threads), torch.inference_mode():
        return time_calls(lambda: model(x), runs=runs, warmup=warmup)


# torch.onnx exporter for the onnxruntime figure: the TorchScript-based one takes well under a second for a
# search child, the torch.export-based one (``nasprune export``'s default) seconds; both give opset 20.
ORT_LATENCY_EXPORTER = "legacy"


def _time_onnxruntime(model: nn.Module, spec: ArchSpec, *, runs: int, warmup: int, threads: int) -> list[float]:
    """The network exported to ONNX (a temporary file), run by onnxruntime's CPU provider with ``threads``
    intra-op threads (``intra_op_num_threads``; one inter-op thread)."""
    from nasprune.onnxrt import onnx_session

    with eval_mode(model):
        session = onnx_session(model, spec, threads=threads, exporter=ORT_LATENCY_EXPORTER)
    return ort_timings(session, spec.in_channels, spec.resolution, runs=runs, warmup=warmup)


# The runtimes a latency can be measured in: name -> timer(model, spec, runs=, warmup=, threads=) -> sorted ms.
LATENCY_RUNTIMES: dict[str, Callable[..., list[float]]] = {
    "pytorch": _time_pytorch,
    "onnxruntime": _time_onnxruntime,
}

_LATENCY_CACHE: dict[tuple[str, str, int, int, int], Latency] = {}


def measure_latency(spec_or_model: ArchSpec | nn.Module, *, spec: ArchSpec | None = None, runs: int = 30,
                    warmup: int = 5, threads: int | None = None, runtime: str = "pytorch") -> Latency:
    """Median CPU latency of one forward pass at batch 1 (eval mode), in PyTorch or onnxruntime.

    Args:
        spec_or_model: a spec (built with fresh weights; the result is cached by runtime, hash, resolution,
            threads and runs) or a model (timed as given, never cached; a model on another device is timed on a
            CPU copy, and its training mode is restored).
        spec: the input shape for a model without ``model.spec``.
        runs: timed runs after ``warmup`` untimed ones.
        threads: intra-op threads for the measurement (default ``torch.get_num_threads()``); recorded.
        runtime: a key of :data:`LATENCY_RUNTIMES`; ``onnxruntime`` exports the network to ONNX first (about
            half a second for a search child, not timed).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs={runs}, warmup={warmup} are invalid: expected runs >= 1 and warmup >= 0")
    if runtime not in LATENCY_RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is invalid: expected one of {', '.join(LATENCY_RUNTIMES)}")
    from_spec = isinstance(spec_or_model, ArchSpec)
    model = None if from_spec else spec_or_model
    spec = spec_or_model if from_spec else (spec or model.spec)
    threads = threads or torch.get_num_threads()
    key = (runtime, spec.hash, threads, runs, warmup)
    if from_spec and key in _LATENCY_CACHE:
        return _LATENCY_CACHE[key]
    if from_spec:
        model = build(spec)
    elif device_of(model).type != "cpu":
        model = copy.deepcopy(model).cpu()
    times = LATENCY_RUNTIMES[runtime](model, spec, runs=runs, warmup=warmup, threads=threads)
    result = Latency(median_ms=statistics.median(times), p90_ms=times[math.ceil(0.9 * len(times)) - 1],
                     threads=threads, runs=runs, runtime=runtime)
    if from_spec:
        _LATENCY_CACHE[key] = result
    return result


def measure_latency_ort(spec_or_model: ArchSpec | nn.Module, **kwargs: object) -> Latency:
    """:func:`measure_latency` in onnxruntime, the runtime edge deployments use (same arguments, same loop)."""
    return measure_latency(spec_or_model, runtime="onnxruntime", **kwargs)
