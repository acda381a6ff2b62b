"""The pruning pipeline and ``nasprune prune``: end to end on synthetic data and on Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nasprune
from nasprune.checkpoint import load
from nasprune.cli import main
from nasprune.data import DEFAULT_FASHION_MNIST_DIR, DataConfig, load_data
from nasprune.errors import NaspruneError
from nasprune.prune import PruneConfig, layer_channels, run_pipeline
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec
from nasprune.train import TrainConfig, evaluate

TINY = ArchSpec(name="tiny_prune", in_channels=1, resolution=32, num_classes=10, stem=StemSpec(out_channels=8),
                blocks=(DWSBlockSpec(in_channels=8, out_channels=16, stride=2),
                        DWSBlockSpec(in_channels=16, out_channels=32, stride=2, se_channels=8),
                        DWSBlockSpec(in_channels=32, out_channels=32, stride=2, act="hswish")),
                head=HeadSpec(hidden_features=24))
NO_EXPANSION = ArchSpec(name="no_expansion", in_channels=1, resolution=32, num_classes=10,
                        stem=StemSpec(out_channels=8),
                        blocks=(IRBlockSpec(in_channels=8, exp_channels=8, out_channels=8, expand=False),))
QUICK = dict(batch_size=64, optimizer="adam", lr=1e-2, device="cpu")


pytestmark = pytest.mark.usefixtures("torch_single_thread")  # far faster than 2 threads on a busy 2-core VM


def test_pipeline_on_synthetic_data():
    data = load_data(DataConfig(name="synthetic", resolution=16, val_size=200))
    spec = TINY.replace(resolution=16, num_classes=data.num_classes)
    torch.manual_seed(0)
    model = nasprune.build(spec)
    result = run_pipeline(model, data, PruneConfig(ratio=0.5, floor=4),
                          sparse=TrainConfig(epochs=2, sparsity_lambda=1e-4, **QUICK),
                          finetune=TrainConfig(epochs=1, **QUICK))
    s = result.to_dict()
    assert s["val_acc_before"] == pytest.approx(evaluate(model, data))  # the sparse-trained parent
    assert s["val_acc_after"] == pytest.approx(evaluate(result.model, data))
    assert s["val_acc_after"] > 0.4  # 4 classes: fine-tuning ends well above chance (0.25)
    deployed = nasprune.count(result.child_spec, resolution=224)
    assert (s["params_after"], s["macs_after"]) == (deployed.params, deployed.macs)
    assert s["macs_before"] == nasprune.count(spec, resolution=224).macs
    assert s["macs_after_train_res"] == nasprune.count(result.child_spec).macs
    assert s["params_after"] < s["params_before"] and s["macs_after"] < s["macs_before"]
    assert [r["name"] for r in s["layers"]] == list(layer_channels(spec))
    assert sum(r["after"] for r in s["layers"]) == sum(r["before"] for r in s["layers"]) // 2  # 88 -> 44
    json.dumps(s)


def test_pipeline_per_layer_and_no_training():
    data = load_data(DataConfig(name="synthetic", resolution=16, val_size=200))
    torch.manual_seed(0)
    model = nasprune.build(TINY.replace(resolution=16, num_classes=data.num_classes))
    config = PruneConfig(per_layer={"blocks.1.conv_pw": 0.75}, criterion="l1", floor=1)
    result = run_pipeline(model, data, config)
    assert [(r["before"], r["after"]) for r in result.to_dict()["layers"]] == [(8, 8), (16, 16), (32, 8), (32, 32)]
    assert result.val_acc_after == result.val_acc_pruned


def test_accuracy_right_after_the_cut_is_measured_with_recalibrated_bn():
    from nasprune.prune import prune_by_config
    from nasprune.train import evaluate, recalibrate_bn

    data = load_data(DataConfig(name="synthetic", resolution=16, val_size=200))
    torch.manual_seed(0)
    model = nasprune.build(TINY.replace(resolution=16, num_classes=data.num_classes))
    config = PruneConfig(ratio=0.5, criterion="l1", floor=1)
    result = run_pipeline(model, data, config, recalibrate_batches=3)
    cut, _ = prune_by_config(model, config)
    raw = evaluate(cut, data, "val")
    recalibrate_bn(cut, data, batches=3, seed=config.seed)
    for key, value in cut.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key]), key  # the returned child is the recalibrated cut
    assert (result.val_acc_pruned, result.val_acc_pruned_raw) == (evaluate(cut, data, "val"), raw)
    assert result.to_dict()["recalibrate_batches"] == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(ratio=1.0), r"ratio=1.0 is invalid: expected a number in \[0, 1\)"),
    (dict(criterion="taylor"), "unknown criterion 'taylor'"),
    (dict(per_layer={"blocks.0.conv_pw": 1.2}), r"ratio of blocks.0.conv_pw=1.2 is invalid"),
    (dict(floor=0), "floor=0 is invalid"),
])
def test_prune_config_validation(kwargs, message):
    with pytest.raises(NaspruneError, match=message):
        PruneConfig(**kwargs)


# -- the command line ---------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("nasprune: error: ")
    return err


@pytest.mark.parametrize("ratio", ["1.0", "-0.1", "1.5"])
def test_cli_bad_ratio(capsys, ratio):
    err = _error(capsys, ["prune", "mobilenet_v3_small", "--data", "synthetic", "--ratio", ratio])
    assert f"--ratio={float(ratio)} is invalid: expected a number in [0, 1)" in err


def test_cli_per_layer_unknown_layer_lists_valid_ones(capsys, tmp_path):
    per_layer = _write(tmp_path / "ratios.json", json.dumps({"blocks.0.conv_pw": 0.5}))
    err = _error(capsys, ["prune", "mobilenet_v3_small", "--data", "synthetic", "--per-layer", per_layer])
    assert ("unknown layer 'blocks.0.conv_pw' for mobilenet_v3_small_1: expected one of stem, blocks.0.conv_pwl, "
            "blocks.1.conv_pw, blocks.1.conv_pwl, blocks.2.conv_pw, ") in err
    assert err.endswith("blocks.10.conv_pw")


@pytest.mark.parametrize("content, message", [
    ("[0.5]", "expected a non-empty JSON object"),
    ("{", "is not valid JSON"),
    ('{"blocks.1.conv_pw": "half"}', "ratio of blocks.1.conv_pw='half' is invalid"),
])
def test_cli_bad_per_layer_file(capsys, tmp_path, content, message):
    per_layer = _write(tmp_path / "ratios.json", content)
    assert message in _error(capsys, ["prune", "mobilenet_v3_small", "--data", "synthetic", "--per-layer", per_layer])


def test_cli_no_expansion_conv_leaves_only_the_stem_path(capsys, tmp_path):
    spec = _write(tmp_path / "spec.json", NO_EXPANSION.to_json())
    per_layer = _write(tmp_path / "ratios.json", json.dumps({"blocks.0.conv_pw": 0.5}))
    err = _error(capsys, ["prune", spec, "--data", "synthetic", "--per-layer", per_layer])
    assert err.endswith("unknown layer 'blocks.0.conv_pw' for no_expansion: expected one of stem")


def test_cli_ratio_and_per_layer_are_exclusive(capsys, tmp_path):
    per_layer = _write(tmp_path / "ratios.json", json.dumps({"blocks.1.conv_pw": 0.5}))
    with pytest.raises(SystemExit) as exc:
        main(["prune", "mobilenet_v3_small", "--data", "synthetic", "--ratio", "0.5", "--per-layer", per_layer])
    assert exc.value.code == 2


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cli_end_to_end_on_fashion_mnist(capsys, tmp_path):
    """Sparse-train, prune 50 %, fine-tune, save; then prune the saved checkpoint again."""
    spec = _write(tmp_path / "tiny.json", TINY.to_json())
    out = tmp_path / "out"
    common = ["--data", "fashion-mnist", "--resolution", "32", "--subset", "2048", "--batch-size", "64",
              "--lr", "1e-2", "--floor", "4", "--json"]
    assert main(["prune", spec, "--ratio", "0.5", "--sparse-epochs", "2", "--finetune-epochs", "1",
                 "--sparsity-lambda", "1e-4", "--out", str(out), *common]) == 0
    first = json.loads(capsys.readouterr().out)
    for key in ("params_before", "params_after", "macs_before", "macs_after", "val_acc_before", "val_acc_pruned",
                "val_acc_after", "layers"):
        assert key in first
    assert first["deploy_resolution"] == 224 and first["train_resolution"] == 32
    assert first["val_acc_after"] > 0.3  # 10 classes, 3 short epochs: clearly above chance
    assert sum(r["after"] for r in first["layers"]) == 44  # 88 channels (stem included), global 50 %

    child = load(out / "pruned.pt")
    saved_spec = ArchSpec.from_json((out / "spec.json").read_text())
    assert child.spec == saved_spec
    deployed = nasprune.count(saved_spec, resolution=224)
    assert (first["params_after"], first["macs_after"]) == (deployed.params, deployed.macs)
    assert child.metadata["pruning"]["val_acc_after"] == first["val_acc_after"]

    # The checkpoint is a model like any other: prune it again, no sparse training by default.
    assert main(["prune", str(out / "pruned.pt"), "--ratio", "0.25", "--finetune-epochs", "0", *common]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["sparse_train"] is None and second["finetune"] is None
    assert second["val_acc_before"] == pytest.approx(first["val_acc_after"])
    assert second["params_before"] == first["params_after"]
    assert [r["before"] for r in second["layers"]] == [r["after"] for r in first["layers"]]
