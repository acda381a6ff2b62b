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
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            io.UnsupportedOperation) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NaspruneError(f"checkpoint {str(path)!r} is corrupt or not a torch file: {first}") from None
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
    model = build(spec)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise NaspruneError(f"checkpoint {str(path)!r}: weights do not match its spec: {first}") from None
    model.to(map_location)
    model.metadata = payload["metadata"]
    return model.eval()
