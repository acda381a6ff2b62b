"""The model card: ``card_info(...)`` computes the facts (tested), ``render_card(info)`` writes Markdown."""

from __future__ import annotations

import json
import platform
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from nasprune.export._source import TrialSource

if TYPE_CHECKING:
    from nasprune.search.recipe import Recipe
    from nasprune.spec import ArchSpec

__all__ = ["CardInfo", "DataFacts", "LayerRow", "LatencyRow", "architecture_rows", "card_info", "data_facts",
           "render_card", "retrain_command", "retrain_options"]

# `nasprune train` options -> the DataConfig field of the study recipe's `data` (when set) ...
RETRAIN_DATA = (("--data", "name"), ("--data-dir", "data_dir"), ("--subset", "subset"), ("--val-size", "val_size"),
                ("--channels", "channels"))
# ... and the TrainConfig field of its parent training (which, unlike the fine-tuning, starts from scratch), when
# the recipe sets it (`nasprune train` has TrainConfig's defaults, but for --lr with another optimizer than sgd).
RETRAIN_TRAIN = (("--batch-size", "batch_size"), ("--optimizer", "optimizer"), ("--lr", "lr"),
                 ("--weight-decay", "weight_decay"), ("--label-smoothing", "label_smoothing"))
# TrialRecord fields the card lists under "Search decisions" (those the trial has).
SEARCH_FACTS = ("schedule", "width", "criterion", "downsample_layers", "se_blocks", "baseline")


class LayerRow(NamedTuple):
    """One row of the architecture table; sizes are output sides at the deploy and train resolutions."""

    layer: str
    kind: str
    in_channels: int
    mid_channels: int | None  # depthwise (expansion) channels of a block, head conv / hidden of the head
    out_channels: int
    kernel: int | None
    stride: int | None
    se: int  # squeeze width, 0 = no SE
    act: str
    size_deploy: int
    size_train: int
    macs: int
    params: int


class LatencyRow(NamedTuple):
    runtime: str
    resolution: int
    median_ms: float


class CardInfo(NamedTuple):
    title: str
    study: str
    storage: str
    trial: int
    selection: str
    spec_hash: str
    deploy_resolution: int
    train_resolution: int
    in_channels: int
    num_classes: int
    val_acc: float | None
    macs: int
    params: int
    budget_mflops: float | None
    feasible: bool
    layers: tuple[LayerRow, ...]
    pruned: tuple[tuple[str, int, int], ...]
    latency: tuple[LatencyRow, ...]
    latency_threads: int
    latency_recorded_ms: float | None
    checks: Mapping[str, Mapping[str, Any]]
    files: tuple[tuple[str, str, int | None], ...]  # (filename, description, bytes)
    recipe: Mapping[str, Any] | None  # Recipe.to_dict() of the study's recipe
    data_name: str
    seed: Any
    search_facts: Mapping[str, Any]
    export_command: str
    retrain_command: str
    versions: Mapping[str, str]
    evidence: tuple[str, ...] = ()      # what a re-ranked choice rests on (Selection.evidence)
    weights_val_acc: float | None = None  # validation accuracy of re-ranked weights (None: the search's weights)
    test_acc: float | None = None       # of the exported weights, measured at export time
    test_note: str = "not measured"     # on what the test accuracy was measured, or why it was not
    preprocess: Mapping[str, Any] | None = None  # nasprune.data.Preprocess.to_dict(): how to feed the model
    classes: tuple[str, ...] = ()       # class index -> name
    data_counts: Mapping[str, int] | None = None  # train, val and test images of the study's data
    test_folder: str | None = None      # a <class>/<image> folder holding the test split, for the snippet
    eval_command: str = ""              # `nasprune eval model.pt --data ...`, run in the export directory
    onnx_input: str | None = None       # what model.onnx takes: "normalised float32" or "uint8 pixels" (baked)


class DataFacts(NamedTuple):
    """What an export learns from the data the weights were trained on (:func:`data_facts`)."""

    test_acc: float | None
    note: str                              # on what the test accuracy was measured, or why it was not
    data: Mapping[str, Any] | None         # the DataConfig the card's commands repeat (image folder made absolute)
    counts: Mapping[str, int] | None       # train, val and test images
    preprocess: Mapping[str, Any] | None   # the checkpoint's preprocess record (else the data's)
    classes: tuple[str, ...]
    test_folder: str | None                # PATH/test of an image folder with its own test split


def _act(block: Any) -> str:
    return getattr(block, "act", "")


def architecture_rows(spec: ArchSpec, train_resolution: int) -> tuple[LayerRow, ...]:
    """Stem, every block and the head, with MACs and params at ``spec``'s (deployment) resolution."""
    from nasprune.cost import count

    costs = {row.name: row for row in count(spec).layers}
    deploy, train = spec.feature_sizes(), spec.feature_sizes(train_resolution)
    rows = [LayerRow("stem", "conv", spec.in_channels, None, spec.stem.out_channels, spec.stem.kernel_size,
                     spec.stem.stride, 0, spec.stem.act, deploy[0], train[0], costs["stem"].macs,
                     costs["stem"].params)]
    for i, b in enumerate(spec.blocks):
        name = f"blocks.{i}"
        rows.append(LayerRow(name, b.kind, b.in_channels, b.dw_channels, b.out_channels, b.kernel_size, b.stride,
                             b.se_channels, _act(b), deploy[i + 1], train[i + 1], costs[name].macs,
                             costs[name].params))
    head = spec.head
    mid = head.conv_channels or head.hidden_features or None
    rows.append(LayerRow("head", "head", spec.out_channels, mid, spec.num_classes, None, None, 0,
                         head.conv_act if head.conv_channels else "", 1, 1, costs["head"].macs,
                         costs["head"].params))
    return tuple(rows)


def retrain_options(recipe: Recipe, data: Mapping[str, Any] | None = None) -> list[str]:
    """The `nasprune train` options that repeat the data (``data``: the checkpoint's resolved data config, else
    the recipe's) and the recipe's parent training; ``--epochs`` is as many as the child saw (parent +
    fine-tuning)."""
    data = recipe.data if data is None else data
    parts: list[str] = []
    for option, key in RETRAIN_DATA:
        if data.get(key) is not None:
            parts += [option, str(data[key])]
    config = recipe.train_config("parent")
    given = set(recipe.parent) | ({"lr"} if config.optimizer != "sgd" else set())
    for option, key in RETRAIN_TRAIN:
        if key in given:
            parts += [option, str(getattr(config, key))]
    return [*parts, "--epochs", str(config.epochs + recipe.finetune_epochs)]


def retrain_command(arch_path: str, source: TrialSource, seed: Any = None,
                    data: Mapping[str, Any] | None = None) -> str:
    """``nasprune train ARCH --resolution R ...`` with the data (``data``, else the recipe's) and the study
    recipe's training options."""
    recipe = source.recipe
    if seed is None and recipe is not None:
        seed = recipe.train_config("finetune").seed
    parts = ["nasprune", "train", arch_path, "--resolution", str(source.train_resolution)]
    parts += retrain_options(recipe, data) if recipe is not None else ["--data", (data or {}).get("name", "DATA")]
    if seed is not None:
        parts += ["--seed", str(seed)]
    return shlex.join(parts)


def find_seed(source: TrialSource, metadata: Mapping[str, Any]) -> Any:
    """The seed the child was trained with: checkpoint metadata, trial, then the study recipe's fine-tuning."""
    for where in (metadata, metadata.get("train") or {}, {"seed": source.record.seed}):
        if isinstance(where, Mapping) and where.get("seed") is not None:
            return where["seed"]
    return None if source.recipe is None else source.recipe.train_config("finetune").seed


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("nasprune", "torch", "onnx", "onnxruntime", "optuna"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return versions


def _stored_data(model, source: TrialSource) -> dict[str, Any] | None:
    """The data config the weights were trained on: the checkpoint's (resolved when it was written), else the
    recipe's; an image folder's channels pinned to the model's input."""
    from nasprune.data import IMAGEFOLDER, DataConfig

    metadata = getattr(model, "metadata", None) or {}
    stored = metadata.get("data_config")
    if isinstance(stored, Mapping):
        known = {f for f in DataConfig.__dataclass_fields__}
        config = DataConfig(**{k: v for k, v in stored.items() if k in known})
    elif source.recipe is not None:
        config = source.recipe.data_config()
    else:
        return None
    data = config.to_dict()
    if data["name"].startswith(IMAGEFOLDER) and model is not None:
        data["channels"] = model.spec.in_channels
    return data


def _test_folder(data: Mapping[str, Any] | None) -> str | None:
    from pathlib import Path

    from nasprune.data import IMAGEFOLDER

    if data is None or not data["name"].startswith(IMAGEFOLDER):
        return None
    root = Path(data["name"][len(IMAGEFOLDER):])
    has_train = (root / "train").is_dir()
    return next((str(root / d) for d in ("test", "val") if has_train and (root / d).is_dir()), None)


def data_facts(model, source: TrialSource) -> DataFacts:
    """Test accuracy of ``model`` on the test split of its data, the split's counts, and how to feed the model
    (the preprocess record and class names: the checkpoint's, else the data's). Without weights, or data that
    cannot be loaded here, the accuracy is ``None`` and the note says why."""
    from nasprune.errors import NaspruneError

    metadata = getattr(model, "metadata", None) or {}
    data_cfg = _stored_data(model, source)
    facts = DataFacts(None, "no weights exported", data_cfg, metadata.get("data_counts"),
                      metadata.get("preprocess"), tuple(metadata.get("classes") or ()), _test_folder(data_cfg))
    if model is None:
        return facts
    if data_cfg is None:
        return facts._replace(note="not measured: the study has no stored recipe naming its data")
    from nasprune.data import DataConfig, load_data
    from nasprune.train import evaluate

    try:
        data = load_data(DataConfig(**data_cfg))
    except NaspruneError as exc:
        return facts._replace(note=f"not measured: {exc}")
    accuracy = evaluate(model, data, "test")
    model.cpu()
    return facts._replace(
        test_acc=accuracy, note=f"{len(data.test):,} test images of {data.name} at {data.resolution}x{data.resolution}",
        counts={"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        preprocess=facts.preprocess or data.preprocess.to_dict(), classes=facts.classes or data.classes)


def card_info(source: TrialSource, *, selection: str, checks: Mapping[str, Mapping[str, Any]],
              latency: Sequence[LatencyRow], latency_threads: int, files: Sequence[tuple[str, str, int | None]],
              metadata: Mapping[str, Any], export_command: str, storage: str, evidence: Sequence[str] = (),
              weights_val_acc: float | None = None, facts: DataFacts | None = None) -> CardInfo:
    """Collect everything the card shows (no formatting here).

    ``evidence`` and ``weights_val_acc`` come from a re-ranked :class:`~nasprune.export.Selection`; ``facts`` is
    :func:`data_facts` of the exported weights.
    """
    from nasprune.cost import count

    record = source.record
    cost = count(source.spec)
    seed = find_seed(source, metadata)
    facts = facts or DataFacts(None, "not measured", None, None, None, (), None)
    data = _retrain_data(facts)
    pruned = tuple((d["name"], int(d["before"]), int(d["after"])) for d in record.layers)
    decisions = {k: list(v) if isinstance(v, tuple) else v for k in SEARCH_FACTS
                 if (v := getattr(record, k)) is not None}
    return CardInfo(
        title=f"{source.study_name} trial {source.number}", study=source.study_name, storage=storage,
        trial=source.number, selection=selection, spec_hash=source.spec.hash,
        deploy_resolution=source.deploy_resolution, train_resolution=source.train_resolution,
        in_channels=source.spec.in_channels, num_classes=source.spec.num_classes,
        val_acc=record.val_acc, macs=cost.macs, params=cost.params,
        budget_mflops=source.study_attrs.get("budget_mflops"), feasible=record.feasible,
        layers=architecture_rows(source.spec, source.train_resolution), pruned=pruned, latency=tuple(latency),
        latency_threads=latency_threads, latency_recorded_ms=record.latency_ms, checks=dict(checks),
        files=tuple(files), recipe=None if source.recipe is None else source.recipe.to_dict(),
        data_name=str(data["name"]) if data else str(source.recipe.data["name"]) if source.recipe else "DATA",
        seed=seed, search_facts=decisions, export_command=export_command,
        retrain_command=retrain_command("arch.json", source, seed, data), versions=_versions(),
        evidence=tuple(evidence), weights_val_acc=weights_val_acc, test_acc=facts.test_acc, test_note=facts.note,
        preprocess=facts.preprocess, classes=tuple(facts.classes), data_counts=facts.counts,
        test_folder=facts.test_folder, eval_command=_eval_command(data, source),
        onnx_input=checks["onnx"].get("input") if "onnx" in checks else None,
    )


def _eval_command(data: Mapping[str, Any] | None, source: TrialSource) -> str:
    name = data["name"] if data else str(source.recipe.data["name"]) if source.recipe else "DATA"
    parts = ["nasprune", "eval", "model.pt", "--data", name]
    if data and data.get("data_dir"):
        parts += ["--data-dir", str(data["data_dir"])]
    return shlex.join(parts)


def _retrain_data(facts: DataFacts) -> dict[str, Any] | None:
    """The data options the card's commands repeat (the card's Input section gives the split's counts)."""
    return None if facts.data is None else dict(facts.data)


# -- rendering -----------------------------------------------------------------------------------------------------
def _dash(value: Any) -> str:
    return "—" if value in (None, 0, "") else str(value)


def _layer_table(info: CardInfo) -> list[str]:
    d, t = info.deploy_resolution, info.train_resolution
    lines = [f"| layer | type | in | dw / mid | out | k | s | SE | act | out size @{d} | out size @{t} | MACs @{d} "
             "| params |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in info.layers:
        lines.append(f"| {r.layer} | {r.kind} | {r.in_channels} | {_dash(r.mid_channels)} | {r.out_channels} | "
                     f"{_dash(r.kernel)} | {_dash(r.stride)} | {_dash(r.se)} | {_dash(r.act)} | {r.size_deploy} | "
                     f"{r.size_train} | {r.macs:,} | {r.params:,} |")
    lines.append(f"| **total** | | | | | | | | | | | **{info.macs:,}** | **{info.params:,}** |")
    return lines


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _summary(info: CardInfo) -> list[str]:
    budget = "—" if info.budget_mflops is None else f"{info.budget_mflops:g} MFLOPs"
    res = f"{info.train_resolution}x{info.train_resolution}"
    reranked = ([f"| validation accuracy of the exported (re-ranked) weights, at {res} | "
                 f"{_percent(info.weights_val_acc)} |"] if info.weights_val_acc is not None else [])
    return [
        "| | |", "|---|---|",
        f"| validation accuracy (recorded by the search, at {res}) | {_percent(info.val_acc)} |", *reranked,
        f"| test accuracy of the exported weights ({info.test_note}) | {_percent(info.test_acc)} |",
        f"| MACs at {info.deploy_resolution}x{info.deploy_resolution} (conv + linear, BN folded) | "
        f"{info.macs:,} ({info.macs / 1e6:.2f} MFLOPs) |",
        f"| parameters | {info.params:,} |",
        f"| study budget | {budget} ({'within' if info.feasible else 'OVER'} budget) |",
        f"| input | {_input_shape(info)}, {info.num_classes} classes |",
        f"| spec hash | `{info.spec_hash}` |",
    ]


def _input_shape(info: CardInfo) -> str:
    if info.preprocess is None:
        return f"{info.in_channels} x H x W"
    h, w = info.preprocess["input_size"]
    return f"{info.in_channels} x {h} x {w} ({info.preprocess['colour_mode']}, normalised: see Input)"


def _latency(info: CardInfo) -> list[str]:
    if not info.latency:
        return ["Not measured."]
    resolutions = sorted({r.resolution for r in info.latency}, reverse=True)
    runtimes = list(dict.fromkeys(r.runtime for r in info.latency))
    table = {(r.runtime, r.resolution): r.median_ms for r in info.latency}
    lines = ["| runtime | " + " | ".join(f"{r}x{r}" for r in resolutions) + " |",
             "|---|" + "---:|" * len(resolutions)]
    for runtime in runtimes:
        cells = [f"{table[(runtime, r)]:.3f} ms" if (runtime, r) in table else "—" for r in resolutions]
        lines.append(f"| {runtime} | " + " | ".join(cells) + " |")
    lines.append("")
    threads = f"{info.latency_threads} thread{'s' if info.latency_threads != 1 else ''}"
    lines.append(f"Batch 1, CPU, {threads}, median of the timed runs on the machine that "
                 f"ran the export ({platform.machine()}). The cost budget is defined at "
                 f"{info.deploy_resolution}x{info.deploy_resolution}, so that column is the one to compare.")
    if info.latency_recorded_ms is not None:
        lines.append(f"The search recorded {info.latency_recorded_ms:.3f} ms (PyTorch, "
                     f"{info.deploy_resolution}x{info.deploy_resolution}) for this trial.")
    return lines


def _checks(info: CardInfo) -> list[str]:
    lines = []
    c = info.checks
    if "json" in c:
        lines.append(f"- `arch.json` rebuilds with {c['json']['macs']:,} MACs and {c['json']['params']:,} params"
                     + (", exactly the trial's record." if c["json"].get("matches_trial") else "."))
    if "pt" in c:
        lines.append(f"- `model.pt` reloads strictly; difference to the exported model: {_diffs(c['pt'])}.")
    if "torchscript" in c:
        lines.append(f"- `model.ts`: difference to PyTorch: {_diffs(c['torchscript'])}.")
    if "onnx" in c:
        cases = ", ".join(f"batch {k['batch']} @{k['resolution']}: {k['max_abs_diff']:.3g}"
                          for k in c["onnx"]["cases"])
        lines.append(f"- `model.onnx` (opset {c['onnx']['opset']}, {c['onnx']['exporter']} exporter), onnxruntime "
                     f"vs PyTorch on random inputs: {_diffs(c['onnx'])} (max abs per input: {cases}).")
    used = next((k for k in c.values() if "rtol" in k), None)
    if used is not None:
        lines.append(f"- Required of each file, per input and logit: `|a - b| <= atol + rtol * max|b|` (max|b|: the "
                     f"input's largest absolute logit), with rtol {used['rtol']:g} and atol {used['atol']:g} "
                     f"(`--tolerance {used['rtol']:g},{used['atol']:g}`).")
    return lines or ["No files with weights were exported."]


def _diffs(check: Mapping[str, Any]) -> str:
    """Max abs difference and max difference relative to the output's scale (the largest |logit| per input)."""
    return f"max abs {check['max_abs_diff']:.3g}, relative to the output's scale {check['max_rel_diff']:.3g}"


def _resolution_note(info: CardInfo) -> list[str]:
    d, t = info.deploy_resolution, info.train_resolution
    return [
        f"The search counts cost at the deployment resolution {d}x{d}; the weights were trained and validated "
        f"at {t}x{t}. So `arch.json` is the spec at {d} (its MACs and params are the ones above), while "
        f"`model.pt`'s spec says {t} and `model.onnx` was traced with a {t}x{t} input. The network ends in "
        "global average pooling, so every file runs at any input size (the ONNX batch, height and width axes are "
        f"dynamic); accuracy is only known at {t}x{t}, where the inputs must be preprocessed like the training "
        "data: see Input below.",
    ]


PREPROCESS_ROWS = (  # key of the preprocess record, what the row says
    ("colour_mode", "1. convert the image to (PIL mode; `L`: greyscale by ITU-R 601-2 luma, `RGB`: alpha dropped)"),
    ("input_size", "2. resize to height x width"),
    ("interpolation", "   with (antialiased when shrinking, as PIL's `resize` does)"),
    ("resized_by", "   library that resized the training images"),
    ("scale", "3. multiply the 0-255 pixel values by"),
    ("mean", "4. subtract per channel"),
    ("std", "5. divide per channel by"),
    ("channel_order", "6. channel order"),
    ("layout", "   layout of the input tensor"),
    ("dtype", "   element type"),
)

SNIPPET = """import json, pathlib
import numpy as np
import onnxruntime as ort
from PIL import Image

card = json.loads(pathlib.Path("export.json").read_text())
p, classes = card["preprocess"], card["classes"]
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])

def preprocess(path):
    h, w = p["input_size"]
    image = Image.open(path).convert(p["colour_mode"]).resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.uint8).reshape(h, w, -1).transpose(2, 0, 1)[None]  # NCHW, batch of one
    if card["onnx_input"] == "uint8 pixels":  # exported with --bake-preprocessing: the graph normalises
        return x
    x = x.astype(np.float32) * np.float32(p["scale"])
    return (x - np.float32(p["mean"]).reshape(-1, 1, 1)) / np.float32(p["std"]).reshape(-1, 1, 1)

def predict(path):
    (logits,) = session.run(None, {session.get_inputs()[0].name: preprocess(path)})
    return classes[int(logits.argmax())]

FOLDER_LINE
pairs = [(f, d.name) for d in sorted(folder.iterdir()) if d.is_dir() for f in sorted(d.iterdir())]
print(sum(predict(f) == name for f, name in pairs) / len(pairs))"""


def _preprocess_value(key: str, value: Any) -> str:
    if key == "input_size":
        return f"{value[0]} x {value[1]}"
    if key == "scale":
        return f"{value:.10g}" + (" (1/255)" if abs(value - 1 / 255) < 1e-12 else "")
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" for v in value)
    return f"`{value}`"


def _classes(info: CardInfo) -> list[str]:
    if not info.classes:
        return ["Class names: not recorded (the outputs are the class indices)."]
    if len(info.classes) > 20:
        return ["Class names by output index: " + ", ".join(f"{i} {n}" for i, n in enumerate(info.classes)) + "."]
    return ["| output index | class |", "|---:|---|", *(f"| {i} | {n} |" for i, n in enumerate(info.classes))]


def _counts(info: CardInfo) -> list[str]:
    if not info.data_counts:
        return []
    c = info.data_counts
    asked = (info.recipe or {}).get("data", {}).get("val_size")
    cut = (f" (the recipe asked for val_size {asked}; at most a tenth of the training images are held out)"
           if asked is not None and asked > c["val"] else "")
    return [f"Data `{info.data_name}`: {c['train']:,} training images, "
            f"{c['val']:,} validation images{cut}, {c['test']:,} test images.", ""]


def _input(info: CardInfo) -> list[str]:
    """How to feed the model: the preprocess record, the classes and an onnxruntime snippet."""
    if info.preprocess is None:
        return ["## Input", "", "No preprocessing record: the weights were not exported, or the checkpoint and "
                "the data are unavailable here.", ""]
    p = info.preprocess
    rows = [f"| {what} | {_preprocess_value(key, p[key])} |" for key, what in PREPROCESS_ROWS if key in p]
    folder = (f"folder = pathlib.Path({info.test_folder!r})  # the data's test split: <class name>/<image>"
              if info.test_folder else
              'folder = pathlib.Path("FOLDER")  # labelled images laid out <class name>/<image>')
    note = (f"With `{info.test_folder}` (the data's test split) it prints the card's test accuracy."
            if info.test_folder else
            "The card's test accuracy was measured on the data's test split as `nasprune eval` loads it; point "
            "`FOLDER` at labelled images of your own.")
    if p.get("resized_by") == "torch":
        note += (" The training images were resized by `torch.nn.functional.interpolate` (bilinear, antialiased "
                 "when shrinking), so PIL's resize may differ from it by a grey level here and there.")
    baked = ("`model.onnx` takes the `uint8` pixels after step 2 (N x C x H x W) and does steps 3-5 in its graph "
             "(exported with `--bake-preprocessing`); the other files take the float tensor of step 6."
             if info.onnx_input == "uint8 pixels" else "")
    return ["## Input", "",
            "Every file takes a float tensor preprocessed exactly as the training data was (`preprocess` in "
            "`export.json`):", "", "| step | value |", "|---|---|", *rows, "", *([baked, ""] if baked else []),
            *_counts(info), *_classes(info), "",
            "Run `model.onnx` with onnxruntime (`pip install onnxruntime pillow numpy`), in this directory:", "",
            "```python", SNIPPET.replace("FOLDER_LINE", folder), "```", "", note, ""]


def _chosen(info: CardInfo) -> list[str]:
    """How the trial was chosen: its re-rank evidence (nothing for a choice by the search's accuracy alone)."""
    if not info.evidence:
        return []
    return ["## How it was chosen", "",
            "The search's accuracy is a proxy (a short fine-tuning of a child cut from a shared parent), so the top "
            "trials were trained again, longer at each rung, and ranked on the validation split (never the test "
            "split):", "", *(f"- {line}" for line in info.evidence), ""]


def render_card(info: CardInfo) -> str:
    """The Markdown text of ``MODEL_CARD.md``."""
    files = [f"| `{name}` | {desc} | {'—' if size is None else f'{size:,}'} |" for name, desc, size in info.files]
    facts = [f"- {k}: {v}" for k, v in info.search_facts.items()]
    pruned = [f"| {n} | {b} | {a} |" for n, b, a in info.pruned]
    parts = [
        f"# Model card: {info.title}", "",
        f"Exported from study `{info.study}` trial {info.trial}: {info.selection}.", "",
        "## Summary", "", *_summary(info), "",
        *_chosen(info),
        "## Resolution", "", *_resolution_note(info), "",
        *_input(info),
        f"## Architecture (output sizes at {info.deploy_resolution} and {info.train_resolution})", "",
        *_layer_table(info), "",
        "`dw / mid`: depthwise (expansion) channels of a block; for the head its 1x1 conv or hidden linear. "
        "`SE`: squeeze width of squeeze-and-excite (— = none).", "",
    ]
    if pruned:
        parts += ["### Pruned layers (channels, parent -> child)", "", "| layer | before | after |",
                  "|---|---:|---:|", *pruned, ""]
    if facts:
        parts += ["### Search decisions", "", *facts, ""]
    parts += ["## Latency", "", *_latency(info), "", "## Checks", "", *_checks(info), "",
              "## Files", "", "| file | use | bytes |", "|---|---|---:|", *files, "",
              "## Provenance", "",
              f"- study: `{info.study}` in `{info.storage}`", f"- trial: {info.trial} ({info.selection})",
              f"- seed: {_dash(info.seed) if info.seed != 0 else 0}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in info.versions.items()),
              f"- exported with: `{info.export_command}`", "", "Recipe (study attribute `recipe`):", "",
              "```json", json.dumps(info.recipe, indent=2, default=str), "```", "",
              "## Retrain", "",
              "Train the architecture from scratch (run in this directory). The data options are the study's; "
              "the optimiser settings are those of the parent training (which starts from scratch), without its "
              "sparsity penalty; the epochs are as many as the child saw in the search (parent + fine-tuning) — "
              "raise `--epochs` for a full training:", "", "```sh", info.retrain_command, "```", "",
              "Evaluate a checkpoint on the test set:", "", "```sh",
              info.eval_command, "```", ""]
    return "\n".join(parts)
