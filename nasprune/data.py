"""Datasets, selected by name, as splits the trainer iterates.

Images that fit in memory (Fashion-MNIST, CIFAR, synthetic) are decoded once, resized once to the training
resolution and kept as ``uint8`` tensors; a batch is cropped, flipped and normalised as a whole on its device
(:meth:`TensorSplit.batches`). An ``imagefolder:PATH`` dataset is decoded and resized per image by DataLoader
workers and then gets the same whole-batch augmentation (:class:`FolderSplit`).

Splits: the validation set is carved from the training set by a fixed-seed permutation (searches select on
it); ``subset`` takes the first N images of the rest of that permutation; the test set is for final numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import pickle
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nasprune.errors import DataError

__all__ = [
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "Data",
    "DataConfig",
    "FolderSplit",
    "Normalization",
    "Preprocess",
    "TensorSplit",
    "augment_batch",
    "dataset_names",
    "load_data",
]

DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGEFOLDER = "imagefolder:"
DEFAULT_VAL_SIZE = 5000  # DataConfig.val_size's default
INSTALL_HINT = ("install it with 'apt-get install dataset-fashion-mnist' or point to a directory holding the "
                "IDX .gz files with --data-dir or $NASPRUNE_DATA")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives and how it is split.

    Attributes:
        name: ``fashion-mnist``, ``cifar10``, ``cifar100``, ``synthetic`` or ``imagefolder:PATH``.
        data_dir: directory holding the files (default: ``$NASPRUNE_DATA``, then the dataset's system path).
        resolution: side of the square images the network sees; every image is resized to it once.
        subset: train on the first ``subset`` images of a fixed shuffle of the non-validation training set.
        val_size: training images held out for validation, at most a tenth of the training set (a value other
            than the default 5000 that is cut to a tenth gets a note on stderr).
        seed: seed of the permutation that carves the validation split and the subset.
        channels: input channels of an ``imagefolder:`` dataset, 1 (greyscale) or 3 (RGB); ``None``: 3 if any of
            its images is in a colour mode, else 1. Every image is converted to it.

    An ``imagefolder:PATH`` name is stored with ``PATH`` made absolute, so a checkpoint's metadata names the
    folder wherever it is read.
    """

    name: str = "fashion-mnist"
    data_dir: str | None = None
    resolution: int = 32
    subset: int | None = None
    val_size: int = DEFAULT_VAL_SIZE
    seed: int = 0
    channels: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.name, str) and self.name.startswith(IMAGEFOLDER):
            folder = self.name[len(IMAGEFOLDER):]
            if folder:
                object.__setattr__(self, "name", IMAGEFOLDER + str(Path(folder).expanduser().absolute()))
        if self.channels not in (None, 1, 3):
            raise DataError(f"channels={self.channels!r} is invalid: expected 1 (greyscale), 3 (RGB) or null "
                            "(decided from the images)")
        if not isinstance(self.resolution, int) or self.resolution < 8:
            raise DataError(f"resolution={self.resolution!r} is invalid: expected an integer >= 8")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 1):
            raise DataError(f"subset={self.subset!r} is invalid: expected an integer >= 1 or None")
        if not isinstance(self.val_size, int) or self.val_size < 1:
            raise DataError(f"val_size={self.val_size!r} is invalid: expected an integer >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std of pixel values in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` (N, C, H, W) -> normalised ``float32`` on the same device."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=images.device).view(shape)
        std = torch.tensor(self.std, device=images.device).view(shape)
        return (images.float().div_(255.0) - mean) / std


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """How a raw image becomes the network's input, as training did it: the record that travels with a model.

    A deployer reproduces it step by step: convert the image to ``colour_mode`` (PIL's ``convert``: ``L`` is
    greyscale by the ITU-R 601-2 luma transform, ``RGB`` drops alpha), resize it to ``input_size`` (height,
    width) with ``interpolation`` (antialiased when shrinking, as PIL's ``resize`` does; ``resized_by`` names
    the library training used), multiply the ``uint8`` pixels by ``scale``, subtract ``mean`` and divide by
    ``std`` per channel, and lay the result out as ``layout`` with channels in ``channel_order``.
    """

    input_size: tuple[int, int]
    colour_mode: str                 # "L" or "RGB"
    interpolation: str = "bilinear"
    resized_by: str = "PIL"          # "PIL" (image folders, per file) or "torch" (in-memory datasets, per batch)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    channel_order: str = "L"         # "L" or "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocess:
        """The record from its :meth:`to_dict` form (lists back to tuples).

        Raises:
            DataError: keys that are not the record's, or a missing one.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or not set(raw) <= names or "input_size" not in raw:
            raise DataError(f"malformed preprocess record {raw!r}: expected a mapping with keys among "
                            f"{', '.join(sorted(names))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def augment_batch(images: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Random crop with zero ``padding`` and random horizontal flip, per sample, for a whole ``uint8`` batch.

    The random numbers come from ``generator`` (CPU), so a seed gives the same batches on every device.
    """
    n, _, h, w = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
        rows = offsets[0, :, None] + torch.arange(h, device=images.device)        # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=images.device)        # (N, W)
        batch = torch.arange(n, device=images.device)[:, None, None]
        images = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (N, H, W, C) -> NCHW
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def _crop_padding(resolution: int) -> int:
    return max(1, resolution // 8)  # 4 pixels at 32x32, the CIFAR convention


@dataclass
class TensorSplit:
    """An in-memory split: ``images`` ``uint8`` (N, C, H, W) at the training resolution and ``labels`` (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    normalization: Normalization

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> TensorSplit:
        if self.images.device == device:
            return self
        return TensorSplit(self.images.to(device), self.labels.to(device), self.normalization)

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield normalised ``(images, labels)`` batches on ``device``; the last batch may be smaller."""
        split = self.to(torch.device(device))
        n = len(split)
        order = torch.randperm(n, generator=generator).to(split.images.device) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                images, labels = split.images[start:start + batch_size], split.labels[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                images, labels = split.images[idx], split.labels[idx]
            if augment:
                images = augment_batch(images, generator, _crop_padding(images.shape[-1]))
            yield self.normalization.apply(images), labels


class _ImageFiles(torch.utils.data.Dataset):
    """Decode and resize one image file per item (runs in DataLoader workers)."""

    def __init__(self, files: list[Path], labels: list[int], channels: int, resolution: int) -> None:
        self.files, self.labels, self.channels, self.resolution = files, labels, channels, resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        try:
            with Image.open(self.files[i]) as img:
                img = img.convert("L" if self.channels == 1 else "RGB")
                img = img.resize((self.resolution, self.resolution), Image.Resampling.BILINEAR)
                array = np.asarray(img, dtype=np.uint8).reshape(self.resolution, self.resolution, self.channels)
        except OSError as exc:
            raise DataError(f"cannot read image {str(self.files[i])!r}: {exc}") from None
        return torch.from_numpy(array.copy()).permute(2, 0, 1), self.labels[i]


@dataclass
class FolderSplit:
    """A split streamed from image files by a DataLoader with ``workers`` processes."""

    dataset: _ImageFiles
    normalization: Normalization
    workers: int = 2

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Same contract as :meth:`TensorSplit.batches`."""
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=shuffle, generator=generator if shuffle else None,
            num_workers=self.workers, persistent_workers=False, pin_memory=torch.device(device).type == "cuda")
        for images, labels in _one_line_worker_errors(loader):
            images = images.to(device, non_blocking=True)
            if augment:
                images = augment_batch(images, generator, _crop_padding(images.shape[-1]))
            yield self.normalization.apply(images), labels.to(device, non_blocking=True)


def _one_line_worker_errors(loader: torch.utils.data.DataLoader) -> Iterator:
    """A DataError raised in a worker comes back with the worker's traceback in its message: keep one line."""
    try:
        yield from loader
    except DataError as exc:
        last = str(exc).strip().splitlines()[-1]
        raise DataError(last.split("DataError: ", 1)[-1]) from None


Split = TensorSplit | FolderSplit


@dataclass
class Data:
    """A loaded dataset: ``train`` (after validation carve and subset), ``val`` and ``test`` splits."""

    name: str
    num_classes: int
    in_channels: int
    resolution: int
    train: Split
    val: Split
    test: Split
    config: DataConfig | None = None
    classes: tuple[str, ...] = ()         # class index -> name
    preprocess: Preprocess | None = None  # how a raw image becomes the network's input

    def checkpoint_metadata(self) -> dict:
        """What a checkpoint trained on this data carries (``data_config``, ``preprocess``, ``classes``), so that
        ``nasprune eval`` rebuilds its splits and ``nasprune export`` can say how to feed the model."""
        meta: dict = {"classes": list(self.classes) or [str(i) for i in range(self.num_classes)]}
        if self.config is not None:
            meta["data_config"] = self.config.to_dict()
        if self.preprocess is not None:
            meta["preprocess"] = self.preprocess.to_dict()
        meta["data_counts"] = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
        return meta


# -- raw loaders: (train_images uint8 NCHW, train_labels, test_images, test_labels) ------------------------
Raw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _candidate_dirs(data_dir: str | None, default: Path | None) -> list[Path]:
    dirs = []
    if data_dir:
        given = Path(data_dir).expanduser()
        if not given.is_dir():  # an explicit directory that is not there is a mistake, not a reason to fall back
            raise DataError(f"--data-dir {str(given)!r} is not a directory: expected a directory holding the "
                            "dataset's files")
        dirs.append(given)
    if os.environ.get("NASPRUNE_DATA"):
        dirs.append(Path(os.environ["NASPRUNE_DATA"]).expanduser())
    if default is not None:
        dirs.append(default)
    return dirs


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
        zero, dtype, dims = struct.unpack(">HBB", raw[:4])
        shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
        if zero != 0 or dtype != 0x08 or dims != expected_dims:
            raise ValueError("not an unsigned-byte IDX file of the expected rank")
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy()
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise DataError(f"malformed Fashion-MNIST file {str(path)!r} ({exc}); {INSTALL_HINT}") from None


def _load_fashion_mnist(data_dir: str | None) -> Raw:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    tried = _candidate_dirs(data_dir, DEFAULT_FASHION_MNIST_DIR)
    for d in tried:
        for sub in (d, d / "fashion-mnist", d / "FashionMNIST" / "raw"):
            files = [next((p for p in (sub / f"{n}.gz", sub / n) if p.is_file()), None) for n in names]
            if all(files):
                ranks = (3, 1, 3, 1)
                train_x, train_y, test_x, test_y = (_read_idx(f, r) for f, r in zip(files, ranks, strict=True))
                if len(train_x) != len(train_y) or len(test_x) != len(test_y):
                    raise DataError(f"malformed Fashion-MNIST in {str(sub)!r}: image and label counts differ")
                return train_x[:, None], train_y, test_x[:, None], test_y
    paths = ", ".join(str(d) for d in tried)
    raise DataError(f"Fashion-MNIST not found (looked for train-images-idx3-ubyte.gz etc. in {paths}); {INSTALL_HINT}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"malformed CIFAR batch {str(path)!r}: {exc}") from None


def _cifar_arrays(batches: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in batches:
        batch = _unpickle(path)
        if b"data" not in batch or label_key not in batch:
            raise DataError(f"malformed CIFAR batch {str(path)!r}: expected keys 'data' and {label_key.decode()!r}")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _cifar_loader(folder: str, train_files: tuple[str, ...], test_file: str, label_key: bytes,
                  url: str) -> Callable[[str | None], Raw]:
    def load(data_dir: str | None) -> Raw:
        tried = _candidate_dirs(data_dir, None)
        for d in tried:
            for sub in (d / folder, d):
                if all((sub / f).is_file() for f in (*train_files, test_file)):
                    train_x, train_y = _cifar_arrays([sub / f for f in train_files], label_key)
                    test_x, test_y = _cifar_arrays([sub / test_file], label_key)
                    return train_x, train_y, test_x, test_y
        paths = ", ".join(str(d / folder) for d in tried) or "(no directory given)"
        raise DataError(f"{folder}/ not found (tried {paths}); download and unpack {url} and pass its parent "
                        "directory with --data-dir or $NASPRUNE_DATA")
    return load


def _load_synthetic(data_dir: str | None) -> Raw:
    """Deterministic, learnable toy data (unit tests only): 32x32 noise plus a class pattern.

    Classes: 0 horizontal stripes, 1 vertical stripes, 2 checkerboard, 3 none (period 4 pixels); the
    patterns survive cropping, flipping and global pooling, so a tiny network learns them in a few steps.
    """
    rng = np.random.default_rng(1234)
    rows, cols = np.indices((32, 32)) // 2 % 2
    patterns = np.stack([rows, cols, rows ^ cols, np.zeros_like(rows)]).astype(np.uint8) * 128

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 4, n)
        images = rng.integers(0, 96, (n, 1, 32, 32)).astype(np.uint8) + patterns[labels][:, None]
        return images, labels

    return (*make(1200), *make(400))


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[str | None], Raw]
    num_classes: int
    normalization: Normalization
    classes: tuple[str, ...] = ()  # index -> name (empty: the indices)


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# Registry of in-memory datasets; ``imagefolder:PATH`` is handled by :func:`_load_imagefolder`.
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(_load_fashion_mnist, 10, Normalization((0.2860,), (0.3530,)),
                                 FASHION_MNIST_CLASSES),
    "cifar10": DatasetInfo(
        _cifar_loader("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                      b"labels", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        10, Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), CIFAR10_CLASSES),
    "cifar100": DatasetInfo(
        _cifar_loader("cifar-100-python", ("train",), "test", b"fine_labels",
                      "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
        100, Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
    "synthetic": DatasetInfo(_load_synthetic, 4, Normalization((0.5,), (0.25,)),
                             ("horizontal stripes", "vertical stripes", "checkerboard", "none")),
}


def dataset_names() -> list[str]:
    return [*DATASETS, "imagefolder:PATH"]


def _resize(images: np.ndarray, resolution: int) -> torch.Tensor:
    """``uint8`` NCHW array -> ``uint8`` tensor at ``resolution`` (bilinear, antialiased when shrinking)."""
    tensor = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    if tensor.shape[-1] == resolution and tensor.shape[-2] == resolution:
        return tensor.clone()
    out = torch.empty((len(tensor), tensor.shape[1], resolution, resolution), dtype=torch.uint8)
    for start in range(0, len(tensor), 4096):  # bounded float memory
        chunk = tensor[start:start + 4096].float()
        chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear", align_corners=False,
                              antialias=resolution < tensor.shape[-1])
        out[start:start + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


@functools.lru_cache(maxsize=2)
def _load_resized(name: str, data_dir: str | None, env_dir: str | None,
                  resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded and resized arrays, cached per process (a search loads the same data for every trial)."""
    train_x, train_y, test_x, test_y = DATASETS[name].load(data_dir)
    return (_resize(train_x, resolution), torch.as_tensor(train_y, dtype=torch.long),
            _resize(test_x, resolution), torch.as_tensor(test_y, dtype=torch.long))


_NOTES_SAID: set[str] = set()


def _note(text: str) -> None:
    """One line on stderr, once per process (a search loads its data in every worker and again to re-rank)."""
    if text not in _NOTES_SAID:
        _NOTES_SAID.add(text)
        print(f"nasprune: note: {text}", file=sys.stderr, flush=True)


def _carve(n: int, config: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-seed permutation of ``range(n)`` -> (train indices, validation indices)."""
    val_size = min(config.val_size, n // 10)
    if val_size < 1:
        raise DataError(f"dataset {config.name!r} has {n} training images: too few to hold out a validation split")
    if val_size < config.val_size != DEFAULT_VAL_SIZE:  # the default is cut on small data without a word
        _note(f"val_size {config.val_size} of {config.name} is cut to {val_size} images, a tenth of its {n} "
              "training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    train_idx = order[val_size:]
    if config.subset is not None:
        train_idx = train_idx[:config.subset]
    return train_idx, order[:val_size]


def _preprocess(resolution: int, channels: int, norm: Normalization, resized_by: str) -> Preprocess:
    mode = "L" if channels == 1 else "RGB"
    return Preprocess(input_size=(resolution, resolution), colour_mode=mode, resized_by=resized_by,
                      mean=norm.mean, std=norm.std, channel_order=mode)


def _load_tensors(config: DataConfig) -> Data:
    info = DATASETS[config.name]
    channels = len(info.normalization.mean)
    if config.channels not in (None, channels):
        raise DataError(f"channels={config.channels} is invalid for {config.name!r}: its images have {channels} "
                        "channel(s); the channels option converts image folders only")
    train_x, train_y, test_x, test_y = _load_resized(config.name, config.data_dir, os.environ.get("NASPRUNE_DATA"),
                                                     config.resolution)
    train_idx, val_idx = _carve(len(train_y), config)
    norm = info.normalization

    def split(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None) -> TensorSplit:
        return TensorSplit(x if idx is None else x[idx], y if idx is None else y[idx], norm)

    return Data(name=config.name, num_classes=info.num_classes, in_channels=train_x.shape[1],
                resolution=config.resolution, train=split(train_x, train_y, train_idx),
                val=split(train_x, train_y, val_idx), test=split(test_x, test_y), config=config,
                classes=info.classes, preprocess=_preprocess(config.resolution, channels, norm, "torch"))


# an image folder's normalisation by channels: a fixed grey one, ImageNet's for RGB
FOLDER_NORMALIZATION = {1: Normalization((0.5,), (0.25,)),
                        3: Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _scan_classes(root: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        files += found
        labels += [label] * len(found)
    return files, labels, classes


# PIL modes without colour; any other mode (RGB, RGBA, P, CMYK, YCbCr, ...) counts as colour
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SHOWN_BAD = 3  # unreadable files named in the error (all are counted)


def _check_image(path: str) -> tuple[bool, str | None]:
    """``(is colour, None)`` for an image PIL decodes completely, else ``(False, why not)``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            colour = img.mode not in GREY_MODES
            img.load()  # decodes every pixel: a truncated or corrupt file fails here, not in a trial
        return colour, None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for broken files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, text.replace(repr(path), "").replace(path, "").strip(" :") or type(exc).__name__


@functools.lru_cache(maxsize=4)
def _scan_images(files: tuple[str, ...], stamps: tuple[tuple[int, int], ...]
                 ) -> tuple[bool, tuple[tuple[str, str], ...]]:
    """Decode every file once (cached per process while no file changes): ``(any colour image, problems)``,
    a problem being ``(path, why)``."""
    del stamps  # part of the cache key only
    colour, problems = False, []
    for path in files:
        is_colour, why = _check_image(path)
        colour |= is_colour
        if why is not None:
            problems.append((path, why))
    return colour, tuple(problems)


def _image_channels(root: Path, files: list[Path], channels: int | None) -> int:
    """Check that every image decodes (one error naming the count and the first few), then decide the channels:
    ``channels`` when given, else 3 if any image is in a colour mode, else 1 (whatever the split)."""
    try:
        stamps = tuple((st.st_mtime_ns, st.st_size) for st in (f.stat() for f in sorted(files)))
    except OSError as exc:
        raise DataError(f"cannot read image {exc.filename!r}: {exc.strerror}") from None
    colour, problems = _scan_images(tuple(str(f) for f in sorted(files)), stamps)
    if problems:
        shown = "; ".join(f"{os.path.relpath(path, root)} ({why})" for path, why in problems[:SHOWN_BAD])
        more = f"; and {len(problems) - SHOWN_BAD} more" if len(problems) > SHOWN_BAD else ""
        raise DataError(f"imagefolder {str(root)!r} has {len(problems)} unreadable image(s) of {len(files)}: "
                        f"{shown}{more}; remove or replace them")
    return channels or (3 if colour else 1)


def _load_imagefolder(config: DataConfig, path: str) -> Data:
    """``PATH/<class>/*.png`` (test carved from it), or ``PATH/train/<class>/`` plus ``PATH/test/<class>/``."""
    root = Path(path).expanduser()
    layout = "PATH/<class>/<image> or PATH/train/<class>/<image> (+ PATH/test/<class>/<image>)"
    if not root.is_dir():
        raise DataError(f"imagefolder {str(root)!r} is not a directory: expected {layout}")
    train_root = root / "train" if (root / "train").is_dir() else root
    files, labels, classes = _scan_classes(train_root)
    if len(classes) < 2 or not files:
        raise DataError(f"imagefolder {str(train_root)!r} has {len(classes)} class folders and {len(files)} images: "
                        f"expected at least 2 class folders with images ({layout})")
    test_root = next((root / d for d in ("test", "val") if train_root != root and (root / d).is_dir()), None)
    if test_root is not None:
        test_files, test_labels, _ = _scan_classes(test_root, classes)
    else:  # carve a test split of a tenth with a fixed seed, distinct from the validation seed
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(10_000 + config.seed)).tolist()
        n_test = max(1, len(files) // 10)
        test_files, test_labels = [files[i] for i in order[:n_test]], [labels[i] for i in order[:n_test]]
        files, labels = [files[i] for i in order[n_test:]], [labels[i] for i in order[n_test:]]
    channels = _image_channels(root, files + test_files, config.channels)
    norm = FOLDER_NORMALIZATION[channels]
    train_idx, val_idx = _carve(len(files), config)

    def split(f: list[Path], y: list[int], idx: torch.Tensor | None = None) -> FolderSplit:
        if idx is not None:
            f, y = [f[i] for i in idx.tolist()], [y[i] for i in idx.tolist()]
        return FolderSplit(_ImageFiles(f, y, channels, config.resolution), norm)

    return Data(name=config.name, num_classes=len(classes), in_channels=channels, resolution=config.resolution,
                train=split(files, labels, train_idx), val=split(files, labels, val_idx),
                test=split(test_files, test_labels), config=config, classes=tuple(classes),
                preprocess=_preprocess(config.resolution, channels, norm, "PIL"))


def load_data(config: DataConfig) -> Data:
    """Load the dataset ``config.name`` and split it.

    Raises:
        DataError: unknown name, or the files are missing or malformed (the message names the paths tried).
    """
    if config.name.startswith(IMAGEFOLDER):
        return _load_imagefolder(config, config.name[len(IMAGEFOLDER):])
    if config.name not in DATASETS:
        raise DataError(f"unknown dataset {config.name!r}: expected one of {', '.join(dataset_names())}")
    return _load_tensors(config)
