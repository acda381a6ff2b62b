"""``nasprune train`` and ``nasprune eval``: a real end-to-end run, spec files, and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest
import torch

import nasprune
from nasprune.cli import main
from nasprune.data import DEFAULT_FASHION_MNIST_DIR
from nasprune.zoo import fd_mobilenet

pytestmark = pytest.mark.usefixtures("torch_single_thread")

needs_fashion = pytest.mark.skipif(not (DEFAULT_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Debian's dataset-fashion-mnist is not installed")


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.mark.slow
@needs_fashion
def test_train_fd_mobilenet_on_fashion_mnist_then_eval(run_cli, tmp_path):
    trained = run_cli("train", "fd_mobilenet", "--width", "0.25", "--data", "fashion-mnist", "--epochs", "1",
                      "--subset", "2000", "--resolution", "32", "--batch-size", "32", "--no-augment", "--out", "run",
                      "--json")
    out = json.loads(_ok(trained))
    assert "epoch 1/1" in trained.stderr and "img/s" in trained.stderr      # the progress bar
    assert out["epochs"] == 1 and out["train_images"] == 2000 and out["model"] == "fd_mobilenet_0.25"
    assert out["test_acc"] > 0.25 and out["val_acc"] > 0.25      # chance is 0.10
    assert out["train_seconds"] > 0 and out["images_per_s"] > 0
    checkpoint = tmp_path / "run" / "model.pt"
    assert out["checkpoint"] == "run/model.pt" and checkpoint.is_file()
    model = nasprune.load(checkpoint)
    assert model.spec == fd_mobilenet(width=0.25, resolution=32, num_classes=10, in_channels=1)
    assert model.metadata["test_acc"] == out["test_acc"]
    assert model.metadata["train_config"]["batch_size"] == 32
    assert json.loads((tmp_path / "run" / "result.json").read_text())["val_acc"] == out["val_acc"]
    evaluated = json.loads(_ok(run_cli("eval", "run/model.pt", "--data", "fashion-mnist", "--json")))
    assert evaluated["accuracy"] == out["test_acc"] and evaluated["images"] == 10000
    val = json.loads(_ok(run_cli("eval", "run/model.pt", "--data", "fashion-mnist", "--split", "val", "--json")))
    assert val["accuracy"] == out["val_acc"] and val["images"] == 5000


def test_spec_file_is_adapted_to_the_data(tmp_path, capsys):
    spec_path = tmp_path / "arch.json"
    spec_path.write_text(fd_mobilenet(width=0.25).to_json())        # 224px, 3 channels, 1000 classes
    out = tmp_path / "run"
    assert main(["train", str(spec_path), "--data", "synthetic", "--epochs", "1", "--out", str(out),
                 "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["val_acc"] <= 1.0 and result["checkpoint"] == str(out / "model.pt")
    model = nasprune.load(out / "model.pt")
    assert (model.spec.in_channels, model.spec.num_classes, model.spec.resolution) == (1, 4, 32)
    assert model.spec.blocks == fd_mobilenet(width=0.25).blocks
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)


def test_progress_and_text_summary(tmp_path, capsys):
    assert main(["train", "fd_mobilenet", "--width", "0.25", "--data", "synthetic", "--subset", "64",
                 "--epochs", "2", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err and "img/s" in captured.err
    assert captured.out.startswith("fd_mobilenet_0.25 on synthetic (32px, 64 training images, 2 epochs): val ")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasprune: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unknown_dataset(capsys):
    err = _error(capsys, ["train", "fd_mobilenet", "--data", "mnist"])
    assert "unknown dataset 'mnist'" in err and "fashion-mnist" in err


def test_missing_dataset_names_the_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NASPRUNE_DATA", raising=False)
    err = _error(capsys, ["train", "fd_mobilenet", "--data", "cifar10", "--data-dir", str(tmp_path)])
    assert str(tmp_path / "cifar-10-batches-py") in err


def test_unknown_model(capsys):
    assert "fd_mobilenett" in _error(capsys, ["train", "fd_mobilenett", "--data", "synthetic"])


def test_cuda_without_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "device='cuda' is not available" in _error(capsys, ["train", "fd_mobilenet", "--data", "synthetic",
                                                               "--device", "cuda"])


def test_width_with_a_spec_file(tmp_path, capsys):
    spec_path = tmp_path / "arch.json"
    spec_path.write_text(fd_mobilenet(width=0.25).to_json())
    assert "--width" in _error(capsys, ["train", str(spec_path), "--width", "0.5", "--data", "synthetic"])


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--sparsity-lambda", "-1"), ("--lr", "nan"),
                                        ("--optimizer", "lbfgs")])
def test_bad_flag_values(capsys, flag, value):
    with pytest.raises(SystemExit) as info:
        main(["train", "fd_mobilenet", "--data", "synthetic", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err


def test_eval_missing_checkpoint(tmp_path, capsys):
    assert "not found" in _error(capsys, ["eval", str(tmp_path / "none.pt"), "--data", "synthetic"])


@needs_fashion
def test_eval_on_mismatched_data(tmp_path, capsys):
    assert main(["train", "fd_mobilenet", "--width", "0.25", "--data", "synthetic", "--subset", "64",
                 "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    err = _error(capsys, ["eval", str(tmp_path / "model.pt"), "--data", "fashion-mnist"])
    assert "expects 1-channel input and 4 classes, but 'fashion-mnist' has 1 and 10" in err
