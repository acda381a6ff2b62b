"""Checkpoints: one file holding a network's spec, its weights and training metadata.

Format (a ``torch.save`` dict, readable with ``torch.load(path, weights_only=True)``)::

    {"format": "nasprune-checkpoint", "version": 1,
     "spec": ArchSpec.to_dict(), "state_dict": {name: tensor}, "metadata": {JSON-able}}

Files are written atomically (temporary file in the same directory, then rename), so a reader sees the old
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from nasprune.builder import NasNet, build
from nasprune.cost import check_memory
from nasprune.errors import NaspruneError
from nasprune.fsutil import atomic_save
from nasprune.spec import ArchSpec, SpecError

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load", "read_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "nasprune-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model: nn.Module, metadata: Mapping | None = None) -> Path:
    """Write ``model`` (a :class:`NasNet`, with ``model.spec``) and ``metadata`` to ``path`` atomically.

    Args:
        path: the file to write; parent directories are created.
        model: a built network; its weights are saved from the CPU.
        metadata: JSON-able training metadata (recipe, data, accuracies, ...).

    Raises:
        NaspruneError: the model has no spec or the metadata is not JSON-able.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise NaspruneError(f"cannot checkpoint a {type(model).__name__}: expected a nasprune NasNet with .spec")
    metadata = dict(metadata or {})
    try:
        metadata = json.loads(json.dumps(metadata))  # plain types only, so weights_only loading accepts them
    except (TypeError, ValueError) as exc:
        raise NaspruneError(f"checkpoint metadata is not JSON-able: {exc}") from None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": spec.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    return atomic_save(path, lambda fh: torch.save(payload, fh))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load the checkpoint dict at ``path`` (``weights_only``: no code from the file runs).

    Raises:
        NaspruneError: the file is missing, unreadable, corrupt or not a nasprune checkpoint (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise NaspruneError(f"checkpoint {str(path)!r} not found: expected a file written by 'nasprune train' "
                            "or save_checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling arbitrary bytes raises anything (KeyError: 101, IndexError, ...)
        raise _unreadable(path, exc) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise NaspruneError(f"{str(path)!r} is not a nasprune checkpoint: expected a dict with "
                            f"format={CHECKPOINT_FORMAT!r}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise NaspruneError(f"checkpoint {str(path)!r} has version {payload.get('version')!r}: this nasprune "
                            f"reads version {CHECKPOINT_VERSION}")
    missing = [k for k in ("spec", "state_dict", "metadata") if k not in payload]
    if missing:
        raise NaspruneError(f"checkpoint {str(path)!r} is missing {', '.join(missing)}")
    return payload


def _is_text(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):  # a multi-byte character cut at 4096 reads as binary: harmless
        return False
    return b"\x00" not in head


def _unreadable(path: Path, exc: Exception) -> NaspruneError:
    """Our one line for a file ``torch.load(weights_only=True)`` refused, without torch's advice to unpickle it."""
    expected = "expected a .pt file written by nasprune (train, prune, search or export)"
    if _is_text(path):
        return NaspruneError(f"{str(path)!r} is a text file, not a nasprune checkpoint: {expected}")
    if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
        return NaspruneError(f"{str(path)!r} is not a nasprune checkpoint: it holds objects other than tensors and "
                             f"plain data, which nasprune never writes: {expected}")
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, (OSError, RuntimeError, EOFError, zipfile.BadZipFile, io.UnsupportedOperation)):
        return NaspruneError(f"checkpoint {str(path)!r} is corrupt or truncated: {first}: {expected}")
    return NaspruneError(f"checkpoint {str(path)!r} is corrupt or not a torch file ({type(exc).__name__} while "
                         f"unpickling): {expected}")


def _weights_mismatch(model: nn.Module, state: Mapping) -> str | None:
    """The first key of ``state`` that does not fit ``model`` (missing, unexpected or another shape), or None."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            return f"{key} is missing from the file"
        value = state[key]
        if not isinstance(value, torch.Tensor):
            return f"{key} is a {type(value).__name__} in the file, not a tensor"
        if tuple(value.shape) != tuple(tensor.shape):
            return (f"{key} has shape {tuple(value.shape)} in the file, the spec needs "
                    f"{tuple(tensor.shape)}")
    unexpected = [k for k in state if k not in expected]
    return f"{unexpected[0]} is in the file but not in the spec" if unexpected else None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> NasNet:
    """Build the network stored at ``path`` and load its weights strictly; returns it in eval mode.

    ``model.spec`` is the stored spec and ``model.metadata`` the stored metadata dict.

    Raises:
        NaspruneError: missing/corrupt file, an invalid spec, or weights that do not fit the spec.
    """
    payload = read_checkpoint(path, map_location)
    try:
        spec = ArchSpec.from_dict(payload["spec"])
    except (SpecError, TypeError) as exc:
        raise NaspruneError(f"checkpoint {str(path)!r} holds an invalid spec: {exc}") from None
    check_memory(spec)  # a forged spec with a billion channels: refused before build allocates it
    model = build(spec)
    state = payload["state_dict"]
    mismatch = _weights_mismatch(model, state) if isinstance(state, Mapping) else "state_dict is not a dict"
    if mismatch:
        raise NaspruneError(f"checkpoint {str(path)!r}: weights do not match its spec: {mismatch}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # what the key and shape check above cannot see
        first = str(exc).strip().splitlines()[-1].strip()
        raise NaspruneError(f"checkpoint {str(path)!r}: weights do not match its spec: {first}") from None
    model.to(map_location)
    model.metadata = payload["metadata"]
    return model.eval()
