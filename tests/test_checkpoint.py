"""Checkpoints: round trip, the on-disk format, atomic replacement and one-line errors."""

from __future__ import annotations

import pytest
import torch

import nasprune
from nasprune import build, get_spec
from nasprune.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from nasprune.errors import NaspruneError

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SPEC = get_spec("mobilenet_v3_small", width=0.25, resolution=32, num_classes=10, in_channels=1)


def _trained_like_model(seed=0):
    torch.manual_seed(seed)
    model = build(SPEC)
    with torch.no_grad():   # non-trivial BN statistics, so a lost buffer would show in the outputs
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _trained_like_model()
    metadata = {"val_acc": 0.875, "train_config": {"epochs": 3}, "history": [{"epoch": 1}]}
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, metadata)
    loaded = nasprune.load(path)
    assert loaded.spec == SPEC and loaded.metadata == metadata and not loaded.training
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_format_is_a_plain_weights_only_dict(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_like_model(), {"a": 1})
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"format", "version", "spec", "state_dict", "metadata"}
    assert payload["format"] == CHECKPOINT_FORMAT and payload["version"] == 1
    assert payload["spec"] == SPEC.to_dict()
    assert read_checkpoint(path)["metadata"] == {"a": 1}


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", _trained_like_model(0), {"version": "old"})
    before = path.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _trained_like_model(1), {"version": "new"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]   # no temporary file left behind
    monkeypatch.undo()
    assert nasprune.load(path).metadata == {"version": "old"}


def _one_line_error(path) -> str:
    with pytest.raises(NaspruneError) as info:
        nasprune.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage" * 100)
    assert "corrupt" in _one_line_error(path)


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_like_model(), {})
    path.write_bytes(path.read_bytes()[:2000])
    assert "corrupt" in _one_line_error(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": 1}, path)
    assert "not a nasprune checkpoint" in _one_line_error(path)


def test_weights_that_do_not_fit_the_spec(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_like_model(), {})
    payload = torch.load(path, weights_only=True)
    payload["spec"]["num_classes"] = 7
    torch.save(payload, path)
    assert "weights do not match its spec" in _one_line_error(path)


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(NaspruneError, match="not JSON-able"):
        save_checkpoint(tmp_path / "m.pt", _trained_like_model(), {"when": object()})


def test_only_nasnets_with_a_spec(tmp_path):
    with pytest.raises(NaspruneError, match="expected a nasprune NasNet"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), {})
