"""Assemble the report's HTML: a summary, every section's figure (or note) and the Pareto table.

``render_page`` returns one self-contained page: with ``plotly_js="inline"`` (the default) plotly.js is
embedded, so the file opens offline; the dashboard passes a URL instead and serves the script once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from nasprune.fsutil import atomic_write_text
from nasprune.report.figures import Section
from nasprune.report.tables import ReportTables, format_value

__all__ = ["PageOptions", "render_page", "write_report"]

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; }
header { background: #1f2a44; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .meta { opacity: .8; font-size: 13px; }
main { max-width: 1200px; margin: 0 auto; padding: 12px 24px 40px; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px; padding: 12px 18px; margin: 14px 0; }
section h2 { font-size: 17px; margin: 4px 0; }
.caption { color: #555; margin: 0 0 6px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 10px 14px; margin: 8px 0; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; }
.stat { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.stat b { display: block; font-size: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e8ee; padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f2f6; } td.l, th.l { text-align: left; }
code { background: #f0f2f6; padding: 1px 4px; border-radius: 3px; font-size: 12px; }
td.cmd { white-space: normal; word-break: break-all; min-width: 280px; }
nav a { color: #c8d3ff; margin-right: 14px; font-size: 13px; }
"""


@dataclasses.dataclass(frozen=True)
class PageOptions:
    """How the page is assembled.

    Attributes:
        plotly_js: ``"inline"`` to embed plotly.js, or the URL a ``<script src>`` loads it from.
        refresh_s: reload the page every this many seconds (the dashboard); ``None``: never.
        source: where the study was read from, shown in the header (password already hidden).
    """

    plotly_js: str = "inline"
    refresh_s: int | None = None
    source: str = ""


def _plotly_script(plotly_js: str) -> str:
    if plotly_js != "inline":
        return f'<script src="{html.escape(plotly_js)}"></script>'
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _stat(label: str, value: str) -> str:
    return f'<div class="stat"><b>{html.escape(value)}</b>{html.escape(label)}</div>'


def _summary(tables: ReportTables) -> str:
    trials = tables.trials
    trained = trials[trials["trained"]]
    best = trained.loc[trained["val_acc"].idxmax()] if len(trained) else None
    stats = [
        _stat("finished trials", str(len(trials))),
        _stat("trained within budget", str(len(trained))),
        _stat("distinct networks trained", str(trained["network"].nunique())),
        _stat("over budget", str(int((~trials["feasible"]).sum()))),
        _stat("stopped early", str(int((trials["state"] == "PRUNED").sum()))),
        _stat("Pareto-optimal", str(len(tables.pareto))),
        _stat("budget", f"{tables.budget_mflops:g} MFLOPs" if tables.budget_mflops is not None else "none"),
    ]
    running = tables.state_counts.get("RUNNING", 0) + tables.state_counts.get("WAITING", 0)
    if running:
        stats.append(_stat("running or waiting", str(running)))
    if best is not None:
        stats.append(_stat(f"best accuracy within budget (trial {int(best['number'])}, "
                           f"{best['mflops']:.1f} MFLOPs)", f"{best['val_acc']:.2%}"))
    won = tables.rerank[tables.rerank["winner"]]
    if len(won):
        row = won.iloc[0]
        stats.append(_stat(f"re-ranked winner, export --trial best ({row['epochs']} epochs, proxy rank "
                           f"{row['proxy_rank']})", f"trial {int(row['number'])}: {row['val_acc']:.2%}"))
    return f'<div class="summary">{"".join(stats)}</div>'


PARETO_COLUMNS = (  # header, column, format, left-aligned
    ("trial", "number", "d", False), ("accuracy", "val_acc", ".2%", False), ("MFLOPs", "mflops", ".2f", False),
    ("params", "params", ",d", False), ("latency ms", "latency_ms", ".2f", False),
    ("onnxruntime ms", "latency_ort_ms", ".2f", False),
    ("schedule", "schedule", "s", True), ("width", "width", "g", False), ("SE", "se_count", "d", False),
    ("criterion", "criterion", "s", True), ("design", "design", "s", True),
)


def _pareto_table(pareto: pd.DataFrame) -> str:
    head = "".join(f'<th class="{"l" if left else ""}">{h}</th>' for h, _, _, left in PARETO_COLUMNS)
    body = []
    for row in pareto.itertuples():
        cells = "".join(f'<td class="{"l" if left else ""}">{html.escape(format_value(getattr(row, col), spec))}</td>'
                        for _, col, spec, left in PARETO_COLUMNS)
        body.append(f"<tr>{cells}<td class=\"l cmd\"><code>{html.escape(row.export)}</code></td></tr>")
    return (f'<table id="pareto-table"><thead><tr>{head}<th class="l">export command</th></tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _section(section: Section) -> str:
    if section.figure is not None:
        body = section.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{section.key}",
                                      config=PLOTLY_CONFIG)
    else:
        body = f'<p class="note" id="note-{section.key}">{html.escape(section.note or "")}</p>'
    return (f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="caption">{html.escape(section.caption)}</p>{body}</section>')


def render_page(tables: ReportTables, sections: Sequence[Section], options: PageOptions = PageOptions()) -> str:
    """The report page as one HTML string."""
    title = f"nasprune study {tables.study_name}"
    refresh = (f'<meta http-equiv="refresh" content="{int(options.refresh_s)}">'
               if options.refresh_s else "")
    objectives = ", ".join(tables.objectives)
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    source = f" &middot; {html.escape(options.source)}" if options.source else ""
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title.split(":")[0])}</a>' for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>{html.escape(title)}</title><style>{CSS}</style>{_plotly_script(options.plotly_js)}</head>
<body><header><h1>{html.escape(title)}</h1>
<div class="meta">objectives: {html.escape(objectives)}{source} &middot; read {stamp}</div>
<nav><a href="#pareto-trials">Pareto table</a>{nav}</nav></header>
<main>{_summary(tables)}
{"".join(_section(s) for s in sections[:1])}
<section id="pareto-trials"><h2>Pareto-optimal trials</h2>
<p class="caption">Each can be exported (spec, weights, TorchScript, ONNX) with the command beside it.</p>
{_pareto_table(tables.pareto)}</section>
{"".join(_section(s) for s in sections[1:])}
</main></body></html>
"""


def write_report(path: str | Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically (a reader never sees half a report)."""
    return atomic_write_text(path, page)
