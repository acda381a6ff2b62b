"""``nasprune dashboard``: served on loopback, it shows trials that the search adds while it runs."""

from __future__ import annotations

import html
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import optuna
import pytest
from interruptible import sigint_default
from report_study import create_study, make_trial

from nasprune.cli import main
from nasprune.report.dashboard import PLOTLY_PATH, DashboardConfig, make_server


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture()
def served(tmp_path):
    """A dashboard on a free port for a study that has two trained trials so far."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    create_study(url, name="live", numbers=[0, 1])
    server = make_server(DashboardConfig(study_name="live", storage_url=url, port=0, refresh_s=5))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, url
    server.shutdown()
    server.server_close()


def _pareto_trials(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"nasprune export --study live --trial (\d+)", page)]


def test_dashboard_shows_trials_added_while_it_runs(served, tmp_path):
    server, url = served
    assert server.url.startswith("http://127.0.0.1:")
    status, content_type, page = _get(server.url)
    assert status == 200 and content_type.startswith("text/html")
    assert '<meta http-equiv="refresh" content="5">' in page and f'<script src="{PLOTLY_PATH}">' in page
    assert "<b>2</b>finished trials" in page and _pareto_trials(page) == [0, 1]

    # A search worker adds a trial that dominates trial 0 (trial 6 of the fixture: 0.83 at 25 MFLOPs).
    writer = optuna.load_study(study_name="live", storage=url)
    writer.add_trial(make_trial(6))
    writer.ask()  # and starts another one
    page = _get(server.url)[2]
    assert "<b>3</b>finished trials" in page and _pareto_trials(page) == [2, 1]
    assert "<b>1</b>running or waiting" in page

    # The dashboard holds no lock between requests: a writer commits at once.
    conn = sqlite3.connect(tmp_path / "live.db", timeout=0.1)
    conn.execute("UPDATE studies SET study_name = study_name")
    conn.commit()
    conn.close()


def test_plotly_is_served_once_and_cached(served):
    server, _ = served
    status, content_type, body = _get(server.url.rstrip("/") + PLOTLY_PATH)
    assert status == 200 and content_type.startswith("application/javascript") and len(body) > 1_000_000
    assert _get(server.url + "nothing")[0] == 404


def test_waiting_page_before_the_first_completed_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    create_study(url, name="new", numbers=[])
    server = make_server(DashboardConfig(study_name="new", storage_url=url, port=0, refresh_s=3))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = html.unescape(_get(server.url)[2])
    finally:
        server.shutdown()
        server.server_close()
    assert "study 'new' has no completed trials yet" in page and 'content="3"' in page


def test_started_before_the_study_exists_it_waits_then_shows_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'later.db'}"  # no file yet: the search has not created it
    server = make_server(DashboardConfig(study_name="later", storage_url=url, port=0, refresh_s=2))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        first = html.unescape(_get(server.url)[2])
        assert not (tmp_path / "later.db").exists()  # a reader: waiting creates nothing
        create_study(url, name="other", numbers=[])
        second = html.unescape(_get(server.url)[2])
        create_study(url, name="later", numbers=[0, 1])
        third = _get(server.url)[2]
    finally:
        server.shutdown()
        server.server_close()
    assert "Waiting for study 'later': no storage file " in first and 'content="2"' in first
    assert "Waiting for study 'later': storage " in second and "has no such study yet (studies there: other)" in second
    assert "nasprune export --study later --trial 1" in third and "Waiting" not in third


def test_cli_waits_for_a_study_that_does_not_exist_yet(tmp_path):
    url = f"sqlite:///{tmp_path / 'soon.db'}"
    process = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "dashboard", "--study", "soon", "--storage", url,
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_default)
    try:
        first, second = process.stdout.readline(), process.stdout.readline()
        served_at = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)", first)
        assert served_at, first
        assert second.startswith("Waiting for study 'soon': no storage file ") and "once it is there" in second
        assert "Waiting for study 'soon'" in html.unescape(_get(served_at.group(1))[2])
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "dashboard stopped" in out and err == ""


def test_a_storage_that_cannot_be_opened_is_one_line_exit_2(capsys):
    assert main(["dashboard", "--study", "x", "--storage", "nonsense", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasprune: error: ") and "nonsense" in err


def test_cli_serves_until_ctrl_c(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    create_study(url, name="cli", numbers=[0, 1, 4])
    process = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "dashboard", "--study", "cli", "--storage", url,
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_default)
    try:
        first = process.stdout.readline()
        served_at = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)", first)
        assert served_at, first
        assert "nasprune export --study cli --trial 2" in _get(served_at.group(1))[2]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "dashboard stopped" in out and err == ""
