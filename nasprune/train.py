"""The training loop every part of nasprune uses: fit, evaluate, BN recalibration, sparse training.

In-memory data is iterated as whole tensors with batch-level augmentation (see :mod:`nasprune.data`), so an
epoch is a loop of ``forward / backward / step`` with no per-sample Python. Sparse training (Network Slimming,
and the structured-pruning note in ``docs/``) adds ``lambda * sign(gamma)`` to the gradient of every BN scale
``gamma`` after backward, i.e. the L1 penalty ``lambda * sum |gamma|``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from nasprune.data import Data, TensorSplit
from nasprune.errors import NaspruneError

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "add_sparsity_grad",
    "bn_gamma_l1",
    "evaluate",
    "lone_batch",
    "optimizer_and_schedule",
    "fit",
    "recalibrate_bn",
    "resolve_device",
]

EVAL_BATCH_SIZE = 512


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run is abandoned (a search records the trial as failed)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``to_dict()`` is JSON-able and part of cache keys.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step.
        optimizer: a key of :data:`OPTIMIZERS` (``sgd``: Nesterov momentum; ``adam``; ``adamw``).
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 decay of conv and linear weights (BN parameters and biases are not decayed).
        schedule: a key of :data:`SCHEDULES` (``cosine`` to 0 per step; ``step``: x0.1 at 50 % and 75 %).
        label_smoothing: cross-entropy label smoothing.
        sparsity_lambda: L1 penalty on BN scale factors (0 = off).
        augment: random crop (padding = resolution / 8) and horizontal flip.
        device: ``auto``, ``cpu`` or ``cuda`` (see :func:`resolve_device`).
        amp: mixed precision (float16 autocast and a gradient scaler); used on CUDA only.
        seed: seeds batch order, augmentation and dropout; on the CPU a seed gives identical weights.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    sparsity_lambda: float = 0.0
    augment: bool = True
    device: str = "auto"
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("epochs", self.epochs, isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size, isinstance(self.batch_size, int) and self.batch_size >= 1,
             "an integer >= 1"),
            ("optimizer", self.optimizer, self.optimizer in OPTIMIZERS, f"one of {sorted(OPTIMIZERS)}"),
            ("schedule", self.schedule, self.schedule in SCHEDULES, f"one of {sorted(SCHEDULES)}"),
            ("lr", self.lr, _finite(self.lr) and self.lr > 0, "a number > 0"),
            ("momentum", self.momentum, _finite(self.momentum) and 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("weight_decay", self.weight_decay, _finite(self.weight_decay) and self.weight_decay >= 0,
             "a number >= 0"),
            ("label_smoothing", self.label_smoothing, _finite(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             "a number in [0, 1)"),
            ("sparsity_lambda", self.sparsity_lambda, _finite(self.sparsity_lambda) and self.sparsity_lambda >= 0,
             "a number >= 0"),
            ("device", self.device, self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
        )
        for name, value, ok, accepted in checks:
            if not ok:
                raise NaspruneError(f"{name}={value!r} is invalid: expected {accepted}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class TrainResult:
    """What :func:`fit` reports.

    Attributes:
        val_acc: validation accuracy after the last epoch (a fraction).
        epochs: epochs run.
        train_seconds: wall time of the whole fit (training and per-epoch validation).
        images_per_s: training images per second of the training steps alone.
        history: one dict per epoch: ``epoch, train_loss, train_acc, val_acc, lr, seconds, images_per_s``.
    """

    val_acc: float
    epochs: int
    train_seconds: float
    images_per_s: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- registries -------------------------------------------------------------------------------------------
def _sgd(groups, c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0)


OPTIMIZERS: dict[str, Callable[[list, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": lambda groups, c: torch.optim.Adam(groups, lr=c.lr),
    "adamw": lambda groups, c: torch.optim.AdamW(groups, lr=c.lr),
}


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _step(step: int, total: int) -> float:
    return 0.1 ** sum(step >= total * f for f in (0.5, 0.75))


# Learning-rate factor as a function of (step, total steps).
SCHEDULES: dict[str, Callable[[int, int], float]] = {"cosine": _cosine, "step": _step}

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a :class:`NaspruneError`."""
    if name not in DEVICES:
        raise NaspruneError(f"device={name!r} is invalid: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NaspruneError("device='cuda' is not available (this torch build or machine has no CUDA GPU): "
                            "use --device cpu or auto")
    return torch.device(name)


# -- pieces -----------------------------------------------------------------------------------------------
def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay conv and linear weights; never BN parameters or biases (all 1-d tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


def add_sparsity_grad(model: nn.Module, lam: float) -> None:
    """Add the subgradient of ``lam * sum |gamma|`` to every BN scale's gradient (call after backward)."""
    for bn in _bn_layers(model):
        if bn.weight.grad is not None:
            bn.weight.grad.add_(torch.sign(bn.weight.detach()), alpha=lam)


def bn_gamma_l1(model: nn.Module) -> float:
    """``sum |gamma|`` over all BN scale factors (what sparse training shrinks)."""
    return float(sum(bn.weight.detach().abs().sum() for bn in _bn_layers(model)))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _on_device(data: Data, device: torch.device) -> Data:
    """Move in-memory splits to ``device`` once per fit (no-op on the CPU)."""
    moved = {k: getattr(data, k).to(device) if isinstance(getattr(data, k), TensorSplit) else getattr(data, k)
             for k in ("train", "val", "test")}
    return dataclasses.replace(data, **moved)


# -- training ---------------------------------------------------------------------------------------------
@dataclass
class _Loop:
    """Everything one fit carries between epochs."""

    model: nn.Module
    data: Data
    config: TrainConfig
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    generator: torch.Generator
    progress: bool

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"


def _check_finite(loss: torch.Tensor, epoch: int, step: int, loop: _Loop) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        lr = loop.optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(f"training diverged: loss {value} at epoch {epoch}, step {step} (lr {lr:.3g}); "
                               "lower the learning rate or the sparsity lambda")


def _progress_bar(loop: _Loop, epoch: int):
    if not loop.progress:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=len(loop.data.train), unit="img", unit_scale=True, file=sys.stderr, leave=True,
                desc=f"epoch {epoch}/{loop.config.epochs}", dynamic_ncols=True)


def lone_batch(batch: torch.Tensor, seen: int) -> bool:
    """A last batch of one image after others: BatchNorm cannot take batch statistics of one value per channel (at
    1x1 feature maps it raises), so training and recalibration skip it (a split of one image still fails)."""
    return len(batch) == 1 and seen > 0


def _train_epoch(loop: _Loop, epoch: int) -> dict:
    """One pass over the training split; returns the epoch's loss, accuracy and timing."""
    model, config, device = loop.model, loop.config, loop.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, bar = 0, _progress_bar(loop, epoch)
    check_every = 1 if device.type == "cpu" else 25  # a finiteness check syncs a GPU; the sum keeps any NaN
    start = time.perf_counter()
    batches = loop.data.train.batches(config.batch_size, shuffle=True, augment=config.augment,
                                      generator=loop.generator, device=device)
    for step, (images, labels) in enumerate(batches):
        if lone_batch(labels, seen):
            continue
        with _autocast(device, loop.amp):
            logits = model(images)
            loss = loop.loss_fn(logits, labels)
        if step % check_every == 0:
            _check_finite(loss if check_every == 1 else loss_sum + loss.detach(), epoch, step, loop)
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        if config.sparsity_lambda:
            loop.scaler.unscale_(loop.optimizer)
            add_sparsity_grad(model, config.sparsity_lambda)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        loop.scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(labels)
        if bar is not None:
            bar.update(len(labels))
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}")
    seconds = time.perf_counter() - start
    _check_finite(loss_sum, epoch, step, loop)
    stats = {"train_loss": float(loss_sum) / seen, "train_acc": int(correct) / seen, "seconds": seconds,
             "images": seen, "images_per_s": seen / seconds, "lr": loop.optimizer.param_groups[0]["lr"]}
    if bar is not None:
        bar.set_postfix(loss=f"{stats['train_loss']:.3f}", acc=f"{stats['train_acc']:.3f}")
        bar.close()
    return stats


def optimizer_and_schedule(model: nn.Module, config: TrainConfig, images: int):
    """The optimiser of ``config`` over ``model`` (no decay on BN and biases) and its per-step learning-rate
    schedule over ``config.epochs`` passes of ``images`` training images."""
    optimizer = OPTIMIZERS[config.optimizer](_param_groups(model, config.weight_decay), config)
    total = math.ceil(images / config.batch_size) * config.epochs
    factor = SCHEDULES[config.schedule]
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, total))


def _make_loop(model: nn.Module, data: Data, config: TrainConfig, progress: bool) -> _Loop:
    device = resolve_device(config.device)
    model.to(device)
    data = _on_device(data, device)
    optimizer, scheduler = optimizer_and_schedule(model, config, len(data.train))
    return _Loop(model=model, data=data, config=config, device=device, optimizer=optimizer, scheduler=scheduler,
                 scaler=torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda"),
                 loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                 generator=torch.Generator().manual_seed(config.seed), progress=progress)


@contextlib.contextmanager
def _restore_layout(model: nn.Module):
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


def fit(model: nn.Module, data: Data, config: TrainConfig, *,
        epoch_callback: Callable[[int, float], None] | None = None, progress: bool = False) -> TrainResult:
    """Train ``model`` in place on ``data.train``, validating on ``data.val`` after every epoch.

    Args:
        model: the network (moved to the configured device).
        data: from :func:`nasprune.data.load_data`.
        config: the recipe.
        epoch_callback: ``epoch_callback(epoch, val_acc)`` after each epoch, ``epoch`` counting from 1. An
            exception it raises (e.g. ``optuna.TrialPruned``) propagates out of ``fit`` unchanged.
        progress: show a tqdm bar per epoch on stderr (loss, accuracy, images/s).

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
    """
    if len(data.train) == 0 or len(data.val) == 0:
        raise NaspruneError(f"dataset {data.name!r} has an empty training or validation split")
    loop = _make_loop(model, data, config, progress)
    history: list[dict] = []
    start = time.perf_counter()
    rng_devices = [torch.cuda.current_device()] if loop.device.type == "cuda" else []
    # channels-last weights make the CPU (oneDNN) convolutions of these nets 2-2.5x faster (measured);
    # the model is handed back in the default layout.
    model.to(memory_format=torch.channels_last)
    with torch.random.fork_rng(devices=rng_devices), _restore_layout(model):
        torch.manual_seed(config.seed)  # dropout
        for epoch in range(1, config.epochs + 1):
            stats = _train_epoch(loop, epoch)
            val_acc = evaluate(model, loop.data, "val", loop.device)
            history.append({"epoch": epoch, **stats, "val_acc": val_acc})
            if loop.progress:
                import sys

                print(f"epoch {epoch}/{config.epochs}: loss {stats['train_loss']:.4f}, train acc "
                      f"{stats['train_acc']:.2%}, val acc {val_acc:.2%}, {stats['images_per_s']:.0f} img/s",
                      file=sys.stderr)
            if epoch_callback is not None:
                epoch_callback(epoch, val_acc)
    images = sum(h["images"] for h in history)
    step_seconds = sum(h["seconds"] for h in history)
    return TrainResult(val_acc=history[-1]["val_acc"], epochs=config.epochs,
                       train_seconds=time.perf_counter() - start, images_per_s=images / step_seconds,
                       history=history)


# -- evaluation and BN statistics -------------------------------------------------------------------------
SPLITS = ("train", "val", "test")


def _split(data: Data, split: str):
    if split not in SPLITS:
        raise NaspruneError(f"split={split!r} is invalid: expected one of {', '.join(SPLITS)}")
    return getattr(data, split)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str = "val", device: torch.device | str | None = None,
             batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on ``data.<split>``, in eval mode; the mode is restored."""
    part = _split(data, split)
    if len(part) == 0:
        raise NaspruneError(f"split {split!r} of dataset {data.name!r} is empty")
    device = _model_device(model) if device is None else torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    try:
        for images, labels in part.batches(batch_size, device=device):
            with _autocast(device, True):
                correct += (model(images).argmax(1) == labels).sum()
    finally:
        model.train(was_training)
    return int(correct) / len(part)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Data, batches: int = 100, batch_size: int = 128,
                   device: torch.device | str | None = None, seed: int = 0) -> None:
    """Re-estimate every BN layer's running mean and variance from training batches (needed after pruning).

    Running statistics are reset and then averaged exactly (cumulative, not exponential) over ``batches``
    shuffled, non-augmented training batches, forwarded in train mode without gradients.
    """
    device = _model_device(model) if device is None else torch.device(device)
    model.to(device)
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    try:
        generator = torch.Generator().manual_seed(seed)
        stream: Iterable = data.train.batches(batch_size, shuffle=True, generator=generator, device=device)
        for i, (images, _) in enumerate(stream):
            if i >= batches:
                break
            if lone_batch(images, i):
                continue
            with _autocast(device, True):
                model(images)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
