"""The budget table from the run cache: a pandas table first (CSV, Markdown), then a Plotly figure of it.

Training runs are grouped by ``row`` (one network of one budget row); test accuracy is reported as the mean
over seeds +- the sample standard deviation (``ddof=1``; 0 for a single seed). Latencies are the interleaved
latency session's where it has them: PyTorch at 224 and at the training side, onnxruntime at 224.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nasprune.fsutil import atomic_write_text

__all__ = ["FAMILY_ORDER", "PAPER_FD_GAIN", "claims", "figure", "markdown", "search_table", "summarize",
           "write_reports"]

# family -> (legend label, marker symbol, colour); the table lists families in this order per budget.
FAMILY_ORDER: Mapping[str, tuple[str, str, str]] = {
    "mobilenet_v1": ("MobileNetV1", "square", "#ff7f0e"),
    "fd_mobilenet": ("FD-MobileNet", "circle", "#1f77b4"),
    "mobilenet_v3_large": ("MobileNetV3-Large", "triangle-up", "#9467bd"),
    "mobilenet_v3_small": ("MobileNetV3-Small", "triangle-down", "#8c564b"),
    "searched": ("nasprune search, retrained", "star", "#d62728"),
    "searched_ft": ("nasprune search, fine-tuned from its weights", "star-open", "#d62728"),
    "v3_pruned": ("MobileNetV3-Large, gamma x S pruned + fine-tuned", "diamond", "#2ca02c"),
    "v3_pruned_long": ("MobileNetV3-Large, gamma x S pruned, fine-tuned to the searched row's epochs", "diamond-wide",
                       "#2ca02c"),
    "v3_scratch": ("pruned MobileNetV3-Large architecture, from scratch", "diamond-open", "#2ca02c"),
    "reference": ("reference (over budget)", "x", "#7f7f7f"),
}
#: FD-MobileNet's ImageNet top-1 gain over MobileNet at each budget (points; the FD-MobileNet paper, see
#: ../shared/reference/fd-mobilenet.md): 5.5 at 12 and 5.6 at 40 MFLOPs, about 1.6 at 140.
PAPER_FD_GAIN: Mapping[int, float] = {12: 5.5, 40: 5.6, 140: 1.6}
SEARCHED = ("searched", "searched_ft")
#: The rows each searched row is compared with at equal training: the retrained winner (the recipe from scratch)
#: with every network trained from scratch; the fine-tuned winner (8 epochs of the search, then the recipe) with
#: the pruned MobileNetV3-Large whose parent and fine-tuning add up to the same 12 epochs.
TRAINED_ALIKE: Mapping[str, tuple[str, ...]] = {
    "searched": ("mobilenet_v1", "fd_mobilenet", "mobilenet_v3_large", "mobilenet_v3_small", "v3_scratch"),
    "searched_ft": ("v3_pruned_long",),
}
TABLE_COLUMNS = ("budget", "family", "network", "mflops", "params", "test_acc", "test_spread", "seeds", "val_acc",
                 "latency_224_ms", "latency_train_ms", "latency_ort_224_ms", "deploy_resolution", "train_resolution",
                 "smallest_map", "note")


def _runs(records: Iterable[Mapping[str, Any]], recipe: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Training runs (of ``recipe`` only, if given); latencies from the interleaved latency session replace the
    per-run ones where present."""
    records = list(records)
    latency = next((r for r in records if r.get("kind") == "latency"), {})
    session, session_ort = latency.get("ms", {}), latency.get("ms_ort", {})
    rows = []
    for r in records:
        if r.get("kind") != "train" or (recipe is not None and r.get("recipe") != dict(recipe)):
            continue
        r = dict(r)
        spec_hash = r.get("spec_hash")
        for column, res in (("latency_deploy_ms", r["deploy_resolution"]), ("latency_train_ms", r["train_resolution"])):
            r[column] = session.get(f"{spec_hash}@{res}", r[column])
        r["latency_ort_ms"] = session_ort.get(f"{spec_hash}@{r['deploy_resolution']}", float("nan"))
        r["smallest_map"] = _smallest_map(r)
        rows.append(r)
    runs = pd.DataFrame(rows)
    if not runs.empty:  # a row is (budget, family); the reference parents are told apart by their name
        runs["group"] = runs["network"].where(runs["family"] == "reference", "")
    return runs


def _smallest_map(run: Mapping[str, Any]) -> float:
    """The side of the smallest feature map the network computes at its training resolution (1: a 3x3 depthwise
    conv there sees only its centre tap); NaN for a run without its spec."""
    from nasprune.spec import ArchSpec

    if "spec" not in run:
        return float("nan")
    return float(min(ArchSpec.from_dict(run["spec"]).feature_sizes(run["train_resolution"])))


_PRUNED = re.compile(r" pruned [0-9.]+ %")
_RATIO = re.compile(r"global ratio ([0-9.]+) \((\d+) of ")


def _note(notes: pd.Series) -> str:
    """One note per row; the per-seed pruning ratios of a pruned row (its channels differ by seed) are listed."""
    unique = list(dict.fromkeys(n for n in notes if n))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    ratios = [m.group(1) for n in notes if (m := _RATIO.search(n or ""))]
    return _RATIO.sub(f"global ratio {' / '.join(ratios)} per seed (of ", unique[0], count=1)


def _std(accuracies: pd.Series) -> float:
    """The sample standard deviation over seeds (``ddof=1``); 0 for a single seed."""
    return float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0


def summarize(records: Iterable[Mapping[str, Any]], recipe: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One line per network of a budget row, seeds aggregated; empty (with the columns) before any run.

    ``recipe`` keeps only the runs trained with it (the cache may hold runs of several recipes).
    """
    runs = _runs(records, recipe)
    if runs.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    runs["network"] = runs["network"].str.replace(_PRUNED, " pruned", regex=True)
    grouped = runs.groupby(["budget", "family", "group"], sort=False, dropna=False)
    table = grouped.agg(
        network=("network", "first"), mflops=("mflops", "mean"), params=("params", "mean"),
        test_acc=("test_acc", "mean"),
        test_spread=("test_acc", _std), seeds=("seed", "nunique"),
        val_acc=("val_acc", "mean"), latency_224_ms=("latency_deploy_ms", "median"),
        latency_train_ms=("latency_train_ms", "median"), latency_ort_224_ms=("latency_ort_ms", "median"),
        deploy_resolution=("deploy_resolution", "first"),
        train_resolution=("train_resolution", "first"), smallest_map=("smallest_map", "min"), note=("note", _note),
    ).reset_index()
    table["params"] = table["params"].round().astype(int)
    order = {f: i for i, f in enumerate(FAMILY_ORDER)}
    table = table.sort_values(["budget", "family"],
                              key=lambda c: c.map(lambda f: order.get(f, len(order))) if c.name == "family" else c)
    return table[list(TABLE_COLUMNS)].reset_index(drop=True)


def search_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One line per search: its cost (trials, wall time) and its best feasible trial."""
    rows = [{k: r.get(k) for k in ("budget", "space", "trials", "complete", "feasible", "pruned", "failed",
                                    "wall_seconds", "trial_seconds", "best_trial", "best_val_acc", "best_mflops",
                                    "family_searched", "schedule", "width", "seed_design", "rerank_val_acc")}
            for r in records if r.get("kind") == "search"]
    return pd.DataFrame(rows).sort_values("budget").reset_index(drop=True) if rows else pd.DataFrame()


def _pct(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.2f}"


def _cells(row) -> list[str]:
    latency = "" if pd.isna(row.latency_224_ms) else f"{row.latency_224_ms:.2f} / {row.latency_train_ms:.2f}"
    ort = "" if pd.isna(row.latency_ort_224_ms) else f"{row.latency_ort_224_ms:.2f}"
    spread = f"{_pct(row.test_acc)} ± {_pct(row.test_spread)}"
    budget = "—" if pd.isna(row.budget) else f"{row.budget:g}"
    return [budget, _label(row.family), row.network, f"{row.mflops:.2f}", f"{row.params:,}",
            spread, str(row.seeds), _pct(row.val_acc), latency, ort,
            f"{row.deploy_resolution} / {row.train_resolution}",
            "" if pd.isna(row.smallest_map) else f"{row.smallest_map:.0f}×{row.smallest_map:.0f}", row.note or ""]


def _label(family: str) -> str:
    """The family's legend label; a family this module does not know (a newer benchmark's) is shown by its id."""
    return FAMILY_ORDER[family][0] if family in FAMILY_ORDER else family


def _md(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def markdown(table: pd.DataFrame, searches: pd.DataFrame) -> str:
    """The results table and the search-cost table as Markdown."""
    header = ("budget (MFLOPs)", "family", "network", "MFLOPs", "params", "test acc % (mean ± std)",
              "seeds", "val acc %", "PyTorch latency ms (224 / train res)", "onnxruntime latency ms (224)",
              "resolution (deploy / train)", "smallest map (train res)", "note")
    text = _md(header, (_cells(r) for r in table.itertuples()))
    if not searches.empty:
        s_header = ("budget", "space", "trials (complete / feasible / pruned / failed)",
                    "wall time (min, sum of trials)", "winner", "its val acc % (search recipe)", "its MFLOPs",
                    "family, schedule, width", "seed design")
        lines = ([f"{r.budget:g}", r.space, f"{r.trials} ({r.complete} / {r.feasible} / {r.pruned} / {r.failed})",
                  f"{r.trial_seconds / 60:.1f}", str(r.best_trial), _pct(r.best_val_acc), f"{r.best_mflops:.2f}",
                  ", ".join(str(v) for v in (r.family_searched, r.schedule, r.width) if not _missing(v)),
                  "" if _missing(r.seed_design) else str(r.seed_design)]
                 for r in searches.itertuples())
        text += "\n\nSearch cost:\n\n" + _md(s_header, lines)
        text += "\n\n" + claims(table, searches)
    return text + "\n"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _gap(a, b) -> str:
    """``a - b`` in points, with both rows' standard deviations."""
    return (f"{100 * (a.test_acc - b.test_acc):+.2f} (± {100 * a.test_spread:.2f} against "
            f"± {100 * b.test_spread:.2f})")


def _best(rows: Sequence[Any]) -> Any:
    return max(rows, key=lambda r: r.test_acc) if rows else None


def _versus(found: Any, best: Any) -> str:
    return "" if found is None or best is None else f"{_gap(found, best)} against {best.network}"


def claims(table: pd.DataFrame, searches: pd.DataFrame) -> str:
    """The table's claims per budget, in points of mean test accuracy.

    * FD-MobileNet - MobileNetV1, against the paper's gain (:data:`PAPER_FD_GAIN`);
    * each searched row against the best row trained alike (:data:`TRAINED_ALIKE`): the retrained winner against
      the networks trained from scratch with the recipe, the fine-tuned winner against the pruned MobileNetV3-Large
      fine-tuned to the same total epochs;
    * the best searched row against the best other row of any training;
    * which family and schedule the search chose.
    """
    lines = []
    for budget, rows in table.dropna(subset=["budget"]).groupby("budget", sort=True):
        rows = list(rows.itertuples())
        by = {r.family: r for r in rows}
        cells = [f"{budget:g}"]
        fd, v1 = by.get("fd_mobilenet"), by.get("mobilenet_v1")
        cells.append(_gap(fd, v1) if fd is not None and v1 is not None else "")
        cells.append(f"{PAPER_FD_GAIN[int(budget)]:+.1f}" if int(budget) in PAPER_FD_GAIN else "")
        for family in SEARCHED:
            cells.append(_versus(by.get(family), _best([r for r in rows if r.family in TRAINED_ALIKE[family]])))
        cells.append(_versus(_best([r for r in rows if r.family in SEARCHED]),
                             _best([r for r in rows if r.family not in SEARCHED])))
        search = searches[searches["budget"] == budget] if not searches.empty else searches
        chosen = "" if search.empty else ", ".join(
            str(v) for v in (search.iloc[0].get("family_searched"), search.iloc[0].get("schedule"))
            if not _missing(v))
        cells.append(chosen)
        lines.append(cells)
    header = ("budget", "FD-MobileNet − MobileNetV1 (points)", "paper (ImageNet)",
              "searched, retrained − best from-scratch row", "searched, fine-tuned − best row of equal epochs",
              "best searched − best other row", "search chose")
    return "Claims (differences of mean test accuracy; ± are each row's std over seeds):\n\n" + _md(header, lines)


def figure(table: pd.DataFrame, budgets: Sequence[float]):
    """Test accuracy against MFLOPs at 224x224, one trace per family, error bars = standard deviation over seeds."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for family, (label, symbol, colour) in FAMILY_ORDER.items():
        rows = table[table["family"] == family]
        if rows.empty:
            continue
        hover = [f"<b>{r.network}</b><br>{r.mflops:.2f} MFLOPs, {r.params:,} params<br>"
                 f"test {100 * r.test_acc:.2f} ± {100 * r.test_spread:.2f} % ({r.seeds} seeds)<br>{r.note or ''}"
                 for r in rows.itertuples()]
        fig.add_trace(go.Scatter(
            x=rows["mflops"].tolist(), y=(100 * rows["test_acc"]).tolist(), mode="markers", name=label,
            marker={"symbol": symbol, "color": colour, "size": 12, "line": {"color": "#000", "width": 1}},
            error_y={"type": "data", "array": (100 * rows["test_spread"]).tolist(), "visible": True},
            text=hover, hoverinfo="text"))
    if not table.empty:  # budget lines as traces: shapes on a log axis would need log10 coordinates
        low, high = 100 * table["test_acc"].min() - 2, 100 * table["test_acc"].max() + 2
        for b in budgets:
            fig.add_trace(go.Scatter(x=[b, b], y=[low, high], mode="lines+text", text=["", f"{b:g} MFLOPs"],
                                     textposition="top center", line={"dash": "dot", "color": "#aaa"},
                                     hoverinfo="skip", showlegend=False))
    fig.update_layout(template="plotly_white", title="Fashion-MNIST test accuracy against cost",
                      xaxis={"title": "MFLOPs (multiply-adds at 224x224 / 1e6)", "type": "log"},
                      yaxis={"title": "test accuracy (%)"}, legend={"orientation": "h", "y": -0.2})
    return fig


def write_reports(records: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str, budgets: Sequence[float],
                  preface: str = "", recipe: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.html`` (plotly.js embedded, works offline)."""
    out_dir = Path(out_dir)
    table, searches = summarize(records, recipe), search_table(records)
    atomic_write_text(out_dir / f"{stem}.csv", table.to_csv(index=False))
    atomic_write_text(out_dir / f"{stem}.md", preface + markdown(table, searches))
    html = figure(table, budgets).to_html(full_html=True, include_plotlyjs=True)
    atomic_write_text(out_dir / f"{stem}.html", html)
    return table
