"""Deploying an exported model as a user would: a search on a folder of their own PNGs (28 and 40 px, greyscale
and RGB), an export, then held-out images preprocessed from ``export.json`` alone and run in onnxruntime,
against ``nasprune eval``; the card's commands run from the export directory; bad images stop a search early."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from nasprune.cli import main

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CLASSES = ("checkerboard", "horizontal", "vertical")  # stripes of 8 periods per side, whatever the size
RECIPE = {"study": "own", "space": "fd_mobilenet",
          "space_overrides": {"free_placement": None, "width": [0.25],  # children pruned lightly: they learn
                              "prune": {"ratio": {"low": 0.0, "high": 0.2, "step": 0.1}, "criteria": ["l1"]}},
          # a relative folder (stored resolved) and a validation size the folder cannot give (said, then cut)
          "data": {"name": "imagefolder:photos", "resolution": 32, "val_size": 2000},
          "budget_mflops": 50, "budget_floor": 0, "trials": 1, "seed_designs": False, "sampler": "random",
          "parent": {"mode": "shared", "epochs": 12, "batch_size": 32, "lr": 0.05, "sparsity_lambda": 0,
                     "augment": False},
          "finetune": {"epochs": 5, "batch_size": 32, "lr": 0.05, "augment": False}, "latency": {"runs": 1}}


def _image(rng: np.random.Generator, label: int, size: int, colour: bool):
    """A noisy image of checks, horizontal or vertical stripes (8 periods across: 4 pixels each at 32x32)."""
    from PIL import Image

    rows, cols = np.indices((size, size)) * 16 // size % 2
    pattern = {0: rows ^ cols, 1: rows, 2: cols}[label]
    pixels = (rng.integers(0, 90, (size, size)) + 140 * pattern).astype(np.uint8)
    if not colour:
        return Image.fromarray(pixels, "L")
    tint = rng.uniform(0.6, 1.0, 3)  # a colour cast per image: the luma still carries the class
    return Image.fromarray((pixels[..., None] * tint).astype(np.uint8), "RGB")


def _write_folder(root: Path, per_class: int, seed: int, *, colour: bool | None = None) -> None:
    """``root/<class>/<i>.png``: sizes 28 and 40 alternate; greyscale and RGB alternate (unless ``colour``)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            rgb = (i // 2) % 2 == 1 if colour is None else colour
            _image(rng, label, 28 if i % 2 else 40, rgb).save(root / name / f"{i}.png")


def _preprocess(path: Path, p: dict) -> np.ndarray:
    """Exactly what export.json's ``preprocess`` record says, with PIL and numpy only."""
    from PIL import Image

    assert p["interpolation"] == "bilinear" and p["layout"] == "NCHW" and p["channel_order"] == p["colour_mode"]
    h, w = p["input_size"]
    with Image.open(path) as image:
        image = image.convert(p["colour_mode"]).resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.float32).reshape(h, w, -1) * np.float32(p["scale"])
    x = (x - np.asarray(p["mean"], np.float32)) / np.asarray(p["std"], np.float32)
    return x.transpose(2, 0, 1)[None].astype(p["dtype"])


def _onnx_accuracy(export_dir: Path, folder: Path) -> tuple[float, int]:
    import onnxruntime as ort

    card = json.loads((export_dir / "export.json").read_text())
    session = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pairs = [(f, d.name) for d in sorted(folder.iterdir()) for f in sorted(d.iterdir())]
    right = sum(card["classes"][int(session.run(None, {name: _preprocess(f, card["preprocess"])})[0].argmax())] == c
                for f, c in pairs)
    return right / len(pairs), len(pairs)


def _card_command(card: str, program: str) -> list[str]:
    line = next(m.group(0) for m in re.finditer(rf"^nasprune {program} .*$", card, re.M))
    return shlex.split(line)[1:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    _write_folder(root / "photos" / "train", 60, seed=0)  # 180: 18 for validation, 162 to train
    _write_folder(root / "photos" / "test", 12, seed=1)  # held out: never seen by the search
    (root / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["search", "recipe.yaml", "--no-progress"]) == 0
        assert main(["export", "--study", "own", "--trial", "best", "--format", "json,pt,onnx", "--out", "exp",
                     "--latency-runs", "0", "--onnx-exporter", "legacy"]) == 0
    return root


def test_onnx_fed_from_export_json_matches_nasprune_eval(exported, tmp_path, monkeypatch, capsys):
    capsys.readouterr()
    exp = exported / "exp"
    monkeypatch.chdir(tmp_path)  # anywhere but the search's directory
    assert main(["eval", str(exp / "model.pt"), "--data", f"imagefolder:{exported / 'photos'}", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    onnx_acc, n = _onnx_accuracy(exp, exported / "photos" / "test")
    print(f"nasprune eval {evaluated['accuracy']:.4f}, onnxruntime from export.json {onnx_acc:.4f} on {n} images")
    assert evaluated["images"] == n == 36
    assert evaluated["accuracy"] >= 0.6  # well above chance (1/3): a wrong preprocessing would show
    assert abs(onnx_acc - evaluated["accuracy"]) <= 1 / n  # at most one image apart
    manifest = json.loads((exp / "export.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["in_channels"] == 3
    assert manifest["preprocess"]["colour_mode"] == "RGB" and manifest["preprocess"]["input_size"] == [32, 32]
    assert manifest["test_acc"] == evaluated["accuracy"]


def _run_card_snippet(export_dir: Path, capsys) -> float:
    card = (export_dir / "MODEL_CARD.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(export_dir)
        exec(compile(snippet, "MODEL_CARD.md snippet", "exec"), {})
    return float(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_cards_onnxruntime_snippet_prints_the_cards_test_accuracy(exported, capsys):
    exp = exported / "exp"
    manifest = json.loads((exp / "export.json").read_text())
    assert manifest["onnx_input"] == "normalised float32" and manifest["test_folder"] == str(exported / "photos/test")
    assert abs(_run_card_snippet(exp, capsys) - manifest["test_acc"]) <= 1 / 36


def test_baked_preprocessing_takes_uint8_pixels_and_scores_the_same(exported, capsys):
    import onnxruntime as ort

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(exported)
        assert main(["export", "--study", "own", "--format", "onnx", "--bake-preprocessing", "--out", "raw",
                     "--latency-runs", "1", "--onnx-exporter", "legacy"]) == 0
    assert "input uint8 pixels), onnxruntime vs PyTorch" in capsys.readouterr().out
    raw = exported / "raw"
    session = ort.InferenceSession(str(raw / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    manifest = json.loads((raw / "export.json").read_text())
    assert manifest["onnx_input"] == "uint8 pixels" and manifest["checks"]["onnx"]["max_rel_diff"] <= 1e-4
    assert "does steps 3-5 in its graph" in (raw / "MODEL_CARD.md").read_text()
    assert abs(_run_card_snippet(raw, capsys) - manifest["test_acc"]) <= 1 / 36
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(exported)
        assert main(["export", "--study", "own", "--format", "json", "--bake-preprocessing", "--out", "x"]) == 2
    assert "--bake-preprocessing changes model.onnx, but --format json does not write it" in capsys.readouterr().err


def test_the_cards_commands_run_from_the_export_directory(exported, monkeypatch, capsys):
    exp = exported / "exp"
    card = (exp / "MODEL_CARD.md").read_text()
    folder = f"imagefolder:{exported / 'photos'}"
    assert f"Data `{folder}`: 162 training images, 18 validation images (the recipe asked for val_size 2000" in card
    assert "| 2 | vertical |" in card and "| 3. multiply the 0-255 pixel values by | 0.003921568627 (1/255) |" in card
    model = json.loads((exp / "arch.json").read_text())["name"]
    assert model == f"own_trial{json.loads((exp / 'export.json').read_text())['trial']}"
    monkeypatch.chdir(exp)
    capsys.readouterr()
    evaluate = _card_command(card, "eval")
    assert evaluate == ["eval", "model.pt", "--data", folder]
    assert main(evaluate) == 0
    assert capsys.readouterr().out.startswith(f"{model} on {folder} test (36 images, 32px): accuracy ")
    retrain = _card_command(card, "train")
    assert retrain[:6] == ["train", "arch.json", "--resolution", "32", "--data", folder]
    assert "--channels" in retrain and retrain[retrain.index("--channels") + 1] == "3"
    retrain[retrain.index("--epochs") + 1] = "1"
    assert main([*retrain, "--out", "retrained", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"{model} on {folder} (32px, 162 training images, 1 epochs)")


def test_eval_converts_new_images_to_the_checkpoints_channels(exported, tmp_path, capsys):
    _write_folder(tmp_path / "grey", 10, seed=2, colour=False)  # all greyscale: 1 channel on its own
    capsys.readouterr()
    assert main(["eval", str(exported / "exp" / "model.pt"), "--data", f"imagefolder:{tmp_path / 'grey'}"]) == 0
    assert " (3 images, 32px): accuracy " in capsys.readouterr().out  # a tenth of 30, carved as the test split


def test_unreadable_images_stop_a_search_before_the_study_opens(tmp_path, monkeypatch, capsys):
    _write_folder(tmp_path / "photos", 6, seed=3)
    (tmp_path / "photos" / "horizontal" / "empty.png").write_bytes(b"")
    (tmp_path / "photos" / "vertical" / "notes.png").write_text("not an image")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "recipe.yaml", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 2 unreadable image(s) of 20: horizontal/empty.png (" in err
    assert "vertical/notes.png (cannot identify image file)" in err
    assert not Path("studies").exists()  # no study, no artifacts, no FAIL trial
