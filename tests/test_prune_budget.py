"""nasprune.prune.budget: the least global pruning that fits a MAC budget, and the cheapest reachable child.

Exact numbers for MobileNetV3-Large with 1 input channel and 10 classes at 224x224 (the budget table's setting),
with seeded random scores; the fit is checked to be the least: one channel less is over the budget.
"""

from __future__ import annotations

import pytest
import torch

from nasprune import count, get_spec
from nasprune.cost import closed_form_macs
from nasprune.errors import NaspruneError
from nasprune.prune import (
    DEFAULT_FLOOR,
    fit_global_ratio,
    kept_spec,
    layer_channels,
    select_global,
    smallest_child,
)


def _v3(width: float):
    return get_spec("mobilenet_v3_large", width=width, resolution=224, num_classes=10, in_channels=1)


def _scores(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.rand(c, generator=g, dtype=torch.float64) for layer, c in layer_channels(spec).items()}


@pytest.mark.parametrize("width, budget, pruned, total, macs", [
    (1.0, 140, 1095, 5432, 139_957_450),
    (1.0, 40, 3493, 5432, 39_920_857),  # exact counts: floors take from the lowest survivors
    (0.5, 12, 1879, 2752, 11_982_553),
])
def test_global_ratio_is_the_least_pruning_that_fits(width, budget, pruned, total, macs):
    spec = _v3(width)
    scores = _scores(spec)
    fit = fit_global_ratio(spec, scores, budget)
    assert (fit.pruned, fit.total, fit.macs, fit.ratio) == (pruned, total, macs, pruned / total)
    assert fit.macs <= budget * 1e6 and closed_form_macs(fit.child) == fit.macs
    assert {k: int(v.numel()) for k, v in fit.keep.items()} == layer_channels(fit.child)
    one_less = select_global(scores, (pruned - 1) / total)
    assert closed_form_macs(kept_spec(spec, one_less)) > budget * 1e6


def test_a_parent_within_budget_is_not_pruned():
    spec = _v3(0.5)
    fit = fit_global_ratio(spec, _scores(spec), 1000)
    assert (fit.pruned, fit.ratio, fit.macs) == (0, 0.0, closed_form_macs(spec))
    assert fit.child.hash == spec.hash


def test_the_counter_can_be_swapped():
    spec = _v3(0.5)
    calls = []

    def counter(s):
        calls.append(s.hash)
        return closed_form_macs(s)

    fit = fit_global_ratio(spec, _scores(spec), 12, macs_of=counter)
    assert fit.pruned == 1879 and len(calls) <= 1 + (fit.total - 1).bit_length()  # bisection, not a scan


def test_global_ratio_refuses_an_unreachable_budget():
    spec = _v3(0.35)
    with pytest.raises(NaspruneError, match=r"cannot be pruned to 5 MFLOPs: its smallest child has 6\.01; "
                                            r"expected a budget >= 6\.01"):
        fit_global_ratio(spec, _scores(spec), 5)


def test_smallest_child_cuts_every_prunable_layer_to_the_floor():
    spec = _v3(1.0)
    child = smallest_child(spec)
    assert max(layer_channels(child).values()) == DEFAULT_FLOOR  # every channel group at the floor
    assert smallest_child(child).hash == child.hash  # nothing left to cut
    assert closed_form_macs(child) == count(child, layers=False).macs == 7_337_048
