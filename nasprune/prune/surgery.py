"""Surgery: a physically smaller network (new spec plus sliced weights) from kept channel indices.

The result is an ordinary :class:`~nasprune.builder.NasNet` built from a smaller
:class:`~nasprune.spec.ArchSpec`, so ``nasprune.count``, checkpoints, ``nasprune.load`` and export treat it
like any other model. Which tensors each prunable layer's channels index is declared once in
:mod:`nasprune.prune.groups`; BN running statistics are sliced with the weights.

Where a block's SE channels are cut, its squeeze is re-derived from the kept channels
(:func:`~nasprune.prune.groups.apply_channels`, ``se_ratio``) and the squeeze units with the largest L1 norm of
their ``fc1`` row (over the kept inputs) survive, with their ``fc2`` columns. Then the cut network no longer
equals the masked one exactly (the dropped squeeze units changed the SE's scales); ``se_ratio=None`` keeps every
squeeze width, and the equality.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nasprune.builder import NasNet, build
from nasprune.errors import NaspruneError
from nasprune.prune.groups import DEFAULT_SE_RATIO, apply_channels, channel_groups, check_layers, layer_channels
from nasprune.prune.selection import DEFAULT_FLOOR, keep_count, top_indices
from nasprune.spec import ArchSpec

__all__ = ["child_spec", "layer_report", "permute_channels", "prune_model"]


def child_spec(spec: ArchSpec, ratios: Mapping[str, float], *, floor: int = DEFAULT_FLOOR,
               multiple: int = 1, se_ratio: float | None = DEFAULT_SE_RATIO) -> ArchSpec:
    """The spec :func:`prune_model` produces for per-layer ``ratios``, without any weights.

    Channel counts follow :func:`~nasprune.prune.selection.keep_count`, exactly as
    :func:`~nasprune.prune.selection.select_per_layer` does, so the search can count a child's MACs before
    training anything. Layers absent from ``ratios`` keep all channels. A pure function of its arguments (no
    weights, no randomness), cheap enough to bisect over.
    """
    if ratios:
        check_layers(spec, ratios)
    channels = layer_channels(spec)
    counts = {layer: keep_count(channels[layer], ratio, floor, multiple) for layer, ratio in ratios.items()}
    return apply_channels(spec, counts, se_ratio=se_ratio)


def _check_keep(name: str, index: Tensor, channels: int) -> Tensor:
    index = torch.as_tensor(index).long().flatten().cpu()
    if index.numel() == 0:
        raise NaspruneError(f"{name}: keeping no channel is invalid: expected at least 1 of {channels}")
    if index.unique().numel() != index.numel() or index.min() < 0 or index.max() >= channels:
        raise NaspruneError(f"{name}: kept indices are invalid: expected distinct integers in 0..{channels - 1}")
    return torch.sort(index).values


def _slices_by_module(spec: ArchSpec, keep: Mapping[str, Tensor]) -> dict[str, list[tuple[int, Tensor]]]:
    """``{module name: [(dim, kept indices), ...]}`` for every tensor the pruning touches."""
    by_module: dict[str, list[tuple[int, Tensor]]] = {}
    for layer, group in channel_groups(spec).items():
        if layer not in keep:
            continue
        index = _check_keep(layer, keep[layer], group.channels)
        for piece in group.slices:
            by_module.setdefault(piece.module, []).append((piece.dim, index))
    return by_module


def _slice_tensor(name: str, tensor: Tensor, cuts: list[tuple[int, Tensor]]) -> Tensor:
    for dim, index in cuts:
        if tensor.ndim == 0 or (dim > 0 and name != "weight"):
            continue  # num_batches_tracked; a bias is indexed by output channels only
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor


def _sliced_state(model: nn.Module, by_module: Mapping[str, list[tuple[int, Tensor]]]) -> dict[str, Tensor]:
    state = {}
    for key, tensor in model.state_dict().items():
        module, _, name = key.rpartition(".")
        state[key] = _slice_tensor(name, tensor, by_module.get(module, [])).clone()
    return state


def _squeeze_cuts(model: NasNet, child: ArchSpec, by_module: dict[str, list[tuple[int, Tensor]]]) -> None:
    """Add the kept squeeze units of every SE whose squeeze narrows: the top L1 rows of ``fc1`` (kept inputs)."""
    for i, (old, new) in enumerate(zip(model.spec.blocks, child.blocks, strict=True)):
        if new.se_channels == old.se_channels:
            continue
        fc1 = f"blocks.{i}.se.fc1"
        weight = _slice_tensor("weight", model.get_submodule(fc1).weight.detach(), by_module.get(fc1, []))
        index = top_indices(weight.abs().flatten(1).sum(1).double().cpu(), new.se_channels)
        by_module.setdefault(fc1, []).append((0, index))
        by_module.setdefault(f"blocks.{i}.se.fc2", []).append((1, index))


def prune_model(model: NasNet, keep: Mapping[str, Tensor], *,
                se_ratio: float | None = DEFAULT_SE_RATIO) -> NasNet:
    """A new, physically smaller network keeping the channels ``keep[layer]`` of each prunable layer.

    Args:
        model: a built network (``model.spec`` describes it).
        keep: ``{layer: kept channel indices}``; layers absent keep everything. Indices are sorted.
        se_ratio: squeeze of an SE whose channels are cut, ``squeeze_channels(kept, se_ratio)`` (see the module
            doc); ``None`` keeps the squeeze widths, so the result equals ``model`` with the pruned channels zeroed.

    Returns:
        A :class:`NasNet` of the smaller spec on ``model``'s device and dtype, in ``model``'s train/eval mode.
        ``model`` is not modified.
    """
    spec = model.spec
    if keep:
        check_layers(spec, keep)
    by_module = _slices_by_module(spec, keep)
    counts = {layer: int(torch.as_tensor(index).numel()) for layer, index in keep.items()}
    smaller = apply_channels(spec, counts, se_ratio=se_ratio)
    _squeeze_cuts(model, smaller, by_module)
    child = build(smaller)
    reference = next(model.parameters())
    child.load_state_dict(_sliced_state(model, by_module), strict=True)
    child.to(device=reference.device, dtype=reference.dtype)
    return child.train(model.training)


def permute_channels(model: NasNet, order: Mapping[str, Tensor]) -> NasNet:
    """A new network of ``model``'s spec whose group ``layer`` holds ``model``'s channels ``order[layer]`` in that
    order (groups absent keep theirs). It computes exactly what ``model`` computes: every tensor a group's channels
    index moves with them (:mod:`nasprune.prune.groups`)."""
    by_module: dict[str, list[tuple[int, Tensor]]] = {}
    for layer, group in channel_groups(model.spec).items():
        if layer not in order:
            continue
        index = torch.as_tensor(order[layer]).long().flatten().cpu()
        if sorted(index.tolist()) != list(range(group.channels)):
            raise NaspruneError(f"{layer}: the order is invalid: expected a permutation of 0..{group.channels - 1}")
        for piece in group.slices:
            by_module.setdefault(piece.module, []).append((piece.dim, index))
    twin = build(model.spec)
    reference = next(model.parameters())
    twin.load_state_dict(_sliced_state(model, by_module), strict=True)
    twin.to(device=reference.device, dtype=reference.dtype)
    return twin.train(model.training)


def layer_report(parent: ArchSpec, child: ArchSpec) -> list[dict]:
    """``[{name, before, after}]`` channels per prunable layer of ``parent`` (the paper's Table 5)."""
    after = layer_channels(child)
    return [{"name": name, "before": n, "after": after.get(name, n)} for name, n in layer_channels(parent).items()]

