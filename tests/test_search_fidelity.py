"""nasprune.search.fidelity: rank statistics against hand-computed values, the picks, the BN spread, re-deriving
a trial's child."""

import math

import pytest
import torch
from torch import nn

from nasprune.search.fidelity import (
    average_ranks,
    gamma_spread,
    kendall_tau_b,
    prune_trial,
    rank_agreement,
    spearman_rho,
    spread_picks,
    top1_regret,
    top_k_overlap,
    trial_design,
)


def test_kendall_tau_b_by_hand():
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: pair (1, 2) tied in x, pair (2, 3) tied in y; C = 4, D = 0 -> 4 / sqrt((6 - 1) (6 - 1)) = 0.8
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)


def test_kendall_tau_b_constant_and_unequal():
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal lengths"):
        kendall_tau_b([1, 2], [1, 2, 3])


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([3.0, 3.0, 3.0]) == [2.0, 2.0, 2.0]


def test_spearman_rho_by_hand():
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties in y: ranks [1, 2, 3.5, 5, 3.5]; centred products sum to 8, variances 10 and 9.5
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman_rho([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert math.isnan(spearman_rho([1, 2, 3], [4, 4, 4]))


def test_top_k_overlap_and_regret():
    proxy, truth = [0.9, 0.8, 0.7, 0.6], [0.7, 0.9, 0.8, 0.1]
    assert top_k_overlap(proxy, truth, 1) == 0.0          # proxy's best (0) is not the truth's (1)
    assert top_k_overlap(proxy, truth, 2) == 0.5          # {0, 1} against {1, 2}
    assert top_k_overlap(proxy, truth, 3) == 1.0          # {0, 1, 2} both
    assert math.isnan(top_k_overlap(proxy[:2], truth[:2], 3))  # fewer values than k
    assert top1_regret(proxy, truth) == pytest.approx(0.2)
    assert top1_regret(truth, truth) == 0.0
    with pytest.raises(ValueError, match="k=0"):
        top_k_overlap(proxy, truth, 0)


def test_rank_agreement_collects_the_figures():
    a = rank_agreement([1, 2, 3, 4], [1, 3, 2, 4])
    assert (a.n, a.top1, a.top3) == (4, 1.0, 1.0)
    assert (a.tau, a.rho, a.regret) == (pytest.approx(4 / 6), pytest.approx(0.8), 0)
    assert set(a.to_dict()) == {"n", "tau", "rho", "top1", "top3", "regret"}


def test_spread_picks_keeps_the_best_and_spreads_the_rest():
    values = [0.1 * i for i in range(10)]                 # index i has the i-th lowest value
    picks = spread_picks(values, 5, 2)
    assert picks[:2] == [9, 8]                            # the two best, best first
    assert picks[-1] == 0                                 # the lowest is in
    assert len(set(picks)) == 5
    assert picks == [9, 8, 7, 3, 0]                       # rest 7..0 at positions 0, round(3.5) = 4, 7
    assert spread_picks(values[:3], 5, 2) == [2, 1, 0]    # at most k: all of them
    assert spread_picks(values, 3, 2) == [9, 8, 0]
    with pytest.raises(ValueError, match="top=4"):
        spread_picks(values, 3, 4)


def test_gamma_spread_by_hand():
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(2))
    model[1].weight.data = torch.tensor([1.0, 0.0, -0.005, 2.0])
    model[2].weight.data = torch.tensor([0.5, 0.5])
    g = [1.0, 0.0, 0.005, 2.0, 0.5, 0.5]
    mean = sum(g) / 6
    std = math.sqrt(sum((x - mean) ** 2 for x in g) / 6)
    s = gamma_spread(model)
    assert s.channels == 6
    assert s.mean == pytest.approx(mean)
    assert s.cv == pytest.approx(std / mean)
    assert s.share_below == pytest.approx(2 / 6)           # 0 and |-0.005|
    with pytest.raises(ValueError, match="no BatchNorm"):
        gamma_spread(nn.Linear(2, 2))


def test_trial_design_and_prune_trial_reproduce_the_counted_child():
    from nasprune import build
    from nasprune.cost import closed_form_macs
    from nasprune.search.recipe import load_recipe

    recipe = load_recipe("quickstart")
    params = {"schedule": "fast", "width": 0.5, "criterion": "gamma", "se_0": True}
    design = trial_design(recipe, params, shape=(1, 10))
    mflops = closed_form_macs(design.child) / 1e6
    assert recipe.budget_floor * recipe.budget_mflops <= mflops <= recipe.budget_mflops  # filled into the band
    parent, se_ratio = build(design.parent), recipe.space.member("dws").se_ratio
    for criterion in ("gamma", "random"):
        assert prune_trial(parent, design, criterion, se_ratio=se_ratio).spec.hash == design.child.hash
    other = trial_design(recipe, {**params, "schedule": "slow"}, shape=(1, 10))
    with pytest.raises(ValueError, match="is not the design's parent"):
        prune_trial(build(other.parent), design, "gamma", se_ratio=se_ratio)
