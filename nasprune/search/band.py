"""The budget band: scale a candidate's per-layer keep fractions so that its child spends the budget.

A two-objective search spreads its trials along the accuracy/MFLOPs front instead of filling the budget: in the
first quickstart study only 2 of 43 trained trials used 85-100 % of it. With the band on, the sampler draws the
structure and the per-layer ratios ``r_l`` as before; then one global keep-scale ``s`` is bisected so that the
child keeping ``min(1, s * (1 - r_l))`` of layer ``l``'s channels (rounded and floored by
:func:`~nasprune.prune.selection.keep_count`, exactly as the surgery cuts) has MACs in
``[floor * budget, budget]``. The sampler then decides how the budget is shared between layers, not how much of
it is used (ModelOpt's AutoNAS keeps candidates within 85-100 % of the limit; AIMET and FastNAS bisect one
threshold the same way).

MACs do not decrease with ``s`` (every layer keeps at least as many channels), so bisection finds the largest
``s`` whose child fits; it runs on :func:`~nasprune.cost.closed_form_macs` (microseconds; equal to fvcore's count,
which the tests check) and the chosen child is counted by fvcore afterwards like every other trial.

A structure whose largest child (``s`` so large that every layer keeps everything) stays under the floor, or
whose smallest child (every layer at its channel floor) is over the budget, cannot reach the band:
:attr:`BandFit.reachable` is false and the trial is infeasible under its own constraint ``band``, untrained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nasprune.spec import ArchSpec

__all__ = ["DEFAULT_BUDGET_FLOOR", "BandFit", "band_design", "fill_band", "scaled_ratios"]

DEFAULT_BUDGET_FLOOR = 0.85
MAX_RATIO = 0.999       # ratios stay in [0, 1) (check_ratio); the channel floor decides what is left
BISECTION_STEPS = 40    # the scale's interval shrinks 2**40-fold: far below one channel of any layer


@dataclass(frozen=True, kw_only=True)
class BandFit:
    """The outcome of :func:`fill_band`.

    Attributes:
        scale: the keep-scale applied (1.0 where the band is off).
        ratios: the per-layer ratios the child was cut with (what the trial got).
        child: the child spec at those ratios.
        macs: the child's MACs (closed form).
        low: the band's lower end in MACs (``floor * budget``).
        high: the budget in MACs.
    """

    scale: float
    ratios: dict[str, float]
    child: ArchSpec
    macs: int
    low: float
    high: float

    @property
    def reachable(self) -> bool:
        return self.low <= self.macs <= self.high

    @property
    def shortfall(self) -> float:
        """MFLOPs below the band's lower end (> 0: the band was not reached; the ``band`` constraint)."""
        return (self.low - self.macs) / 1e6


def scaled_ratios(ratios: Mapping[str, float], scale: float) -> dict[str, float]:
    """Ratios keeping ``min(1, scale * (1 - r))`` of each layer (``scale`` 1 returns ``ratios`` unchanged)."""
    if scale == 1.0:
        return dict(ratios)
    return {layer: min(MAX_RATIO, max(0.0, 1.0 - scale * (1.0 - r))) for layer, r in ratios.items()}


def fill_band(parent: ArchSpec, ratios: Mapping[str, float], budget_mflops: float, floor: float, *,
              child_of: Callable[[ArchSpec, Mapping[str, float]], ArchSpec] | None = None,
              macs_of: Callable[[ArchSpec], int] | None = None) -> BandFit:
    """Bisect the keep-scale that puts the child of ``parent`` at ``ratios`` into ``[floor, 1] * budget``.

    Args:
        parent: the network that is cut (SE the trial dropped already removed).
        ratios: the sampled per-layer ratios (every prunable layer; absent layers keep everything).
        budget_mflops: the budget in MFLOPs (MACs / 1e6) at the parent's resolution.
        floor: the band's lower end as a fraction of the budget, in [0, 1]; 0 turns the band off (the ratios are
            used as sampled).
        child_of: ``(parent, ratios) -> child spec`` (default :func:`nasprune.prune.child_spec`).
        macs_of: MACs of a spec (default :func:`nasprune.cost.closed_form_macs`).
    """
    if child_of is None:
        from nasprune.prune import child_spec as child_of
    if macs_of is None:
        from nasprune.cost import closed_form_macs as macs_of
    high, low = budget_mflops * 1e6, floor * budget_mflops * 1e6

    def at(scale: float) -> BandFit:
        got = scaled_ratios(ratios, scale)
        child = child_of(parent, got)
        return BandFit(scale=scale, ratios=got, child=child, macs=macs_of(child), low=low, high=high)

    sampled = at(1.0)
    if floor <= 0 or not ratios or sampled.reachable:
        return sampled
    top = 1.0 / max(1e-9, min(1.0 - r for r in ratios.values()))  # every layer keeps everything
    widest = at(top)
    if widest.macs <= high:
        return widest                      # the largest child fits: unreachable when under the floor
    lo, hi = 0.0, top                      # invariant: at(hi) is over the budget
    best = at(lo)
    if best.macs > high:
        return best                        # even the floors are over the budget
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        fit = at(mid)
        if fit.macs <= high:
            lo, best = mid, fit
        else:
            hi = mid
    return best


def band_design(design, budget_mflops: float, floor: float, *, se_ratio: float | None):
    """``design`` (a :class:`~nasprune.search.space.Design`) with its ratios and child filled to the band.

    The parent with the trial's SE dropped is cut exactly as :func:`~nasprune.search.space.resolve` cuts it
    (``child_spec`` with the space's ``se_ratio``). Returns ``(design, fit)``.
    """
    from functools import partial

    from nasprune.prune import child_spec
    from nasprune.search.space import drop_se

    fit = fill_band(drop_se(design.parent, design.drop_se), design.ratios, budget_mflops, floor,
                    child_of=partial(child_spec, se_ratio=se_ratio))
    return design._replace(ratios=fit.ratios, child=fit.child), fit
