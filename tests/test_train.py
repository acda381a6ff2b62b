"""The trainer on synthetic data: learning, determinism, sparse training, divergence, callbacks, BN stats."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from nasprune import ArchSpec, DWSBlockSpec, StemSpec, build
from nasprune.data import DataConfig, load_data
from nasprune.errors import NaspruneError
from nasprune.train import (
    TrainConfig,
    TrainingDiverged,
    add_sparsity_grad,
    bn_gamma_l1,
    evaluate,
    fit,
    recalibrate_bn,
    resolve_device,
)

TINY = ArchSpec(name="tiny", in_channels=1, resolution=32, num_classes=4, stem=StemSpec(out_channels=8),
                blocks=(DWSBlockSpec(in_channels=8, out_channels=16, stride=2),
                        DWSBlockSpec(in_channels=16, out_channels=32, stride=2)))
FAST = TrainConfig(epochs=1, batch_size=64, device="cpu")


pytestmark = pytest.mark.usefixtures("torch_single_thread")  # a shared, loaded machine: extra threads spin


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig("synthetic"))


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build(TINY)


def test_fit_learns_and_reports(data):
    model = _model()
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, device="cpu"))
    assert result.epochs == 2 and len(result.history) == 2
    assert result.val_acc == result.history[-1]["val_acc"] > 0.9          # chance is 0.25
    assert evaluate(model, data, "test") > 0.9
    assert result.images_per_s > 0 and result.train_seconds >= sum(h["seconds"] for h in result.history)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert sum(h["images"] for h in result.history) == 2 * len(data.train)
    json.dumps(result.to_dict())


def test_same_seed_gives_identical_weights(data):
    runs = []
    for _ in range(2):
        model = _model()
        fit(model, data, FAST)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = _model()
    fit(other, data, TrainConfig(epochs=1, batch_size=64, device="cpu", seed=1))
    assert not torch.equal(other.state_dict()["stem.conv.weight"], runs[0]["stem.conv.weight"])


def test_sparse_training_shrinks_bn_scales(data):
    dense, sparse = _model(), _model()
    fit(dense, data, FAST)
    fit(sparse, data, TrainConfig(epochs=1, batch_size=64, device="cpu", sparsity_lambda=1e-2))
    assert bn_gamma_l1(sparse) < bn_gamma_l1(dense) - 1.0


def test_sparsity_grad_is_lambda_sign_gamma():
    model = _model()
    bn = model.stem.bn
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, 8))   # includes no zero: sign is +-1
    bn.weight.grad = torch.zeros(8)
    add_sparsity_grad(model, 0.5)
    assert torch.equal(bn.weight.grad, 0.5 * torch.sign(torch.linspace(-1, 1, 8)))


def test_nan_loss_raises_training_diverged(data):
    model = _model()
    model.head.register_forward_hook(lambda module, args, out: out * float("nan"))
    with pytest.raises(TrainingDiverged, match="loss nan at epoch 1, step 0"):
        fit(model, data, FAST)


def test_huge_learning_rate_diverges(data):
    with pytest.raises(TrainingDiverged):
        fit(_model(), data, TrainConfig(epochs=3, batch_size=64, device="cpu", lr=1e12, schedule="step"))


def test_callback_sees_each_epoch_and_its_exception_propagates(data):
    class Stop(Exception):
        pass

    calls = []

    def callback(epoch, val_acc):
        calls.append((epoch, val_acc))
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(_model(), data, TrainConfig(epochs=5, batch_size=64, device="cpu"), epoch_callback=callback)
    assert [e for e, _ in calls] == [1, 2]
    assert all(0.0 <= acc <= 1.0 for _, acc in calls)


class _Constant(nn.Module):
    """Always predicts class ``k``."""

    def __init__(self, k: int, classes: int = 4) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.nn.functional.one_hot(torch.tensor(k), classes).float())

    def forward(self, x):
        return self.logits.expand(len(x), -1)


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluate_matches_class_frequency(data, split):
    labels = getattr(data, split).labels
    for k in range(4):
        model = _Constant(k).train()
        assert evaluate(model, data, split) == pytest.approx(float((labels == k).float().mean()))
        assert model.training   # mode restored


def test_evaluate_rejects_unknown_split(data):
    with pytest.raises(NaspruneError, match="split='holdout' is invalid"):
        evaluate(_Constant(0), data, "holdout")


def test_recalibrate_bn_is_the_exact_training_set_mean(data):
    model = _model().eval()
    bn = model.stem.bn
    bn.running_mean.fill_(100.0)
    recalibrate_bn(model, data, batches=1000, batch_size=120)   # 1080 = 9 equal batches: all of train
    with torch.no_grad():
        images = data.train.normalization.apply(data.train.images)
        expected = model.stem.conv(images).mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-4)
    assert bn.momentum == TINY.bn_momentum and not model.training


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(NaspruneError, match="device='tpu' is invalid"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(NaspruneError, match="device='cuda' is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("field,value", [("epochs", 0), ("optimizer", "lbfgs"), ("schedule", "linear"),
                                         ("lr", -1.0), ("lr", math.nan), ("sparsity_lambda", -1e-5),
                                         ("label_smoothing", 1.0), ("device", "gpu")])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(NaspruneError, match=f"{field}="):
        TrainConfig(**{field: value})


def test_train_config_to_dict_is_json():
    config = TrainConfig(epochs=3, optimizer="adam", lr=1e-3, sparsity_lambda=1e-5)
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("optimizer,schedule", [("adam", "step"), ("adamw", "cosine")])
def test_other_optimizers_and_schedules_learn(data, optimizer, schedule):
    model = _model()
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, device="cpu", optimizer=optimizer, lr=3e-3,
                                          schedule=schedule, label_smoothing=0.1, augment=False))
    assert result.val_acc > 0.9


def test_a_last_batch_of_one_image_is_skipped_not_a_crash():
    """BatchNorm cannot take statistics of one value per channel: a network ending on 1x1 maps, a training split
    of 65 images in batches of 64, is trained (64 images an epoch) and recalibrated without error."""
    data = load_data(DataConfig(name="synthetic", resolution=8, subset=65, val_size=20))
    assert len(data.train) == 65
    model = _model()
    result = fit(model, data, TrainConfig(epochs=1, batch_size=64, device="cpu"))
    assert result.history[0]["images"] == 64
    recalibrate_bn(model, data, batches=5, batch_size=64)
