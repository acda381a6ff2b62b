"""The zoo against the reference table (exact integers) and the papers' width rules."""

from __future__ import annotations

import pytest
import torch

from nasprune import build, count
from nasprune.spec import ArchSpec, DWSBlockSpec, IRBlockSpec, SpecError, make_divisible
from nasprune.zoo import (
    ZOO,
    fd_mobilenet,
    get_spec,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# /work/shared/reference/mobilenet-family.md, "Published and exact reference numbers" (224x224x3).
REFERENCE = [
    # (zoo name, kwargs, params, MACs)
    ("fd_mobilenet", dict(width=1.0), 2_901_288, 144_489_728),
    ("fd_mobilenet", dict(width=0.5), 993_928, 40_132_224),
    ("fd_mobilenet", dict(width=0.25), 383_160, 12_037_952),
    ("mobilenet_v1", dict(width=1.0), 4_231_976, 568_740_352),
    ("mobilenet_v1", dict(width=0.5), 1_331_592, 149_497_088),
    ("mobilenet_v1", dict(width=0.25), 470_072, 41_030_272),
    ("mobilenet_v2", dict(width=1.0), 3_504_872, 300_774_272),
    ("mobilenet_v3_large", dict(width=1.0), 5_483_032, 216_589_760),
    ("mobilenet_v3_small", dict(width=1.0), 2_542_856, 56_510_400),
    ("mobilenet_v3_large", dict(width=1.0, num_classes=10), 4_214_842, 215_322_560),
]


def _id(row) -> str:
    name, kwargs, *_ = row
    return name + "".join(f"-{k}{v:g}" for k, v in kwargs.items())


@pytest.mark.parametrize("name, kwargs, params, macs", REFERENCE, ids=[_id(r) for r in REFERENCE])
def test_reference_rows_exact(name, kwargs, params, macs):
    cost = count(get_spec(name, **kwargs))
    assert (cost.macs, cost.params) == (macs, params)
    assert cost.mflops == macs / 1e6
    assert cost.unsupported_ops == {}


def test_v3_large_10_classes_all_ops_is_the_pruning_papers_figure():
    # The structured-pruning paper reports 2.30e8 "FLOPs" for this network: that is an every-op count
    # (MACs + BN + activations + pooling + SE multiply + residual adds), not conv+linear MACs (215.3 M).
    cost = count(mobilenet_v3_large(num_classes=10))
    assert cost.all_ops == pytest.approx(229.6e6, abs=0.05e6)
    assert f"{cost.all_ops:.2e}" == "2.30e+08"
    assert f"{cost.macs:.2e}" == "2.15e+08"


def test_registry_holds_the_five_networks():
    assert set(ZOO) == {"mobilenet_v1", "fd_mobilenet", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"}
    assert all(ZOO[name].__name__ == name and ZOO[name].__doc__ for name in ZOO)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_inputs_classes_and_resolution_are_built(name):
    spec = ZOO[name](width=0.5, resolution=32, num_classes=10, in_channels=1)  # grayscale
    assert (spec.in_channels, spec.resolution, spec.num_classes) == (1, 32, 10)
    assert spec.name == f"{name}_0.5"
    model = build(spec).eval()
    assert model.stem.conv.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("width", [0, -0.5, True, "1"])
def test_bad_width_raises(name, width):
    with pytest.raises(SpecError, match=rf"width={width!r} is invalid: expected a number > 0"):
        ZOO[name](width=width)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_resolution_below_total_stride_raises(name):
    with pytest.raises(SpecError, match=r"resolution=16 is too small: .* downsamples 32x, .* resolution >= 32"):
        ZOO[name](resolution=16)


def test_unknown_name_lists_known_names():
    with pytest.raises(SpecError) as info:
        get_spec("mobilenet_v4")
    message = str(info.value)
    assert message.startswith("unknown model 'mobilenet_v4': expected one of ")
    assert all(name in message for name in ZOO)


# -- structure and width rules ---------------------------------------------------------------------------------
V1_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
V1_CHANNELS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
FD_STRIDES = [2, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1]
FD_CHANNELS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 1024]


@pytest.mark.parametrize("fn, strides, channels", [(mobilenet_v1, V1_STRIDES, V1_CHANNELS),
                                                   (fd_mobilenet, FD_STRIDES, FD_CHANNELS)], ids=["v1", "fd"])
@pytest.mark.parametrize("width", [1.0, 0.5, 0.25, 0.3])
def test_dws_networks_follow_int_width_rule(fn, strides, channels, width):
    spec = fn(width=width)
    assert all(isinstance(b, DWSBlockSpec) and not b.has_se and b.kernel_size == 3 for b in spec.blocks)
    assert [b.stride for b in spec.blocks] == strides
    assert spec.stem.out_channels == int(32 * width) and spec.stem.stride == 2
    assert [b.out_channels for b in spec.blocks] == [int(c * width) for c in channels]
    assert spec.head.conv_channels == 0 and spec.head.hidden_features == 0
    assert spec.total_stride == 32


def test_fd_mobilenet_downsamples_32x_within_12_layers():
    # Stem (1) + five dws blocks (10 layers) + the 6th block's depthwise conv = 12 layers (V1 needs 24).
    spec = fd_mobilenet()
    stride, layers = spec.stem.stride, 1
    for block in spec.blocks:
        layers += 1  # depthwise conv (carries the stride)
        stride *= block.stride
        if stride == 32:
            break
        layers += 1  # pointwise conv
    assert (stride, layers) == (32, 12)


def test_mobilenet_v2_width_rules():
    spec = mobilenet_v2()
    assert all(isinstance(b, IRBlockSpec) and b.act == "relu6" and not b.has_se for b in spec.blocks)
    assert len(spec.blocks) == 17 and spec.blocks[0].expand is False and spec.blocks[0].exp_channels == 32
    assert all(b.expand and b.exp_channels == 6 * b.in_channels for b in spec.blocks[1:])
    assert [b.out_channels for b in spec.blocks][-1] == 320
    assert spec.head.conv_channels == 1280 and spec.head.hidden_features == 0 and spec.head.dropout == 0.2
    assert mobilenet_v2(width=0.5).head.conv_channels == 1280  # max(1, alpha)
    assert mobilenet_v2(width=1.4).head.conv_channels == make_divisible(1280 * 1.4)
    assert mobilenet_v2(width=0.35).stem.out_channels == make_divisible(32 * 0.35) == 16


@pytest.mark.parametrize("fn, last, hidden", [(mobilenet_v3_large, 160, 1280), (mobilenet_v3_small, 96, 1024)],
                         ids=["large", "small"])
@pytest.mark.parametrize("width", [1.0, 0.75, 0.5])
def test_mobilenet_v3_width_rules(fn, last, hidden, width):
    spec = fn(width=width)
    assert (spec.bn_eps, spec.bn_momentum) == (0.001, 0.01)
    assert spec.stem.act == "hswish" and spec.stem.out_channels == make_divisible(16 * width)
    for block in spec.blocks:
        assert block.se_channels in (0, make_divisible(block.exp_channels // 4, 8))
        assert block.expand == (block.exp_channels != block.in_channels)
    assert spec.head.conv_channels == 6 * make_divisible(last * width)
    assert spec.head.hidden_features == make_divisible(hidden * width)
    assert spec.head.conv_act == spec.head.hidden_act == "hswish"


def test_mobilenet_v3_large_table():
    spec = mobilenet_v3_large()
    rows = [(b.kernel_size, b.exp_channels, b.out_channels, b.has_se, b.act, b.stride) for b in spec.blocks]
    assert rows == [
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1),
    ]
    assert spec.blocks[0].expand is False and [b.se_channels for b in spec.blocks if b.has_se][:3] == [24, 32, 32]
    assert (spec.head.conv_channels, spec.head.hidden_features) == (960, 1280)


def test_mobilenet_v3_small_table():
    spec = mobilenet_v3_small()
    rows = [(b.kernel_size, b.exp_channels, b.out_channels, b.has_se, b.act, b.stride) for b in spec.blocks]
    assert rows == [
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
    ]
    assert (spec.head.conv_channels, spec.head.hidden_features) == (576, 1024)


def test_zoo_specs_are_plain_data():
    spec = fd_mobilenet(width=0.25)
    assert isinstance(spec, ArchSpec) and spec == fd_mobilenet(width=0.25)
    assert spec.name == "fd_mobilenet_0.25" and mobilenet_v1().name == "mobilenet_v1_1"
