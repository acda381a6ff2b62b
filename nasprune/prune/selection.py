"""Selection: which channels each prunable layer keeps, from scores and a ratio.

**Floor rule.** Whatever the ratio, a layer with ``c`` channels keeps at least ``min(c, floor)`` channels
(``floor`` defaults to 8), and its kept count is rounded *up* to a multiple of ``multiple`` (default 1, i.e.
no rounding), capped at ``c``. So no ratio below 1 can empty a layer or break the network, unlike the
paper's 70 % run.

* **Per layer** (:func:`select_per_layer`): layer ``l`` with ratio ``r`` keeps :func:`keep_count` channels,
  ``c - floor(r * c)`` before the floor and rounding, the highest-scored ones.
* **Global** (:func:`select_global`, the paper's way): all ``N`` scores of all prunable layers are ranked
  together; with ``k = floor(r * N)``, the threshold ``t`` is the ``k``-th smallest score (0-based index
  ``k`` of the ascending order) and every channel scoring below ``t`` is pruned. The floor then adds back a
  layer's best pruned channels where needed, and as many of the lowest-scored survivors elsewhere (above their
  own floors) are pruned instead, as are ties at ``t`` beyond the target: the network keeps exactly
  ``N - k`` channels whenever the floors leave that many to choose (``multiple`` > 1 rounds up after that).
  The count is a property of the rule, not of the scores: it does not depend on where a floor binds.

Ties in the per-layer ranking go to the lower channel index. Kept indices are returned sorted ascending,
so pruned networks keep their channel order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from nasprune.errors import NaspruneError

__all__ = ["DEFAULT_FLOOR", "check_ratio", "global_threshold", "keep_count", "select_global", "select_per_layer",
           "top_indices"]

DEFAULT_FLOOR = 8
_EPS = 1e-9  # so that 0.3 * 10 prunes 3 channels despite floating-point rounding


def check_ratio(ratio: float, where: str = "ratio") -> float:
    """Return ``ratio`` as a float if it lies in [0, 1), else raise :class:`NaspruneError`."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise NaspruneError(f"{where}={ratio!r} is invalid: expected a number in [0, 1)")
    return float(ratio)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NaspruneError(f"{name}={value!r} is invalid: expected an integer >= 1")


def _apply_floor(channels: int, keep: int, floor: int, multiple: int) -> int:
    _check_positive("floor", floor)
    _check_positive("multiple", multiple)
    keep = max(keep, min(channels, floor))
    return min(channels, math.ceil(keep / multiple) * multiple)


def keep_count(channels: int, ratio: float, floor: int = DEFAULT_FLOOR, multiple: int = 1) -> int:
    """Channels a layer of ``channels`` keeps at ``ratio``, after the floor and rounding (see module doc)."""
    _check_positive("channels", channels)
    ratio = check_ratio(ratio)
    pruned = math.floor(ratio * channels + _EPS)
    return _apply_floor(channels, channels - pruned, floor, multiple)


def top_indices(scores: Tensor, n: int) -> Tensor:
    """Indices of the ``n`` highest ``scores`` (ties to the lower index), sorted ascending."""
    order = torch.sort(scores, descending=True, stable=True).indices[:n]
    return torch.sort(order).values


def select_per_layer(scores: Mapping[str, Tensor], ratios: Mapping[str, float], *, floor: int = DEFAULT_FLOOR,
                     multiple: int = 1) -> dict[str, Tensor]:
    """Kept channel indices per layer, pruning each layer by its own ratio (layers absent from ``ratios``: 0)."""
    unknown = sorted(set(ratios) - set(scores))
    if unknown:
        raise NaspruneError(f"unknown layer {unknown[0]!r}: expected one of {', '.join(scores)}")
    return {layer: top_indices(s, keep_count(len(s), check_ratio(ratios.get(layer, 0.0), f"ratio of {layer}"),
                                             floor, multiple))
            for layer, s in scores.items()}


def global_threshold(scores: Mapping[str, Tensor], ratio: float) -> float:
    """The score below which channels are pruned at a global ``ratio`` (``-inf`` when nothing is pruned)."""
    ratio = check_ratio(ratio)
    if not scores:
        raise NaspruneError("nothing to prune: the model has no prunable layers")
    everything = torch.cat([s.double().flatten() for s in scores.values()])
    k = math.floor(ratio * everything.numel() + _EPS)
    if k == 0:
        return -math.inf
    return float(torch.sort(everything).values[k])


def select_global(scores: Mapping[str, Tensor], ratio: float, *, floor: int = DEFAULT_FLOOR,
                  multiple: int = 1) -> dict[str, Tensor]:
    """Kept channel indices per layer under one ranking across all layers (the paper's selection), keeping
    exactly ``N - floor(ratio * N)`` channels wherever the floor allows it (see the module doc)."""
    threshold = global_threshold(scores, ratio)
    total = sum(len(s) for s in scores.values())
    target = total - math.floor(check_ratio(ratio) * total + _EPS)
    counts = {layer: _apply_floor(len(s), int((s.double() >= threshold).sum()), floor, 1)
              for layer, s in scores.items()}
    extra = sum(counts.values()) - target
    if extra > 0:
        _trim(scores, counts, extra, floor)
    return {layer: top_indices(s, _apply_floor(len(s), counts[layer], floor, multiple)) for layer, s in scores.items()}


def _trim(scores: Mapping[str, Tensor], counts: dict[str, int], extra: int, floor: int) -> None:
    """Take ``extra`` channels off ``counts``: the lowest-scored kept channels above each layer's floor (ties to
    the earlier layer, then the higher channel index), so that a binding floor or ties at the threshold do not
    keep more than the target."""
    removable = []
    for position, (layer, s) in enumerate(scores.items()):
        kept = torch.sort(s.double(), descending=True, stable=True)
        spare = counts[layer] - min(len(s), floor)
        # kept channels from the lowest up; the top min(c, floor) stay whatever happens
        for rank in range(counts[layer] - 1, counts[layer] - 1 - spare, -1):
            removable.append((float(kept.values[rank]), position, -int(kept.indices[rank]), layer))
    for *_, layer in sorted(removable)[:extra]:
        counts[layer] -= 1
