"""The budget band: one global keep-scale bisected so that a child spends [floor, 1] x budget."""

from __future__ import annotations

import random

import pytest

from nasprune.cost import closed_form_macs, count
from nasprune.prune import child_spec, prunable_layers
from nasprune.search.band import MAX_RATIO, fill_band, scaled_ratios
from nasprune.zoo import get_spec

NETS = ["fd_mobilenet", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


def _spec(name: str, width: float = 1.0):
    return get_spec(name, width=width, resolution=224, num_classes=10, in_channels=1)


def _ratios(spec, seed: int) -> dict[str, float]:
    rnd = random.Random(seed)
    return {layer: rnd.choice([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) for layer in prunable_layers(spec)}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("budget", [12, 40, 140])
def test_child_lands_in_the_band_and_the_scale_is_the_largest_that_fits(name, budget):
    spec = _spec(name)
    ratios = _ratios(spec, budget)
    fit = fill_band(spec, ratios, budget, 0.85)
    if closed_form_macs(spec) < 0.85 * budget * 1e6:  # even the unpruned parent is under the band
        assert not fit.reachable and fit.child == spec
        return
    assert fit.reachable and 0.85 * budget * 1e6 <= fit.macs <= budget * 1e6
    assert fit.child == child_spec(spec, fit.ratios) and fit.macs == count(fit.child, layers=False).macs
    assert fit.ratios == scaled_ratios(ratios, fit.scale)
    if fit.scale != 1.0 and fit.child != spec:  # bisected: a slightly larger scale is over the budget
        assert closed_form_macs(child_spec(spec, scaled_ratios(ratios, fit.scale * 1.001))) > budget * 1e6


def test_the_keep_fractions_keep_the_sampled_shape():
    ratios = {"a": 0.0, "b": 0.5, "c": 0.2}
    assert scaled_ratios(ratios, 1.0) == ratios
    got = scaled_ratios(ratios, 0.5)
    assert got == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.6})  # keep 0.5 * (1 - r): the ratio of keeps stays
    assert scaled_ratios(ratios, 3.0) == {"a": 0.0, "b": 0.0, "c": 0.0}  # never more than the parent
    assert scaled_ratios({"a": 0.5}, 0.0) == {"a": MAX_RATIO}  # nothing but the channel floor


def test_ratios_already_in_the_band_are_kept():
    spec = _spec("fd_mobilenet", 0.5)
    macs = closed_form_macs(spec)
    fit = fill_band(spec, {layer: 0.0 for layer in prunable_layers(spec)}, macs / 1e6 / 0.9, 0.85)
    assert fit.scale == 1.0 and fit.macs == macs and fit.reachable


def test_band_off_uses_the_ratios_as_sampled():
    spec = _spec("mobilenet_v1")
    ratios = _ratios(spec, 0)
    fit = fill_band(spec, ratios, 12, 0.0)
    assert fit.scale == 1.0 and fit.ratios == ratios and not fit.reachable  # over the budget: infeasible later


def test_a_structure_too_small_for_the_band_is_unreachable():
    spec = _spec("fd_mobilenet", 0.25)  # 12.0 MFLOPs unpruned: the widest child is under 0.85 x 40
    fit = fill_band(spec, _ratios(spec, 1), 40, 0.85)
    assert not fit.reachable and fit.macs == closed_form_macs(spec) and fit.shortfall > 0
    assert fit.shortfall == pytest.approx((0.85 * 40e6 - closed_form_macs(spec)) / 1e6)


def test_a_structure_whose_floors_are_over_the_budget_is_unreachable():
    spec = _spec("mobilenet_v3_large")
    fit = fill_band(spec, _ratios(spec, 2), 1, 0.85)  # the 8-channel floors alone cost more than 1 MFLOP
    assert not fit.reachable and fit.macs > 1e6 and fit.scale == 0.0
