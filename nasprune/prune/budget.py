"""Pruning to a MAC budget: the least global pruning whose child fits, and the cheapest child pruning can reach.

Global selection (:func:`~nasprune.prune.selection.select_global`) prunes the ``k`` lowest-scored of the ``N``
prunable channels (every layer keeps at least ``floor``). A larger ``k`` keeps a subset of the channels a smaller
one keeps, so the child's MACs never increase with ``k``, and the least ``k`` that fits a budget is found by
bisection over the integer ``k`` in ``log2 N`` counts. Counting uses the closed form
(:func:`nasprune.cost.closed_form_macs`) unless another counter is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from nasprune.cost import closed_form_macs
from nasprune.errors import NaspruneError
from nasprune.prune.groups import apply_channels, layer_channels
from nasprune.prune.selection import DEFAULT_FLOOR, select_global
from nasprune.spec import ArchSpec

__all__ = ["PruneFit", "fit_global_ratio", "kept_spec", "smallest_child"]


@dataclass(frozen=True, kw_only=True)
class PruneFit:
    """The least global pruning that fits a budget.

    Attributes:
        ratio: the global ratio ``pruned / total`` given to ``select_global``.
        pruned: channels pruned (``k``).
        total: prunable channels of the parent (``N``).
        keep: the kept channel indices per layer (what :func:`~nasprune.prune.surgery.prune_model` takes).
        child: the pruned spec (:func:`kept_spec` of ``keep``).
        macs: the child's MACs by the counter used.
    """

    ratio: float
    pruned: int
    total: int
    keep: dict[str, Tensor]
    child: ArchSpec
    macs: int


def kept_spec(spec: ArchSpec, keep: Mapping[str, Tensor]) -> ArchSpec:
    """``spec`` with each layer of ``keep`` cut to as many channels as it keeps indices (spec only, no weights)."""
    return apply_channels(spec, {layer: int(index.numel()) for layer, index in keep.items()})


def smallest_child(spec: ArchSpec, floor: int = DEFAULT_FLOOR) -> ArchSpec:
    """``spec`` with every prunable layer cut to the selection floor: the cheapest child pruning can reach."""
    return apply_channels(spec, {layer: min(c, floor) for layer, c in layer_channels(spec).items()})


def fit_global_ratio(spec: ArchSpec, scores: Mapping[str, Tensor], budget_mflops: float, *,
                     floor: int = DEFAULT_FLOOR,
                     macs_of: Callable[[ArchSpec], int] = closed_form_macs) -> PruneFit:
    """The smallest global ratio ``k / N`` whose :func:`select_global` child has MACs within the budget.

    Args:
        spec: the parent network (its resolution is the one the budget is counted at).
        scores: one importance score per channel of each prunable layer (``compute_scores``).
        budget_mflops: the budget in millions of MACs; the child must have ``macs <= budget_mflops * 1e6``.
        floor: channels every layer keeps at least (as in ``select_global``).
        macs_of: the MAC counter; the closed form by default (``nasprune.count(s).macs`` gives the same number,
            slower).

    Returns:
        The :class:`PruneFit` with the least ``k`` that fits (``k = 0``: the parent already fits).

    Raises:
        NaspruneError: even ``k = N - 1`` (every layer at its floor, or one channel short of empty) is over
            the budget.
    """
    limit = budget_mflops * 1e6
    total = sum(len(s) for s in scores.values())

    def attempt(k: int) -> PruneFit:
        keep = select_global(scores, k / total, floor=floor)
        child = kept_spec(spec, keep)
        return PruneFit(ratio=k / total, pruned=k, total=total, keep=keep, child=child, macs=macs_of(child))

    lo, hi = 0, total - 1
    best = attempt(hi)
    if best.macs > limit:
        least = math.ceil(best.macs / 1e4) / 100
        raise NaspruneError(f"{spec.name} cannot be pruned to {budget_mflops:g} MFLOPs: its smallest child has "
                            f"{best.macs / 1e6:.2f}; expected a budget >= {least:g} or a narrower width")
    while lo < hi:  # invariant: attempt(hi) fits
        mid = (lo + hi) // 2
        trial = attempt(mid)
        if trial.macs <= limit:
            hi, best = mid, trial
        else:
            lo = mid + 1
    return best
