"""Surgery: the physically pruned network equals the original with the pruned channels zeroed."""

from __future__ import annotations

import itertools

import pytest
import torch
from prune_masking import masked_logits, randomised

import nasprune
from nasprune.errors import NaspruneError
from nasprune.prune import (
    child_spec,
    compute_scores,
    layer_channels,
    layer_report,
    prunable_layers,
    prune_model,
    select_global,
    select_per_layer,
)
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec

V1_HEAD = HeadSpec()
V3_HEAD = HeadSpec(conv_channels=24, conv_act="hswish", hidden_features=20, hidden_act="hswish")
HIDDEN_ONLY_HEAD = HeadSpec(hidden_features=20, hidden_act="relu")
CONV_ONLY_HEAD = HeadSpec(conv_channels=24, conv_act="relu6")


def dws_spec(head: HeadSpec) -> ArchSpec:
    """DWS blocks with and without SE, relu / relu6 / hswish, a stride-2 block."""
    return ArchSpec(name="tiny_dws", in_channels=3, resolution=16, num_classes=5, stem=StemSpec(out_channels=8),
                    blocks=(DWSBlockSpec(in_channels=8, out_channels=12, se_channels=8),
                            DWSBlockSpec(in_channels=12, out_channels=16, stride=2, act="relu6"),
                            DWSBlockSpec(in_channels=16, out_channels=14, se_channels=4, act="hswish",
                                         se_gate="sigmoid", kernel_size=5)),
                    head=head)


def ir_spec(head: HeadSpec) -> ArchSpec:
    """IR blocks: no expansion (with SE), expansion with SE and hswish, a residual block, one without SE."""
    return ArchSpec(name="tiny_ir", in_channels=3, resolution=16, num_classes=5,
                    stem=StemSpec(out_channels=8, act="hswish"),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=8, out_channels=8, expand=False, se_channels=8),
                            IRBlockSpec(in_channels=8, exp_channels=24, out_channels=12, stride=2, act="hswish",
                                        se_channels=8, kernel_size=5),
                            IRBlockSpec(in_channels=12, exp_channels=36, out_channels=12, act="hswish",
                                        se_channels=8, se_gate="sigmoid"),
                            IRBlockSpec(in_channels=12, exp_channels=30, out_channels=16, act="relu6")),
                    head=head)


def mixed_spec() -> ArchSpec:
    """DWS then IR (the DWS output feeds an IR block: not prunable) then IR then DWS at the end."""
    return ArchSpec(name="tiny_mixed", in_channels=3, resolution=16, num_classes=5, stem=StemSpec(out_channels=8),
                    blocks=(DWSBlockSpec(in_channels=8, out_channels=12),
                            IRBlockSpec(in_channels=12, exp_channels=36, out_channels=12, se_channels=8),
                            IRBlockSpec(in_channels=12, exp_channels=24, out_channels=16, stride=2),
                            DWSBlockSpec(in_channels=16, out_channels=20, se_channels=8)),
                    head=V3_HEAD)


SPECS = {
    "dws_v1_head": dws_spec(V1_HEAD),
    "dws_v3_head": dws_spec(V3_HEAD),
    "dws_hidden_head": dws_spec(HIDDEN_ONLY_HEAD),
    "dws_conv_head": dws_spec(CONV_ONLY_HEAD),
    "ir_v3_head": ir_spec(V3_HEAD),
    "ir_v1_head": ir_spec(V1_HEAD),
    "mixed": mixed_spec(),
}


def random_keep(spec: ArchSpec, seed: int = 1) -> dict[str, torch.Tensor]:
    """Arbitrary (not top-k) kept indices: a random non-empty subset of about half of each layer."""
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for layer, n in layer_channels(spec).items():
        keep[layer] = torch.randperm(n, generator=generator)[: max(1, n // 2)]
    return keep


@pytest.mark.parametrize("name", list(SPECS))
def test_pruned_equals_masked(name):
    spec = SPECS[name]
    model = randomised(spec)
    keep = random_keep(spec)
    pruned = prune_model(model, keep, se_ratio=None)  # squeeze widths kept: exactly the masked network
    x = torch.randn(4, spec.in_channels, spec.resolution, spec.resolution)
    expected = masked_logits(model, keep, x)
    with torch.no_grad():
        got = pruned(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert layer_channels(pruned.spec) == {k: max(1, v // 2) for k, v in layer_channels(spec).items()}


@pytest.mark.parametrize("name", ["dws_v1_head", "ir_v3_head"])
def test_masking_only_the_producer_differs(name):
    """The equivalence test can fail: without zeroing after the depthwise BN, its bias leaks through."""
    spec = SPECS[name]
    model = randomised(spec)
    keep = random_keep(spec)
    pruned = prune_model(model, keep, se_ratio=None)
    x = torch.randn(4, spec.in_channels, spec.resolution, spec.resolution)
    leaky = masked_logits(model, keep, x, dw=False)
    assert not torch.allclose(pruned(x), leaky, atol=1e-3)


def test_prunable_layers_per_block_kind():
    assert prunable_layers(SPECS["dws_v1_head"]) == ["stem", "blocks.0.conv_pw", "blocks.1.conv_pw",
                                                     "blocks.2.conv_pw"]
    # block 0 (8 -> 8, no expansion) is residual: the stem's path runs through it; blocks 1 and 2 share a path
    assert prunable_layers(SPECS["ir_v3_head"]) == ["stem", "blocks.1.conv_pw", "blocks.1.conv_pwl",
                                                    "blocks.2.conv_pw", "blocks.3.conv_pw", "blocks.3.conv_pwl"]
    assert prunable_layers(SPECS["mixed"]) == ["stem", "blocks.0.conv_pw", "blocks.1.conv_pw", "blocks.2.conv_pw",
                                               "blocks.2.conv_pwl", "blocks.3.conv_pw"]
    v3 = nasprune.get_spec("mobilenet_v3_large", num_classes=10)
    expansions = [name for name in prunable_layers(v3) if name.endswith(".conv_pw")]
    assert expansions == [f"blocks.{i}.conv_pw" for i in range(1, 15)]  # bneck 0 has no expansion


def test_cutting_expansions_leaves_paths_and_squeezes():
    spec = SPECS["ir_v3_head"]
    keep = {k: v for k, v in random_keep(spec).items() if k.endswith(".conv_pw")}
    pruned = prune_model(randomised(spec), keep, se_ratio=None)
    for before, after in zip(spec.blocks, pruned.spec.blocks, strict=True):
        assert (after.in_channels, after.out_channels, after.se_channels, after.use_residual) == (
            before.in_channels, before.out_channels, before.se_channels, before.use_residual)
    assert [b.exp_channels for b in pruned.spec.blocks] == [8, 12, 18, 15]


def test_bn_running_stats_are_sliced():
    spec = SPECS["ir_v3_head"]
    model = randomised(spec)
    keep = random_keep(spec)
    pruned = prune_model(model, keep)
    index = torch.sort(keep["blocks.2.conv_pw"]).values
    for part in ("conv_pw", "conv_dw"):
        old, new = model.get_submodule(f"blocks.2.{part}.bn"), pruned.get_submodule(f"blocks.2.{part}.bn")
        torch.testing.assert_close(new.running_mean, old.running_mean[index])
        torch.testing.assert_close(new.running_var, old.running_var[index])
    torch.testing.assert_close(pruned.blocks[2].se.fc1.bias, model.blocks[2].se.fc1.bias)


@pytest.mark.parametrize("name", ["dws_v3_head", "ir_v3_head"])
def test_child_spec_agrees_with_surgery(name):
    spec = SPECS[name]
    model = randomised(spec)
    layers = prunable_layers(spec)
    ratios = dict(zip(layers, itertools.cycle((0.0, 0.45, 0.9)), strict=False))
    keep = select_per_layer(compute_scores(model), ratios, floor=2, multiple=2)
    assert prune_model(model, keep).spec == child_spec(spec, ratios, floor=2, multiple=2)


def test_child_spec_agrees_on_mobilenet_v3_and_is_counted():
    spec = nasprune.get_spec("mobilenet_v3_large", num_classes=10, resolution=32)
    model = nasprune.build(spec)
    ratios = {layer: (i % 7) / 10 for i, layer in enumerate(prunable_layers(spec))}
    keep = select_per_layer(compute_scores(model, "random"), ratios)
    pruned = prune_model(model, keep)
    assert pruned.spec == child_spec(spec, ratios)
    cost = nasprune.count(pruned.spec)
    assert cost.params == sum(p.numel() for p in pruned.parameters())
    assert cost.macs < nasprune.count(spec).macs


def test_global_pruning_report_and_forward_shape():
    spec = SPECS["mixed"]
    model = randomised(spec)
    pruned = prune_model(model, select_global(compute_scores(model), 0.5, floor=1))
    report = layer_report(spec, pruned.spec)
    assert [r["name"] for r in report] == prunable_layers(spec)
    assert sum(r["after"] for r in report) < sum(r["before"] for r in report)
    assert pruned(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_prune_nothing_is_a_copy():
    spec = SPECS["dws_v1_head"]
    model = randomised(spec)
    pruned = prune_model(model, {})
    assert pruned.spec == spec and pruned is not model
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(pruned(x), model(x))
    assert not pruned.training


@pytest.mark.parametrize("keep, message", [
    ({"blocks.0.conv_pw": torch.tensor([0, 1])}, "unknown layer 'blocks.0.conv_pw'"),
    ({"blocks.1.conv_pw": torch.tensor([], dtype=torch.long)}, "keeping no channel"),
    ({"blocks.1.conv_pw": torch.tensor([0, 0])}, "distinct integers in 0..23"),
    ({"blocks.1.conv_pw": torch.tensor([24])}, "distinct integers in 0..23"),
])
def test_bad_keep(keep, message):
    with pytest.raises(NaspruneError, match=message):
        prune_model(randomised(SPECS["ir_v3_head"]), keep)


def test_no_expansion_conv_means_no_expansion_group():
    spec = ArchSpec(name="no_expansion", resolution=16, stem=StemSpec(out_channels=8),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=8, out_channels=8, expand=False),))
    with pytest.raises(NaspruneError, match="unknown layer 'blocks.0.conv_pw' for no_expansion: expected one of stem"):
        child_spec(spec, {"blocks.0.conv_pw": 0.5})
