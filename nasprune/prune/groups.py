"""Which channels are prunable, and which tensors follow each of them (channel coupling, declared once).

Channels that must be cut together form one :class:`ChannelGroup` (the DepGraph idea of Torch-Pruning: coupled
layers form one group, and a channel's importance is summed over the group's members). There are two kinds:

* **Expansion group** ``blocks.{i}.conv_pw`` of an inverted-residual block with an expansion conv
  (``IRBlockSpec(expand=True)``): the hidden channels. Removing channel ``n`` removes filter ``n`` of the
  expansion conv and its BN entry, depthwise channel ``n`` and its BN entry, input ``n`` of SE ``fc1`` and
  output ``n`` of SE ``fc2``, and input ``n`` of the projection ``conv_pwl``.
* **Path group**: the channels of the feature map between two blocks (the stem's output, or a block's output),
  together with every feature map joined to it by a residual add. A residual block (stride 1 and
  ``in_channels == out_channels``) adds its input to its output, so both are one channel space: a stage of
  residual blocks is one group. Its members (*producers*) are the conv that starts the path (the stem conv, a
  depthwise-separable block's ``conv_pw`` or an inverted-residual block's projection ``conv_pwl``) and the
  projection of every residual block on it; each producer loses filter ``n`` and its BN entry. Every block
  reading the path loses input ``n``: an expansion conv's input, or, for a block whose depthwise conv reads its
  input directly (depthwise-separable, inverted residual without expansion), depthwise channel ``n``, its BN
  entry, its SE (``fc1`` input, ``fc2`` output) and input ``n`` of the following 1x1 conv. After the last
  block the head's first layer loses input ``n`` (``conv_head``, else ``fc_hidden``, else ``classifier``).
  The group is named after the conv that starts it: ``stem``, ``blocks.{i}.conv_pw`` (depthwise-separable
  output) or ``blocks.{i}.conv_pwl`` (inverted-residual output). The residual adds stay legal because every
  tensor they add loses the same channels.

Every network has at least the stem's path group. :func:`apply_channels` re-derives the SE squeeze width of a
block whose SE channels were cut (:func:`squeeze_channels`); ``se_ratio=None`` keeps the squeeze widths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nasprune.errors import NaspruneError
from nasprune.spec import ArchSpec, BlockSpec, DWSBlockSpec, IRBlockSpec, make_divisible

__all__ = ["DEFAULT_SE_RATIO", "ChannelGroup", "Slice", "SpecField", "apply_channels", "channel_groups",
           "check_layers", "check_se_ratio", "layer_channels", "prunable_layers", "require_prunable",
           "squeeze_channels"]

DEFAULT_SE_RATIO = 0.25  # MobileNetV3's squeeze: make_divisible(channels / 4, 8)


@dataclass(frozen=True)
class Slice:
    """Tensors of ``module`` indexed by a group's channels along ``dim``.

    ``dim=0`` (output channels) slices every tensor of the module with at least one dimension (conv weight,
    bias, BN weight, bias and running statistics); ``dim=1`` (input channels) slices only ``weight``.
    """

    module: str
    dim: int


@dataclass(frozen=True)
class SpecField:
    """A channel count of the spec that equals the group's width: field ``name`` of block ``block`` (``None``: the
    stem)."""

    block: int | None
    name: str


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable unit: coupled channels that are cut together.

    Attributes:
        layer: the group's name (the module of its first producer, e.g. ``blocks.3.conv_pw``, ``stem``).
        channels: its width.
        producers: ``ConvBNAct`` modules whose output channels are the group's channels; importance criteria sum
            their per-member scores.
        slices: every tensor the group's channels index.
        fields: the spec's channel counts that change with the group.
    """

    layer: str
    channels: int
    producers: tuple[str, ...]
    slices: tuple[Slice, ...]
    fields: tuple[SpecField, ...]


def _conv_out(module: str) -> list[Slice]:
    """A ``ConvBNAct``'s filters and BN entries."""
    return [Slice(f"{module}.conv", 0), Slice(f"{module}.bn", 0)]


def _dw_slices(prefix: str, block: BlockSpec) -> list[Slice]:
    """Depthwise conv, its BN and the SE around it: all indexed by the depthwise channels."""
    out = _conv_out(f"{prefix}.conv_dw")
    if block.has_se:
        out += [Slice(f"{prefix}.se.fc1", 1), Slice(f"{prefix}.se.fc2", 0)]
    return out


def _head_consumer(spec: ArchSpec) -> Slice:
    if spec.head.conv_channels:
        return Slice("head.conv_head.conv", 1)
    if spec.head.hidden_features:
        return Slice("head.fc_hidden", 1)
    return Slice("head.classifier", 1)


# -- what a block does with the channels of its input path and which conv produces its output ------------------
def _dws_input(prefix: str, block: BlockSpec) -> tuple[list[Slice], tuple[str, ...]]:
    return [*_dw_slices(prefix, block), Slice(f"{prefix}.conv_pw.conv", 1)], ("in_channels",)


def _ir_input(prefix: str, block: BlockSpec) -> tuple[list[Slice], tuple[str, ...]]:
    if block.expand:
        return [Slice(f"{prefix}.conv_pw.conv", 1)], ("in_channels",)
    return [*_dw_slices(prefix, block), Slice(f"{prefix}.conv_pwl.conv", 1)], ("in_channels", "exp_channels")


INPUT_COUPLING: dict[str, Callable[[str, BlockSpec], tuple[list[Slice], tuple[str, ...]]]] = {
    DWSBlockSpec.kind: _dws_input,
    IRBlockSpec.kind: _ir_input,
}
OUTPUT_CONV: dict[str, str] = {DWSBlockSpec.kind: "conv_pw", IRBlockSpec.kind: "conv_pwl"}


def _joined(block: BlockSpec) -> bool:
    """Whether the block adds its input to its output (input and output path are one group)."""
    return bool(getattr(block, "use_residual", False))


def _path_group(spec: ArchSpec, start: int) -> ChannelGroup:
    """The path group of feature map ``start`` (0: the stem's output, ``i + 1``: block ``i``'s output)."""
    n = len(spec.blocks)
    end = start
    while end < n and _joined(spec.blocks[end]):
        end += 1  # feature maps start..end are one channel space
    if start == 0:
        first, channels, fields = "stem", spec.stem.out_channels, [SpecField(None, "out_channels")]
    else:
        block = spec.blocks[start - 1]
        first, channels = f"blocks.{start - 1}.{OUTPUT_CONV[block.kind]}", block.out_channels
        fields = [SpecField(start - 1, "out_channels")]
    producers = [first, *(f"blocks.{b}.conv_pwl" for b in range(start, end))]
    fields += [SpecField(b, "out_channels") for b in range(start, end)]
    slices = [piece for module in producers for piece in _conv_out(module)]
    for b in range(start, min(end + 1, n)):
        consumer, names = INPUT_COUPLING[spec.blocks[b].kind](f"blocks.{b}", spec.blocks[b])
        slices += consumer
        fields += [SpecField(b, name) for name in names]
    if end == n:
        slices.append(_head_consumer(spec))
    return ChannelGroup(first, channels, tuple(producers), tuple(slices), tuple(fields))


def _expansion_group(spec: ArchSpec, i: int) -> ChannelGroup | None:
    block = spec.blocks[i]
    if not block.expand:
        return None
    prefix = f"blocks.{i}"
    slices = [*_conv_out(f"{prefix}.conv_pw"), *_dw_slices(prefix, block), Slice(f"{prefix}.conv_pwl.conv", 1)]
    return ChannelGroup(f"{prefix}.conv_pw", block.exp_channels, (f"{prefix}.conv_pw",), tuple(slices),
                        (SpecField(i, "exp_channels"),))


INNER_GROUPS: dict[str, Callable[[ArchSpec, int], ChannelGroup | None]] = {
    IRBlockSpec.kind: _expansion_group,
    DWSBlockSpec.kind: lambda spec, i: None,  # its depthwise channels are its input path's
}


def channel_groups(spec: ArchSpec) -> dict[str, ChannelGroup]:
    """Every channel group of ``spec``: the stem's path, then per block its expansion and its output path."""
    groups = [_path_group(spec, 0)]
    for i, block in enumerate(spec.blocks):
        groups.append(INNER_GROUPS[block.kind](spec, i))
        if not _joined(block):
            groups.append(_path_group(spec, i + 1))
    return {g.layer: g for g in groups if g is not None}


def prunable_layers(spec: ArchSpec) -> list[str]:
    """Names of the channel groups of ``spec`` (``["stem", "blocks.0.conv_pw", ...]``), in network order."""
    return list(channel_groups(spec))


def layer_channels(spec: ArchSpec) -> dict[str, int]:
    """Channels of every prunable layer (channel group) of ``spec``."""
    return {name: g.channels for name, g in channel_groups(spec).items()}


def require_prunable(spec: ArchSpec) -> list[str]:
    """The prunable layers of ``spec``; :class:`NaspruneError` if there is none (every valid spec has the stem)."""
    valid = prunable_layers(spec)
    if not valid:
        raise NaspruneError(f"{spec.name} has nothing prunable")
    return valid


def check_layers(spec: ArchSpec, names, what: str = "layer") -> None:
    """Raise :class:`NaspruneError` if any of ``names`` is not a prunable layer of ``spec``."""
    valid = require_prunable(spec)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise NaspruneError(f"unknown {what} {unknown[0]!r} for {spec.name}: expected one of {', '.join(valid)}")


# -- smaller specs ------------------------------------------------------------------------------------------------
def check_se_ratio(se_ratio: float | None) -> float | None:
    """``se_ratio`` if it is ``None`` or a number in (0, 1], else :class:`NaspruneError`."""
    ok = se_ratio is None or (isinstance(se_ratio, (int, float)) and not isinstance(se_ratio, bool)
                              and 0 < se_ratio <= 1)
    if not ok:
        raise NaspruneError(f"se_ratio={se_ratio!r} is invalid: expected a number in (0, 1] or None")
    return se_ratio


def squeeze_channels(channels: int, se_ratio: float = DEFAULT_SE_RATIO) -> int:
    """SE squeeze width over ``channels``: ``make_divisible(channels * se_ratio, 8)`` (the zoo's and the spaces'
    rule; MobileNetV3's ``make_divisible(exp / 4, 8)`` for ``se_ratio = 0.25``)."""
    return make_divisible(channels * se_ratio, 8)


def _resized(block: BlockSpec, fields: Mapping[str, int], se_ratio: float | None) -> BlockSpec:
    new = dataclasses.replace(block, **fields) if fields else block
    if new.has_se and se_ratio is not None and new.dw_channels != block.dw_channels:
        # never wider than before: the surgery keeps a subset of the parent's squeeze units
        new = dataclasses.replace(new, se_channels=min(block.se_channels, squeeze_channels(new.dw_channels,
                                                                                           se_ratio)))
    return new


def apply_channels(spec: ArchSpec, counts: Mapping[str, int], *,
                   se_ratio: float | None = DEFAULT_SE_RATIO) -> ArchSpec:
    """``spec`` with the groups in ``counts`` cut to that many channels (others unchanged).

    A block whose SE channels are cut gets the squeeze ``min(old, squeeze_channels(kept, se_ratio))``;
    ``se_ratio=None`` keeps every squeeze width (then the cut network equals the masked one exactly).
    """
    check_se_ratio(se_ratio)
    groups = channel_groups(spec)
    if counts:
        check_layers(spec, counts)
    changes: dict[int | None, dict[str, int]] = {}
    for name, n in counts.items():
        group = groups[name]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= group.channels:
            raise NaspruneError(f"{name}: {n!r} channels is invalid: expected an integer in 1..{group.channels}")
        for f in group.fields:
            changes.setdefault(f.block, {})[f.name] = n
    stem = dataclasses.replace(spec.stem, **changes.get(None, {}))
    blocks = tuple(_resized(block, changes.get(i, {}), se_ratio) for i, block in enumerate(spec.blocks))
    return spec.replace(stem=stem, blocks=blocks)
