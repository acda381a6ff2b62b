"""nasprune: joint neural architecture search and structured pruning for tiny MobileNet-family networks.

The public API is re-exported here lazily (PEP 562): ``import nasprune`` does not import torch, so
``nasprune --help`` stays fast; ``nasprune.build`` etc. import their module on first use. To export a new
name, add it to ``_EXPORTS`` (name -> module), not as an eager ``from ... import``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "NasNet": "nasprune.builder",
    "build": "nasprune.builder",
    "Cost": "nasprune.cost",
    "count": "nasprune.cost",
    "load": "nasprune.checkpoint",
    "save_checkpoint": "nasprune.checkpoint",
    "measure_latency": "nasprune.latency",
    "ArchSpec": "nasprune.spec",
    "DWSBlockSpec": "nasprune.spec",
    "HeadSpec": "nasprune.spec",
    "IRBlockSpec": "nasprune.spec",
    "SpecError": "nasprune.spec",
    "StemSpec": "nasprune.spec",
    "make_divisible": "nasprune.spec",
    "ZOO": "nasprune.zoo",
    "fd_mobilenet": "nasprune.zoo",
    "get_spec": "nasprune.zoo",
    "mobilenet_v1": "nasprune.zoo",
    "mobilenet_v2": "nasprune.zoo",
    "mobilenet_v3_large": "nasprune.zoo",
    "mobilenet_v3_small": "nasprune.zoo",
}

__all__ = [  # keep in step with _EXPORTS (a test checks)
    "ArchSpec",
    "Cost",
    "DWSBlockSpec",
    "HeadSpec",
    "IRBlockSpec",
    "NasNet",
    "SpecError",
    "StemSpec",
    "ZOO",
    "build",
    "count",
    "fd_mobilenet",
    "get_spec",
    "load",
    "make_divisible",
    "measure_latency",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "save_checkpoint",
]

if TYPE_CHECKING:
    from nasprune.builder import NasNet, build
    from nasprune.checkpoint import load, save_checkpoint
    from nasprune.cost import Cost, count
    from nasprune.latency import measure_latency
    from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, SpecError, StemSpec, make_divisible
    from nasprune.zoo import (
        ZOO,
        fd_mobilenet,
        get_spec,
        mobilenet_v1,
        mobilenet_v2,
        mobilenet_v3_large,
        mobilenet_v3_small,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:  # ``nasprune.cost`` and friends work after a bare ``import nasprune``
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
