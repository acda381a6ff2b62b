"""``nasprune dashboard``: the report's views served live on 127.0.0.1 while a search runs."""

from __future__ import annotations

import argparse

from nasprune.cli.common import int_between, nonnegative_int
from nasprune.cli.report import add_study_args

HELP = "serve a study's report live on 127.0.0.1, re-reading the storage on every refresh"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help=HELP, description=HELP)
    add_study_args(p)
    p.add_argument("--port", type=int_between(0, 65535, note=" (0: any free port)"), default=8050,
                   help="TCP port (default 8050; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; the page has no authentication)")
    p.add_argument("--refresh", type=nonnegative_int, default=10, metavar="SECONDS",
                   help="the page reloads itself this often (default 10; 0: never)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from nasprune.report.dashboard import DashboardConfig, make_server

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = DashboardConfig(study_name=args.study, storage_url=args.storage, host=args.host, port=args.port,
                             refresh_s=args.refresh)
    server = make_server(config)
    print(f"serving study {args.study!r} from {server.source} at {server.url} (Ctrl-C to stop)", flush=True)
    if server.study is None:
        print(f"{server.waiting} The page shows the study once it is there.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # the ordinary way to stop a dashboard: not an error
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0
