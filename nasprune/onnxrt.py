"""ONNX files and onnxruntime sessions: the bottom layer that latency, the count and ``nasprune export`` share.

Nothing here imports any other part of nasprune but :mod:`nasprune.errors` (torch, onnx and onnxruntime are
imported inside the functions, so ``import nasprune.onnxrt`` is cheap). Above it:

* :mod:`nasprune.latency` times a session (:func:`ort_call`) in its one timing loop;
* :mod:`nasprune.cost` re-exports the latency functions;
* :mod:`nasprune.export` writes ``model.onnx`` with :func:`export_to_onnx` and checks it in :func:`ort_session`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nasprune.errors import NaspruneError

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from nasprune.spec import ArchSpec

__all__ = ["INPUT_NAME", "LEGACY_OPSET", "ONNX_EXPORTERS", "OUTPUT_NAME", "export_to_onnx", "onnx_session",
           "ort_call", "ort_session", "takes_pixels"]

INPUT_NAME = "input"  # N x C x H x W, float32, normalised like the training data (uint8 pixels when baked)
OUTPUT_NAME = "logits"  # N x classes


def _dynamo_export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], external_data=False, dynamic_shapes={"x": dims})


def _legacy_export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=LEGACY_OPSET)


# torch.onnx's two exporters: "dynamo" (torch.export-based, the default since torch 2.9; 3-15 s for a tiny
# network on a busy 2-core machine) and "legacy" (TorchScript-based, deprecated but well under a second).
ONNX_EXPORTERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, Path], None]] = {
    "dynamo": _dynamo_export,
    "legacy": _legacy_export,
}
LEGACY_OPSET = 20  # what the dynamo exporter writes by default, so both give the same opset


def export_to_onnx(model: torch.nn.Module, path: Path, in_channels: int, resolution: int, exporter: str, name: str,
                   *, raw: bool = False) -> None:
    """Write ``model`` (put in eval mode) to ``path`` with dynamic batch, height and width axes.

    The example input has batch 2 (``torch.export`` would specialise a batch of 1) at ``resolution``, ``uint8``
    when ``raw`` (a model that takes pixels). ``name`` only names the network in an error.

    Raises:
        NaspruneError: an unknown ``exporter`` or a failed export (one line).
    """
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


def ort_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session of the file at ``path``: ``threads`` intra-op threads (default torch's), one
    inter-op thread."""
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

    The file is removed once the session has loaded it. For measurements: :func:`nasprune.latency.measure_latency`
    with ``runtime="onnxruntime"``.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nasprune-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_to_onnx(model, path, spec.in_channels, spec.resolution, exporter, spec.name)
        return ort_session(path, threads)


def takes_pixels(session: onnxruntime.InferenceSession) -> bool:
    """Whether the model takes ``uint8`` pixels (exported with the preprocessing baked in)."""
    return session.get_inputs()[0].type == "tensor(uint8)"


def ort_call(session: onnxruntime.InferenceSession, in_channels: int, resolution: int) -> Callable[[], object]:
    """One onnxruntime forward pass at batch 1 on a fixed random input (pixels for a session that takes them),
    as a call for :func:`nasprune.latency.time_calls`."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (1, in_channels, resolution, resolution)
    x = rng.integers(0, 256, shape, dtype=np.uint8) if takes_pixels(session) else rng.standard_normal(
        shape, dtype=np.float32)
    feed = {INPUT_NAME: x}
    return lambda: session.run([OUTPUT_NAME], feed)
