"""The export formats: a registry of writers, each of which also checks the file it wrote.

Resolutions (see ``docs/export.md``):

* ``arch.json`` is the trial's ``child_spec`` at the **deployment** resolution; rebuilt, it has exactly the MACs
  and params the trial recorded.
* ``model.pt``, ``model.ts`` and ``model.onnx`` carry the trained weights; their spec (and the ONNX example
  input) use the **training** resolution, where the weights were trained and validated. The networks end in
  global pooling, so every file also runs at any other resolution (the ONNX height and width axes are dynamic).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from nasprune.errors import NaspruneError
from nasprune.export._source import TrialSource
from nasprune.export._tolerance import Closeness, Tolerance, compare_outputs, require_close, worst
from nasprune.fsutil import atomic_save, atomic_write_text

if TYPE_CHECKING:
    import torch

    from nasprune.builder import NasNet

__all__ = ["FORMATS", "ExportContext", "Format", "parse_formats", "register_format"]


@dataclass
class ExportContext:
    """What writers share: the trial, its trained model (``None`` for a spec-only export) and the options."""

    source: TrialSource
    model: NasNet | None
    tolerance: Tolerance = field(default_factory=Tolerance)
    seed: int = 0
    onnx_exporter: str = "dynamo"
    onnx_path: Path | None = None  # set by the onnx writer, for the card's onnxruntime latency
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    preprocess: Mapping[str, Any] | None = None  # the training's preprocess record (nasprune.data.Preprocess)
    bake_preprocessing: bool = False  # model.onnx takes uint8 pixels, the normalisation in its graph


class Format(NamedTuple):
    """One output file. ``write(ctx, path)`` writes it, checks it and returns the check's figures."""

    name: str
    filename: str
    needs_weights: bool
    description: str
    write: Callable[[ExportContext, Path], dict[str, Any]]


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def parse_formats(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"json,onnx"`` -> ``("json", "onnx")`` in registry order; unknown names raise :class:`NaspruneError`."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise NaspruneError(f"--format {unknown[0] if unknown else text!r} is invalid: expected a comma-separated "
                            f"list of {', '.join(FORMATS)}")
    return tuple(n for n in FORMATS if n in names)


def _random_inputs(ctx: ExportContext, shapes: tuple[tuple[int, int], ...]) -> list[torch.Tensor]:
    import torch

    generator = torch.Generator().manual_seed(ctx.seed)
    channels = ctx.source.spec.in_channels
    return [torch.randn(b, channels, r, r, generator=generator) for b, r in shapes]


def _closeness(reference: NasNet, other: Callable, inputs: list[torch.Tensor], tolerance: Tolerance) -> Closeness:
    import torch

    with torch.inference_mode():
        return worst([compare_outputs(other(x).numpy(), reference(x).numpy(), tolerance) for x in inputs])


def check_figures(closeness: Closeness) -> dict[str, float]:
    """A check's figures as the manifest and the card show them: the differences and the tolerance used."""
    return {"max_abs_diff": closeness.max_abs_diff, "max_rel_diff": closeness.max_rel_diff,
            "rtol": closeness.tolerance.rtol, "atol": closeness.tolerance.atol}


def _shapes(ctx: ExportContext) -> tuple[tuple[int, int], ...]:
    """Batch sizes 1 and 3 at the training resolution, plus batch 1 at the deployment resolution."""
    src = ctx.source
    shapes = ((1, src.train_resolution), (3, src.train_resolution), (1, src.deploy_resolution))
    return tuple(dict.fromkeys(shapes))


# -- json ------------------------------------------------------------------------------------------------------
def _write_json(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from nasprune.cost import count
    from nasprune.spec import ArchSpec

    spec = ctx.source.spec
    atomic_write_text(path, spec.to_json() + "\n")
    cost = count(ArchSpec.from_json(path.read_text()))
    record = ctx.source.record
    recorded = {"macs": record.macs, "params": record.params}
    for key, value in (("macs", cost.macs), ("params", cost.params)):
        if recorded[key] is not None and recorded[key] != value:
            raise NaspruneError(f"arch.json rebuilds with {value:,} {key}, but trial {ctx.source.number} recorded "
                                f"{recorded[key]:,}: the trial's child_spec and its costs disagree")
    return {"macs": cost.macs, "params": cost.params, "resolution": spec.resolution, "hash": spec.hash,
            "matches_trial": None not in recorded.values()}


# -- pt ----------------------------------------------------------------------------------------------------------
# DataConfig fields: with them in the metadata, `nasprune eval model.pt --split val` rebuilds the search's split.
DATA_CONFIG_KEYS = ("name", "data_dir", "resolution", "subset", "val_size", "seed")


def _data_config(src: TrialSource, original: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(original.get("data_config"), dict):
        return original["data_config"]
    data = dict(src.recipe.data) if src.recipe is not None else original.get("data")
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in DATA_CONFIG_KEYS if k in data} | {"resolution": src.train_resolution}


def checkpoint_metadata(ctx: ExportContext) -> dict[str, Any]:
    """The exported checkpoint's metadata: the original checkpoint's plus where it came from and its data."""
    from nasprune.export._card import find_seed

    src = ctx.source
    original = dict(getattr(ctx.model, "metadata", None) or {})
    record = src.record
    keep = ("val_acc", "macs", "mflops", "params", "latency_ms", "schedule", "width", "criterion")
    if original.get("role") == "rerank":  # a re-rank's weights: their own val_acc, not the search's
        keep = tuple(k for k in keep if k != "val_acc")
    data_config = _data_config(src, original)
    extra = {"data_config": data_config} if data_config else {}
    return {**original, **extra, **{k: getattr(record, k) for k in keep if getattr(record, k) is not None},
            "study": src.study_name, "trial": src.number, "deploy_resolution": src.deploy_resolution,
            "train_resolution": src.train_resolution, "seed": find_seed(src, original), "arch_hash": src.spec.hash,
            "exported_by": "nasprune export"}


def _write_pt(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from nasprune.checkpoint import load, save_checkpoint

    save_checkpoint(path, ctx.model, checkpoint_metadata(ctx))
    loaded = load(path, map_location="cpu").eval()
    if loaded.spec.hash != ctx.source.train_spec.hash:
        raise NaspruneError(f"model.pt reloads with spec {loaded.spec.hash}, expected {ctx.source.train_spec.hash}")
    closeness = _closeness(ctx.model, loaded, _random_inputs(ctx, _shapes(ctx)), ctx.tolerance)
    require_close("model.pt reloaded", closeness)
    return {**check_figures(closeness), "resolution": loaded.spec.resolution}


# -- torchscript -------------------------------------------------------------------------------------------------
def _write_torchscript(ctx: ExportContext, path: Path) -> dict[str, Any]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; still the portable one
        scripted = torch.jit.script(ctx.model.eval())
        atomic_save(path, lambda fh: torch.jit.save(scripted, fh))
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    closeness = _closeness(ctx.model, loaded, _random_inputs(ctx, _shapes(ctx)), ctx.tolerance)
    require_close("model.ts", closeness)
    return check_figures(closeness)


# -- onnx ----------------------------------------------------------------------------------------------------------
ONNX_INPUTS = {False: "normalised float32", True: "uint8 pixels"}  # what model.onnx takes, by bake_preprocessing


def _onnx_model(ctx: ExportContext):
    """The trained model, or (``bake_preprocessing``) it behind the training's normalisation."""
    from nasprune.export._onnx import baked_model

    if not ctx.bake_preprocessing:
        return ctx.model
    p = ctx.preprocess
    if p is None:
        raise NaspruneError("--bake-preprocessing needs the training's preprocess record, and neither the "
                            "checkpoint nor the study's data gave one: export without it")
    return baked_model(ctx.model, p["scale"], p["mean"], p["std"])


def _write_onnx(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from nasprune.export._onnx import compare_onnx, export_onnx, onnx_opset, ort_session

    model = _onnx_model(ctx)
    export_onnx(model, path, ctx.source.train_resolution, ctx.onnx_exporter, raw=ctx.bake_preprocessing)
    opset = onnx_opset(path)
    ctx.onnx_path = path
    checks = compare_onnx(model, ort_session(path), _shapes(ctx), seed=ctx.seed, tolerance=ctx.tolerance)
    closeness = worst([c.closeness for c in checks])
    require_close("model.onnx (onnxruntime)", closeness)
    return {"opset": opset, "exporter": ctx.onnx_exporter, "input": ONNX_INPUTS[ctx.bake_preprocessing],
            **check_figures(closeness), "cases": [c.figures() for c in checks]}


for _fmt in (
    Format("json", "arch.json", False, "architecture spec (deployment resolution), for nasprune.build / train",
           _write_json),
    Format("pt", "model.pt", True, "spec + trained weights, for nasprune.load / nasprune eval", _write_pt),
    Format("torchscript", "model.ts", True, "TorchScript, for torch.jit.load (no nasprune needed)",
           _write_torchscript),
    Format("onnx", "model.onnx", True, "ONNX, dynamic batch/height/width, checked with onnxruntime", _write_onnx),
):
    register_format(_fmt)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
