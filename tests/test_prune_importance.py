"""Importance criteria against hand computation, and selection against brute force."""

from __future__ import annotations

import pytest
import torch

import nasprune
from nasprune.errors import NaspruneError
from nasprune.prune import (
    CRITERIA,
    compute_scores,
    filter_sparsity,
    global_threshold,
    keep_count,
    layer_channels,
    prunable_layers,
    select_global,
    select_per_layer,
)
from nasprune.spec import ArchSpec, IRBlockSpec, StemSpec

LAYER = "blocks.0.conv_pw"


def tiny_model() -> torch.nn.Module:
    """One IR block whose 3 expansion filters (2 inputs each) are set by hand."""
    spec = ArchSpec(name="hand", resolution=8, num_classes=2, stem=StemSpec(out_channels=2),
                    blocks=(IRBlockSpec(in_channels=2, exp_channels=3, out_channels=2),))
    model = nasprune.build(spec)
    with torch.no_grad():
        # |w| = 2, 2 | 2, 0 | 4, 2  -> layer mean M = 12 / 6 = 2
        model.get_submodule(f"{LAYER}.conv").weight.copy_(torch.tensor([[2.0, -2.0], [2.0, 0.0], [-4.0, 2.0]])
                                                          .view(3, 2, 1, 1))
        model.get_submodule(f"{LAYER}.bn").weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
    return model


EXPECTED = {
    "sparsity": [1.0, 0.5, 1.0],          # coefficients >= M (ties count): 2/2, 1/2, 2/2
    "gamma": [0.5, 2.0, 0.1],
    "gamma_sparsity": [0.5, 1.0, 0.1],   # |gamma| * S
    "l1": [4.0, 2.0, 6.0],
}


@pytest.mark.parametrize("criterion", list(EXPECTED))
def test_criteria_by_hand(criterion):
    scores = compute_scores(tiny_model(), criterion)
    assert list(scores) == ["stem", LAYER]  # the block is residual: the stem's path runs through it
    assert scores[LAYER].dtype == torch.float64
    assert scores[LAYER].tolist() == pytest.approx(EXPECTED[criterion])


def test_filter_sparsity_on_a_3x3_layer():
    weight = torch.zeros(2, 1, 3, 3)
    weight[0, 0, 0, :] = 9.0        # 3 of 9 coefficients large
    weight[1] = 1.0                 # all 9 equal to 1
    # M = (27 + 9) / 18 = 2: filter 0 has 3 coefficients >= 2, filter 1 none
    assert filter_sparsity(weight).tolist() == pytest.approx([3 / 9, 0.0])


def test_random_is_seeded():
    model = tiny_model()
    a, b, c = (compute_scores(model, "random", seed=s)[LAYER] for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()


@pytest.mark.parametrize("criterion", list(CRITERIA))
def test_every_criterion_scores_every_prunable_channel(criterion):
    spec = nasprune.get_spec("mobilenet_v3_small", num_classes=10, resolution=32)
    scores = CRITERIA[criterion](nasprune.build(spec), seed=0)
    assert list(scores) == prunable_layers(spec)
    for layer, s in scores.items():
        assert s.shape == (layer_channels(spec)[layer],)
        assert torch.isfinite(s).all() and (s >= 0).all()


def residual_model() -> tuple[torch.nn.Module, list[str]]:
    """A stage of three 4-channel blocks joined by residual adds: one group of 3 producer convs (random weights)."""
    blocks = [IRBlockSpec(in_channels=4, exp_channels=8, out_channels=4, stride=2)]
    blocks += [IRBlockSpec(in_channels=4, exp_channels=8, out_channels=4) for _ in range(2)]
    model = nasprune.build(ArchSpec(name="res", resolution=8, num_classes=2, stem=StemSpec(out_channels=4),
                                    blocks=tuple(blocks)))
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.normal_()
    return model, [f"blocks.{i}.conv_pwl" for i in range(3)]


@pytest.mark.parametrize("criterion", ["gamma_sparsity", "gamma", "l1", "sparsity"])
def test_a_group_scores_the_sum_over_its_members(criterion):
    model, members = residual_model()
    scores = compute_scores(model, criterion)
    assert list(scores) == ["stem", "blocks.0.conv_pw", "blocks.0.conv_pwl", "blocks.1.conv_pw", "blocks.2.conv_pw"]

    def member(name: str) -> torch.Tensor:  # the single-conv criteria, by hand
        weight = model.get_submodule(f"{name}.conv").weight.detach().double()
        gamma = model.get_submodule(f"{name}.bn").weight.detach().double().abs()
        return {"gamma_sparsity": gamma * filter_sparsity(weight), "gamma": gamma,
                "l1": weight.abs().flatten(1).sum(1), "sparsity": filter_sparsity(weight)}[criterion]

    torch.testing.assert_close(scores["blocks.0.conv_pwl"], sum(member(m) for m in members))
    torch.testing.assert_close(scores["stem"], member("stem"))
    assert scores["blocks.0.conv_pwl"].shape == (4,)


def test_unknown_criterion():
    with pytest.raises(NaspruneError, match="unknown criterion 'taylor': expected one of gamma_sparsity, gamma"):
        compute_scores(tiny_model(), "taylor")


# -- selection --------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels, ratio, floor, multiple, expected", [
    (100, 0.5, 8, 1, 50),
    (10, 0.3, 1, 1, 7),       # 0.3 * 10 is 3.0000000000000004: still prunes exactly 3
    (100, 0.29, 1, 1, 71),
    (16, 0.99, 8, 1, 8),      # the floor
    (4, 0.9, 8, 1, 4),        # a layer narrower than the floor keeps everything
    (50, 0.99, 1, 1, 1),
    (30, 0.5, 1, 8, 16),      # 15 rounded up to a multiple of 8
    (30, 0.1, 1, 8, 30),      # 27 -> 32, capped at the layer's width
    (20, 0.0, 8, 1, 20),
])
def test_keep_count(channels, ratio, floor, multiple, expected):
    assert keep_count(channels, ratio, floor=floor, multiple=multiple) == expected


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, True, "0.5", float("nan")])
def test_bad_ratio(ratio):
    with pytest.raises(NaspruneError, match=r"expected a number in \[0, 1\)"):
        keep_count(10, ratio)


def random_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"blocks.{i}.conv_pw": torch.rand(n, generator=generator, dtype=torch.float64)
            for i, n in enumerate((16, 40, 24, 72))}


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.35, 0.5, 0.7, 0.9])
def test_global_selection_matches_brute_force_percentile(ratio):
    scores = random_scores()
    everything = [v for s in scores.values() for v in s.tolist()]
    k = int(ratio * len(everything) + 1e-9)
    # brute force (scores are distinct): a channel is pruned iff fewer than k scores lie below it
    pruned = {(layer, j) for layer, s in scores.items() for j, v in enumerate(s.tolist())
              if sum(u < v for u in everything) < k}
    keep = select_global(scores, ratio, floor=1)
    for layer, s in scores.items():
        expected = [j for j in range(len(s)) if (layer, j) not in pruned]
        assert keep[layer].tolist() == expected
    assert sum(len(v) for v in keep.values()) == len(everything) - k


def test_global_threshold_is_the_kth_smallest():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([2.0, 4.0, 6.0, 0.0])}
    assert global_threshold(scores, 0.0) == float("-inf")
    assert global_threshold(scores, 0.43) == 3.0   # sorted: 0 1 2 [3] 4 5 6
    keep = select_global(scores, 0.43, floor=1)
    assert keep["a"].tolist() == [0, 2] and keep["b"].tolist() == [1, 2]


def test_ties_beyond_the_target_are_pruned_from_the_highest_index():
    scores = {"a": torch.full((8,), 0.5, dtype=torch.float64), "b": torch.arange(8, dtype=torch.float64)}
    keep = select_global(scores, 0.5, floor=1)       # threshold = 16 sorted -> index 8 = 0.5, 15 tie or exceed it
    assert keep["a"].tolist() == [0] and keep["b"].tolist() == list(range(1, 8))
    assert sum(len(v) for v in keep.values()) == 8


@pytest.mark.parametrize("seed", range(5))
def test_a_binding_floor_takes_its_channels_from_the_lowest_survivors_elsewhere(seed):
    g = torch.Generator().manual_seed(seed)
    weak = torch.rand(16, generator=g, dtype=torch.float64) * 0.01   # all below every other layer's scores
    strong = {f"s{i}": 1 + torch.rand(n, generator=g, dtype=torch.float64) for i, n in enumerate((24, 40))}
    scores = {"weak": weak, **strong}
    keep = select_global(scores, 0.5, floor=4)
    assert sum(len(v) for v in keep.values()) == 40          # 80 channels, 50 %: exactly 40, floor or not
    assert keep["weak"].tolist() == torch.sort(torch.topk(weak, 4).indices).values.tolist()
    pooled = torch.cat([strong["s0"], strong["s1"]])
    cut = torch.sort(pooled, descending=True).values[35]      # the 36 strong survivors are the 36 best
    for layer in strong:
        assert bool((scores[layer][keep[layer]] >= cut).all())


@pytest.mark.parametrize("floor, multiple", [(8, 1), (1, 1), (4, 8)])
def test_floor_holds_at_099(floor, multiple):
    scores = random_scores()
    for keep in (select_global(scores, 0.99, floor=floor, multiple=multiple),
                 select_per_layer(scores, dict.fromkeys(scores, 0.99), floor=floor, multiple=multiple)):
        for layer, s in scores.items():
            expected = min(len(s), -(-max(floor, 1) // multiple) * multiple)
            assert len(keep[layer]) >= expected >= 1
            assert len(keep[layer]) % multiple == 0 or len(keep[layer]) == len(s)


def test_global_floor_adds_back_the_best_pruned_channels():
    scores = {"low": torch.tensor([0.01, 0.04, 0.03, 0.02]), "high": torch.arange(1.0, 9.0)}
    keep = select_global(scores, 0.5, floor=2)
    assert keep["low"].tolist() == [1, 2]
    assert keep["high"].tolist() == [4, 5, 6, 7]  # 6 of 12 kept: the floor's 2 come off the lowest of "high"


def test_per_layer_keeps_the_top_scores():
    scores = {"a": torch.tensor([0.3, 0.9, 0.1, 0.5]), "b": torch.tensor([1.0, 2.0])}
    keep = select_per_layer(scores, {"a": 0.5}, floor=1)
    assert keep["a"].tolist() == [1, 3] and keep["b"].tolist() == [0, 1]


def test_per_layer_unknown_layer_lists_valid_ones():
    with pytest.raises(NaspruneError, match="unknown layer 'blocks.9.conv_pw': expected one of blocks.0.conv_pw, "):
        select_per_layer(random_scores(), {"blocks.9.conv_pw": 0.5})
