"""``nasprune report`` end to end: the page, its default path, --csv, and one-line errors (exit 2)."""

from __future__ import annotations

import re

import pytest
from report_study import PARETO, create_study

from nasprune.cli import main


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'demo.db'}"
    create_study(url)
    create_study(url, name="other", numbers=[4])
    return url


def test_report_writes_a_self_contained_page_and_csv(storage, tmp_path, capsys):
    out = tmp_path / "r" / "demo.html"
    assert main(["report", "--study", "demo", "--storage", storage, "--out", str(out),
                 "--csv", str(tmp_path / "csv")]) == 0
    page = out.read_text()
    assert "<script src=" not in page and "Plotly.newPlot" in page  # plotly.js is inline: opens offline
    assert len(re.findall(r'class="plotly-graph-div"', page)) == 7
    for number in PARETO:
        assert f"nasprune export --study demo --trial {number} --storage {storage}" in page
    assert '<th class="">latency ms</th><th class="">onnxruntime ms</th>' in page
    assert '<td class="">1.90</td><td class="">0.29</td>' in page  # trial 4: PyTorch, onnxruntime
    assert "latency_ms,latency_ort_ms" in (tmp_path / "csv" / "demo_trials.csv").read_text().splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(
        f"demo_{t}.csv" for t in ("trials", "pareto", "hypervolume", "layers", "features", "importance", "rerank"))
    assert list(out.parent.iterdir()) == [out]  # the atomic write left no temporary file
    printed = capsys.readouterr().out
    assert f"wrote {out} (9 finished trials, 6 trained, 4 Pareto-optimal)" in printed


def test_default_storage_and_output_paths(storage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    create_study(f"sqlite:///{tmp_path / 'studies' / 'quick.db'}", name="quick", numbers=[0, 1, 4])
    assert main(["report", "--study", "quick"]) == 0
    page = (tmp_path / "reports" / "quick.html").read_text()
    assert "nasprune export --study quick --trial 2</code>" in page  # no --storage: the default one


@pytest.mark.parametrize(("argv", "message"), [
    (["--study", "nope"], r"no study 'nope' in storage '.*'; studies there: demo, other$"),
    (["--study", "demo", "--storage", "sqlite:////nonexistent/x.db"], r"no storage file '/nonexistent/x.db'"),
    (["--study", "demo", "--storage", "foo://x"], r"unsupported storage URL 'foo://x'"),
])
def test_bad_study_or_storage_is_one_line_exit_2(storage, argv, message, capsys):
    if "--storage" not in argv:
        argv = [*argv, "--storage", storage]
    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasprune: error: ")
    assert re.search(message, err.strip())


def test_study_without_completed_trials_is_one_line_exit_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    create_study(url, name="empty", numbers=[])
    assert main(["report", "--study", "empty", "--storage", url, "--out", str(tmp_path / "e.html")]) == 2
    err = capsys.readouterr().err
    assert err == "nasprune: error: study 'empty' has no completed trials yet (no trials): " \
                  "run or resume 'nasprune search' first\n"
    assert not (tmp_path / "e.html").exists()


def test_out_is_a_directory(storage, tmp_path, capsys):
    assert main(["report", "--study", "demo", "--storage", storage, "--out", str(tmp_path)]) == 2
    assert "is a directory: expected an HTML file path" in capsys.readouterr().err
