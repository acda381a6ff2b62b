"""Which channels are prunable, and which tensors follow each of them (channel coupling, declared once).

The prunable unit of block ``i`` is the output channels of ``blocks.{i}.conv_pw``:

* **Inverted residual with expansion** (``IRBlockSpec(expand=True)``): the expansion channels. Removing
  channel ``n`` removes filter ``n`` of the expansion conv and its BN entry, depthwise channel ``n`` and its
  BN entry, input ``n`` of SE ``fc1`` and output ``n`` of SE ``fc2``, and input ``n`` of the projection
  ``conv_pwl``. The block's output (the residual path) is never cut. A block with ``expand=False`` has no
  expansion conv and nothing prunable.
* **Depthwise-separable** (``DWSBlockSpec``): the pointwise output channels, which carry through to the
  next block's depthwise conv, its BN, its SE (``fc1`` input, ``fc2`` output) and its pointwise input; after
  the last block, to the head's first layer that reads them (``conv_head``, else ``fc_hidden``, else
  ``classifier``). A depthwise-separable block followed by an inverted-residual block is not prunable: its
  output would be the next block's input, which may be a residual path.

The SE squeeze width (``se_channels``) never changes: only the SE's input and output channels follow the
pruned block, so the physically pruned network computes exactly what the masked network computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from nasprune.errors import NaspruneError
from nasprune.spec import ArchSpec, BlockSpec, DWSBlockSpec, IRBlockSpec

__all__ = ["ChannelGroup", "Slice", "apply_channels", "channel_groups", "check_layers", "layer_channels",
           "prunable_layers", "require_prunable"]


@dataclass(frozen=True)
class Slice:
    """Tensors of ``module`` indexed by a group's channels along ``dim``.

    ``dim=0`` (output channels) slices every tensor of the module with at least one dimension (conv weight,
    bias, BN weight, bias and running statistics); ``dim=1`` (input channels) slices only ``weight``.
    """

    module: str
    dim: int


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable layer: its name, block index, channel count and the tensors its channels index."""

    layer: str
    block: int
    channels: int
    slices: tuple[Slice, ...]


def _dw_slices(prefix: str, block: BlockSpec) -> list[Slice]:
    """Depthwise conv, its BN and the SE around it: all indexed by the depthwise channels."""
    out = [Slice(f"{prefix}.conv_dw.conv", 0), Slice(f"{prefix}.conv_dw.bn", 0)]
    if block.has_se:
        out += [Slice(f"{prefix}.se.fc1", 1), Slice(f"{prefix}.se.fc2", 0)]
    return out


def _ir_group(spec: ArchSpec, i: int) -> ChannelGroup | None:
    block = spec.blocks[i]
    if not block.expand:
        return None
    prefix = f"blocks.{i}"
    slices = [Slice(f"{prefix}.conv_pw.conv", 0), Slice(f"{prefix}.conv_pw.bn", 0), *_dw_slices(prefix, block),
              Slice(f"{prefix}.conv_pwl.conv", 1)]
    return ChannelGroup(f"{prefix}.conv_pw", i, block.exp_channels, tuple(slices))


def _head_consumer(spec: ArchSpec) -> Slice:
    if spec.head.conv_channels:
        return Slice("head.conv_head.conv", 1)
    if spec.head.hidden_features:
        return Slice("head.fc_hidden", 1)
    return Slice("head.classifier", 1)


def _dws_group(spec: ArchSpec, i: int) -> ChannelGroup | None:
    prefix = f"blocks.{i}"
    producer = [Slice(f"{prefix}.conv_pw.conv", 0), Slice(f"{prefix}.conv_pw.bn", 0)]
    if i + 1 == len(spec.blocks):
        consumer = [_head_consumer(spec)]
    elif isinstance(spec.blocks[i + 1], DWSBlockSpec):
        nxt = f"blocks.{i + 1}"
        consumer = [*_dw_slices(nxt, spec.blocks[i + 1]), Slice(f"{nxt}.conv_pw.conv", 1)]
    else:
        return None
    return ChannelGroup(f"{prefix}.conv_pw", i, spec.blocks[i].out_channels, tuple(producer + consumer))


GROUP_BUILDERS: dict[str, Callable[[ArchSpec, int], ChannelGroup | None]] = {
    IRBlockSpec.kind: _ir_group,
    DWSBlockSpec.kind: _dws_group,
}


def channel_groups(spec: ArchSpec) -> dict[str, ChannelGroup]:
    """Every prunable layer of ``spec``, in block order, with the tensors its channels index."""
    groups = (GROUP_BUILDERS[block.kind](spec, i) for i, block in enumerate(spec.blocks))
    return {g.layer: g for g in groups if g is not None}


def prunable_layers(spec: ArchSpec) -> list[str]:
    """Names of the prunable layers of ``spec`` (``["blocks.1.conv_pw", ...]``), in block order."""
    return list(channel_groups(spec))


def layer_channels(spec: ArchSpec) -> dict[str, int]:
    """Channels of every prunable layer of ``spec``."""
    return {name: g.channels for name, g in channel_groups(spec).items()}


def require_prunable(spec: ArchSpec) -> list[str]:
    """The prunable layers of ``spec``; :class:`NaspruneError` if there is none."""
    valid = prunable_layers(spec)
    if not valid:
        raise NaspruneError(f"{spec.name} has nothing prunable: it needs inverted-residual blocks with an "
                            "expansion conv, or depthwise-separable blocks followed by one or by the head")
    return valid


def check_layers(spec: ArchSpec, names, what: str = "layer") -> None:
    """Raise :class:`NaspruneError` if any of ``names`` is not a prunable layer of ``spec``."""
    valid = require_prunable(spec)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise NaspruneError(f"unknown {what} {unknown[0]!r} for {spec.name}: expected one of {', '.join(valid)}")


def _set_ir(blocks: list[BlockSpec], i: int, n: int) -> None:
    blocks[i] = dataclasses.replace(blocks[i], exp_channels=n)


def _set_dws(blocks: list[BlockSpec], i: int, n: int) -> None:
    blocks[i] = dataclasses.replace(blocks[i], out_channels=n)
    if i + 1 < len(blocks):
        blocks[i + 1] = dataclasses.replace(blocks[i + 1], in_channels=n)


SPEC_SETTERS: dict[str, Callable[[list[BlockSpec], int, int], None]] = {
    IRBlockSpec.kind: _set_ir,
    DWSBlockSpec.kind: _set_dws,
}


def apply_channels(spec: ArchSpec, counts: dict[str, int]) -> ArchSpec:
    """``spec`` with the prunable layers in ``counts`` set to that many channels (others unchanged)."""
    groups = channel_groups(spec)
    if counts:
        check_layers(spec, counts)
    blocks = list(spec.blocks)
    for name, n in counts.items():
        group = groups[name]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= group.channels:
            raise NaspruneError(f"{name}: {n!r} channels is invalid: expected an integer in 1..{group.channels}")
        SPEC_SETTERS[spec.blocks[group.block].kind](blocks, group.block, n)
    return spec.replace(blocks=tuple(blocks))
