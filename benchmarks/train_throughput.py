"""Training throughput: nasprune's trainer against a plain tutorial-style PyTorch loop, in one run.

Both train the same network (FD-MobileNet 0.5x, 1 input channel, 10 classes) on Fashion-MNIST at 32x32 with
batch 128, SGD and the same augmentation (random crop with 4 pixels of padding, horizontal flip):

* **nasprune**: :func:`nasprune.train.fit` -- images decoded and resized once, kept as a ``uint8`` tensor;
  whole batches cropped, flipped and normalised at once.
* **tutorial**: the loop a tutorial writes -- a ``Dataset`` whose ``__getitem__`` turns one image into a PIL
  image, resizes, pads, crops, flips and normalises it, a ``DataLoader`` with 2 workers, and
  ``zero_grad / forward / loss / backward / step`` with ``loss.item()`` per step.

A third measurement runs the tutorial loop with the model's weights in channels-last layout (which ``fit``
uses), to split nasprune's gain into data pipeline and memory layout.

Each side trains on the same ``--images`` images; the sides alternate ``--repeats`` times and the median
images/s of each is reported (the machine may be shared). Run::

    nice -n 10 .venv/bin/python benchmarks/train_throughput.py                 # ~2 min
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
from torch import nn

from nasprune import build, get_spec
from nasprune.data import DataConfig, load_data
from nasprune.train import TrainConfig, fit

MEAN, STD = 0.2860, 0.3530


class TutorialFashionMNIST(torch.utils.data.Dataset):
    """Per-sample transforms as torchvision's ``Resize, RandomCrop(padding=4), RandomHorizontalFlip,
    ToTensor, Normalize`` do them (torchvision itself does not import here, so they are spelled out)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, resolution: int = 32, padding: int = 4) -> None:
        self.images, self.labels, self.resolution, self.padding = images, labels, resolution, padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import random

        from PIL import Image, ImageOps

        img = Image.fromarray(self.images[i], mode="L").resize((self.resolution, self.resolution),
                                                              Image.Resampling.BILINEAR)
        img = ImageOps.expand(img, border=self.padding, fill=0)
        x, y = random.randint(0, 2 * self.padding), random.randint(0, 2 * self.padding)
        img = img.crop((x, y, x + self.resolution, y + self.resolution))
        if random.random() < 0.5:
            img = ImageOps.mirror(img)
        tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
        return (tensor - MEAN) / STD, int(self.labels[i])


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tutorial_images_per_s(model: nn.Module, dataset: TutorialFashionMNIST, batch_size: int,
                          workers: int) -> tuple[float, float]:
    """(images/s, CPU seconds per 1000 images) of one epoch of the tutorial loop."""
    cpu = _cpu_seconds()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-5)
    criterion = nn.CrossEntropyLoss()
    model.train()
    running_loss, seen = 0.0, 0
    start = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        seen += len(labels)
    seconds = time.perf_counter() - start
    del loader   # workers have exited at the end of the epoch; their CPU time is now counted
    return seen / seconds, 1000 * (_cpu_seconds() - cpu) / seen


def nasprune_images_per_s(model: nn.Module, data, batch_size: int) -> tuple[float, float]:
    """(images/s of the training steps, batch preparation included; CPU seconds per 1000 images of the whole
    fit, which also validates on the benchmark's small validation split)."""
    cpu = _cpu_seconds()
    result = fit(model, data, TrainConfig(epochs=1, batch_size=batch_size, device="cpu"))
    return result.images_per_s, 1000 * (_cpu_seconds() - cpu) / len(data.train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=10240, help="training images per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the tutorial loop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    small_val = {"subset": args.images, "val_size": 256}   # validation is not what is measured
    data = load_data(DataConfig("fashion-mnist", resolution=32, **small_val))
    raw = load_data(DataConfig("fashion-mnist", resolution=28, **small_val))   # the same images, 28x28 bytes
    dataset = TutorialFashionMNIST(raw.train.images[:, 0].numpy(), raw.train.labels.numpy())
    spec = get_spec("fd_mobilenet", width=args.width, resolution=32, num_classes=10, in_channels=1)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build(spec)

    warm = load_data(DataConfig("fashion-mnist", resolution=32, subset=4 * args.batch_size, val_size=256))
    nasprune_images_per_s(fresh(), warm, args.batch_size)          # first-call costs (oneDNN, allocator)
    runs: dict[str, list[tuple[float, float]]] = {"nasprune": [], "tutorial": [], "tutorial_channels_last": []}
    for _ in range(args.repeats):
        runs["nasprune"].append(nasprune_images_per_s(fresh(), data, args.batch_size))
        runs["tutorial"].append(tutorial_images_per_s(fresh(), dataset, args.batch_size, args.workers))
        # The tutorial's data pipeline with nasprune's weight layout: splits the gain into its two sources.
        runs["tutorial_channels_last"].append(tutorial_images_per_s(
            fresh().to(memory_format=torch.channels_last), dataset, args.batch_size, args.workers))
    result = {name: statistics.median(v[0] for v in values) for name, values in runs.items()}
    cpu = {name: statistics.median(v[1] for v in values) for name, values in runs.items()}
    result.update(ratio=result["nasprune"] / result["tutorial"], cpu_s_per_1000_images=cpu, runs=runs,
                  threads=args.threads, workers=args.workers, width=args.width, batch_size=args.batch_size,
                  images=args.images)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"fd_mobilenet {args.width}x, Fashion-MNIST 32x32, batch {args.batch_size}, {args.images} images, "
          f"{args.threads} torch thread(s), median of {args.repeats}; CPU s / 1000 images incl. workers")
    labels = {"nasprune": "nasprune trainer", "tutorial": f"tutorial loop ({args.workers} workers)",
              "tutorial_channels_last": "tutorial + channels-last weights"}
    for name, label in labels.items():
        print(f"  {label:<34}: {result[name]:6.0f} images/s {[round(v[0]) for v in runs[name]]}, "
              f"{cpu[name]:.2f} CPU s")
    print(f"  ratio nasprune / tutorial: {result['ratio']:.2f}x")


if __name__ == "__main__":
    main()
