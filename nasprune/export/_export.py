"""``export(config)``: pick a trial, write the requested formats and the model card, all or nothing."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasprune.errors import NaspruneError
from nasprune.export._card import DataFacts, LatencyRow, card_info, data_facts, render_card, retrain_command
from nasprune.export._formats import FORMATS, ExportContext, dumps, parse_formats
from nasprune.export._outdir import check_target, staged_directory
from nasprune.export._select import Selection, select_trial
from nasprune.export._source import TrialSource, artifacts_dir, load_trained_model, trial_source
from nasprune.export._tolerance import Tolerance
from nasprune.fsutil import atomic_write_text

__all__ = ["DEFAULT_FORMATS", "ExportConfig", "ExportResult", "default_out", "export"]

DEFAULT_FORMATS: tuple[str, ...] = tuple(FORMATS)
CARD = "MODEL_CARD.md"
MANIFEST = "export.json"


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What ``nasprune export`` does.

    Attributes:
        study: the study name.
        storage: storage URL (default: ``sqlite:///studies/STUDY.db``).
        trial: ``"best"``, ``"knee"`` or a trial number.
        budget_mflops: only consider trials within this budget (tighter than the study's).
        formats: names from :data:`FORMATS` (the model card is always written).
        out: output directory (default ``reports/export/STUDY-trialN``).
        force: replace a non-empty ``out``.
        artifacts: the artifact store directory, if not the study's ``artifacts_dir``.
        latency_runs: timed forward passes per latency figure (0 = do not measure).
        latency_threads: CPU threads for the latency figures (default: the recipe's ``latency.threads``, as
            the search measured, else torch's current number).
        tolerance: accepted difference between an exported file's outputs and PyTorch's,
            ``|a - b| <= atol + rtol * max|b|`` per input sample (see :class:`Tolerance`).
        onnx_exporter: ``dynamo`` (torch.export-based, current) or ``legacy`` (TorchScript-based, fast).
        bake_preprocessing: ``model.onnx`` takes ``uint8`` pixels (converted and resized as the preprocess
            record says) and normalises them in its graph, exactly as training did.
    """

    study: str
    storage: str | None = None
    trial: str | int = "best"
    budget_mflops: float | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    out: str | Path | None = None
    force: bool = False
    artifacts: str | Path | None = None
    latency_runs: int = 30
    latency_threads: int | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    onnx_exporter: str = "dynamo"
    bake_preprocessing: bool = False


@dataclass(frozen=True)
class ExportResult:
    out: Path
    selection: Selection
    files: dict[str, Path]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: tuple[LatencyRow, ...] = ()


def default_out(study: str, trial: int) -> Path:
    return Path("reports") / "export" / f"{study}-trial{trial}"


def _export_command(config: ExportConfig, number: int, out: Path) -> str:
    parts = ["nasprune", "export", "--study", config.study]
    if config.storage:
        from nasprune.storage import redact_url

        parts += ["--storage", redact_url(config.storage)]
    parts += ["--trial", str(number), "--format", ",".join(config.formats), "--out", str(out)]
    return shlex.join(parts)


def _latency_threads(config: ExportConfig, source: TrialSource) -> int:
    import torch

    recipe_threads = source.recipe.latency_threads if source.recipe is not None else None
    return int(config.latency_threads or recipe_threads or torch.get_num_threads())


def _measure_latency(ctx: ExportContext, runs: int, threads: int) -> tuple[LatencyRow, ...]:
    """PyTorch (and onnxruntime when exported) at batch 1, at the deployment and training resolutions."""
    from nasprune.builder import build
    from nasprune.latency import measure_latency, ort_latency
    from nasprune.onnxrt import ort_session

    if runs <= 0:
        return ()
    src = ctx.source
    model = ctx.model if ctx.model is not None else build(src.train_spec).eval()
    specs = tuple(dict.fromkeys((src.spec, src.train_spec)))
    rows = [LatencyRow("PyTorch (eager)", spec.resolution,
                       measure_latency(model, spec=spec, runs=runs, threads=threads).median_ms) for spec in specs]
    if ctx.onnx_path is not None:
        session = ort_session(ctx.onnx_path, threads)
        rows += [LatencyRow("onnxruntime", spec.resolution,
                            ort_latency(session, spec.in_channels, spec.resolution, runs=runs)) for spec in specs]
    return tuple(rows)


def _write_all(ctx: ExportContext, config: ExportConfig, staging: Path, log: Callable[[str], None]) -> None:
    for name in config.formats:
        fmt = FORMATS[name]
        ctx.checks[name] = fmt.write(ctx, staging / fmt.filename)
        log(_describe_check(name, fmt.filename, ctx.checks[name], ctx))


def _describe_check(name: str, filename: str, check: dict[str, Any], ctx: ExportContext) -> str:
    if name == "json":
        same = "= the trial's record" if check["matches_trial"] else "(trial has no record to compare)"
        return (f"  {filename:<11} {check['macs']:,} MACs, {check['params']:,} params at "
                f"{check['resolution']}x{check['resolution']} {same}")
    diffs = (f"max abs diff {check['max_abs_diff']:.2e}, relative {check['max_rel_diff']:.2e} "
             f"(tolerance rtol {ctx.tolerance.rtol:g}, atol {ctx.tolerance.atol:g})")
    if name == "onnx":
        cases = ", ".join(f"b{c['batch']}@{c['resolution']} {c['max_abs_diff']:.2e}" for c in check["cases"])
        return (f"  {filename:<11} opset {check['opset']} ({check['exporter']} exporter, input "
                f"{check['input']}), onnxruntime vs PyTorch {diffs} ({cases})")
    return f"  {filename:<11} reloaded, {diffs}"


def _file_rows(staging: Path, formats: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
    rows = [(FORMATS[n].filename, FORMATS[n].description, (staging / FORMATS[n].filename).stat().st_size)
            for n in formats]
    return [*rows, (CARD, "this card", None), (MANIFEST, "the facts of this card as JSON", None)]


def _write_card(ctx: ExportContext, config: ExportConfig, selection: Selection, staging: Path, out: Path,
                latency: tuple[LatencyRow, ...], threads: int, facts: DataFacts) -> None:
    from nasprune.storage import redact_url

    src = ctx.source
    metadata = dict(getattr(ctx.model, "metadata", None) or {})
    info = card_info(src, selection=selection.reason, checks=ctx.checks, latency=latency,
                     latency_threads=threads, files=_file_rows(staging, config.formats), metadata=metadata,
                     export_command=_export_command(config, src.number, out), storage=redact_url(src.storage_url),
                     evidence=selection.evidence, weights_val_acc=selection.val_acc, facts=facts)
    atomic_write_text(staging / CARD, render_card(info))
    manifest = {k: v for k, v in info._asdict().items() if k not in ("layers", "latency")}
    manifest["layers"] = [row._asdict() for row in info.layers]
    manifest["latency"] = [row._asdict() for row in info.latency]
    atomic_write_text(staging / MANIFEST, dumps(manifest))


def export(config: ExportConfig, *, log: Callable[[str], None] | None = None) -> ExportResult:
    """Export one trial of a study; see ``docs/export.md``.

    Nothing is left in the output directory's parent unless every file was written and checked.

    Raises:
        NaspruneError: bad study, trial, budget, format or output directory, missing weights, or an exported
            file that does not reproduce the trained model within ``config.tolerance``.
    """
    from nasprune.export._onnx import ONNX_EXPORTERS
    from nasprune.storage import default_storage_url, load_study

    log = log or (lambda _line: None)
    formats = parse_formats(config.formats)
    if config.onnx_exporter not in ONNX_EXPORTERS:
        raise NaspruneError(f"--onnx-exporter {config.onnx_exporter!r} is invalid: expected one of "
                            f"{', '.join(ONNX_EXPORTERS)}")
    if not isinstance(config.tolerance, Tolerance):
        raise NaspruneError(f"tolerance={config.tolerance!r} is invalid: expected a Tolerance(rtol=, atol=)")
    if config.bake_preprocessing and "onnx" not in formats:
        raise NaspruneError(f"--bake-preprocessing changes model.onnx, but --format {','.join(formats)} does not "
                            "write it: add onnx")
    config = dataclasses.replace(config, formats=formats)
    url = config.storage or default_storage_url(config.study)
    study = load_study(config.study, url)
    selection = select_trial(study, config.trial, config.budget_mflops)
    source = trial_source(study, selection.trial, url, selection.artifact_id)
    out = Path(config.out) if config.out is not None else default_out(config.study, source.number)
    check_target(out, config.force)
    _log_selection(log, selection, source)
    with staged_directory(out, force=config.force) as staging:
        model = None
        if any(FORMATS[n].needs_weights for n in formats):
            retrain = retrain_command(str(out / "arch.json"), source)
            model = load_trained_model(source, artifacts_dir(source, config.artifacts), staging, retrain)
        facts = data_facts(model, source)
        if model is not None:  # model.pt tells how to feed it, even where its checkpoint did not (a re-rank's)
            model.metadata = {**_deploy_metadata(facts), **(getattr(model, "metadata", None) or {})}
        ctx = ExportContext(source=source, model=model, tolerance=config.tolerance,
                            onnx_exporter=config.onnx_exporter, preprocess=facts.preprocess,
                            bake_preprocessing=config.bake_preprocessing)
        _write_all(ctx, config, staging, log)
        threads = _latency_threads(config, source)
        latency = _measure_latency(ctx, config.latency_runs, threads)
        log(f"  test acc    {'-' if facts.test_acc is None else f'{100 * facts.test_acc:.2f} %'} ({facts.note})")
        _write_card(ctx, config, selection, staging, out, latency, threads, facts)
    files = {n: out / FORMATS[n].filename for n in formats} | {"card": out / CARD, "manifest": out / MANIFEST}
    return ExportResult(out=out, selection=selection, files=files, checks=ctx.checks, latency=latency)


def _deploy_metadata(facts: DataFacts) -> dict[str, Any]:
    meta = {"preprocess": facts.preprocess, "classes": list(facts.classes) or None, "data_counts": facts.counts}
    return {k: v for k, v in meta.items() if v is not None}


def _log_selection(log: Callable[[str], None], selection: Selection, source: TrialSource) -> None:
    record = source.record
    acc = "not trained" if record.val_acc is None else f"val acc {100 * record.val_acc:.2f} %"
    mflops = "?" if record.mflops is None else f"{record.mflops:.2f}"
    log(f"trial {source.number} of study {source.study_name!r}: {selection.reason}; {acc}, "
        f"{mflops} MFLOPs at {source.deploy_resolution}x{source.deploy_resolution}")
