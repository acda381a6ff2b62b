"""Peak activation memory and weight bytes (``nasprune.cost.memory``, MCUNet's convention) against hand
computations and against an independent measurement: a liveness analysis of the built network's traced graph."""

from __future__ import annotations

import json

import pytest
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from nasprune import build, count
from nasprune.cli import main
from nasprune.cost import DTYPE_BYTES, LayerMemory, memory
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, SpecError, StemSpec
from nasprune.zoo import ZOO, fd_mobilenet, mobilenet_v2

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# -- an independent measurement: which tensors of the traced graph are alive during each layer -------------------
# Layers allocate their output; everything else (BN once folded, activations, the SE scaling, the residual add,
# flatten, dropout, identities) is taken to write into the tensor it reads (the one of the output's size).
LAYER_MODULES = (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d)


def _numel(node: fx.Node) -> int:
    return node.meta["tensor_meta"].shape.numel()


def _is_layer(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), LAYER_MODULES)
    return node.op == "call_method" and node.target == "mean"  # squeeze-and-excite's pool


def traced_liveness(spec: ArchSpec) -> list[tuple[str, int]]:
    """``(node name, elements alive)`` for every layer of ``build(spec)``, batch 1, from a ``torch.fx`` trace."""
    gm = fx.symbolic_trace(build(spec).eval())
    ShapeProp(gm).propagate(torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution))
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    storage: dict[fx.Node, fx.Node] = {}  # node -> the node that allocated the tensor it lives in
    for node in nodes:
        if node.op == "placeholder" or _is_layer(gm, node):
            storage[node] = node
        else:
            same = [a for a in node.all_input_nodes if _numel(a) == _numel(node)]
            storage[node] = storage[same[0]]
    born = {n: i for i, n in enumerate(nodes) if storage[n] is n}
    last_use = dict(born)
    for i, node in enumerate(nodes):
        for arg in node.all_input_nodes:
            last_use[storage[arg]] = max(last_use[storage[arg]], i)
    rows = []
    for i, node in enumerate(nodes):
        if _is_layer(gm, node):
            rows.append((node.name, sum(_numel(s) for s in born if born[s] <= i <= last_use[s])))
    return rows


# -- hand computations -----------------------------------------------------------------------------------------
def alive(spec: ArchSpec) -> list[tuple[str, int]]:
    return [(r.name, r.alive) for r in memory(spec).layers]


def test_depthwise_separable_by_hand():
    spec = ArchSpec(name="dws", in_channels=1, resolution=32, num_classes=10, stem=StemSpec(out_channels=8, stride=1),
                    blocks=(DWSBlockSpec(in_channels=8, out_channels=16, stride=2),), head=HeadSpec())
    assert alive(spec) == [
        ("stem", 1 * 32 * 32 + 8 * 32 * 32),                  # the image and the stem's output: 9,216
        ("blocks.0.conv_dw", 8 * 32 * 32 + 8 * 16 * 16),      # stride 2: 10,240, the peak
        ("blocks.0.conv_pw", 8 * 16 * 16 + 16 * 16 * 16),     # 6,144
        ("head.pool", 16 * 16 * 16 + 16),
        ("head.classifier", 16 + 10),
    ]
    mem = memory(spec)
    assert (mem.peak_activation, mem.peak_layer) == (10_240, "blocks.0.conv_dw")
    assert (mem.activation_bytes("float32"), mem.activation_bytes("int8")) == (40_960, 10_240)
    params = (9 * 8 + 2 * 8) + (9 * 8 + 2 * 8) + (8 * 16 + 2 * 16) + (16 * 10 + 10)  # conv + BN, classifier + bias
    assert mem.params == params == count(spec).params == 506
    assert (mem.weight_bytes("float32"), mem.weight_bytes("int8")) == (4 * 506, 506)


def test_inverted_residual_keeps_its_input_for_the_add():
    spec = ArchSpec(name="ir", in_channels=1, resolution=16, num_classes=10, stem=StemSpec(out_channels=8, stride=2),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=48, out_channels=8, stride=1),), head=HeadSpec())
    x = 8 * 8 * 8  # the block's input, 512 elements, alive until the add
    assert alive(spec) == [
        ("stem", 1 * 16 * 16 + x),
        ("blocks.0.conv_pw", x + 48 * 64),                    # the input is the pending tensor: counted once
        ("blocks.0.conv_dw", 48 * 64 + 48 * 64 + x),          # 6,656: the peak, 6,144 without the pending input
        ("blocks.0.conv_pwl", 48 * 64 + x + x),
        ("head.pool", x + 8),
        ("head.classifier", 8 + 10),
    ]
    assert (memory(spec).peak_activation, memory(spec).peak_layer) == (6_656, "blocks.0.conv_dw")
    assert memory(spec).activation_bytes("float32") == 26_624


def test_squeeze_excite_keeps_the_map_it_scales():
    spec = ArchSpec(name="se", in_channels=1, resolution=8, num_classes=10, stem=StemSpec(out_channels=8, stride=1),
                    blocks=(DWSBlockSpec(in_channels=8, out_channels=16, stride=1, se_channels=8),), head=HeadSpec())
    fmap = 8 * 8 * 8  # the depthwise conv's output, 512: pooled, squeezed, excited, then scaled in place
    assert alive(spec) == [
        ("stem", 64 + fmap),
        ("blocks.0.conv_dw", fmap + fmap),
        ("blocks.0.se.pool", fmap + 8),                       # the pooled vector is tiny, but counted
        ("blocks.0.se.fc1", 8 + 8 + fmap),
        ("blocks.0.se.fc2", 8 + 8 + fmap),
        ("blocks.0.conv_pw", fmap + 16 * 64),                 # 1,536, the peak
        ("head.pool", 16 * 64 + 16),
        ("head.classifier", 16 + 10),
    ]
    assert memory(spec).peak_layer == "blocks.0.conv_pw"


def test_squeeze_excite_on_a_1x1_map_with_a_residual_is_the_peak():
    spec = ArchSpec(name="se1", in_channels=1, resolution=2, num_classes=4, stem=StemSpec(out_channels=8, stride=2),
                    blocks=(IRBlockSpec(in_channels=8, exp_channels=64, out_channels=8, stride=1, se_channels=16),),
                    head=HeadSpec())
    rows = dict(alive(spec))
    assert rows["blocks.0.se.fc1"] == 64 + 16 + 64 + 8  # pooled in, squeezed out, the map and the block input
    assert (memory(spec).peak_activation, memory(spec).peak_layer) == (152, "blocks.0.se.fc1")


def test_fd_mobilenet_025_at_224_peaks_at_the_stem():
    spec = fd_mobilenet(width=0.25)  # 224x224x3, 1000 classes
    image, stem_out = 3 * 224 * 224, 8 * 112 * 112  # 150,528 + 100,352
    mem = memory(spec)
    assert (mem.peak_activation, mem.peak_layer) == (image + stem_out, "stem") == (250_880, "stem")
    assert (mem.activation_bytes("float32"), mem.activation_bytes("int8")) == (1_003_520, 250_880)
    assert (mem.weight_bytes("float32"), mem.weight_bytes("int8")) == (4 * 383_160, 383_160)


def test_mobilenet_v2_peaks_at_the_first_stride_2_depthwise():
    """The first t=6 block (16 -> 96 -> 24 channels, stride 2): 96 x 112^2 in, 96 x 56^2 out, no residual."""
    mem = memory(mobilenet_v2(width=1.0))
    assert (mem.peak_activation, mem.peak_layer) == (96 * 112**2 + 96 * 56**2, "blocks.1.conv_dw")
    assert mem.activation_bytes("int8") == 1_505_280


# -- against the traced graph --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_every_zoo_network_matches_the_traced_liveness(name, width):
    spec = ZOO[name](width=width, resolution=224, num_classes=10)
    traced = traced_liveness(spec)
    assert [a for _, a in traced] == [r.alive for r in memory(spec).layers]
    assert memory(spec).peak_activation == max(a for _, a in traced)


@pytest.mark.parametrize("seed", range(8))
def test_random_specs_match_the_traced_liveness(random_spec, seed):
    spec = random_spec(seed)
    assert [a for _, a in traced_liveness(spec)] == [r.alive for r in memory(spec).layers]


@pytest.mark.parametrize("spec_name", ["ir", "se1"])
def test_the_hand_specs_match_the_traced_liveness(spec_name):
    blocks = {"ir": IRBlockSpec(in_channels=8, exp_channels=48, out_channels=8, stride=1),
              "se1": IRBlockSpec(in_channels=8, exp_channels=64, out_channels=8, stride=1, se_channels=16)}
    spec = ArchSpec(name=spec_name, in_channels=1, resolution=16, num_classes=4, stem=StemSpec(out_channels=8),
                    blocks=(blocks[spec_name],), head=HeadSpec(conv_channels=32, hidden_features=20))
    assert [a for _, a in traced_liveness(spec)] == [r.alive for r in memory(spec).layers]


# -- the interface ---------------------------------------------------------------------------------------------
def test_memory_at_the_deployment_resolution(tiny_spec):
    assert memory(tiny_spec, resolution=224) == memory(tiny_spec.replace(resolution=224))
    assert memory(tiny_spec, resolution=224).peak_activation > memory(tiny_spec).peak_activation
    with pytest.raises(SpecError, match="resolution=8 is too small"):
        memory(tiny_spec, resolution=8)


def test_unknown_dtype_is_refused(tiny_spec):
    with pytest.raises(ValueError, match="^dtype='fp16' is invalid: expected one of float32, int8$"):
        memory(tiny_spec).activation_bytes("fp16")
    assert DTYPE_BYTES == {"float32": 4, "int8": 1}


def test_a_huge_spec_is_counted_without_allocation():
    raw = fd_mobilenet(0.25).to_dict()
    raw["blocks"][-1]["out_channels"] = 10**12
    mem = memory(ArchSpec.from_dict(raw))  # plain integers: nothing is built
    assert (mem.peak_activation, mem.peak_layer) == (10**12 * 7 * 7 + 10**12, "head.pool")  # the 7x7 map, pooled


def test_layer_memory_sums_input_output_and_pending():
    assert LayerMemory("x", 3, 4, 5).alive == 12 and LayerMemory("y", 3, 4).alive == 7


# -- the command line ------------------------------------------------------------------------------------------
def test_count_json_carries_both_figures(capsys):
    assert main(["count", "fd_mobilenet", "--width", "0.25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak_activation_bytes"] == {"float32": 1_003_520, "int8": 250_880}
    assert out["peak_activation_layer"] == "stem"
    assert out["weight_bytes"] == {"float32": 1_532_640, "int8": 383_160}


def test_count_prints_both_figures(capsys):
    assert main(["count", "fd_mobilenet", "--width", "0.25"]) == 0
    out = capsys.readouterr().out
    assert ("memory: peak activation 250,880 values at stem, 980.0 KiB float32 / 245.0 KiB int8 (batch 1, "
            "224x224); weights 1,496.7 KiB float32 / 374.2 KiB int8") in out


@pytest.mark.parametrize("argv, expected", [
    (["count", "fd_mobilenet", "--resolution", "8", "--json"], "resolution=8 is too small"),
    (["count", "fd_mobilenet", "--width", "0", "--json"], "--width"),
    (["count", "fd_mobilenet", "--width", "1000", "--json"], "is too large"),
    (["count", "mobilenet_v4", "--json"], "unknown model 'mobilenet_v4'"),
])
def test_bad_input_stays_one_line(capsys, argv, expected):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # no half-written JSON
    assert err.startswith("nasprune: error: ") and err.count("\n") == 1 and expected in err, err
