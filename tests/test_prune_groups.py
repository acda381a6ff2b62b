"""Channel groups: the stem and the residual paths are prunable, cut consistently, and the cut network equals the
masked original (zoo networks, random specs, random ratios); closed-form MACs after cutting; SE squeeze re-derived.

The masking (``tests/prune_masking.py``) is derived from the network's layout alone, not from
``nasprune.prune.groups``, so it checks the declared coupling.
"""

from __future__ import annotations

import pytest
import torch
from prune_masking import (
    closed_form_macs,
    expected_widths,
    masked_logits,
    path_names,
    random_keep,
    randomised,
    residual,
)

import nasprune
from nasprune.errors import NaspruneError
from nasprune.prune import channel_groups, child_spec, keep_count, layer_channels, prunable_layers, prune_model
from nasprune.prune.groups import apply_channels, squeeze_channels
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec, make_divisible

ZOO_NETS = {  # small widths and 32x32 inputs: every kind of coupling, fast
    "mobilenet_v1": dict(width=0.25),
    "fd_mobilenet": dict(width=0.25),
    "mobilenet_v2": dict(width=0.35),
    "mobilenet_v3_large": dict(width=0.35),
    "mobilenet_v3_small": dict(width=0.5),
}


def zoo(name: str) -> ArchSpec:
    return nasprune.get_spec(name, num_classes=7, resolution=32, **ZOO_NETS[name])


# -- which groups exist ------------------------------------------------------------------------------------------
def test_groups_of_mobilenet_v3_large():
    spec = nasprune.get_spec("mobilenet_v3_large", num_classes=10)
    groups = channel_groups(spec)
    paths = [name for name in groups if not name.endswith(".conv_pw")]
    # bneck 0 (16 -> 16, stride 1) is residual: the stem's path runs through it to bneck 1's expansion input
    assert paths == ["stem", "blocks.1.conv_pwl", "blocks.3.conv_pwl", "blocks.6.conv_pwl", "blocks.10.conv_pwl",
                     "blocks.12.conv_pwl"]
    assert groups["stem"].producers == ("stem", "blocks.0.conv_pwl")
    assert groups["blocks.6.conv_pwl"].producers == tuple(f"blocks.{i}.conv_pwl" for i in range(6, 10))
    assert groups["blocks.12.conv_pwl"].channels == 160
    assert [name for name in groups if name.endswith(".conv_pw")] == [f"blocks.{i}.conv_pw" for i in range(1, 15)]
    modules = {s.module for s in groups["blocks.12.conv_pwl"].slices}
    assert {"blocks.13.conv_pw.conv", "blocks.14.conv_pwl.conv", "head.conv_head.conv"} <= modules
    assert not any(".se." in m for m in modules)  # SE scales the expansion channels, not the residual path


def test_dws_stem_feeds_block_0():
    spec = nasprune.get_spec("fd_mobilenet", width=0.25, num_classes=10)
    stem = channel_groups(spec)["stem"]
    assert prunable_layers(spec) == ["stem", *(f"blocks.{i}.conv_pw" for i in range(11))]
    assert {s.module for s in stem.slices} == {"stem.conv", "stem.bn", "blocks.0.conv_dw.conv", "blocks.0.conv_dw.bn",
                                               "blocks.0.conv_pw.conv"}


def test_every_network_has_the_stem_and_a_residual_only_net_is_one_group():
    spec = ArchSpec(name="no_expansion", resolution=16, stem=StemSpec(out_channels=8),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=8, out_channels=8, expand=False),))
    assert prunable_layers(spec) == ["stem"]
    child = apply_channels(spec, {"stem": 3})
    assert (child.stem.out_channels, child.blocks[0].in_channels, child.blocks[0].exp_channels,
            child.blocks[0].out_channels) == (3, 3, 3, 3) and child.blocks[0].use_residual


# -- cut == masked -----------------------------------------------------------------------------------------------
def _check_equivalence(spec: ArchSpec, seed: int) -> None:
    model = randomised(spec, seed)
    keep = random_keep(spec, seed)
    pruned = prune_model(model, keep, se_ratio=None)
    x = torch.randn(2, spec.in_channels, spec.resolution, spec.resolution)
    with torch.no_grad():
        got = pruned(x)
    torch.testing.assert_close(got, masked_logits(model, keep, x), atol=1e-4, rtol=1e-4)
    assert layer_channels(pruned.spec) == {k: len(v) for k, v in keep.items()}
    widths = expected_widths(spec, keep)
    assert [(b.in_channels, b.dw_channels, b.out_channels) for b in pruned.spec.blocks] == widths
    assert [residual(b) for b in pruned.spec.blocks] == [residual(b) for b in spec.blocks]
    se = [b.se_channels for b in spec.blocks]
    assert nasprune.count(pruned.spec, layers=False).macs == closed_form_macs(spec, widths, len(keep["stem"]), se)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(ZOO_NETS))
def test_zoo_cut_equals_masked(name, seed):
    _check_equivalence(zoo(name), seed)


@pytest.mark.parametrize("seed", range(8))
def test_random_specs_cut_equals_masked(random_spec, seed):
    _check_equivalence(random_spec(seed), seed)


def test_masking_only_the_feature_maps_differs():
    """The equivalence can fail: left unmasked, the depthwise BN bias of a cut path channel leaks into the next
    1x1 conv (a DWS block and a block without expansion read their input with a depthwise conv)."""
    spec = zoo("mobilenet_v3_large")
    model = randomised(spec)
    keep = {"stem": torch.arange(0, 8, 2)}
    pruned = prune_model(model, keep, se_ratio=None)
    x = torch.randn(2, 3, 32, 32)
    handles = []
    m = torch.zeros(spec.stem.out_channels)
    m[keep["stem"]] = 1.0
    for module in (model.stem, model.blocks[0]):
        handles.append(module.register_forward_hook(lambda mod, i, out: out * m.view(1, -1, 1, 1)))
    with torch.no_grad():
        leaky = model(x)
    for h in handles:
        h.remove()
    assert not torch.allclose(pruned(x), leaky, atol=1e-3)
    torch.testing.assert_close(pruned(x), masked_logits(model, keep, x), atol=1e-4, rtol=1e-4)


def test_a_residual_stage_is_cut_together():
    spec = zoo("mobilenet_v2")
    layer = path_names(spec)[7]  # stage 4 (64 channels at 1x): blocks 6..9
    assert layer == "blocks.6.conv_pwl"
    child = child_spec(spec, {layer: 0.5})
    assert [b.out_channels for b in child.blocks[6:10]] == [keep_count(spec.blocks[6].out_channels, 0.5)] * 4
    assert [b.in_channels for b in child.blocks[7:11]] == [child.blocks[6].out_channels] * 4
    assert all(b.use_residual for b in child.blocks[7:10])


# -- SE squeeze re-derived from the kept channels --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_squeeze_follows_the_kept_channels(name):
    spec = zoo(name)
    model = randomised(spec)
    keep = random_keep(spec, 3)
    pruned = prune_model(model, keep)
    assert pruned.spec == apply_channels(spec, {k: len(v) for k, v in keep.items()})
    narrower = 0
    for before, after in zip(spec.blocks, pruned.spec.blocks, strict=True):
        if not before.has_se or after.dw_channels == before.dw_channels:
            assert after.se_channels == before.se_channels
            continue
        assert after.se_channels == min(before.se_channels, make_divisible(after.dw_channels / 4, 8))
        narrower += after.se_channels < before.se_channels
    assert narrower >= 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(pruned(x)).all() and pruned(x).shape == (2, 7)
    widths = expected_widths(spec, keep)
    se = [b.se_channels for b in pruned.spec.blocks]
    assert nasprune.count(pruned.spec, layers=False).macs == closed_form_macs(spec, widths, len(keep["stem"]), se)
    assert nasprune.count(pruned.spec, layers=False).params == sum(p.numel() for p in pruned.parameters())
    # with narrower squeezes the cut network is no longer the masked one (documented), without them it is
    assert not torch.allclose(pruned(x), masked_logits(model, keep, x), atol=1e-3)


def test_squeeze_keeps_the_largest_fc1_rows():
    spec = ArchSpec(name="se", resolution=8, num_classes=3, stem=StemSpec(out_channels=8),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=64, out_channels=8, se_channels=16),),
                    head=HeadSpec())
    model = randomised(spec)
    with torch.no_grad():
        model.blocks[0].se.fc1.weight.mul_(0.01)
        model.blocks[0].se.fc1.weight[[3, 9, 12]] = 5.0
    keep = {"blocks.0.conv_pw": torch.arange(24)}  # 24 of 64: squeeze make_divisible(6, 8) = 8
    pruned = prune_model(model, keep)
    assert pruned.spec.blocks[0].se_channels == 8 == squeeze_channels(24)
    rows = model.blocks[0].se.fc1.weight[:, :24].abs().flatten(1).sum(1)
    expected = torch.sort(torch.sort(rows, descending=True, stable=True).indices[:8]).values
    assert {3, 9, 12} <= set(expected.tolist())
    torch.testing.assert_close(pruned.blocks[0].se.fc1.weight, model.blocks[0].se.fc1.weight[expected][:, :24])
    torch.testing.assert_close(pruned.blocks[0].se.fc1.bias, model.blocks[0].se.fc1.bias[expected])
    torch.testing.assert_close(pruned.blocks[0].se.fc2.weight, model.blocks[0].se.fc2.weight[:24][:, expected])


def test_child_spec_is_pure_and_matches_surgery_on_every_group():
    spec = zoo("mobilenet_v3_large")
    ratios = {layer: (i % 9) / 10 for i, layer in enumerate(prunable_layers(spec))}
    first = child_spec(spec, ratios)
    assert child_spec(spec, dict(ratios)) == first
    from nasprune.prune import compute_scores, select_per_layer

    model = randomised(spec)
    assert prune_model(model, select_per_layer(compute_scores(model), ratios)).spec == first
    assert first.stem.out_channels == keep_count(spec.stem.out_channels, 0.0)
    assert first.blocks[1].in_channels == first.stem.out_channels


@pytest.mark.parametrize("se_ratio", [0, 1.5, True, "0.25"])
def test_bad_se_ratio(se_ratio):
    with pytest.raises(NaspruneError, match=r"se_ratio=.* is invalid: expected a number in \(0, 1\] or None"):
        child_spec(zoo("mobilenet_v3_small"), {}, se_ratio=se_ratio)


def test_dws_block_feeding_an_ir_block_is_prunable_now():
    spec = ArchSpec(name="mixed", resolution=16, num_classes=5, stem=StemSpec(out_channels=8),
                    blocks=(DWSBlockSpec(in_channels=8, out_channels=12),
                            IRBlockSpec(in_channels=12, exp_channels=36, out_channels=12, se_channels=8)))
    groups = channel_groups(spec)
    assert list(groups) == ["stem", "blocks.0.conv_pw", "blocks.1.conv_pw"]
    assert groups["blocks.0.conv_pw"].producers == ("blocks.0.conv_pw", "blocks.1.conv_pwl")
    _check_equivalence(spec, 5)
