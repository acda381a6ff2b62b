"""nasprune: joint architecture search and structured pruning for tiny MobileNet-family networks."""

from nasprune.builder import NasNet, build
from nasprune.cost import Cost, count, measure_latency
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, SpecError, StemSpec, make_divisible
from nasprune.zoo import ZOO, fd_mobilenet, get_spec, mobilenet_v1, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small

__version__ = "0.1.0"

__all__ = [
    "ZOO",
    "ArchSpec",
    "Cost",
    "DWSBlockSpec",
    "HeadSpec",
    "IRBlockSpec",
    "NasNet",
    "SpecError",
    "StemSpec",
    "build",
    "count",
    "fd_mobilenet",
    "get_spec",
    "make_divisible",
    "measure_latency",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]
