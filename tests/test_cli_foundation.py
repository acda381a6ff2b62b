"""``nasprune zoo`` and ``nasprune count``: output, a spec file round trip and bad input, mostly in real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nasprune.cli import build_parser, main
from nasprune.spec import ArchSpec
from nasprune.zoo import ZOO, fd_mobilenet

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# Reference integers at 224x224x3, 1000 classes, width 1 (/work/shared/reference/mobilenet-family.md).
ZOO_AT_224 = {
    "mobilenet_v1": (568_740_352, 4_231_976),
    "fd_mobilenet": (144_489_728, 2_901_288),
    "mobilenet_v2": (300_774_272, 3_504_872),
    "mobilenet_v3_large": (216_589_760, 5_483_032),
    "mobilenet_v3_small": (56_510_400, 2_542_856),
}


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_count_fd_mobilenet_quarter_json(run_cli):
    out = json.loads(ok(run_cli("count", "fd_mobilenet", "--width", "0.25", "--json")))
    assert (out["name"], out["macs"], out["params"]) == ("fd_mobilenet_0.25", 12_037_952, 383_160)
    assert out["mflops"] == 12.037952 and out["resolution"] == 224 and out["num_classes"] == 1000
    assert out["hash"] == fd_mobilenet(width=0.25).hash
    assert sum(row["macs"] for row in out["layers"]) == out["macs"]
    assert sum(row["params"] for row in out["layers"]) == out["params"]
    assert out["all_ops"] > out["macs"] and "latency_ms" not in out


def test_zoo_json_lists_every_network_via_console_script(tmp_path):
    script = Path(sys.executable).with_name("nasprune")
    if not script.exists():
        pytest.skip("console script not installed next to the interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(script), "zoo", "--json"], capture_output=True, text=True, timeout=600, env=env)
    rows = json.loads(ok(result))
    assert {r["name"]: (r["macs"], r["params"]) for r in rows} == ZOO_AT_224
    assert all(r["mflops"] == r["macs"] / 1e6 and r["resolution"] == 224 and r["width"] == 1.0 for r in rows)


def test_zoo_text_listing(capsys):
    assert main(["zoo"]) == 0  # in-process: shares the count cache with the other foundation tests
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "width", "MFLOPs", "params"]
    assert lines[2].split()[:4] == ["fd_mobilenet", "1", "144.49", "2,901,288"]
    assert len(lines) == 1 + len(ZOO)


def test_zoo_spec_file_feeds_back_into_count(run_cli, tmp_path):
    knobs = ["--width", "0.5", "--resolution", "64", "--classes", "10", "--in-channels", "1"]
    text = ok(run_cli("zoo", "fd_mobilenet", *knobs))
    spec = ArchSpec.from_json(text)
    assert spec == fd_mobilenet(width=0.5, resolution=64, num_classes=10, in_channels=1)
    (tmp_path / "fd.json").write_text(text)
    out = json.loads(ok(run_cli("count", "fd.json", "--json", "--latency")))  # cwd is tmp_path
    assert (out["hash"], out["resolution"], out["in_channels"], out["num_classes"]) == (spec.hash, 64, 1, 10)
    from nasprune import count

    assert (out["macs"], out["params"]) == (count(spec).macs, count(spec).params)
    assert out["latency_ms"] > 0 and out["latency_p90_ms"] >= out["latency_ms"] and out["latency_threads"] >= 1
    assert out["latency_ort_ms"] > 0 and out["latency_ort_p90_ms"] >= out["latency_ort_ms"]


def test_count_file_with_overrides_and_text_table(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(fd_mobilenet(width=0.25).to_json())
    assert main(["count", str(path), "--resolution", "96", "--classes", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fd_mobilenet_0.25  (96x96x3, 10 classes)"
    assert lines[1].split() == ["layer", "kind", "out", "size", "MACs", "params"]
    assert lines[2].split()[:4] == ["stem", "conv", "8", "48"]
    assert lines[-2].startswith("total: ") and "MACs" in lines[-2] and "params" in lines[-2]
    assert lines[-1].startswith("memory: peak activation ") and "(batch 1, 96x96); weights " in lines[-1]
    assert len(lines) == 3 + 1 + 11 + 1 + 1  # title, header, stem, 11 blocks, head, total, memory


def test_count_latency_prints_pytorch_and_onnxruntime(capsys):
    import re

    assert main(["count", "fd_mobilenet", "--width", "0.25", "--resolution", "32", "--in-channels", "1",
                 "--latency"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    found = re.fullmatch(r"latency: (\S+) ms median in PyTorch, (\S+) ms in onnxruntime \(batch 1, \d+ threads\)", last)
    assert found and float(found.group(1)) > 0 and float(found.group(2)) > 0, last


@pytest.mark.parametrize("args, message", [
    (["count", "mobilenet_v4"], r"unknown model 'mobilenet_v4': expected one of fd_mobilenet, mobilenet_v1, "
                                r"mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small or a spec JSON file"),
    (["zoo", "resnet50"], r"unknown model 'resnet50': expected one of fd_mobilenet"),
    (["count", "fd_mobilenet", "--width", "0"], r"argument --width: 0 is invalid: expected a finite number > 0"),
    (["count", "fd_mobilenet", "--width", "-0.5"], r"argument --width: -0.5 is invalid"),
    (["count", "fd_mobilenet", "--width", "nan"], r"argument --width: nan is invalid"),
    (["zoo", "--width", "wide"], r"argument --width: 'wide' is not a number: expected a number > 0"),
    (["count", "fd_mobilenet", "--resolution", "16"],
     r"resolution=16 is too small: this network downsamples 32x, so it needs resolution >= 32"),
    (["zoo", "mobilenet_v2", "--resolution", "0"], r"argument --resolution: 0 is invalid: expected an integer >= 1"),
    (["count", "broken.json"], r"broken\.json: spec is not valid JSON: "),
    (["count", "invalid.json"], r"invalid\.json: blocks\[0\]\.kernel_size=4 is invalid: expected one of 3, 5"),
    (["count", "list.json"], r"list\.json: spec=list is invalid: expected a JSON object"),
    (["count", "binary.json"], r"binary\.json: not a spec JSON file \(not UTF-8 text\)"),
    (["count", "missing.json"], r"cannot read spec file 'missing\.json': No such file or directory"),
    (["count", "valid.json", "--width", "0.5"], r"--width 0\.5 applies to zoo models only"),
    (["count"], r"the following arguments are required: MODEL"),
    ([], r"the following arguments are required: COMMAND"),
    (["frobnicate"], r"argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_exit_2(run_cli, tmp_path, args, message):
    (tmp_path / "broken.json").write_text('{"stem": {"out_channels": 8,')
    bad = fd_mobilenet(width=0.25).to_dict()
    bad["blocks"][0]["kernel_size"] = 4
    (tmp_path / "invalid.json").write_text(json.dumps(bad))
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00\x81")
    (tmp_path / "valid.json").write_text(fd_mobilenet(width=0.25).to_json())
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasprune: error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]


def test_module_entry_points(run_cli):
    assert ok(run_cli("--version")).startswith("nasprune ")
    out = ok(subprocess.run([sys.executable, "-m", "nasprune", "--help"], capture_output=True, text=True,
                            timeout=600))
    assert "zoo" in out and "count" in out


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_help_on_every_registered_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nasprune {command}") and "-h, --help" in out


def test_foundation_commands_are_registered():
    assert {"zoo", "count"} <= set(_commands())


def test_package_import_is_lazy_and_exports_resolve():
    code = ("import sys, nasprune; assert 'torch' not in sys.modules, 'import nasprune pulled in torch'; "
            "from nasprune.cli import build_parser; build_parser(); assert 'torch' not in sys.modules; "
            "assert sorted(nasprune.__all__) == sorted(nasprune._EXPORTS); "
            "[getattr(nasprune, name) for name in nasprune.__all__]; print(nasprune.build.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert ok(out).strip() == "nasprune.builder"
