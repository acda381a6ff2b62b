"""The builder: stable module names, shapes, residuals, SE and the spec travelling with the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasprune import build
from nasprune.blocks import ConvBNAct, DepthwiseSeparable, InvertedResidual, SqueezeExcite
from nasprune.builder import NasNet
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec
from nasprune.zoo import ZOO, fd_mobilenet, mobilenet_v2, mobilenet_v3_large

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def mixed_spec(**changes) -> ArchSpec:
    spec = ArchSpec(
        name="mixed", in_channels=1, resolution=33, num_classes=5, bn_eps=1e-3, bn_momentum=0.01,
        stem=StemSpec(out_channels=8, stride=2, act="relu6"),
        blocks=(
            DWSBlockSpec(in_channels=8, out_channels=16, stride=2, kernel_size=5, se_channels=8, se_gate="sigmoid"),
            IRBlockSpec(in_channels=16, exp_channels=16, out_channels=16, expand=False, act="hswish"),
            IRBlockSpec(in_channels=16, exp_channels=48, out_channels=24, stride=2, se_channels=16),
        ),
        head=HeadSpec(conv_channels=64, conv_act="hswish", hidden_features=32, dropout=0.2),
    )
    return spec.replace(**changes)


def test_module_names_are_the_contract():
    names = dict(build(mixed_spec()).named_modules())
    for name in ["stem.conv", "stem.bn", "stem.act",
                 "blocks.0.conv_dw.conv", "blocks.0.se.fc1", "blocks.0.se.fc2", "blocks.0.conv_pw.conv",
                 "blocks.1.conv_pw", "blocks.1.conv_dw.conv", "blocks.1.se", "blocks.1.conv_pwl.bn",
                 "blocks.2.conv_pw.conv", "blocks.2.se.fc1", "blocks.2.conv_pwl.conv",
                 "head.conv_head.conv", "head.fc_hidden", "head.classifier"]:
        assert name in names, name
    assert isinstance(names["blocks.0"], DepthwiseSeparable) and isinstance(names["blocks.2"], InvertedResidual)
    assert isinstance(names["blocks.0.se"], SqueezeExcite) and isinstance(names["blocks.0.se.gate"], nn.Sigmoid)
    assert isinstance(names["blocks.2.se.gate"], nn.Hardsigmoid)
    # parts that are off are nn.Identity, so the names never move
    for name in ["blocks.1.conv_pw", "blocks.1.se", "blocks.2.conv_pwl.act"]:
        assert type(names[name]) is nn.Identity, name


def test_v1_head_and_blocks_without_parts():
    names = dict(build(fd_mobilenet(width=0.25, resolution=32)).named_modules())
    assert type(names["head.conv_head"]) is nn.Identity and type(names["head.fc_hidden"]) is nn.Identity
    assert type(names["head.dropout"]) is nn.Identity and type(names["blocks.0.se"]) is nn.Identity
    assert isinstance(names["head.classifier"], nn.Linear)


def test_layers_follow_the_spec():
    spec = mixed_spec()
    model = build(spec)
    assert model.spec is spec and isinstance(model, NasNet)
    dw = model.blocks[0].conv_dw.conv
    assert (dw.in_channels, dw.out_channels, dw.groups, dw.kernel_size, dw.stride) == (8, 8, 8, (5, 5), (2, 2))
    assert model.blocks[0].se.fc1.out_channels == 8 and model.blocks[2].se.fc1.in_channels == 48
    assert isinstance(model.blocks[1].conv_dw.act, nn.Hardswish) and isinstance(model.stem.act, nn.ReLU6)
    assert isinstance(model.blocks[2].conv_pw.act, nn.ReLU)
    se_convs = {name for name, m in model.named_modules() if ".se.fc" in name}
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert se_convs and all((m.bias is not None) == (name in se_convs) for name, m in convs.items())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all((bn.eps, bn.momentum) == (1e-3, 0.01) for bn in bns)
    assert model.head.dropout.p == 0.2 and model.head.classifier.out_features == 5


@pytest.mark.parametrize("resolution", [33, 32, 17])
def test_feature_sizes_match_real_shapes(resolution):
    spec = mixed_spec(resolution=resolution)
    model = build(spec).eval()
    x = torch.randn(1, 1, resolution, resolution)
    sizes = []
    with torch.no_grad():
        x = model.stem(x)
        sizes.append(x.shape[-1])
        for block in model.blocks:
            x = block(x)
            sizes.append(x.shape[-1])
        assert x.shape[1] == spec.out_channels
    assert sizes == spec.feature_sizes()


@pytest.mark.parametrize("in_channels, classes", [(1, 10), (3, 1000), (4, 2)])
def test_output_shape(in_channels, classes):
    spec = mixed_spec(in_channels=in_channels, num_classes=classes)
    with torch.no_grad():
        assert build(spec).eval()(torch.randn(3, in_channels, 33, 33)).shape == (3, classes)


def test_residual_only_when_legal():
    model = build(mixed_spec()).eval()
    assert [model.blocks[i].use_residual for i in (1, 2)] == [True, False]
    # With the projection's BN zeroed a residual block is the identity; a block without residual gives zeros.
    for i, shape in ((1, (2, 16, 9, 9)), (2, (2, 16, 9, 9))):
        nn.init.zeros_(model.blocks[i].conv_pwl.bn.weight)
        x = torch.randn(shape)
        with torch.no_grad():
            out = model.blocks[i](x)
        assert torch.equal(out, x) if i == 1 else torch.equal(out, torch.zeros(2, 24, 5, 5))


def test_squeeze_excite_scales_channels():
    se = SqueezeExcite(4, 8, gate="sigmoid").eval()
    for fc in (se.fc1, se.fc2):
        nn.init.zeros_(fc.weight)
        nn.init.zeros_(fc.bias)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(se(x), x * 0.5)  # sigmoid(0) = 0.5
    se = SqueezeExcite(4, 8, gate="hsigmoid").eval()
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    with torch.no_grad():
        assert torch.allclose(se(x), x * 0.5)  # hardsigmoid(0) = 3/6


def test_conv_bn_act_linear_bottleneck():
    block = ConvBNAct(4, 6, act=None)
    assert type(block.act) is nn.Identity and block.conv.bias is None


def test_initialisation_is_torchvisions():
    model = build(mixed_spec())
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0)
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.all(model.head.classifier.bias == 0) and model.head.classifier.weight.std() < 0.02
    assert torch.all(model.blocks[0].se.fc1.bias == 0)


def test_build_rejects_non_specs():
    with pytest.raises(TypeError, match="build\\(\\) expects an ArchSpec, got dict"):
        build(mixed_spec().to_dict())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_param_shapes_follow_spec(name):
    spec = ZOO[name](width=0.5, resolution=32)
    model = build(spec)
    for i, block in enumerate(spec.blocks):
        module = model.blocks[i]
        last = module.conv_pw if isinstance(block, DWSBlockSpec) else module.conv_pwl
        assert last.conv.out_channels == block.out_channels
        assert module.conv_dw.conv.out_channels == block.dw_channels
        assert isinstance(module.se, SqueezeExcite) == block.has_se


def test_zoo_blocks_without_expansion_have_no_expansion_conv():
    for spec in (mobilenet_v2(), mobilenet_v3_large()):
        assert type(build(spec.replace(resolution=32)).blocks[0].conv_pw) is nn.Identity
