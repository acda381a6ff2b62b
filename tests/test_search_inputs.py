"""Recipe and space files that attack the reader or say nothing silently (issue 20, items 4 and 5): deep nesting,
other encodings, alias bombs, SE on a block no schedule has, unbounded numbers. Each is one ``nasprune: error:``
line, exit code 2, before any work; no message holds a whole value."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from cli_errors import error_line as _error
from cli_errors import forbid as _forbid
from cli_errors import synthetic_recipe

from nasprune.errors import NaspruneError
from nasprune.schema import shown
from nasprune.search.recipe import Recipe, load_recipe, parse_recipe
from nasprune.search.space import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, read_yaml

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SYNTHETIC = {**synthetic_recipe("inp"), "trials": 1}
BASE = yaml.safe_dump(SYNTHETIC)


def _bomb(levels: int = 9) -> str:
    """The billion laughs: 9 lists of 9 aliases to the level below, 9**9 leaves in under 1 kB."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _indented(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


CASES = {
    "nested lists": (BASE + "extra: " + "[" * 50_000 + "]" * 50_000 + "\n",
                     f"not valid YAML: nested deeper than {MAX_YAML_DEPTH} lists or mappings"),
    "nested mappings under parent": (BASE.replace("parent:\n", "parent:\n  x: " + "{a: " * 20_000 + "1"
                                                  + "}" * 20_000 + "\n", 1),
                                     f"not valid YAML: nested deeper than {MAX_YAML_DEPTH} lists or mappings"),
    "latin-1": ((BASE + "# café\n").encode("latin-1"), "not UTF-8 text: byte 0xe9 on line"),
    "utf-16": (BASE.encode("utf-16"), "not UTF-8 text: it looks like UTF-16"),
    "utf-16 without a byte order mark": (BASE.encode("utf-16-le"), "not UTF-8 text: it looks like UTF-16"),
    "binary": (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "not a YAML text file: it holds NUL bytes"),
    "alias bomb under an unknown key": (BASE + "bomb:\n" + _indented(_bomb()),
                                        "values once its aliases (*name) are expanded is invalid"),
    "alias bomb as a value": (_bomb() + BASE.replace("trials: 1", "trials: *l8"),
                              "values once its aliases (*name) are expanded is invalid"),
    "an integer of 5000 digits": (BASE.replace("trials: 1", "trials: " + "7" * 5000),
                                  "a value could not be read (Exceeds the limit (4300 digits)"),
    "too large": (BASE + "#" * MAX_YAML_BYTES + "\n", "bytes is invalid: expected a YAML file of at most"),
}


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("where", ["recipe", "space"])
def test_files_that_attack_the_reader_are_one_line(cwd, monkeypatch, capsys, name, where):
    content, expected = CASES[name]
    if where == "space":  # the same bytes as a space file named by a sound recipe
        content = content.replace(BASE, Path(_shipped_space()).read_text()) if isinstance(content, str) else content
        (cwd / "recipe.yaml").write_text(BASE.replace("space: fd_mobilenet", "space: bad.yaml"))
    target = cwd / ("bad.yaml" if where == "space" else "recipe.yaml")
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    _forbid(monkeypatch, "nasprune.data.load_data", "loading the data")
    start = time.perf_counter()
    err = _error(["search", cwd / "recipe.yaml", "--no-progress"], capsys)
    assert expected in err and str(target.name) in err
    assert len(err) < 400 and time.perf_counter() - start < 10


def _shipped_space() -> str:
    from nasprune.search.space import find_space

    return str(find_space("fd_mobilenet"))


def test_an_alias_bomb_is_counted_not_built(cwd):
    (cwd / "b.yaml").write_text(_bomb())
    with pytest.raises(NaspruneError, match=f"{9 ** 9 + 9 ** 8 + 9 ** 7:,}|expected at most {MAX_YAML_NODES:,}"):
        read_yaml(cwd / "b.yaml")
    (cwd / "ok.yaml").write_text(_bomb(levels=3))  # 9 + 81 + 729 leaves: a modest alias use is fine
    assert len(read_yaml(cwd / "ok.yaml")["l2"]) == 9


def test_utf8_with_a_byte_order_mark_is_read(cwd):
    (cwd / "r.yaml").write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_recipe(cwd / "r.yaml").study == "inp"


def test_messages_cut_long_values_and_say_how_long():
    bomb = ["lol"] * 9
    for _ in range(8):
        bomb = [bomb] * 9  # shared lists: 9**9 leaves, built in no time
    start = time.perf_counter()
    text = shown(bomb)
    assert time.perf_counter() - start < 1 and len(text) < 150 and text.endswith("(a list of 9 items)")
    assert shown("x" * 5000).endswith("(a string of 5,000 characters)") and len(shown("x" * 5000)) < 150
    assert shown({"a": 1}) == "{'a': 1}" and shown("short") == "'short'"
    with pytest.raises(NaspruneError) as info:
        parse_recipe({**SYNTHETIC, "colour": bomb}, "r.yaml")
    assert "unknown key 'colour' (value [[[[" in str(info.value) and len(str(info.value)) < 600


# -- 5. SE on a block no schedule has ------------------------------------------------------------------------------
@pytest.mark.parametrize("space, blocks, message", [
    ("fd_mobilenet", [1, 99], "space_overrides.se.blocks[1]=99 is invalid: expected a block index < 13 (the "
                              "longest schedule, 'slow', has 13 blocks"),
    ("fd_mobilenet", [13], "space_overrides.se.blocks[0]=13 is invalid: expected a block index < 13"),
    ("mobilenets", [99], "space_overrides.se.blocks[0]=99 is invalid: expected a block index < 15 (the longest "
                         "schedule, 'ir:slow', has 15 blocks"),
    ("mobilenet_v3", [15], "space_overrides.se.blocks[0]=15 is invalid: expected a block index < 15"),
])
def test_se_on_a_block_no_schedule_has_is_an_error(space, blocks, message):
    overrides = {"free_placement": None, "se": {"blocks": blocks}}
    with pytest.raises(NaspruneError) as info:
        parse_recipe({**SYNTHETIC, "space": space, "space_overrides": overrides}, "r.yaml")
    assert f"r.yaml: {message}" in str(info.value)


def test_se_blocks_of_a_family_space_fit_some_member_and_round_trip():
    recipe = parse_recipe({**SYNTHETIC, "space": "mobilenets",
                           "space_overrides": {"free_placement": None, "se": {"blocks": [1, 14]}}}, "r.yaml")
    assert {f: m.se_blocks for f, m in recipe.space.members.items()} == {"dws": (1, 14), "ir": (1, 14)}
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # 14 is an ir block: the stored form reads back
    fd = parse_recipe({**SYNTHETIC, "space_overrides": {"free_placement": None, "se": {"blocks": [0, 12]}}}, "r.yaml")
    assert fd.space.se_blocks == (0, 12)


# -- unbounded numbers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("latency, message", [
    ({"runs": 10 ** 12}, "latency.runs=1000000000000 is invalid: expected an integer in [1, 10000]"),
    ({"threads": 100_000}, "latency.threads=100000 is invalid: expected an integer in [1, 256]"),
])
def test_latency_settings_are_bounded(latency, message):
    with pytest.raises(NaspruneError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_recipe({**SYNTHETIC, "latency": latency}, "r.yaml")


def test_a_deployment_resolution_too_large_for_memory_is_refused_before_training(cwd, monkeypatch, capsys):
    (cwd / "r.yaml").write_text(yaml.safe_dump({**SYNTHETIC, "deploy_resolution": 1_000_000}))
    _forbid(monkeypatch, "nasprune.train.fit", "training")
    _forbid(monkeypatch, "nasprune.cost.count", "counting")
    err = _error(["search", "r.yaml", "--no-progress"], capsys)
    assert "at 1000000x1000000x1 is too large" in err
    assert not Path("studies/inp.db").exists()  # refused before the study was created
