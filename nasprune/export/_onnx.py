"""ONNX export through ``torch.onnx`` (the ``torch.export``-based exporter) and its check with onnxruntime.

The exporters and the sessions themselves live in :mod:`nasprune.onnxrt` (below this package, shared with the
latency measurement of :mod:`nasprune.latency`); their names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nasprune.errors import NaspruneError
from nasprune.export._tolerance import Closeness, Tolerance, compare_outputs
from nasprune.onnxrt import (  # re-exported; ONNX files and sessions live below export
    INPUT_NAME,
    LEGACY_OPSET,
    ONNX_EXPORTERS,
    OUTPUT_NAME,
    export_to_onnx,
    onnx_session,
    ort_session,
    takes_pixels,
)

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from nasprune.builder import NasNet

__all__ = ["INPUT_NAME", "LEGACY_OPSET", "ONNX_EXPORTERS", "OUTPUT_NAME", "OnnxCheck", "baked_model", "compare_onnx",
           "export_onnx", "onnx_opset", "onnx_session", "ort_session"]


class OnnxCheck(NamedTuple):
    """How far onnxruntime's outputs are from PyTorch's for one input shape."""

    batch: int
    resolution: int
    closeness: Closeness

    def figures(self) -> dict[str, float]:
        """``batch``, ``resolution``, ``max_abs_diff`` and ``max_rel_diff``, for the manifest and the card."""
        return {"batch": self.batch, "resolution": self.resolution, "max_abs_diff": self.closeness.max_abs_diff,
                "max_rel_diff": self.closeness.max_rel_diff}


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
    export_to_onnx(model, path, model.spec.in_channels, resolution, exporter, model.spec.name, raw=raw)


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


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
    raw = takes_pixels(session)
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
