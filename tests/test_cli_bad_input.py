"""Bad command-line input: one line ``nasprune: error: ...``, exit code 2, no traceback, before any work starts.

Output locations, networks too large for memory, files that are not checkpoints, numeric arguments, resuming
a study with other artifacts, and Ctrl-C during a search (issue 12, item 4). Work that must not start is
replaced by a function that fails the test if it is called.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from cli_errors import error_line as _error
from cli_errors import forbid as _forbid
from cli_errors import synthetic_recipe

import nasprune
from nasprune.checkpoint import save_checkpoint
from nasprune.cli import build_parser, main
from nasprune.cost import MEMORY_LIMIT_FRACTION, check_memory, count, estimate_memory
from nasprune.errors import NaspruneError
from nasprune.storage import load_study
from nasprune.zoo import ZOO, fd_mobilenet, get_spec

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SYNTHETIC = synthetic_recipe("bad")


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A scratch working directory holding a file ``afile`` and a directory ``adir``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "adir").mkdir()
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Training, pruning and searching fail the test if they start."""
    _forbid(monkeypatch, "nasprune.train.fit", "training")
    _forbid(monkeypatch, "nasprune.prune.run_pipeline", "pruning")
    _forbid(monkeypatch, "nasprune.search.runner.run_search", "the search")


@pytest.fixture
def tiny_checkpoint(cwd) -> str:
    """FD-MobileNet 0.25x for the synthetic data (1 channel, 4 classes, 32x32), as ``tiny.pt``."""
    torch.manual_seed(0)
    save_checkpoint(cwd / "tiny.pt", nasprune.build(fd_mobilenet(0.25, resolution=32, num_classes=4,
                                                                   in_channels=1)), {})
    return "tiny.pt"


def _recipe(cwd, **changes) -> str:
    path = cwd / "recipe.yaml"
    path.write_text(yaml.safe_dump({**SYNTHETIC, **changes}))
    return str(path)


# -- output locations ----------------------------------------------------------------------------------------------
TRAIN = ["train", "fd_mobilenet", "--width", "0.25", "--data", "synthetic", "--epochs", "1", "--no-progress"]
PRUNE = ["prune", "fd_mobilenet", "--width", "0.25", "--data", "synthetic", "--ratio", "0.5"]


@pytest.mark.parametrize("argv, expected", [
    (TRAIN + ["--out", "afile"], "--out 'afile' is a file: expected a directory"),
    (TRAIN + ["--out", "afile/run"], "--out 'afile/run' cannot be created: 'afile' is a file, not a directory"),
    (TRAIN + ["--out", "adir"], "--out 'adir' holds a directory 'model.pt' where the file model.pt is to be written"),
    (TRAIN, "default --out 'runs/fd_mobilenet_0.25-"),  # runs/ is a file: the default location is checked too
    (PRUNE + ["--out", "afile"], "--out 'afile' is a file: expected a directory"),
    (PRUNE + ["--out", "afile/x/y"], "--out 'afile/x/y' cannot be created: 'afile' is a file"),
    (["search", "RECIPE", "--artifacts", "afile"], "--artifacts 'afile' is a file: expected a directory"),
    (["search", "RECIPE", "--storage", "sqlite:///afile.db"],
     "default artifacts directory 'afile.artifacts' is a file"),
    (["trials", "--study", "s", "--csv", "adir"], "--csv 'adir' is a directory: expected a file path"),
    (["trials", "--study", "s", "--csv", "afile/t.csv"], "--csv 'afile/t.csv' cannot be created: 'afile' is a file"),
    (["report", "--study", "s", "--out", "afile/r.html"], "--out 'afile/r.html' cannot be created: 'afile' is a file"),
    (["report", "--study", "s", "--out", "adir"], "--out 'adir' is a directory: expected an HTML file path"),
    (["report", "--study", "s", "--csv", "afile"], "--csv 'afile' is a file: expected a directory"),
    (["export", "--study", "s", "--out", "afile"], "--out 'afile' is a file: expected a directory"),
])
def test_output_location_refused_before_any_work(cwd, no_work, capsys, argv, expected):
    (cwd / "adir" / "model.pt").mkdir()
    (cwd / "runs").write_text("a file where the default output directory goes\n")
    (cwd / "afile.artifacts").write_text("a file where the artifacts go\n")
    argv = [_recipe(cwd) if a == "RECIPE" else a for a in argv]
    assert expected in _error(argv, capsys)


def test_unwritable_directory_is_refused(cwd, monkeypatch, capsys):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != "adir" and real_access(p, mode))
    err = _error(["report", "--study", "s", "--out", "adir/sub/r.html"], capsys)
    assert "--out 'adir/sub/r.html' cannot be written: directory 'adir' is not writable" in err


def test_writable_locations_pass_the_check(cwd):
    from nasprune.cli.common import check_output_dir, check_output_file

    assert check_output_dir("adir/new/deeper", "--out") == Path("adir/new/deeper")
    assert str(check_output_file("afile", "--csv")) == "afile"  # an existing file is replaced atomically
    assert not (cwd / "adir" / "new").exists()  # checking creates nothing


# -- networks too large to build ---------------------------------------------------------------------------------------
def _largest_tensor(spec) -> int:
    """Elements of the largest module output (or the input) of a real forward pass at batch 1."""
    model, sizes = nasprune.build(spec), [spec.in_channels * spec.resolution ** 2]
    for module in model.modules():
        module.register_forward_hook(lambda m, i, o: sizes.append(o.numel()))
    with torch.no_grad():
        model.eval()(torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution))
    return max(sizes)


def test_estimate_params_are_exact_and_activation_is_the_largest_tensor(random_spec):
    for name in ZOO:
        spec = get_spec(name, width=0.5, resolution=64)
        assert estimate_memory(spec).params == count(spec, layers=False).params, name
    for seed in range(12):
        spec = random_spec(seed)
        estimate = estimate_memory(spec)
        assert estimate.params == count(spec, layers=False).params
        assert estimate.activation == _largest_tensor(spec), seed
        assert estimate.bytes == 4 * (estimate.params + estimate.activation)


def test_check_memory_limit_is_a_fraction_of_ram(monkeypatch):
    spec = fd_mobilenet(0.25)
    estimate = estimate_memory(spec)
    need = estimate.bytes
    monkeypatch.setattr("nasprune.cost.physical_memory_bytes", lambda: int(need / MEMORY_LIMIT_FRACTION) + 8)
    assert check_memory(spec).bytes == need  # just fits
    monkeypatch.setattr("nasprune.cost.physical_memory_bytes", lambda: int(need / MEMORY_LIMIT_FRACTION) - 8)
    with pytest.raises(NaspruneError) as info:
        check_memory(spec)
    assert f"'fd_mobilenet_0.25' at 224x224x3 is too large: it needs about 0.0 GiB (383,160 parameters and a " \
           f"largest activation of {3 * 224 * 224:,} values at batch 1, float32), more than the limit of 0.0 GiB " \
           f"({MEMORY_LIMIT_FRACTION:.0%} of this machine's" in str(info.value)
    assert estimate.activation == 3 * 224 * 224  # the input image is the largest tensor of this network


def _huge_spec_file(cwd) -> str:
    raw = fd_mobilenet(0.25).to_dict()
    raw["blocks"][-1]["out_channels"] = 10**12
    (cwd / "huge.json").write_text(json.dumps(raw))
    return "huge.json"


@pytest.mark.parametrize("argv, network", [
    (["count", "fd_mobilenet", "--width", "1000"], "'fd_mobilenet_1000' at 224x224x3"),
    (["count", "fd_mobilenet", "--resolution", "100000"], "'fd_mobilenet_1' at 100000x100000x3"),
    (["count", "HUGE"], "'fd_mobilenet_0.25' at 224x224x3"),
    (["zoo", "--width", "1000"], "'mobilenet_v1_1000' at 224x224x3"),
    (TRAIN[:2] + ["--width", "1000"] + TRAIN[4:], "'fd_mobilenet_1000' at 32x32x3"),
    (["train", "HUGE", "--data", "synthetic"], "'fd_mobilenet_0.25' at 32x32x3"),
    (["eval", "CKPT", "--data", "synthetic", "--resolution", "100000"], "'fd_mobilenet_0.25' at 100000x100000x1"),
    (PRUNE + ["--deploy-resolution", "100000"], "'fd_mobilenet_0.25' at 100000x100000x3"),
    (PRUNE + ["--resolution", "100000"], "'fd_mobilenet_0.25' at 100000x100000x3"),
])
def test_network_too_large_is_refused_before_allocation(cwd, tiny_checkpoint, no_work, monkeypatch, capsys, argv,
                                                        network):
    _forbid(monkeypatch, "nasprune.data.load_data", "loading data")
    if "CKPT" not in argv:  # eval builds the small network stored in the checkpoint, not the large one
        _forbid(monkeypatch, "nasprune.builder.NasNet.__init__", "building the network")
    argv = [_huge_spec_file(cwd) if a == "HUGE" else tiny_checkpoint if a == "CKPT" else a for a in argv]
    err = _error(argv, capsys)
    assert f"network {network}" in err and "is too large: it needs about" in err
    assert "of this machine's" in err and "GiB of RAM)" in err


def test_forged_checkpoint_with_a_huge_spec_is_not_built(cwd, tiny_checkpoint, monkeypatch, capsys):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["spec"]["blocks"][-1]["out_channels"] = 10**12
    torch.save(payload, "forged.pt")
    _forbid(monkeypatch, "nasprune.builder.NasNet.__init__", "building the network")
    assert "is too large" in _error(["eval", "forged.pt", "--data", "synthetic"], capsys)


@pytest.mark.parametrize("argv", [["count", "fd_mobilenet"], ["eval", "CKPT", "--data", "synthetic"]])
def test_eval_resolution_too_small_is_refused_like_count(cwd, tiny_checkpoint, monkeypatch, capsys, argv):
    _forbid(monkeypatch, "nasprune.data.load_data", "loading data")
    argv = [tiny_checkpoint if a == "CKPT" else a for a in argv] + ["--resolution", "8"]
    assert _error(argv, capsys).endswith("resolution=8 is too small: this network downsamples 32x, so it needs "
                                         "resolution >= 32\n")


# -- files that are not checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("content, expected", [
    (b"hello, I am text\n", "'bad.pt' is a text file, not a nasprune checkpoint: expected a .pt file written by "
                            "nasprune"),
    (b'{"name": "a spec?"}\n', "'bad.pt' is a text file, not a nasprune checkpoint"),
    ("DATETIME", "'bad.pt' is not a nasprune checkpoint: it holds objects other than tensors and plain data"),
    (b"\x00\xff garbage" * 50, "checkpoint 'bad.pt' is corrupt"),
])
def test_file_that_is_not_a_checkpoint(cwd, monkeypatch, capsys, content, expected):
    if content == "DATETIME":
        import datetime

        torch.save({"when": datetime.date(2024, 1, 1)}, "bad.pt")
    else:
        (cwd / "bad.pt").write_bytes(content)
    _forbid(monkeypatch, "nasprune.data.load_data", "loading data")
    err = _error(["eval", "bad.pt", "--data", "synthetic"], capsys)
    assert expected in err and "weights_only" not in err and "arbitrary code" not in err


@pytest.mark.parametrize("change, expected", [
    (lambda sd: sd.__setitem__("blocks.0.conv_dw.conv.weight", torch.zeros(5, 1, 3, 3)),
     "blocks.0.conv_dw.conv.weight has shape (5, 1, 3, 3) in the file, the spec needs (8, 1, 3, 3)"),
    (lambda sd: sd.pop("head.classifier.bias"), "head.classifier.bias is missing from the file"),
    (lambda sd: sd.__setitem__("extra.weight", torch.zeros(1)), "extra.weight is in the file but not in the spec"),
])
def test_state_dict_mismatch_names_the_first_key_and_shapes(cwd, tiny_checkpoint, capsys, change, expected):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    change(payload["state_dict"])
    torch.save(payload, tiny_checkpoint)
    err = _error(["eval", tiny_checkpoint, "--data", "synthetic"], capsys)
    assert f"checkpoint 'tiny.pt': weights do not match its spec: {expected}\n" in err


# -- numeric arguments ---------------------------------------------------------------------------------------------
CPUS = os.cpu_count() or 1


@pytest.mark.parametrize("argv, expected", [
    (["dashboard", "--study", "s", "--port", "99999"], "99999 is invalid: expected an integer in [0, 65535]"),
    (["dashboard", "--study", "s", "--port", "-1"], "-1 is invalid: expected an integer in [0, 65535]"),
    (TRAIN + ["--seed", str(2**32)], f"{2**32} is invalid: expected an integer in [0, 4294967295]"),
    (TRAIN + ["--threads", str(CPUS + 1)], f"{CPUS + 1} is invalid: expected an integer in [1, {CPUS}]"),
    (PRUNE + ["--seed", "-1"], "-1 is invalid: expected an integer in [0, 4294967295]"),
    (PRUNE + ["--sparsity-lambda", "inf"], "argument --sparsity-lambda: inf is invalid: expected a finite number"),
    (["search", "--seed", "-3"], "-3 is invalid: expected an integer in [0, 4294967295]"),
    (["search", "--workers", "1001"], "1001 is invalid: expected an integer in [1, 1000]"),
    (["search", "--threads", "0"], "0 is invalid: expected an integer in [1, "),
    (["export", "--study", "s", "--latency-threads", str(CPUS + 1)], f"expected an integer in [1, {CPUS}]"),
    (["search", "RECIPE", "--machine", "5000"], "--machine 5000 with seed 0 and 1 workers gives sampler seed "
                                                "5000000000: expected seed + 1000 * (1000 * machine + workers - 1)"),
])
def test_numeric_argument_out_of_range(cwd, no_work, capsys, argv, expected):
    argv = [_recipe(cwd) if a == "RECIPE" else a for a in argv]
    assert expected in _error(argv, capsys)


def test_dashboard_port_bounds_accepted():
    parser = build_parser()
    assert parser.parse_args(["dashboard", "--study", "s", "--port", "0"]).port == 0  # any free port
    assert parser.parse_args(["dashboard", "--study", "s", "--port", "65535"]).port == 65535


# -- resuming a study with other artifacts -----------------------------------------------------------------------
def test_resume_with_other_artifacts_is_refused_naming_both(cwd, capsys):
    from nasprune.search.recipe import load_recipe
    from nasprune.search.runner import open_study

    path, url = _recipe(cwd), f"sqlite:///{cwd / 'r.db'}"
    first = cwd / "first.artifacts"
    open_study(load_recipe(path, storage=url), url, first, heartbeat=False)
    open_study(load_recipe(path, storage=url), url, first, heartbeat=False)  # the same: resumes
    (cwd / "link").symlink_to(cwd)
    open_study(load_recipe(path, storage=url), url, cwd / "link" / "first.artifacts", heartbeat=False)
    with pytest.raises(NaspruneError) as info:
        open_study(load_recipe(path, storage=url), url, cwd / "other", heartbeat=False)
    assert f"keeps its trained networks in {str(first.resolve())!r}, not in {str((cwd / 'other').resolve())!r}: " \
           f"resume it with --artifacts {first.resolve()}" in str(info.value)
    err = _error(["search", path, "--storage", url, "--artifacts", "other", "--no-progress"], capsys)
    assert str(first.resolve()) in err and str((cwd / "other").resolve()) in err
    assert load_study("bad", url).trials == []  # nothing ran


# -- Ctrl-C during a search ----------------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_ctrl_c_in_a_trial_logs_no_optuna_traceback(cwd, monkeypatch, capsys):
    import nasprune.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nasprune.train, "fit", interrupted)
    handler = _Records()
    logging.getLogger("optuna").addHandler(handler)
    try:
        code = main(["search", _recipe(cwd), "--no-progress"])
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert code == 130 and capsys.readouterr().err.endswith("nasprune: interrupted\n")
    logged = [r.getMessage() for r in handler.records]
    assert not [m for m in logged if "failed" in m], logged
    ran = [t for t in load_study("bad").trials if t.state.name != "WAITING"]  # later seed designs still queued
    assert ran[-1].state.name == "FAIL"


def test_other_trial_failures_are_still_logged():
    from nasprune.search.runner import _QuietInterrupt

    quiet = _QuietInterrupt()

    def record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, None, exc_info)

    assert not quiet.filter(record("Trial 3 failed ... KeyboardInterrupt().", KeyboardInterrupt()))
    assert not quiet.filter(record("Trial 3 failed with value None."))
    assert quiet.filter(record("Trial 4 failed ... ValueError('x').", ValueError("x")))
    assert quiet.filter(record("Trial 4 failed with value None."))


def test_cli_runs_in_a_real_process(run_cli):
    result = run_cli("count", "fd_mobilenet", "--width", "1000")
    assert result.returncode == 2 and result.stderr.startswith("nasprune: error: network 'fd_mobilenet_1000'")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
