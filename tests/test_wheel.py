"""Packaging: the wheel carries the search spaces and recipes, and runs a search from a directory without them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from setuptools import find_packages

from nasprune.search.shipped import RECIPES, SPACES
from nasprune.storage import load_study

ROOT = Path(__file__).resolve().parents[1]
DATA_PACKAGES = {"nasprune.search_spaces": "search_spaces", "nasprune.studies": "studies"}
# The smallest real search (as in tests/test_search_cli.py); the space and the dataset come from the command line.
TINY = {"space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
        "data": {"resolution": 16, "subset": 120, "val_size": 60}, "budget_mflops": 12, "trials": 4,
        "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
        "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2}}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_packages_list_matches_the_tree_and_maps_the_data_folders():
    setuptools_cfg = _pyproject()["tool"]["setuptools"]
    code = set(find_packages(where=str(ROOT), include=["nasprune*"]))
    assert set(setuptools_cfg["packages"]) == code | set(DATA_PACKAGES), "add the new sub-package to pyproject.toml"
    assert setuptools_cfg["package-dir"] == DATA_PACKAGES
    assert setuptools_cfg["package-data"] == {name: ["*.yaml"] for name in DATA_PACKAGES}
    assert _pyproject()["project"]["license"] == "Apache-2.0"


def test_this_install_reads_the_trees_own_files():
    """The editable install (scripts/setup.sh) maps the sub-packages onto the top-level folders: no copy."""
    import nasprune

    if not Path(nasprune.__file__).resolve().is_relative_to(ROOT):
        pytest.skip("nasprune is not imported from this checkout")
    for shelf in (SPACES, RECIPES):
        assert shelf.shipped() == ROOT / shelf.folder, \
            f"{shelf.package} is {shelf.shipped()}: re-run bash scripts/setup.sh (pip install -e .) in {ROOT}"


def _run(argv, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, timeout=300, **kw)


def _check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _source_copy(dst: Path) -> Path:
    """The files a wheel is built from, plus a study database that must not be shipped."""
    import shutil

    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "nasprune", dst / "nasprune", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in DATA_PACKAGES.values():
        (dst / folder).mkdir()
        for f in (ROOT / folder).iterdir():
            if f.suffix in (".yaml", ".py"):
                shutil.copy2(f, dst / folder / f.name)
    (dst / "studies" / "mine.db").write_bytes(b"SQLite format 3\0")
    return dst


def _install_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """Build a wheel, install it into a fresh environment that borrows this one's dependencies: (bin, site)."""
    src = _source_copy(tmp_path / "src")
    _check(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                 "-w", tmp_path / "dist", src]))
    (wheel,) = (tmp_path / "dist").glob("nasprune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in DATA_PACKAGES.values():
        expected = {f"nasprune/{folder}/{f.name}" for f in (ROOT / folder).glob("*.yaml")}
        shipped = {n for n in names if n.startswith(f"nasprune/{folder}/") and n.endswith(".yaml")}
        assert expected and shipped == expected
    assert not [n for n in names if n.endswith(".db")]

    env = tmp_path / "env"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", env]))
    python = env / "bin" / "python"
    # installed before the dependencies become visible, so pip sees (and could touch) nothing but the new env
    _check(_run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel]))
    site = Path(_check(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])).strip())
    (site / "_nasprune_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env / "bin", site


@pytest.mark.slow
def test_wheel_ships_spaces_and_recipes_and_searches_from_anywhere(tmp_path):
    bin_dir, site = _install_wheel(tmp_path)
    work = tmp_path / "work"  # no studies/ or search_spaces/ here
    work.mkdir()
    out = _check(_run([bin_dir / "python", "-c", "import nasprune; print(nasprune.__file__)"], cwd=work))
    assert Path(out.strip()).is_relative_to(site), out

    # no recipe named: the shipped quickstart is read (its budget check fails, it is not "not found")
    proc = _run([bin_dir / "nasprune", "search", "--budget", "1", "--data", "synthetic", "--no-progress"], cwd=work)
    assert proc.returncode == 2 and "not found" not in proc.stderr, proc.stderr
    assert f"below the smallest network space {site / 'nasprune/search_spaces/fd_mobilenet.yaml'}" in proc.stderr
    assert not list(work.iterdir())

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    url = f"sqlite:///{tmp_path / 'out' / 'wheel.db'}"
    out = _check(_run([bin_dir / "nasprune", "search", recipe, "--space", "fd_mobilenet", "--data", "synthetic",
                       "--trials", "2", "--study", "wheel", "--storage", url, "--artifacts", tmp_path / "out" / "art",
                       "--no-progress"], cwd=work))
    assert "study 'wheel'" in out and "2 finished in this run" in out, out
    states = [t.state.name for t in load_study("wheel", url).trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 2, states
    assert not list(work.iterdir())
