"""Architecture specs: JSON round trips (hash, counts, outputs), derived facts, validation messages."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nasprune import build
from nasprune.cost import count, count_model
from nasprune.spec import (
    ArchSpec,
    DWSBlockSpec,
    HeadSpec,
    IRBlockSpec,
    SpecError,
    StemSpec,
    conv_out_size,
    make_divisible,
)
from nasprune.zoo import ZOO, fd_mobilenet, mobilenet_v3_small

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def se_dws_spec() -> ArchSpec:
    """SE on depthwise-separable blocks (both gates), k5, relu6/hswish, grayscale, 40x40, 7 classes."""
    return ArchSpec(
        name="se_dws", in_channels=1, resolution=40, num_classes=7,
        stem=StemSpec(out_channels=8, stride=2, act="hswish"),
        blocks=(
            DWSBlockSpec(in_channels=8, out_channels=16, stride=2, se_channels=8, se_gate="sigmoid"),
            DWSBlockSpec(in_channels=16, out_channels=24, kernel_size=5, act="relu6", se_channels=8),
        ),
        head=HeadSpec(dropout=0.1),
    )


def ir_spec() -> ArchSpec:
    """IR without expansion, with expansion + SE + residual, hswish, a V3 head; 2 channels, 36x36, 3 classes."""
    return ArchSpec(
        name="ir_mix", in_channels=2, resolution=36, num_classes=3, bn_eps=1e-3, bn_momentum=0.01,
        stem=StemSpec(out_channels=16, kernel_size=5, stride=2, act="hswish"),
        blocks=(
            IRBlockSpec(in_channels=16, exp_channels=16, out_channels=16, expand=False, act="relu", se_channels=8),
            IRBlockSpec(in_channels=16, exp_channels=48, out_channels=24, stride=2, kernel_size=5, act="hswish"),
            IRBlockSpec(in_channels=24, exp_channels=72, out_channels=24, act="hswish", se_channels=24),
        ),
        head=HeadSpec(conv_channels=96, conv_act="hswish", hidden_features=40, hidden_act="hswish", dropout=0.2),
    )


HAND_BUILT = {"se_dws": se_dws_spec, "ir_mix": ir_spec}


def roundtrip(spec: ArchSpec) -> ArchSpec:
    return ArchSpec.from_json(spec.to_json())


def assert_same_network(spec: ArchSpec, other: ArchSpec) -> None:
    """Same hash, same counts and the same outputs once the weights are copied across (strictly)."""
    assert other == spec
    assert other.hash == spec.hash
    model, twin = build(spec).eval(), build(other).eval()
    twin.load_state_dict(model.state_dict(), strict=True)
    a, b = count(spec), count_model(twin, other)  # the twin is counted afresh, not from the cache
    assert (b.macs, b.params, b.all_ops, b.layers) == (a.macs, a.params, a.all_ops, a.layers)
    x = torch.randn(1, spec.in_channels, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_json_roundtrip_same_network(name):
    spec = ZOO[name]()  # at 224: count(spec) is shared with the reference-row tests
    assert_same_network(spec, roundtrip(spec))


@pytest.mark.parametrize("make", HAND_BUILT.values(), ids=HAND_BUILT.keys())
def test_hand_built_json_roundtrip_same_network(make):
    spec = make()
    assert_same_network(spec, roundtrip(spec))
    assert_same_network(spec, ArchSpec.from_dict(json.loads(spec.to_json(indent=None))))


@pytest.mark.parametrize("seed", range(4))
def test_random_json_roundtrip_same_network(random_spec, seed):
    spec = random_spec(seed)
    assert_same_network(spec, roundtrip(spec))


def test_json_is_plain_and_editable():
    data = json.loads(se_dws_spec().to_json())
    assert data["version"] == 1
    assert data["blocks"][0] == {"type": "dws", "in_channels": 8, "out_channels": 16, "stride": 2, "kernel_size": 3,
                                 "act": "relu", "se_channels": 8, "se_gate": "sigmoid"}
    assert data["head"] == {"conv_channels": 0, "conv_act": "relu", "hidden_features": 0, "hidden_act": "hswish",
                            "dropout": 0.1}
    assert ArchSpec.from_dict({"stem": data["stem"], "blocks": data["blocks"]}).head == HeadSpec()  # defaults


def test_hash_ignores_name_and_covers_everything_else():
    spec = ir_spec()
    assert len(spec.hash) == 16 and int(spec.hash, 16) >= 0
    assert spec.replace(name="renamed").hash == spec.hash
    changed = [spec.replace(resolution=40), spec.replace(num_classes=4), spec.replace(in_channels=3),
               spec.replace(bn_eps=1e-5), spec.replace(head=dataclasses.replace(spec.head, dropout=0.0)),
               spec.replace(blocks=(dataclasses.replace(spec.blocks[0], se_gate="sigmoid"),) + spec.blocks[1:])]
    hashes = {spec.hash} | {s.hash for s in changed}
    assert len(hashes) == 1 + len(changed)


def test_hash_is_stable_across_processes():
    # A literal: caches and export names depend on it. Update only with a SPEC_VERSION bump.
    assert fd_mobilenet(width=0.25).hash == "a22ea4054d66c319"


def test_integral_floats_hash_like_floats():
    data = se_dws_spec().to_dict()
    data["head"]["dropout"] = 0  # an int in hand-edited JSON
    spec = ArchSpec.from_dict(data)
    assert spec.hash == se_dws_spec().replace(head=HeadSpec(dropout=0.0)).hash
    assert type(spec.head.dropout) is float and '"dropout": 0.0' in spec.to_json()


def test_specs_are_frozen_and_replace_revalidates():
    spec = se_dws_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.resolution = 64
    assert spec.replace(resolution=64).resolution == 64 and spec.resolution == 40
    with pytest.raises(SpecError, match="resolution=3 is too small"):
        spec.replace(resolution=3)


def test_derived_facts_fd_mobilenet():
    spec = fd_mobilenet(width=0.25)
    assert spec.total_stride == 32
    assert spec.downsample_layers() == [0, 1, 3, 5]
    assert spec.feature_sizes() == [112, 56, 28, 28, 14, 14, 7, 7, 7, 7, 7, 7]
    assert spec.feature_sizes(32) == [16, 8, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1]
    assert spec.se_count == 0 and se_dws_spec().se_count == 2 and mobilenet_v3_small().se_count == 9
    assert spec.out_channels == 256


def test_ir_block_facts():
    plain, expanded, residual = ir_spec().blocks
    assert plain.use_residual and not expanded.use_residual and residual.use_residual
    assert (plain.dw_channels, expanded.dw_channels) == (16, 48)
    assert se_dws_spec().blocks[1].dw_channels == 16


@pytest.mark.parametrize(("value", "expected"), [
    (16 * 0.35, 8), (32 * 0.5, 16), (72 * 0.75, 56), (960 * 1.0, 960), (1280 * 0.75, 960), (3, 8), (91, 88),
    (20, 24), (12, 16),  # 12 -> 16 (rounds half up); 20 -> 24
])
def test_make_divisible(value, expected):
    assert make_divisible(value) == expected
    assert make_divisible(value) % 8 == 0 and make_divisible(value) >= 0.9 * value


@pytest.mark.parametrize(("size", "kernel", "stride", "out"), [(224, 3, 2, 112), (7, 5, 1, 7), (33, 3, 2, 17),
                                                              (1, 3, 2, 1), (15, 5, 2, 8)])
def test_conv_out_size_matches_torch(size, kernel, stride, out):
    assert conv_out_size(size, kernel, stride) == out
    conv = torch.nn.Conv2d(1, 1, kernel, stride=stride, padding=kernel // 2)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == out


# -- validation ---------------------------------------------------------------------------------------------------
def _set(path, value):
    def mutate(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        d[last] = value
    return mutate


def _delete(path):
    def mutate(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        del d[last]
    return mutate


BAD_FIELDS = {
    "kernel 4": (_set(("blocks", 0, "kernel_size"), 4), r"blocks\[0\]\.kernel_size=4 is invalid: expected one of 3, 5"),
    "kernel 3.0": (_set(("blocks", 0, "kernel_size"), 3.0), r"blocks\[0\]\.kernel_size=3\.0 .* one of 3, 5"),
    "stride 3": (_set(("blocks", 1, "stride"), 3), r"blocks\[1\]\.stride=3 is invalid: expected one of 1, 2"),
    "stride true": (_set(("blocks", 1, "stride"), True), r"blocks\[1\]\.stride=True .* one of 1, 2"),
    "stem stride": (_set(("stem", "stride"), 4), r"stem\.stride=4 .* one of 1, 2"),
    "act gelu": (_set(("blocks", 2, "act"), "gelu"),
                 r"blocks\[2\]\.act='gelu' is invalid: expected one of 'relu', 'relu6', 'hswish'"),
    "stem act": (_set(("stem", "act"), "tanh"), r"stem\.act='tanh' .* 'relu', 'relu6', 'hswish'"),
    "head act": (_set(("head", "hidden_act"), "swish"), r"head\.hidden_act='swish' .* 'relu', 'relu6', 'hswish'"),
    "chain mismatch": (_set(("blocks", 1, "in_channels"), 12),
                       r"blocks\[1\]\.in_channels=12 is invalid: expected 16 \(the previous layer's out_channels\)"),
    "stem chain": (_set(("stem", "out_channels"), 12), r"blocks\[0\]\.in_channels=16 .* expected 12"),
    "se_gate": (_set(("blocks", 0, "se_gate"), "relu"), r"blocks\[0\]\.se_gate='relu' .* 'hsigmoid', 'sigmoid'"),
    "se_channels": (_set(("blocks", 0, "se_channels"), -1), r"blocks\[0\]\.se_channels=-1 .* integer >= 0"),
    "dropout 1.5": (_set(("head", "dropout"), 1.5), r"head\.dropout=1\.5 is invalid: expected a number in \[0, 1\)"),
    "dropout str": (_set(("head", "dropout"), "0.2"), r"head\.dropout='0\.2' .* \[0, 1\)"),
    "expand false": (_set(("blocks", 1, "expand"), False),
                     r"blocks\[1\]\.exp_channels=48 is invalid with expand=false: expected in_channels=16"),
    "expand 1": (_set(("blocks", 1, "expand"), 1), r"blocks\[1\]\.expand=1 .* one of True, False"),
    "channels str": (_set(("blocks", 1, "out_channels"), "24"), r"blocks\[1\]\.out_channels='24' .* integer >= 1"),
    "channels 0": (_set(("blocks", 2, "exp_channels"), 0), r"blocks\[2\]\.exp_channels=0 .* integer >= 1"),
    "resolution 0": (_set(("resolution",), 0), r"resolution=0 is invalid: expected an integer >= 1"),
    "resolution small": (_set(("resolution",), 3), r"resolution=3 is too small: .* downsamples 4x, .* >= 4"),
    "classes": (_set(("num_classes",), -2), r"num_classes=-2 .* integer >= 1"),
    "in_channels": (_set(("in_channels",), 0.5), r"in_channels=0\.5 .* integer >= 1"),
    "bn_eps": (_set(("bn_eps",), 0), r"bn_eps=0\.0 is invalid: expected a number in \(0, 1\)"),
    "name": (_set(("name",), ""), r"name='' is invalid: expected a non-empty string"),
    "version": (_set(("version",), 2), r"version=2 is invalid: expected 1"),
    "unknown top key": (_set(("width",), 1.0), r"unknown key 'width' in spec: expected keys among \[.*'blocks'"),
    "unknown block key": (_set(("blocks", 0, "expansion"), 6),
                          r"unknown key 'expansion' in blocks\[0\]: expected keys among \[.*'exp_channels'"),
    "unknown head key": (_set(("head", "pool"), "max"), r"unknown key 'pool' in head: .*'dropout'"),
    "block type": (_set(("blocks", 0, "type"), "fused"), r"blocks\[0\]\.type='fused' .* one of \['dws', 'ir'\]"),
    "missing type": (_delete(("blocks", 0, "type")), r"blocks\[0\]\.type=None .* one of \['dws', 'ir'\]"),
    "missing stem": (_delete(("stem",)), r"^stem is missing: required keys are \['blocks', 'stem'\]"),
    "missing blocks": (_delete(("blocks",)), r"^blocks is missing"),
    "missing out_channels": (_delete(("blocks", 2, "out_channels")),
                             r"blocks\[2\]\.out_channels is missing: required keys are \['exp_channels', 'in_ch"),
    "missing exp_channels": (_delete(("blocks", 1, "exp_channels")), r"blocks\[1\]\.exp_channels is missing"),
    "missing stem channels": (_delete(("stem", "out_channels")), r"stem\.out_channels is missing"),
    "empty blocks": (_set(("blocks",), []), r"blocks=\(\) is invalid: expected a non-empty list of blocks"),
    "blocks not list": (_set(("blocks",), {"0": {}}), r"blocks=\{.*\} is invalid: expected a list of block objects"),
    "block not object": (_set(("blocks", 0), 7), r"blocks\[0\]=7 is invalid: expected an object"),
    "head not object": (_set(("head",), "v3"), r"head='v3' is invalid: expected an object"),
}


@pytest.mark.parametrize("mutate, message", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_field_names_field_and_accepted_values(mutate, message):
    data = ir_spec().to_dict()
    mutate(data)
    with pytest.raises(SpecError, match=message) as info:
        ArchSpec.from_dict(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("{", r"spec is not valid JSON: Expecting property name"),
    ("", r"spec is not valid JSON"),
    ("[1, 2]", r"spec=list is invalid: expected a JSON object"),
    ('"fd_mobilenet"', r"spec=str is invalid: expected a JSON object"),
])
def test_bad_json(text, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_json(text)


def test_python_construction_is_validated_too():
    with pytest.raises(SpecError, match=r"blocks\[0\]\.kernel_size=7"):
        ArchSpec(stem=StemSpec(out_channels=8), blocks=[DWSBlockSpec(in_channels=8, out_channels=8, kernel_size=7)])
    with pytest.raises(SpecError, match=r"blocks\[0\]=.* expected one of \['dws', 'ir'\]"):
        ArchSpec(stem=StemSpec(out_channels=8), blocks=[{"in_channels": 8, "out_channels": 8}])
    with pytest.raises(SpecError, match=r"head=.* expected a HeadSpec"):
        ArchSpec(stem=StemSpec(out_channels=8), blocks=[DWSBlockSpec(in_channels=8, out_channels=8)], head={})
    spec = ArchSpec(stem=StemSpec(out_channels=8), blocks=[DWSBlockSpec(in_channels=8, out_channels=8)])
    assert isinstance(spec.blocks, tuple)  # lists are accepted and frozen


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)
