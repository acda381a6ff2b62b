"""Search spaces: the shipped files parse, reproduce the hand designs, and bad files get one-line errors."""

from __future__ import annotations

import pytest
import yaml

from nasprune.cost import count
from nasprune.errors import NaspruneError
from nasprune.prune import keep_count, layer_channels, prunable_layers
from nasprune.search.space import FixedParams, load_space, parse_space, ratio_param, resolve
from nasprune.spec import make_divisible
from nasprune.zoo import fd_mobilenet, mobilenet_v1, mobilenet_v3_large

SHAPE = dict(in_channels=1, num_classes=10)


@pytest.fixture(scope="module")
def fd():
    return load_space("fd_mobilenet")


@pytest.mark.parametrize("width", [0.25, 0.5, 0.75, 1.0])
def test_fast_and_slow_are_fd_mobilenet_and_mobilenet_v1(fd, width):
    for schedule, zoo in (("fast", fd_mobilenet), ("slow", mobilenet_v1)):
        cand = fd.sample(FixedParams({"schedule": schedule, "width": width}))
        design = resolve(fd, cand, mode="per_trial", **SHAPE)
        assert design.parent.hash == zoo(width, in_channels=1, num_classes=10).hash
        assert design.child.hash == design.parent.hash  # ratio 0 everywhere: nothing pruned


def test_v3_slow_with_its_se_is_mobilenet_v3_large():
    space = load_space("mobilenet_v3")
    se = {f"se_{i}": i in (3, 4, 5, 10, 11, 12, 13, 14) for i in range(15)}
    cand = space.sample(FixedParams({"schedule": "slow", "width": 1.0, **se}))
    assert resolve(space, cand, mode="per_trial", num_classes=1000).parent.hash == mobilenet_v3_large().hash
    # every channel group: the expansions (block 0 has none: exp == in), the stem's path (through the residual
    # block 0) and the path of every stage, one group per stage of residual blocks
    assert [ratio_param(k) for k in cand.ratios] == [
        "ratio_stem", "ratio_1", "ratio_res1", "ratio_2", "ratio_3", "ratio_res3", "ratio_4", "ratio_5", "ratio_6",
        "ratio_res6", "ratio_7", "ratio_8", "ratio_9", "ratio_10", "ratio_res10", "ratio_11", "ratio_12",
        "ratio_res12", "ratio_13", "ratio_14"]


def test_sample_draws_every_dimension(fd):
    params = {"schedule": "custom", "ds_0": 1, "ds_1": 1, "ds_2": 5, "ds_3": 6, "width": 0.5, "se_2": True,
              "se_12": True, "ratio_3": 0.4, "criterion": "l1"}
    cand = fd.sample(FixedParams(params))
    assert cand.downsample == (1, 2, 5, 6)  # the clash at 1 moves the second stride right
    assert cand.se_blocks == (2, 12) and cand.criterion == "l1" and cand.width == 0.5
    assert cand.ratios["blocks.3.conv_pw"] == 0.4 and len(cand.ratios) == 14  # the stem and 13 block outputs
    child = resolve(fd, cand, mode="per_trial", **SHAPE).child
    assert child.downsample_layers() == [1, 2, 5, 6] and child.se_count == 2


def test_per_trial_child_channels_follow_keep_count(fd):
    cand = fd.sample(FixedParams({"schedule": "fast", "width": 1.0}, ratio=0.3))
    design = resolve(fd, cand, mode="per_trial", **SHAPE)
    before, after = layer_channels(design.parent), layer_channels(design.child)
    assert after == {k: keep_count(n, 0.3) for k, n in before.items()}


def test_shared_mode_turns_width_into_pruning_of_the_widest_parent(fd):
    cand = fd.sample(FixedParams({"schedule": "fast", "width": 0.5, "se_4": True}, ratio=0.2))
    design = resolve(fd, cand, mode="shared", **SHAPE)
    assert design.parent.hash == fd.network("fast", (), 1.0, range(11), **SHAPE).hash  # widest, SE everywhere
    assert design.drop_se == tuple(i for i in range(11) if i != 4)
    before, after = layer_channels(design.parent), layer_channels(design.child)
    assert after == {k: keep_count(n, 1 - 0.5 * 0.8) for k, n in before.items()}
    assert design.child.se_count == 1 and design.child.stem.out_channels == keep_count(32, 0.6)  # the stem too
    kept = design.child.blocks[4].in_channels  # SE on block 4: its squeeze follows the kept channels
    assert design.child.blocks[4].se_channels == make_divisible(kept * 0.25) < design.parent.blocks[4].se_channels


def test_v3_smallest_child_fits_12_mflops():
    """Every channel group prunable: the V3 space's smallest child (width 0.35, every ratio 0.6, shared parents)
    is below 12 MFLOPs at 224 (it was 14.5 while the stem and the residual paths kept their width)."""
    space = load_space("mobilenet_v3")
    costs = []
    for schedule in ("slow", "fast"):
        cand = space.sample(FixedParams({"schedule": schedule, "width": 0.35}, ratio=0.6))
        child = resolve(space, cand, mode="shared", **SHAPE).child
        assert child.stem.out_channels == keep_count(16, 1 - 0.35 * 0.4)
        costs.append(count(child, layers=False).macs / 1e6)
    assert min(costs) < 12


def test_smallest_cost_is_below_every_sample(fd):
    small = fd.sample(FixedParams({"schedule": "fast", "width": 0.25}, ratio=fd.ratio_high))
    smallest = count(resolve(fd, small, mode="per_trial", **SHAPE).child, layers=False).macs
    other = fd.sample(FixedParams({"schedule": "fast", "width": 0.25, "se_3": True}, ratio=0.5))
    assert count(resolve(fd, other, mode="per_trial", **SHAPE).child, layers=False).macs > smallest


def _edited(name: str, tmp_path, change):
    """A copy of the shipped space ``name`` with ``change`` applied to its mapping, written to ``tmp_path``."""
    data = yaml.safe_load(open(load_space(name).path))
    change(data)
    path = tmp_path / f"bad_{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _space(tmp_path, change):
    return _edited("fd_mobilenet", tmp_path, change)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(colour="red"), "unknown key 'colour' (value 'red'): expected one of name, family"),
    (lambda d: d.update(width=[0.5, -1]), "width[1]=-1 is invalid: expected a number in (0, 4]"),
    (lambda d: d.update(family="resnet"), "family='resnet' is invalid: expected one of dws, ir"),
    (lambda d: d["schedules"]["fast"][0].update(stride=3), "schedules.fast[0].stride=3 is invalid: expected one of "
                                                           "1, 2"),
    (lambda d: d["schedules"]["fast"][0].update(exp=4), "unknown key 'schedules.fast[0].exp' (value 4)"),
    (lambda d: d["prune"].update(criteria=["gamma", "magic"]), "prune.criteria[1]='magic' is invalid: expected one "
                                                               "of gamma_sparsity"),
    (lambda d: d["prune"]["ratio"].update(high=1.5), "prune.ratio.high=1.5 is invalid: expected a number in [0, 0.95]"),
    (lambda d: d["free_placement"].update(base="medium"), "free_placement.base='medium' is invalid: expected one of "
                                                          "fast, slow"),
    (lambda d: d["free_placement"].update(windows=[[0, 12], [12, 12]]), "free_placement.windows[1]=[12, 12] is "
                                                                        "invalid: expected windows leaving room"),
    (lambda d: d["se"].update(blocks="some"), "se.blocks='some' is invalid: expected 'all' or a list"),
])
def test_bad_space_names_file_key_value_and_allowed(tmp_path, change, expected):
    path = _space(tmp_path, change)
    with pytest.raises(NaspruneError) as err:
        load_space(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_space_lists_the_known_ones():
    with pytest.raises(NaspruneError, match="space 'nope' not found .*fd_mobilenet, mobilenet_v3"):
        load_space("nope")


def test_ir_prunable_layers_match_the_prune_module():
    space = load_space("mobilenet_v3")
    cand = space.sample(FixedParams({"schedule": "fast", "width": 0.5}, ratio=0.5))
    design = resolve(space, cand, mode="per_trial", **SHAPE)
    assert list(design.ratios) == prunable_layers(design.parent)
    assert parse_space(dict(space.raw), "x.yaml").schedule_choices == ["slow", "fast", "custom"]


def _v3(tmp_path, change):
    return _edited("mobilenet_v3", tmp_path, change)


def _families(tmp_path, change):
    data = {"name": "both", "families": {"dws": "fd_mobilenet", "ir": "mobilenet_v3"}}
    change(data)
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("space, change, key, value, expected", [
    (_space, lambda d: d.update(width="wide"), "width[0]", "'wide'", "a number in (0, 4]"),
    (_space, lambda d: d.update(width=[]), "width", "[]", "a non-empty list of numbers in (0, 4]"),
    (_space, lambda d: d.update(width=[True]), "width[0]", "True", "a number in (0, 4]"),
    (_space, lambda d: d.update(family=True), "family", "True", "one of dws, ir"),
    (_space, lambda d: d.update(name=5), "name", "5", "a string or null"),
    (_space, lambda d: d.update(stem={"channels": 32.0}), "stem.channels", "32.0", "an integer in [1, 4096] or null"),
    (_space, lambda d: d.update(stem="wide"), "stem", "'wide'", "a mapping with keys among channels, act"),
    (_space, lambda d: d.update(schedules="fast"), "schedules", "'fast'", "a mapping of schedule names"),
    (_space, lambda d: d["schedules"]["fast"].__setitem__(0, "64"), "schedules.fast[0]", "'64'",
     "a mapping with keys among out, stride"),
    (_space, lambda d: d["schedules"]["fast"][0].update(out="64"), "schedules.fast[0].out", "'64'",
     "an integer in [1, 65536]"),
    (_space, lambda d: d.update(free_placement="slow"), "free_placement", "'slow'",
     "a mapping with keys among base, windows or null"),
    (_space, lambda d: d["free_placement"].update(windows=[[0, 1, 2]]), "free_placement.windows[0]", "[0, 1, 2]",
     "a list [integer, integer]"),
    (_space, lambda d: d["se"].update(blocks=[1, -1]), "se.blocks[1]", "-1", "an integer >= 0"),
    (_space, lambda d: d["se"].update(ratio="0.25"), "se.ratio", "'0.25'", "a number in (0, 1]"),
    (_space, lambda d: d["prune"].update(criteria="magic"), "prune.criteria[0]", "'magic'",
     "one of gamma_sparsity, gamma, l1"),
    (_space, lambda d: d["prune"].update(criteria=[]), "prune.criteria", "[]", "a non-empty list of names from"),
    (_space, lambda d: d["prune"]["ratio"].update(step=0), "prune.ratio.step", "0", "a number in (0, 1]"),
    (_space, lambda d: d["prune"]["ratio"].update(low=0.5, high=0.4), "prune.ratio.high", "0.4",
     "a number in [0.5, 0.95]"),
    (_space, lambda d: d.update(prune=[1]), "prune", "[1]", "a mapping with keys among ratio, criteria"),
    (_space, lambda d: d.update(bn_eps="small"), "bn_eps", "'small'", "a number in (0, 1] or null"),
    (_v3, lambda d: d["head"].update(dropout=1.0), "head.dropout", "1.0", "a number in [0, 1)"),
    (_v3, lambda d: d["head"].update(conv_act="gelu"), "head.conv_act", "'gelu'", "one of relu, relu6, hswish"),
    (_v3, lambda d: d["schedules"]["slow"][0].pop("exp"), "schedules.slow[0].exp", None, "an integer in [1, 65536]"),
    (_v3, lambda d: d["schedules"]["slow"][2].update(kernel=3.0), "schedules.slow[2].kernel", "3.0", "one of 3, 5"),
    (_families, lambda d: d.update(families={"cnn": "fd_mobilenet"}), "families", "{'cnn': 'fd_mobilenet'}",
     "a mapping from dws and/or ir"),
    (_families, lambda d: d["families"].update(ir="fd_mobilenet"), "families.ir", "'fd_mobilenet'",
     "a space of family 'ir' (it has 'dws')"),
    (_families, lambda d: d["families"].update(dws=7), "families.dws", "7", "a space file (name or path)"),
    (_families, lambda d: d.update(width=[0.5, -1]), "width[1]", "-1", "a number in (0, 4]"),
])
def test_wrong_type_in_a_space_names_file_key_value_and_expected(tmp_path, space, change, key, value, expected):
    path = space(tmp_path, change)
    with pytest.raises(NaspruneError) as err:
        load_space(path)
    head = f"{path}: {key} is missing: expected" if value is None else f"{path}: {key}={value} is invalid: expected"
    assert str(err.value).startswith(f"{head} {expected}"), str(err.value)
    assert "\n" not in str(err.value)


def test_an_override_error_names_the_recipe(tmp_path):
    with pytest.raises(NaspruneError) as err:
        load_space("fd_mobilenet", overrides={"se": {"ratio": 0}}, overrides_file="r.yaml")
    assert str(err.value) == "r.yaml: space_overrides.se.ratio=0 is invalid: expected a number in (0, 1]"
    with pytest.raises(NaspruneError, match=r"^r.yaml: unknown key 'space_overrides.colour' \(value 1\)"):
        load_space("fd_mobilenet", overrides={"colour": 1}, overrides_file="r.yaml")


@pytest.mark.parametrize("name", ["fd_mobilenet", "mobilenet_v3"])
def test_a_space_rebuilds_from_its_stored_content(name):
    import json

    space = load_space(name, overrides={"width": [0.5, 1], "free_placement": None})
    assert parse_space(json.loads(json.dumps(space.to_dict())), space.path) == space
