"""The cost model against closed forms, against torch's FlopCounterMode, and its cache (latency: test_latency)."""

from __future__ import annotations

import pytest
from torch import nn

from nasprune import build, count
from nasprune.blocks import ConvBNAct, SqueezeExcite
from nasprune.cost import (
    closed_form_macs,
    count_model,
    count_module,
    flop_counter_macs,
)
from nasprune.spec import ArchSpec, DWSBlockSpec, IRBlockSpec, SpecError, conv_out_size
from nasprune.zoo import ZOO, fd_mobilenet, mobilenet_v3_small

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# -- closed forms, one module at a time ------------------------------------------------------------------------
def conv_macs(c_in: int, c_out: int, kernel: int, out_size: int, groups: int = 1) -> int:
    return (c_in // groups) * kernel * kernel * c_out * out_size * out_size


@pytest.mark.parametrize("c_in, c_out, kernel, stride, size", [(3, 16, 3, 2, 32), (4, 6, 5, 1, 15), (1, 8, 3, 2, 33)])
def test_plain_conv(c_in, c_out, kernel, stride, size):
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    out = conv_out_size(size, kernel, stride)
    cost = count_module(conv, (1, c_in, size, size))
    assert cost.macs == c_in * c_out * kernel**2 * out**2
    assert cost.params == c_in * c_out * kernel**2
    assert cost.all_ops == cost.macs  # nothing else in a bare conv


def test_conv_bias_is_not_a_mac():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    assert count_module(conv, (1, 4, 9, 9)).macs == 4 * 6 * 9 * 81


@pytest.mark.parametrize("channels, kernel, stride, size", [(24, 3, 2, 33), (16, 5, 1, 14), (8, 5, 2, 7)])
def test_depthwise_conv(channels, kernel, stride, size):
    conv = nn.Conv2d(channels, channels, kernel, stride=stride, padding=kernel // 2, groups=channels, bias=False)
    out = conv_out_size(size, kernel, stride)
    cost = count_module(conv, (1, channels, size, size))
    assert cost.macs == channels * kernel**2 * out**2  # not channels**2 * ...: groups are honoured
    assert cost.params == channels * kernel**2


@pytest.mark.parametrize("batch", [1, 4])
def test_linear(batch):
    cost = count_module(nn.Linear(96, 10), (batch, 96))
    assert cost.macs == batch * 96 * 10
    assert cost.params == 96 * 10 + 10


@pytest.mark.parametrize("gate", ["hsigmoid", "sigmoid"])
def test_squeeze_excite(gate):
    channels, squeeze, size = 32, 8, 7
    cost = count_module(SqueezeExcite(channels, squeeze, gate=gate), (1, channels, size, size))
    assert cost.macs == channels * squeeze + squeeze * channels  # two 1x1 convs on a 1x1 map
    assert cost.params == channels * squeeze + squeeze + squeeze * channels + channels
    # all ops: pool reads every input element, ReLU and gate per element, the scaling multiply per element.
    assert cost.all_ops == cost.macs + channels * size**2 + squeeze + channels + channels * size**2


def test_conv_bn_act_all_ops():
    cost = count_module(ConvBNAct(8, 16, kernel_size=3, stride=2, act="hswish"), (1, 8, 16, 16))
    out_numel = 16 * 8 * 8
    assert cost.macs == conv_macs(8, 16, 3, 8)
    assert cost.params == 8 * 16 * 9 + 2 * 16  # BN weight and bias count as params
    assert cost.all_ops == cost.macs + 2 * out_numel + out_numel  # BN: scale and shift; hswish: one


def test_count_module_restores_training_mode():
    module = ConvBNAct(3, 4)
    count_module(module, (1, 3, 8, 8))
    assert module.training


# -- closed forms for whole networks ---------------------------------------------------------------------------
def _block_macs(block, size: int) -> tuple[int, int]:
    """MACs of one block and its output size, from the spec fields alone."""
    out = conv_out_size(size, block.kernel_size, block.stride)
    c = block.dw_channels
    expand = block.in_channels * c * size * size if isinstance(block, IRBlockSpec) and block.expand else 0
    se = 2 * c * block.se_channels
    return expand + conv_macs(c, c, block.kernel_size, out, groups=c) + se + c * block.out_channels * out**2, out


def expected_layer_macs(spec: ArchSpec) -> list[int]:
    """Closed-form MACs of ``stem``, every block and ``head``, in the order of ``Cost.layers``."""
    size = conv_out_size(spec.resolution, spec.stem.kernel_size, spec.stem.stride)
    rows = [conv_macs(spec.in_channels, spec.stem.out_channels, spec.stem.kernel_size, size)]
    for block in spec.blocks:
        macs, size = _block_macs(block, size)
        rows.append(macs)
    head, channels, macs = spec.head, spec.out_channels, 0
    if head.conv_channels:
        macs, channels = channels * head.conv_channels * size * size, head.conv_channels
    if head.hidden_features:
        macs, channels = macs + channels * head.hidden_features, head.hidden_features
    rows.append(macs + channels * spec.num_classes)
    return rows


def expected_params(spec: ArchSpec) -> int:
    """Closed-form parameter count: convs without bias + BN (2 per channel), SE with biases, linears."""
    def conv_bn(c_in, c_out, k=1, groups=1):
        return c_in // groups * c_out * k * k + 2 * c_out

    total = conv_bn(spec.in_channels, spec.stem.out_channels, spec.stem.kernel_size)
    for b in spec.blocks:
        c = b.dw_channels
        total += conv_bn(b.in_channels, c) if isinstance(b, IRBlockSpec) and b.expand else 0
        total += conv_bn(c, c, b.kernel_size, groups=c) + conv_bn(c, b.out_channels)
        total += 2 * c * b.se_channels + b.se_channels + c if b.has_se else 0
    channels, head = spec.out_channels, spec.head
    if head.conv_channels:
        total, channels = total + conv_bn(channels, head.conv_channels), head.conv_channels
    if head.hidden_features:
        total, channels = total + channels * head.hidden_features + head.hidden_features, head.hidden_features
    return total + channels * spec.num_classes + spec.num_classes


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_closed_form(name):
    spec = ZOO[name]()
    cost = count(spec)
    assert [row.macs for row in cost.layers] == expected_layer_macs(spec)
    assert cost.params == expected_params(spec)


@pytest.mark.parametrize("seed", range(6))
def test_random_specs_match_closed_form(random_spec, seed):
    spec = random_spec(seed)
    cost = count(spec)
    assert [row.macs for row in cost.layers] == expected_layer_macs(spec)
    assert cost.params == expected_params(spec)
    assert cost.unsupported_ops == {}


def test_se_on_dws_block_counts_its_two_fcs():
    plain = fd_mobilenet(width=0.25, resolution=32)
    blocks = list(plain.blocks)
    blocks[2] = DWSBlockSpec(in_channels=blocks[2].in_channels, out_channels=blocks[2].out_channels, se_channels=8)
    with_se = plain.replace(blocks=tuple(blocks))
    c = blocks[2].in_channels
    assert count(with_se).macs - count(plain).macs == 2 * c * 8
    assert count(with_se).params - count(plain).params == 2 * c * 8 + 8 + c


# -- per-layer rows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
def test_layer_rows_sum_to_totals(name):
    spec = ZOO[name]()
    cost = count(spec)
    assert [row.name for row in cost.layers] == ["stem", *(f"blocks.{i}" for i in range(len(spec.blocks))), "head"]
    assert sum(row.macs for row in cost.layers) == cost.macs
    assert sum(row.params for row in cost.layers) == cost.params
    assert [row.out_size for row in cost.layers[:-1]] == spec.feature_sizes()
    assert [row.out_channels for row in cost.layers[1:-1]] == [b.out_channels for b in spec.blocks]
    assert cost.all_ops > cost.macs


def test_resolution_override():
    spec = fd_mobilenet(width=0.5, num_classes=10)
    at_96 = count(spec, resolution=96)
    assert at_96 == count(spec.replace(resolution=96))
    assert at_96.macs == sum(expected_layer_macs(spec.replace(resolution=96))) != count(spec).macs
    assert sum(row.macs for row in at_96.layers) == at_96.macs
    assert [row.out_size for row in at_96.layers[:-1]] == spec.feature_sizes(96)
    assert at_96.params == count(spec).params and spec.resolution == 224
    assert count(spec, resolution=224) is count(spec) and count(spec, 96) is at_96  # positional too
    with pytest.raises(SpecError, match="resolution=16 is too small"):
        count(spec, resolution=16)


# -- the cache -------------------------------------------------------------------------------------------------
def test_cache_is_keyed_by_content():
    spec = mobilenet_v3_small(width=0.5, resolution=64, num_classes=7)
    first = count(spec)
    assert count(spec) is first
    assert count(spec.replace(name="renamed")) is first  # the hash ignores the name
    assert count(spec, layers=False) is first  # a cached entry with layers answers layers=False
    assert count(spec.replace(num_classes=8)).macs == first.macs + spec.head.hidden_features  # one more class
    assert count(spec.replace(in_channels=1)).macs < first.macs


def test_cache_without_layers():
    spec = fd_mobilenet(width=0.25, resolution=64, num_classes=5)
    lean = count(spec, layers=False)
    assert lean.layers == () and lean.macs == sum(expected_layer_macs(spec))
    full = count(spec)
    assert full.macs == lean.macs and len(full.layers) == len(spec.blocks) + 2


def test_count_model_counts_the_given_model_and_keeps_its_mode(tiny_spec):
    model = build(tiny_spec).train()
    cost = count_model(model, tiny_spec)
    assert model.training
    assert (cost.macs, cost.params) == (count(tiny_spec).macs, count(tiny_spec).params)


# -- fvcore vs torch.utils.flop_counter ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
def test_fvcore_agrees_with_flop_counter_mode_on_zoo(name):
    spec = ZOO[name]()
    model = build(spec)
    assert flop_counter_macs(model, spec) == count(spec).macs
    assert model.training  # flop_counter_macs gives the model back in the mode it had


@pytest.mark.parametrize("seed", range(6))
def test_fvcore_agrees_with_flop_counter_mode_on_random_specs(random_spec, seed):
    spec = random_spec(seed)
    assert flop_counter_macs(build(spec), spec) == count(spec).macs


# -- the closed form -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("pruned", [False, True], ids=["full", "smallest_child"])
def test_closed_form_macs_equal_fvcore(name, pruned):
    from nasprune.prune import smallest_child

    spec = ZOO[name](width=0.5, resolution=96, num_classes=10, in_channels=1)
    if pruned:
        spec = smallest_child(spec)
    assert closed_form_macs(spec) == count(spec, layers=False).macs
