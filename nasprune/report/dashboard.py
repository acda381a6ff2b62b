"""A live view of a running search: the report page served on 127.0.0.1, rebuilt on every request.

The server is the standard library's ``ThreadingHTTPServer``. It opens the storage like any reader
(``nasprune.storage.load_study``: never creating anything; SQLite in WAL mode, where readers do not block
the search's writers) and reads it in short transactions, one per request, so the search workers never
wait on it. plotly.js is served once at ``/plotly.min.js`` (cached by the browser); the page reloads itself
every ``refresh_s`` seconds.

Started before its study exists (next to a search that is still creating it), the server shows a waiting page,
looks for the study again on every request, and shows the report once it is there.
"""

from __future__ import annotations

import dataclasses
import html
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import optuna

from nasprune.errors import NaspruneError
from nasprune.report.page import PageOptions

__all__ = ["DashboardConfig", "DashboardServer", "make_server"]

PLOTLY_PATH = "/plotly.min.js"


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
    """Where the study is and how it is served.

    Attributes:
        study_name: the study to show.
        storage_url: its storage URL (``None``: ``sqlite:///studies/NAME.db``).
        host: interface to listen on; loopback by default, the page has no authentication.
        port: TCP port; 0 picks a free one (see ``DashboardServer.url``).
        refresh_s: the page reloads itself this often (0: never).
    """

    study_name: str
    storage_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8050
    refresh_s: int = 10


class DashboardServer(ThreadingHTTPServer):
    """Serves ``/`` (the report page, rebuilt from the storage) and ``/plotly.min.js``."""

    daemon_threads = True

    def __init__(self, config: DashboardConfig, study: optuna.Study | None, source: str, url: str = "",
                 waiting: str = "") -> None:
        self.config = config
        self.study = study      # None until the study exists
        self.source = source
        self.waiting = waiting  # why there is no study yet
        self._url = url
        self._build_lock = threading.Lock()  # one rebuild at a time: two cores, several users
        super().__init__((config.host, config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def page(self) -> str:
        """The report page as of now, or a waiting page while the study has no completed trial."""
        from nasprune.report import make_page

        options = PageOptions(plotly_js=PLOTLY_PATH, refresh_s=self.config.refresh_s or None, source=self.source)
        with self._build_lock:
            if self.study is None:
                self.study, self.waiting = find_study(self.config.study_name, self._url)
                if self.study is None:
                    return _waiting_page(self.config, self.waiting)
            try:
                return make_page(self.study, storage_arg=self.config.storage_url, options=options)[1]
            except NaspruneError as exc:  # no completed trial yet: say so and keep refreshing
                return _waiting_page(self.config, str(exc))


def _waiting_page(config: DashboardConfig, message: str) -> str:
    refresh = f'<meta http-equiv="refresh" content="{config.refresh_s}">' if config.refresh_s else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>nasprune study {html.escape(config.study_name)}</title></head>"
            f'<body style="font-family: sans-serif; margin: 40px"><h1>nasprune study '
            f"{html.escape(config.study_name)}</h1><p id=\"waiting\">{html.escape(message)}</p>"
            f"<p>This page reloads every {config.refresh_s} s.</p></body></html>")


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page().encode(), cache=False)
        elif path == PLOTLY_PATH:
            from plotly.offline import get_plotlyjs

            self._send(HTTPStatus.OK, "application/javascript; charset=utf-8", get_plotlyjs().encode(), cache=True)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found: try /\n", cache=False)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, *, cache: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the standard library's signature)
        pass  # one line per request would drown the search's progress bar in the same terminal


def find_study(name: str, url: str) -> tuple[optuna.Study | None, str]:
    """``(study, "")``, or ``(None, why not yet)`` while its storage file or the study itself does not exist.

    Raises:
        NaspruneError: the storage cannot be opened for another reason (a malformed URL, a server that refuses).
    """
    from nasprune.storage import MissingStorage, open_storage, redact_url

    try:
        storage = open_storage(url, heartbeat=False, create=False)
    except MissingStorage as exc:
        return None, f"Waiting for study {name!r}: {exc} yet (a search creates it)."
    try:
        return optuna.load_study(study_name=name, storage=storage), ""
    except KeyError:
        held = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        return None, (f"Waiting for study {name!r}: storage {redact_url(url)!r} has no such study yet (studies "
                      f"there: {held}).")


def make_server(config: DashboardConfig) -> DashboardServer:
    """Look for the study (waiting for it if it or its storage file does not exist yet) and bind the port.

    Raises:
        NaspruneError: a storage that cannot be opened, or a port that cannot be bound (one line).
    """
    from nasprune.storage import default_storage_url, redact_url

    url = config.storage_url or default_storage_url(config.study_name)
    study, waiting = find_study(config.study_name, url)
    try:
        return DashboardServer(config, study, redact_url(url), url, waiting)
    except OSError as exc:
        raise NaspruneError(f"cannot listen on {config.host}:{config.port}: {exc.strerror} "
                            "(choose another --port, or 0 for any free port)") from None
