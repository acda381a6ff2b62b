"""The cost model: MACs, params, per-layer breakdown, an "all ops" figure and memory, all from the spec.

Measured CPU latency lives in :mod:`nasprune.latency` (below this module and :mod:`nasprune.export`); its names
(:func:`measure_latency`, :func:`measure_latency_ort`, :func:`time_calls`, :class:`Latency`) are re-exported here.

Convention (the MobileNet, MobileNetV2 and FD-MobileNet papers' "FLOPs"): **one multiply-add of a conv
or linear layer counts as one**; squeeze-and-excite's 1x1 convs are convs and count; batch norm is
folded into the preceding conv and is free; activations, pooling, the SE scaling and residual additions
are free. fvcore's ``FlopCountAnalysis`` counts exactly this for ``conv`` and ``linear`` (it also counts
batch norm and pooling by default, which we drop from the MAC total and report under ``all_ops``).

``all_ops`` adds the other operators the way papers that "count everything" do: one op per output element
for activations, the SE multiply and residual adds, two per element for batch norm (scale and shift), one
per input element for average pooling. MobileNetV3-Large with 10 classes gives 229.6 M this way, which is
the 2.30e8 of the structured-pruning paper; its conv+linear MACs are 215.3 M.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasprune.builder import build
from nasprune.latency import (  # re-exported: latency lives below the count (nasprune.latency)
    LATENCY_RUNTIMES,
    Latency,
    device_of,
    eval_mode,
    measure_latency,
    measure_latency_ort,
    time_calls,
)
from nasprune.spec import ArchSpec

__all__ = [
    "DTYPE_BYTES", "LATENCY_RUNTIMES", "MEMORY_LIMIT_FRACTION", "Cost", "LayerCost", "LayerMemory", "Latency", "Memory",
    "MemoryEstimate", "check_memory", "closed_form_macs", "count", "count_model", "count_module", "estimate_memory",
    "flop_counter_macs", "measure_latency", "measure_latency_ort", "memory", "physical_memory_bytes", "time_calls",
]

# fvcore operator names whose count is a multiply-add of a conv or linear layer.
MAC_OPERATORS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})
# Element-wise or reduction ops counted once per output element in the "all ops" figure.
ELEMENTWISE_OPS = ("aten::relu", "aten::relu_", "aten::relu6", "aten::hardtanh", "aten::hardtanh_",
                   "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid", "aten::sigmoid",
                   "aten::mul", "aten::add", "aten::add_")
# Pooling reads every input element once; batch norm (eval) is a scale and a shift per element.
REDUCTION_OPS = ("aten::mean", "aten::adaptive_avg_pool2d")
TWO_PER_ELEMENT_OPS = ("aten::batch_norm",)
FREE_OPS = ("aten::dropout", "aten::flatten")


@dataclass(frozen=True)
class LayerCost:
    """One row of the per-layer table: ``stem``, ``blocks.{i}`` or ``head`` (output channels and side)."""

    name: str
    kind: str
    macs: int
    params: int
    out_channels: int
    out_size: int


@dataclass(frozen=True)
class Cost:
    """Cost of one spec at its resolution. ``mflops`` is ``macs / 1e6`` (the papers' MFLOPs).

    Attributes:
        macs: multiply-adds of conv and linear layers (SE's 1x1 convs included), BN folded.
        params: all parameters, BN's weight and bias included (torchvision's convention).
        all_ops: ``macs`` plus BN, activations, pooling, SE scaling and residual adds (see the module doc).
        layers: per-layer rows whose ``macs`` and ``params`` sum to the totals (empty with ``layers=False``).
        unsupported_ops: operators fvcore found no handler for, with their call counts (normally empty).
    """

    macs: int
    params: int
    all_ops: int
    layers: tuple[LayerCost, ...] = ()
    unsupported_ops: dict[str, int] = field(default_factory=dict)

    @property
    def mflops(self) -> float:
        return self.macs / 1e6


def _output_numel(outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(outputs[0])
    n = 1
    for d in shape or ():
        n *= d
    return n


def _elementwise_handle(inputs: list[Any], outputs: list[Any]) -> int:
    return _output_numel(outputs)


def _reduction_handle(inputs: list[Any], outputs: list[Any]) -> int:
    return _output_numel(inputs)


def _two_per_element_handle(inputs: list[Any], outputs: list[Any]) -> int:
    return 2 * _output_numel(outputs)


def _fvcore_analysis(model: nn.Module, x: torch.Tensor):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    # One trace serves both figures: MACs are the conv/linear operators, "all ops" is the total.
    analysis.set_op_handle(**{op: _elementwise_handle for op in ELEMENTWISE_OPS})
    analysis.set_op_handle(**{op: _reduction_handle for op in REDUCTION_OPS})
    analysis.set_op_handle(**{op: _two_per_element_handle for op in TWO_PER_ELEMENT_OPS})
    analysis.set_op_handle(**{op: None for op in FREE_OPS})
    return analysis


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _layer_rows(spec: ArchSpec, model: nn.Module, by_module: dict[str, int]) -> tuple[LayerCost, ...]:
    sizes = spec.feature_sizes()
    rows = [LayerCost("stem", "conv", by_module.get("stem", 0), _params(model.stem), spec.stem.out_channels,
                      sizes[0])]
    for i, block in enumerate(spec.blocks):
        name = f"blocks.{i}"
        rows.append(LayerCost(name, block.kind, by_module.get(name, 0), _params(model.blocks[i]),
                              block.out_channels, sizes[i + 1]))
    rows.append(LayerCost("head", "head", by_module.get("head", 0), _params(model.head), spec.num_classes, 1))
    return tuple(rows)


def _analyse(module: nn.Module, input_shape: tuple[int, ...]):
    """A finished fvcore analysis of ``module`` on a zero input, in eval mode, without gradients."""
    x = torch.zeros(*input_shape, device=device_of(module))
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad(), eval_mode(module):
        analysis = _fvcore_analysis(module, x)
        analysis.total()  # trace now, inside the context; later queries reuse the result
    return analysis


def _mac_sum(by_operator: dict[str, int]) -> int:
    return int(sum(v for k, v in by_operator.items() if k in MAC_OPERATORS))


def count_module(module: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Count any module (a single conv, an SE block, a whole network) on an input of ``input_shape``.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 3, 224, 224)``; count at batch 1 for the
    per-image figures. ``layers`` of the result is empty. The module's training mode is restored afterwards.
    """
    analysis = _analyse(module, tuple(input_shape))
    return Cost(macs=_mac_sum(analysis.by_operator()), params=_params(module), all_ops=int(analysis.total()),
                unsupported_ops=dict(analysis.unsupported_ops()))


def count_model(model: nn.Module, spec: ArchSpec, *, layers: bool = True) -> Cost:
    """Count a built model (weights are irrelevant) at ``spec``'s resolution and input channels.

    The model is traced in eval mode on its own device; its training mode is restored afterwards.
    """
    analysis = _analyse(model, (1, spec.in_channels, spec.resolution, spec.resolution))
    layer_rows = ()
    if layers:
        by_module = {name: _mac_sum(ops) for name, ops in analysis.by_module_and_operator().items()}
        layer_rows = _layer_rows(spec, model, by_module)
    return Cost(macs=_mac_sum(analysis.by_operator()), params=_params(model), all_ops=int(analysis.total()),
                layers=layer_rows, unsupported_ops=dict(analysis.unsupported_ops()))


_CACHE: dict[tuple[str, bool], Cost] = {}


def count(spec: ArchSpec, resolution: int | None = None, *, layers: bool = True) -> Cost:
    """MACs, params and per-layer costs of ``spec``, cached by spec hash.

    Args:
        spec: the network; its ``resolution`` and ``in_channels`` are the counted input.
        resolution: count at this input side instead (e.g. the deployment resolution 224 for a spec that is
            trained at 32); a resolution too small for the network's downsampling raises ``SpecError``.
        layers: also fill ``Cost.layers`` (stem, every block, head; their MACs sum to ``Cost.macs``).

    Returns:
        The :class:`Cost`. The hash covers everything but the name (resolution included), so two specs that
        differ only in name share an entry. A cached entry with layers also answers ``layers=False``.
    """
    if resolution is not None and resolution != spec.resolution:
        spec = spec.replace(resolution=resolution)
    cached = _CACHE.get((spec.hash, True)) or _CACHE.get((spec.hash, layers))
    if cached is None:
        cached = _CACHE[(spec.hash, layers)] = count_model(build(spec), spec, layers=layers)
    return cached


def closed_form_macs(spec: ArchSpec) -> int:
    """MACs of ``spec`` by formula, without building or tracing it: exactly what :func:`count` gives.

    The same convention (conv and linear multiply-adds, BN folded): the stem conv; per block the expansion
    1x1 (inverted residual with ``expand``), the depthwise ``k x k``, SE's two 1x1 convs on the pooled 1x1
    map (``2 * dw * se``) and the projection 1x1; then the head's 1x1 conv, hidden linear and classifier.
    :func:`count` traces the network (about half a second at 224); loops that try many pruned children
    (:func:`nasprune.prune.budget.fit_global_ratio`) call this instead (``tests/test_cost.py`` ties the two
    on every zoo network).
    """
    sizes = spec.feature_sizes()
    macs = spec.stem.kernel_size ** 2 * spec.in_channels * spec.stem.out_channels * sizes[0] ** 2
    for block, size_in, size in zip(spec.blocks, sizes, sizes[1:], strict=False):
        dw = block.dw_channels
        if getattr(block, "expand", False):  # only inverted residual blocks have an expansion conv
            macs += block.in_channels * dw * size_in ** 2
        macs += block.kernel_size ** 2 * dw * size ** 2 + 2 * dw * block.se_channels
        macs += dw * block.out_channels * size ** 2
    channels, head = spec.out_channels, spec.head
    if head.conv_channels:
        macs += channels * head.conv_channels * sizes[-1] ** 2
        channels = head.conv_channels
    if head.hidden_features:
        macs += channels * head.hidden_features
        channels = head.hidden_features
    return macs + channels * spec.num_classes


# -- memory: refuse a network too large to build or run, before anything is allocated ---------------------------
FLOAT32_BYTES = 4
# A network whose batch-1 estimate needs more than this share of the machine's physical RAM is refused.
MEMORY_LIMIT_FRACTION = 0.5
FALLBACK_RAM_BYTES = 8 * 2**30  # physical RAM assumed where the OS does not say


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound of what one forward pass of a spec at batch 1 needs in float32, by formula (nothing built).

    Attributes:
        params: parameters, BN's weight and bias included (exactly ``count(spec).params``).
        activation: elements of the largest tensor of the forward pass at batch 1, the input image included
            (an inverted residual's expansion is counted at its input side, before the stride).
    """

    params: int
    activation: int

    @property
    def bytes(self) -> int:
        """``4 * (params + activation)``: weights plus the largest activation, float32."""
        return FLOAT32_BYTES * (self.params + self.activation)


def _conv_bn(cin: int, cout: int, kernel: int = 1, groups: int = 1) -> int:
    return cin // groups * cout * kernel ** 2 + 2 * cout  # bias-free conv, BN weight and bias


def _block_params(block) -> int:
    dw = block.dw_channels
    params = _conv_bn(dw, dw, block.kernel_size, groups=dw) + _conv_bn(dw, block.out_channels)
    if getattr(block, "expand", False):  # only inverted residual blocks have an expansion conv
        params += _conv_bn(block.in_channels, dw)
    if block.se_channels:  # two 1x1 convs with bias
        params += 2 * dw * block.se_channels + block.se_channels + dw
    return params


def estimate_memory(spec: ArchSpec, resolution: int | None = None) -> MemoryEstimate:
    """Parameters and the largest activation of ``spec`` at ``resolution`` (default its own), by formula.

    Cheap for any size (plain integers), so a spec with a billion channels can be refused before
    :func:`nasprune.build` tries to allocate it; :func:`check_memory` is the refusal.
    """
    sizes = spec.feature_sizes(resolution)
    params = _conv_bn(spec.in_channels, spec.stem.out_channels, spec.stem.kernel_size)
    largest = max(spec.in_channels * (resolution or spec.resolution) ** 2, spec.stem.out_channels * sizes[0] ** 2)
    for block, size_in, size in zip(spec.blocks, sizes, sizes[1:], strict=False):
        params += _block_params(block)
        expanded = block.dw_channels * size_in ** 2 if getattr(block, "expand", False) else 0
        largest = max(largest, expanded, block.dw_channels * size ** 2, block.out_channels * size ** 2)
    channels, head = spec.out_channels, spec.head
    if head.conv_channels:
        params += _conv_bn(channels, head.conv_channels)
        largest = max(largest, head.conv_channels * sizes[-1] ** 2)
        channels = head.conv_channels
    if head.hidden_features:
        params += (channels + 1) * head.hidden_features
        channels = head.hidden_features
    return MemoryEstimate(params=params + (channels + 1) * spec.num_classes, activation=largest)


def physical_memory_bytes() -> int:
    """This machine's physical RAM (``sysconf``), or :data:`FALLBACK_RAM_BYTES` where it is not known."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return FALLBACK_RAM_BYTES


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_memory(spec: ArchSpec, resolution: int | None = None) -> MemoryEstimate:
    """Refuse ``spec`` if its :func:`estimate_memory` exceeds :data:`MEMORY_LIMIT_FRACTION` of physical RAM.

    Returns:
        The estimate, when it fits.

    Raises:
        NaspruneError: naming the network, the memory it would need and the limit.
    """
    from nasprune.errors import NaspruneError

    estimate = estimate_memory(spec, resolution)
    ram = physical_memory_bytes()
    limit = int(MEMORY_LIMIT_FRACTION * ram)
    if estimate.bytes > limit:
        r = resolution or spec.resolution
        raise NaspruneError(
            f"network {spec.name!r} at {r}x{r}x{spec.in_channels} is too large: it needs about "
            f"{_gib(estimate.bytes)} ({estimate.params:,} parameters and a largest activation of "
            f"{estimate.activation:,} values at batch 1, float32), more than the limit of {_gib(limit)} "
            f"({MEMORY_LIMIT_FRACTION:.0%} of this machine's {_gib(ram)} of RAM): expected a smaller width, "
            "resolution or channel counts")
    return estimate


def flop_counter_macs(model: nn.Module, spec: ArchSpec) -> int:
    """MACs by ``torch.utils.flop_counter.FlopCounterMode`` (which counts 2 FLOPs per multiply-add).

    An independent cross-check of fvcore, which traces with TorchScript.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution, device=device_of(model))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), eval_mode(model), counter:
        model(x)
    return counter.get_total_flops() // 2


# -- device memory: MCUNet's peak activation memory (SRAM) and the weights (flash), by formula ------------------
# Bytes per element of each deployment dtype the figures are given in.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "int8": 1}


@dataclass(frozen=True)
class LayerMemory:
    """Tensors alive at once while one layer runs, in elements at batch 1.

    Attributes:
        name: the layer's module path, e.g. ``stem``, ``blocks.3.conv_dw``, ``blocks.3.se.fc1``, ``head.pool``.
        input: the tensor the layer reads.
        output: the tensor it writes.
        pending: tensors made earlier and read later, kept alive across it: the block's input awaiting its
            residual add, and the feature map that squeeze-and-excite will scale.
    """

    name: str
    input: int
    output: int
    pending: int = 0

    @property
    def alive(self) -> int:
        return self.input + self.output + self.pending


@dataclass(frozen=True)
class Memory:
    """What a device must hold to run ``spec`` at batch 1: peak activation memory and weights (see :func:`memory`).

    Attributes:
        peak_activation: elements alive at once during the layer that needs most (``max`` of ``layers``' alive).
        peak_layer: that layer's name (the first one, if several tie).
        params: parameters (exactly ``count(spec).params``).
        layers: every layer, in execution order.
    """

    peak_activation: int
    peak_layer: str
    params: int
    layers: tuple[LayerMemory, ...]

    def activation_bytes(self, dtype: str = "float32") -> int:
        """Peak activation memory in bytes at ``dtype`` (a key of :data:`DTYPE_BYTES`)."""
        return self.peak_activation * _dtype_bytes(dtype)

    def weight_bytes(self, dtype: str = "float32") -> int:
        """Weights in bytes at ``dtype``: ``params`` times its size (BN's weight and bias included, as counted)."""
        return self.params * _dtype_bytes(dtype)

    def figures(self) -> dict[str, Any]:
        """Both byte figures at every dtype, for ``count --json``."""
        return {"peak_activation_bytes": {d: self.activation_bytes(d) for d in DTYPE_BYTES},
                "peak_activation_layer": self.peak_layer,
                "weight_bytes": {d: self.weight_bytes(d) for d in DTYPE_BYTES}}


def _dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} is invalid: expected one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _se_layers(name: str, block, size: int, residual: int) -> list[LayerMemory]:
    """Pool, squeeze and excite: the map they will scale stays alive (the scaling itself is in place)."""
    c, s = block.dw_channels, block.se_channels
    fmap = c * size ** 2
    return [LayerMemory(f"{name}.se.pool", fmap, c, residual),
            LayerMemory(f"{name}.se.fc1", c, s, fmap + residual),
            LayerMemory(f"{name}.se.fc2", s, c, fmap + residual)]


def _block_layers(name: str, block, size_in: int, size: int) -> list[LayerMemory]:
    """The layers of one block. An inverted residual's input stays alive until its add, except while it is
    itself the layer's input (the expansion conv, or the depthwise conv of a block without expansion)."""
    c, x = block.dw_channels, block.in_channels * size_in ** 2
    residual = x if getattr(block, "use_residual", False) else 0
    rows = []
    expand = getattr(block, "expand", False)  # only inverted residual blocks have an expansion conv
    if expand:
        rows.append(LayerMemory(f"{name}.conv_pw", x, c * size_in ** 2))
    rows.append(LayerMemory(f"{name}.conv_dw", c * size_in ** 2, c * size ** 2, residual if expand else 0))
    if block.se_channels:
        rows += _se_layers(name, block, size, residual)
    last = "conv_pwl" if block.kind == "ir" else "conv_pw"
    rows.append(LayerMemory(f"{name}.{last}", c * size ** 2, block.out_channels * size ** 2, residual))
    return rows


def _head_layers(spec: ArchSpec, size: int) -> list[LayerMemory]:
    channels, head, rows = spec.out_channels, spec.head, []
    if head.conv_channels:
        rows.append(LayerMemory("head.conv_head", channels * size ** 2, head.conv_channels * size ** 2))
        channels = head.conv_channels
    rows.append(LayerMemory("head.pool", channels * size ** 2, channels))
    if head.hidden_features:
        rows.append(LayerMemory("head.fc_hidden", channels, head.hidden_features))
        channels = head.hidden_features
    return rows + [LayerMemory("head.classifier", channels, spec.num_classes)]


def memory(spec: ArchSpec, resolution: int | None = None) -> Memory:
    """Peak activation memory and weights of ``spec`` at batch 1, by formula (nothing built), MCUNet's convention.

    A *layer* is every conv and linear (BN folded into it, its activation in place) and every global average
    pool (squeeze-and-excite's and the head's). While a layer runs, its input, its output and every pending
    tensor are alive: the block input an inverted residual adds back, and the map SE scales. The activations,
    the SE scaling and the residual add write in place, so they allocate nothing; flatten and dropout (eval) are
    free. The input image is the stem's input. The peak is the largest sum over layers; :meth:`Memory.activation_bytes`
    and :meth:`Memory.weight_bytes` give bytes at float32 (4 per element) or int8 (1).

    Args:
        spec: the network; counted at its own resolution, or at ``resolution`` (the deployment one) if given.
        resolution: a resolution too small for the network's downsampling raises ``SpecError``.
    """
    if resolution is not None and resolution != spec.resolution:
        spec = spec.replace(resolution=resolution)
    sizes = spec.feature_sizes()
    rows = [LayerMemory("stem", spec.in_channels * spec.resolution ** 2, spec.stem.out_channels * sizes[0] ** 2)]
    for i, (block, size_in, size) in enumerate(zip(spec.blocks, sizes, sizes[1:], strict=False)):
        rows += _block_layers(f"blocks.{i}", block, size_in, size)
    rows += _head_layers(spec, sizes[-1])
    peak = max(rows, key=lambda r: r.alive)  # the first of equals
    return Memory(peak_activation=peak.alive, peak_layer=peak.name, params=estimate_memory(spec).params,
                  layers=tuple(rows))
