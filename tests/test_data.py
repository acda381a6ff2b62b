"""Datasets: real Fashion-MNIST, CIFAR pickles and image folders built in tmp, splits, subsets, augmentation."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from nasprune import data as data_mod
from nasprune.data import DataConfig, Normalization, Preprocess, TensorSplit, augment_batch, load_data
from nasprune.errors import DataError

pytestmark = pytest.mark.usefixtures("torch_single_thread")

FASHION_DIR = data_mod.DEFAULT_FASHION_MNIST_DIR
needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("NASPRUNE_DATA", raising=False)


# -- splits -------------------------------------------------------------------------------------------------
def test_synthetic_shapes_and_split_sizes():
    data = load_data(DataConfig("synthetic"))
    assert (data.num_classes, data.in_channels, data.resolution) == (4, 1, 32)
    # 1200 training images: the validation split is capped at a tenth.
    assert (len(data.train), len(data.val), len(data.test)) == (1080, 120, 400)
    assert data.train.images.dtype == torch.uint8
    assert data.train.images.shape == (1080, 1, 32, 32)


def test_carve_is_a_disjoint_fixed_permutation():
    config = DataConfig("synthetic", val_size=50, subset=300, seed=3)
    train_idx, val_idx = data_mod._carve(1000, config)
    assert len(val_idx) == 50 and len(train_idx) == 300
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    again_train, again_val = data_mod._carve(1000, config)
    assert torch.equal(train_idx, again_train) and torch.equal(val_idx, again_val)
    full_train, full_val = data_mod._carve(1000, DataConfig("synthetic", val_size=50, seed=3))
    assert torch.equal(full_val, val_idx)                      # the subset never moves the validation split
    assert torch.equal(full_train[:300], train_idx)           # subset = first N of the fixed shuffle
    assert sorted(full_train.tolist() + full_val.tolist()) == list(range(1000))
    other_train, _ = data_mod._carve(1000, DataConfig("synthetic", val_size=50, seed=4))
    assert not torch.equal(other_train, full_train)


def test_subset_is_a_prefix_and_deterministic():
    small = load_data(DataConfig("synthetic", subset=100))
    large = load_data(DataConfig("synthetic", subset=200))
    assert len(small.train) == 100
    assert torch.equal(small.train.images, large.train.images[:100])
    assert torch.equal(small.val.images, large.val.images)


@needs_fashion
def test_fashion_mnist_real_files():
    data = load_data(DataConfig("fashion-mnist", resolution=28))
    assert (data.num_classes, data.in_channels) == (10, 1)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10    # the published test set is balanced
    total = torch.bincount(torch.cat([data.train.labels, data.val.labels]))
    assert total.tolist() == [6000] * 10
    # At the native resolution nothing is resampled: the pixels are the file's bytes.
    with gzip.open(FASHION_DIR / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    assert torch.equal(data.test.images[:5, 0], torch.from_numpy(raw[:5].copy()))


@needs_fashion
def test_fashion_mnist_resized_once_to_resolution():
    data = load_data(DataConfig("fashion-mnist", resolution=32, subset=64))
    assert data.train.images.shape == (64, 1, 32, 32)
    assert data.test.images.shape == (10000, 1, 32, 32)
    images, labels = next(data.train.batches(16))
    assert images.dtype == torch.float32 and images.shape == (16, 1, 32, 32) and labels.shape == (16,)


def test_missing_fashion_mnist_names_paths_and_fix(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    monkeypatch.setenv("NASPRUNE_DATA", str(env_dir))
    monkeypatch.setattr(data_mod, "DEFAULT_FASHION_MNIST_DIR", tmp_path / "system")
    (tmp_path / "given").mkdir()
    with pytest.raises(DataError) as info:
        load_data(DataConfig("fashion-mnist", data_dir=str(tmp_path / "given")))
    message = str(info.value)
    assert "\n" not in message
    for path in (tmp_path / "given", env_dir, tmp_path / "system"):
        assert str(path) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_data_dir_that_does_not_exist_is_an_error_not_a_fallback(tmp_path):
    # The system copy exists on this machine; an explicit wrong --data-dir must still not fall back to it.
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"--data-dir '.*nowhere' is not a directory"):
        load_data(DataConfig("fashion-mnist", data_dir=str(missing)))


def test_malformed_fashion_mnist(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{name}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="malformed Fashion-MNIST"):
        load_data(DataConfig("fashion-mnist", data_dir=str(tmp_path)))


def test_idx_reader_roundtrip(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBB3I", 0, 8, 3, 3, 28, 28) + images.tobytes())
    assert np.array_equal(data_mod._read_idx(path, 3), images)


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match="unknown dataset 'mnist': expected one of fashion-mnist, cifar10"):
        load_data(DataConfig("mnist"))


@pytest.mark.parametrize("field,value", [("resolution", 4), ("subset", 0), ("val_size", 0)])
def test_bad_config_values(field, value):
    with pytest.raises(DataError, match=f"{field}={value}"):
        DataConfig(**{field: value})


# -- CIFAR pickles --------------------------------------------------------------------------------------------
def _cifar_batch(path, n, label_key, first_label):
    labels = [(first_label + i) % 10 for i in range(n)]
    rows = np.zeros((n, 3072), dtype=np.uint8)
    rows[:, :1024] = np.array(labels, dtype=np.uint8)[:, None]       # red plane = label
    rows[:, 1024:2048] = 200                                          # green plane
    with open(path, "wb") as fh:
        pickle.dump({b"data": rows, label_key: labels}, fh)


def test_cifar10_pickle_layout(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _cifar_batch(root / f"data_batch_{i}", 20, b"labels", i)
    _cifar_batch(root / "test_batch", 10, b"labels", 0)
    data = load_data(DataConfig("cifar10", data_dir=str(tmp_path), resolution=32, val_size=10))
    assert (data.num_classes, data.in_channels) == (10, 3)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 10)
    assert data.test.labels.tolist() == list(range(10))
    # Channel-major rows: the red plane holds the label, green is 200, blue 0.
    assert torch.equal(data.test.images[:, 0, 5, 7], data.test.labels.to(torch.uint8))
    assert int(data.test.images[:, 1].min()) == 200 and int(data.test.images[:, 2].max()) == 0


def test_cifar100_fine_labels_and_resize(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _cifar_batch(root / "train", 40, b"fine_labels", 3)
    _cifar_batch(root / "test", 10, b"fine_labels", 0)
    data = load_data(DataConfig("cifar100", data_dir=str(root), resolution=16, val_size=4))
    assert data.num_classes == 100 and data.train.images.shape == (36, 3, 16, 16)
    assert int(data.test.images[:, 1].min()) == 200   # a flat plane stays flat through the antialiased resize


def test_missing_cifar_names_path(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataConfig("cifar10", data_dir=str(tmp_path)))
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)
    assert "cifar-10-python.tar.gz" in str(info.value)


def test_malformed_cifar(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match="malformed CIFAR batch"):
        load_data(DataConfig("cifar10", data_dir=str(tmp_path)))


# -- image folders --------------------------------------------------------------------------------------------
def _write_pngs(root, classes, per_class, mode="L", size=12):
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            value = 40 * c + i
            Image.new(mode, (size, size), value if mode == "L" else (value, 0, 0)).save(root / name / f"{i}.png")


def test_imagefolder_streams_resized_batches(tmp_path):
    _write_pngs(tmp_path, ["cat", "dog"], 15)
    data = load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=16))
    assert (data.num_classes, data.in_channels) == (2, 1)
    assert (len(data.train), len(data.val), len(data.test)) == (25, 2, 3)  # a tenth carved for test, then val
    seen = 0
    for images, labels in data.train.batches(8, shuffle=True, augment=True, generator=torch.Generator()):
        assert images.shape[1:] == (1, 16, 16) and images.dtype == torch.float32
        seen += len(labels)
    assert seen == 25
    images, labels = next(data.test.batches(3))
    raw = (images * 0.25 + 0.5) * 255                   # undo the normalisation: flat images stay flat
    assert torch.allclose(raw.amax(dim=(1, 2, 3)), raw.amin(dim=(1, 2, 3)), atol=1e-3)


def test_imagefolder_train_test_layout_rgb(tmp_path):
    _write_pngs(tmp_path / "train", ["a", "b", "c"], 10, mode="RGB")
    _write_pngs(tmp_path / "test", ["a", "b", "c"], 2, mode="RGB")
    data = load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8))
    assert (data.num_classes, data.in_channels) == (3, 3)
    assert (len(data.train) + len(data.val), len(data.test)) == (30, 6)


def test_imagefolder_unreadable_images_are_counted_in_one_line_at_load(tmp_path):
    _write_pngs(tmp_path, ["a", "b"], 10)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    whole = (tmp_path / "b" / "0.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])  # truncated: only decoding finds it
    with pytest.raises(DataError) as info:
        load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8))  # before any batch is read
    message = str(info.value)
    assert "has 2 unreadable image(s) of 22: " in message and "\n" not in message
    assert "a/broken.png (cannot identify image file)" in message and "b/cut.png (" in message


def _mixed_folder(root, rgb_index):
    """Two classes of six 10x10 PNGs, all greyscale but the one at ``rgb_index`` of class ``a``."""
    from PIL import Image

    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            mode = "RGB" if (name, i) == ("a", rgb_index) else "L"
            value = (90 * c + i, 0, 0) if mode == "RGB" else 90 * c + i
            Image.new(mode, (10, 10), value).save(root / name / f"{i}.png")


@pytest.mark.parametrize("rgb_index", [0, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_imagefolder_channels_come_from_every_image_whatever_the_split(tmp_path, rgb_index, seed):
    _mixed_folder(tmp_path, rgb_index)  # one colour image among twelve, wherever the shuffle puts it
    data = load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8, seed=seed))
    assert data.in_channels == 3 and data.preprocess.colour_mode == "RGB"
    assert next(data.train.batches(4))[0].shape[1] == 3
    grey = load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8, seed=seed, channels=1))
    assert grey.in_channels == 1 and next(grey.test.batches(4))[0].shape[1] == 1
    assert grey.preprocess.mean == (0.5,) and data.preprocess.mean == (0.485, 0.456, 0.406)


def test_all_grey_folder_is_one_channel_and_channels_are_checked(tmp_path):
    _write_pngs(tmp_path, ["a", "b"], 10)
    assert load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8)).in_channels == 1
    assert load_data(DataConfig(f"imagefolder:{tmp_path}", resolution=8, channels=3)).in_channels == 3
    with pytest.raises(DataError, match=r"channels=2 is invalid: expected 1 \(greyscale\), 3 \(RGB\) or null"):
        DataConfig(f"imagefolder:{tmp_path}", channels=2)
    with pytest.raises(DataError, match="channels=3 is invalid for 'synthetic': its images have 1 channel"):
        load_data(DataConfig("synthetic", channels=3))


def test_imagefolder_path_is_stored_absolute_and_records_preprocessing(tmp_path, monkeypatch):
    _write_pngs(tmp_path / "folder", ["cat", "dog"], 15)
    monkeypatch.chdir(tmp_path)
    data = load_data(DataConfig("imagefolder:folder", resolution=16))
    assert data.config.name == f"imagefolder:{tmp_path / 'folder'}" and data.name == data.config.name
    meta = data.checkpoint_metadata()
    assert meta["classes"] == ["cat", "dog"] and meta["data_config"]["name"] == data.config.name
    assert meta["data_counts"] == {"train": 25, "val": 2, "test": 3}
    assert meta["preprocess"] == {"input_size": [16, 16], "colour_mode": "L", "interpolation": "bilinear",
                                  "resized_by": "PIL", "scale": 1 / 255, "mean": [0.5], "std": [0.25],
                                  "channel_order": "L", "layout": "NCHW", "dtype": "float32"}
    assert Preprocess.from_dict(meta["preprocess"]) == data.preprocess


def test_val_size_cut_to_a_tenth_is_said_once(capsys):
    from nasprune.data import _NOTES_SAID

    _NOTES_SAID.clear()
    for _ in range(2):
        data = load_data(DataConfig("synthetic", resolution=8, val_size=500))
    assert len(data.val) == 120
    err = capsys.readouterr().err
    assert err == ("nasprune: note: val_size 500 of synthetic is cut to 120 images, a tenth of its 1200 training "
                   "images\n")
    assert load_data(DataConfig("synthetic", resolution=8)).classes[2] == "checkerboard"


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_data(DataConfig(f"imagefolder:{tmp_path / 'nope'}"))
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="expected at least 2 class folders"):
        load_data(DataConfig(f"imagefolder:{tmp_path}"))


# -- batches and augmentation ---------------------------------------------------------------------------------
def test_augment_batch_is_a_shifted_window_or_its_mirror():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 2, 8, 8), dtype=torch.uint8)
    out = augment_batch(images, torch.Generator().manual_seed(1), padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    kinds = set()
    for b in range(16):
        windows = {(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                   if torch.equal(out[b], (lambda w: w.flip(2) if flip else w)(padded[b, :, dy:dy + 8, dx:dx + 8]))}
        assert windows, f"sample {b} is not a crop of its padded input"
        kinds |= {w[2] for w in windows}
    assert kinds == {False, True}   # both flipped and unflipped samples occur


def test_batches_cover_the_split_once_and_normalise():
    norm = Normalization((0.5,), (0.5,))
    split = TensorSplit(torch.full((10, 1, 4, 4), 255, dtype=torch.uint8), torch.arange(10), norm)
    batches = list(split.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
    assert torch.equal(batches[0][0], torch.ones(4, 1, 4, 4))   # (1 - 0.5) / 0.5
