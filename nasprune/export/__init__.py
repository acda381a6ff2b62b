"""Export a searched network: spec, weights, TorchScript, ONNX (checked with onnxruntime) and a model card.

Public API (private modules re-exported):

* :func:`export` with :class:`ExportConfig` -> :class:`ExportResult` — what ``nasprune export`` runs.
* :func:`select_trial`, :func:`knee_index` — which trial (``best``, ``knee``, ``N``); the front and the
  feasibility rule are :mod:`nasprune.search.record`'s.
* :data:`FORMATS` / :func:`register_format` — the format registry (``json``, ``pt``, ``torchscript``, ``onnx``).
* :func:`card_info` / :func:`render_card` — the model card's facts, then its Markdown.
* :class:`Tolerance` / :func:`compare_outputs` — how close an exported file's outputs must be to PyTorch's.
* :func:`staged_directory` — write a directory all or nothing.

See ``docs/export.md`` for the files and the resolutions they use.
"""

from nasprune.export._card import CardInfo, LatencyRow, LayerRow, architecture_rows, card_info, render_card
from nasprune.export._export import DEFAULT_FORMATS, ExportConfig, ExportResult, default_out, export
from nasprune.export._formats import FORMATS, ExportContext, Format, parse_formats, register_format
from nasprune.export._onnx import OnnxCheck, compare_onnx, export_onnx, ort_session
from nasprune.export._outdir import staged_directory
from nasprune.export._select import Selection, knee_index, select_trial
from nasprune.export._source import TrialSource, trial_source
from nasprune.export._tolerance import Closeness, Tolerance, compare_outputs

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "CardInfo",
    "Closeness",
    "ExportConfig",
    "ExportContext",
    "ExportResult",
    "Format",
    "LatencyRow",
    "LayerRow",
    "OnnxCheck",
    "Selection",
    "Tolerance",
    "TrialSource",
    "architecture_rows",
    "card_info",
    "compare_onnx",
    "compare_outputs",
    "default_out",
    "export",
    "export_onnx",
    "knee_index",
    "ort_session",
    "parse_formats",
    "register_format",
    "render_card",
    "select_trial",
    "staged_directory",
    "trial_source",
]
