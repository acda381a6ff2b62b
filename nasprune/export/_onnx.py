"""ONNX export through ``torch.onnx`` (the ``torch.export``-based exporter) and its check with onnxruntime."""

from __future__ import annotations

import logging
import statistics
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nasprune.errors import NaspruneError
from nasprune.export._tolerance import Closeness, Tolerance, compare_outputs

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from nasprune.builder import NasNet
    from nasprune.spec import ArchSpec

__all__ = ["INPUT_NAME", "ONNX_EXPORTERS", "OUTPUT_NAME", "OnnxCheck", "baked_model", "compare_onnx", "export_onnx",
           "onnx_opset", "onnx_session", "ort_latency", "ort_session", "ort_timings"]

INPUT_NAME = "input"  # N x C x H x W, float32, normalised like the training data (uint8 pixels when baked)
OUTPUT_NAME = "logits"  # N x classes


class OnnxCheck(NamedTuple):
    """How far onnxruntime's outputs are from PyTorch's for one input shape."""

    batch: int
    resolution: int
    closeness: Closeness

    def figures(self) -> dict[str, float]:
        """``batch``, ``resolution``, ``max_abs_diff`` and ``max_rel_diff``, for the manifest and the card."""
        return {"batch": self.batch, "resolution": self.resolution, "max_abs_diff": self.closeness.max_abs_diff,
                "max_rel_diff": self.closeness.max_rel_diff}


def _dynamo_export(model: NasNet, example: torch.Tensor, path: Path) -> None:
    import torch

    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], external_data=False, dynamic_shapes={"x": dims})


def _legacy_export(model: NasNet, example: torch.Tensor, path: Path) -> None:
    import torch

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=LEGACY_OPSET)


# torch.onnx's two exporters: "dynamo" (torch.export-based, the default since torch 2.9; 3-15 s for a tiny
# network on a busy 2-core machine) and "legacy" (TorchScript-based, deprecated but well under a second).
ONNX_EXPORTERS: dict[str, Callable[[NasNet, torch.Tensor, Path], None]] = {
    "dynamo": _dynamo_export,
    "legacy": _legacy_export,
}
LEGACY_OPSET = 20  # what the dynamo exporter writes by default, so both give the same opset


def baked_model(model: NasNet, scale: float, mean: Sequence[float], std: Sequence[float]) -> torch.nn.Module:
    """``model`` behind the training's normalisation: it takes ``uint8`` pixels (N x C x H x W, 0-255) and computes
    ``(pixels / (1 / scale) - mean) / std`` per channel as training did (``nasprune.data.Normalization``), so a
    deployer only converts and resizes. ``.spec`` is ``model``'s."""
    import torch

    class RawPixels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.spec = model.spec
            self.register_buffer("divisor", torch.tensor(1.0 / scale, dtype=torch.float32))
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: the name the dynamic shapes refer to
            return self.net((x.to(torch.float32) / self.divisor - self.mean) / self.std)

    return RawPixels().eval()


def export_onnx(model: NasNet, path: Path, resolution: int, exporter: str = "dynamo", *, raw: bool = False) -> None:
    """Write ``model`` (eval mode) to ``path`` with dynamic batch, height and width axes.

    The example input has batch 2 (``torch.export`` would specialise a batch of 1) at ``resolution``, ``uint8``
    when ``raw`` (a :func:`baked_model`). Weights are stored inside the one file.

    Raises:
        NaspruneError: an unknown ``exporter`` or a failed export (one line).
    """
    _export(model, path, model.spec.in_channels, resolution, exporter, model.spec.name, raw=raw)


def _export(model: torch.nn.Module, path: Path, in_channels: int, resolution: int, exporter: str, name: str,
            *, raw: bool = False) -> None:
    import torch

    if exporter not in ONNX_EXPORTERS:
        raise NaspruneError(f"ONNX exporter {exporter!r} is invalid: expected one of {', '.join(ONNX_EXPORTERS)}")
    example = torch.zeros(2, in_channels, resolution, resolution, dtype=torch.uint8 if raw else torch.float32)
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices from torch.export internals / the legacy exporter
        try:
            ONNX_EXPORTERS[exporter](model.eval(), example, path)
        except Exception as exc:  # the exporters raise many kinds; a user can only report it
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise NaspruneError(f"ONNX export ({exporter}) of {name!r} failed: "
                                f"{type(exc).__name__}: {first}") from None
        finally:
            logger.setLevel(level)


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def ort_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_session(model: torch.nn.Module, spec: ArchSpec, *, threads: int | None = None,
                 exporter: str = "legacy") -> onnxruntime.InferenceSession:
    """``model`` (eval mode; inputs shaped like ``spec``) exported to a temporary ONNX file, in a session.

    The file is removed once the session has loaded it. For measurements: :func:`nasprune.cost.measure_latency`
    with ``runtime="onnxruntime"``.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nasprune-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        _export(model, path, spec.in_channels, spec.resolution, exporter, spec.name)
        return ort_session(path, threads)


def _random_input(model: NasNet, batch: int, resolution: int, seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.spec.in_channels, resolution, resolution, generator=generator)


def _random_pixels(model: NasNet, batch: int, resolution: int, seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, model.spec.in_channels, resolution, resolution), generator=generator,
                         dtype=torch.uint8)


def compare_onnx(model: NasNet, session: onnxruntime.InferenceSession, shapes: Sequence[tuple[int, int]],
                 seed: int = 0, tolerance: Tolerance | None = None) -> list[OnnxCheck]:
    """Run PyTorch and onnxruntime on the same random inputs, one per ``(batch, resolution)`` (random ``uint8``
    pixels for a session that takes them: ``model`` is then the :func:`baked_model`).

    ``tolerance`` (default :class:`Tolerance`) only sets each check's ``closeness.worst``; nothing is raised.
    """
    import torch

    tolerance = tolerance or Tolerance()
    raw = _takes_pixels(session)
    checks = []
    for i, (batch, resolution) in enumerate(shapes):
        x = (_random_pixels if raw else _random_input)(model, batch, resolution, seed + i)
        with torch.inference_mode():
            expected = model.eval()(x).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        if got.shape != expected.shape:
            raise NaspruneError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape} "
                                f"(batch {batch}, {resolution}x{resolution})")
        checks.append(OnnxCheck(batch, resolution, compare_outputs(got, expected, tolerance)))
    return checks


def ort_timings(session: onnxruntime.InferenceSession, in_channels: int, resolution: int, *, runs: int = 30,
                warmup: int = 5) -> list[float]:
    """Sorted milliseconds of ``runs`` onnxruntime forward passes at batch 1 (the loop of ``measure_latency``)."""
    import numpy as np

    from nasprune.cost import time_calls

    rng = np.random.default_rng(0)
    shape = (1, in_channels, resolution, resolution)
    x = rng.integers(0, 256, shape, dtype=np.uint8) if _takes_pixels(session) else rng.standard_normal(
        shape, dtype=np.float32)
    feed = {INPUT_NAME: x}
    return time_calls(lambda: session.run([OUTPUT_NAME], feed), runs=runs, warmup=warmup)


def ort_latency(session: onnxruntime.InferenceSession, in_channels: int, resolution: int, *, runs: int = 30,
                warmup: int = 5) -> float:
    """Median milliseconds of one onnxruntime forward pass at batch 1 (as ``measure_latency`` for PyTorch)."""
    return statistics.median(ort_timings(session, in_channels, resolution, runs=runs, warmup=warmup))


def _takes_pixels(session: onnxruntime.InferenceSession) -> bool:
    """Whether the model takes ``uint8`` pixels (exported with the preprocessing baked in)."""
    return session.get_inputs()[0].type == "tensor(uint8)"
