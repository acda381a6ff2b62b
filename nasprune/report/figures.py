"""Plotly figures drawn from :class:`~nasprune.report.tables.ReportTables` (plus two of Optuna's own plots).

Each view is a :class:`Section`: a figure, or a note saying why the figure cannot be drawn yet (for example
parameter importance before two trained trials exist). :data:`SECTIONS` lists the views in page order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nasprune.report.tables import ReportTables, format_value, percent_ticks, too_few_trials, trained_study

__all__ = ["PARALLEL_PARAMS", "SCHEDULE_COLORS", "SECTIONS", "TOP_PARAMS", "Section", "build_sections",
           "ranked_params"]

SCHEDULE_COLORS = {"fast": "#1f77b4", "slow": "#ff7f0e", "custom": "#2ca02c", "": "#7f7f7f"}
FAMILY_SCHEDULE_COLORS = {"dws fast": "#1f77b4", "dws slow": "#ff7f0e", "dws custom": "#2ca02c",
                          "ir fast": "#17becf", "ir slow": "#d62728", "ir custom": "#8c564b"}
STATUS_STYLE = {  # legend label, marker
    "pareto": ("Pareto-optimal", {"color": "#d62728", "size": 11, "line": {"color": "#000", "width": 1}}),
    "dominated": ("dominated", {"color": "#6c8ebf", "size": 7, "opacity": 0.75}),
    "over budget": ("over budget (trained)", {"color": "#999", "size": 8, "symbol": "x"}),
    "stopped early": ("stopped early by the pruner", {"color": "#bbb", "size": 7, "symbol": "circle-open"}),
}
DESIGN_MARKER = {"size": 13, "symbol": "diamond", "line": {"color": "#000", "width": 1.5}}  # coloured by status
LOG_TICKS = [m * 10**e for e in range(-1, 5) for m in (1, 2, 5)]  # MFLOPs axis: 0.1, 0.2, 0.5, 1, ...
TOP_PARAMS = 12  # bars in the importance figure
PARALLEL_PARAMS = 8  # parameter axes in the parallel-coordinates figure
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "hovermode": "closest"}


@dataclasses.dataclass(frozen=True)
class Section:
    """One view of the report: ``figure`` or, when it cannot be drawn, ``note`` saying why."""

    key: str
    title: str
    caption: str
    figure: go.Figure | None = None
    note: str | None = None


def _hover(row) -> str:
    ort = format_value(row.latency_ort_ms, ".2f", missing="")
    lines = [f"<b>trial {row.number}</b>" + (f" ({row.design})" if row.design else ""),
             f"accuracy {format_value(row.val_acc, '.2%')}, {format_value(row.mflops, '.2f')} MFLOPs",
             f"width {format_value(row.width, 'g')}, schedule {row.schedule or '-'}, "
             f"SE blocks {format_value(row.se_count, 'd')}",
             f"params {format_value(row.params, ',d')}, latency {format_value(row.latency_ms, '.2f')} ms PyTorch"
             + (f", {ort} ms onnxruntime" if ort else "")]
    return "<br>".join(lines)


def _trained(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["trained"]]  # TrialRecord.trained: complete, feasible, with an accuracy


# -- accuracy against cost ----------------------------------------------------------------------------
def _scatter(rows: pd.DataFrame, x: str, name: str, marker: dict, **kwargs) -> go.Scatter:
    return go.Scatter(x=rows[x].tolist(), y=rows["val_acc"].tolist(), mode="markers", name=name, marker=marker,
                      text=[_hover(r) for r in rows.itertuples()], hoverinfo="text", **kwargs)


def pareto_front_figure(tables: ReportTables, study: optuna.Study) -> go.Figure:
    """Every trial on accuracy against MFLOPs; untrained over-budget trials in a strip underneath."""
    trials = tables.trials
    untrained = trials[trials["val_acc"].isna()]
    with_acc = trials[trials["val_acc"].notna()]  # trained, or stopped early after reporting an accuracy
    n_rows = 2 if len(untrained) else 1
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.86, 0.14] if n_rows == 2 else None)
    for status, (name, marker) in STATUS_STYLE.items():
        rows = with_acc[(with_acc["status"] == status) & (with_acc["design"] == "")]
        fig.add_trace(_scatter(rows, "mflops", name, marker), row=1, col=1)
    _add_designs(fig, with_acc[with_acc["design"] != ""])
    front = tables.pareto.sort_values("mflops")
    fig.add_trace(go.Scatter(x=front["mflops"].tolist(), y=front["val_acc"].tolist(), mode="lines",
                             name="Pareto front", line={"color": "#d62728", "shape": "hv", "width": 2},
                             hoverinfo="skip"), row=1, col=1)
    if n_rows == 2:
        _add_untrained_strip(fig, untrained)
    if tables.budget_mflops is not None:
        _add_budget_line(fig, tables.budget_mflops, tables.budget_floor)
    fig.update_yaxes(title_text="validation accuracy", **percent_ticks(with_acc["val_acc"], pad=0.08), row=1, col=1)
    fig.update_xaxes(type="log", tickvals=LOG_TICKS, ticktext=[f"{v:g}" for v in LOG_TICKS])  # over-budget
    # trials reach many times the budget
    fig.update_xaxes(title_text="MFLOPs (multiply-adds at deployment resolution, log scale)", row=n_rows, col=1)
    fig.update_layout(**LAYOUT, height=560, legend={"orientation": "h", "y": -0.15})
    return fig


def _add_designs(fig: go.Figure, designs: pd.DataFrame) -> None:
    """The hand designs a study started from (seed designs, baselines): diamonds labelled with their names,
    coloured by status like every other trial."""
    colours = [STATUS_STYLE[status][1]["color"] for status in designs["status"]]
    fig.add_trace(go.Scatter(x=designs["mflops"].tolist(), y=designs["val_acc"].tolist(), mode="markers+text",
                             name="hand design (seed design or baseline), coloured by status",
                             marker={**DESIGN_MARKER, "color": colours or "#000"},
                             text=designs["design"].tolist(), textposition="top center", textfont={"size": 10},
                             hoverinfo="text", hovertext=[_hover(r) for r in designs.itertuples()]), row=1, col=1)


def _add_untrained_strip(fig: go.Figure, untrained: pd.DataFrame) -> None:
    """Over-budget trials have no accuracy: ticks at their MFLOPs in a strip under the plot."""
    fig.add_trace(go.Scatter(x=untrained["mflops"].tolist(), y=[0] * len(untrained), mode="markers",
                             name="infeasible (not trained: over budget or below the band)",
                             marker={"color": "#999", "symbol": "line-ns-open", "size": 12},
                             text=[_hover(r) for r in untrained.itertuples()], hoverinfo="text"), row=2, col=1)
    fig.update_yaxes(visible=False, row=2, col=1)


def _add_budget_line(fig: go.Figure, budget: float, floor: float = 0.0) -> None:
    if floor > 0:  # the band every searched child is scaled into
        fig.add_vrect(x0=floor * budget, x1=budget, fillcolor="#d62728", opacity=0.08, line_width=0, row="all",
                      col=1)
        fig.add_annotation(x=math.log10(floor * budget), y=1, yref="y domain", xanchor="right", yanchor="top",
                           showarrow=False, text=f"band {floor:g}-1 x budget ", font={"color": "#d62728"},
                           row=1, col=1)
    fig.add_vline(x=budget, line={"color": "#d62728", "dash": "dash", "width": 1}, row="all", col=1)
    # on a log axis a shape takes the value itself but an annotation its log10
    fig.add_annotation(x=math.log10(budget), y=0, yref="y domain", xanchor="right", yanchor="bottom", showarrow=False,
                       text=f"budget {budget:g} MFLOPs ", font={"color": "#d62728"}, row=1, col=1)


def accuracy_cost_figure(tables: ReportTables, study: optuna.Study) -> go.Figure:
    """Accuracy against measured CPU latency and against params, one colour per downsampling schedule."""
    trained = _trained(tables.trials)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=("against CPU latency (batch 1)", "against parameters"))
    mixed = trained["family"].nunique() > 1  # a two-family study: colour by family and schedule
    groups = trained["family"] + " " + trained["schedule"] if mixed else trained["schedule"]
    for schedule, rows in trained.groupby(groups, sort=True):
        color = FAMILY_SCHEDULE_COLORS.get(schedule, "#9467bd") if mixed else SCHEDULE_COLORS.get(schedule, "#9467bd")
        symbols = ["diamond" if d else "circle" for d in rows["design"]]
        for col, x in ((1, "latency_ms"), (2, "params")):
            sub = rows[rows[x].notna()]
            marker = {"color": color, "size": 8, "symbol": [s for s, ok in zip(symbols, rows[x].notna(),
                                                                                strict=True) if ok]}
            fig.add_trace(_scatter(sub, x, schedule or "unknown", marker, legendgroup=schedule,
                                   showlegend=col == 1), row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", **percent_ticks(trained["val_acc"], pad=0.08), row=1, col=1)
    fig.update_xaxes(title_text="latency (ms)", row=1, col=1)
    fig.update_xaxes(title_text="parameters", row=1, col=2)
    fig.update_layout(**LAYOUT, height=430, legend={"title": {"text": "family, schedule" if mixed else "schedule"}})
    return fig


def hypervolume_figure(tables: ReportTables, study: optuna.Study) -> go.Figure:
    hv = tables.hypervolume
    fig = go.Figure(go.Scatter(x=hv["number"].tolist(), y=hv["hypervolume"].tolist(), mode="lines+markers",
                               line={"shape": "hv"}, name="hypervolume",
                               hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>"))
    top = float(hv["hypervolume"].max()) if len(hv) else 0.0
    fig.update_layout(**LAYOUT, height=340, xaxis_title="trial number",
                      yaxis_title=f"hypervolume (fraction of 1 x {tables.reference_mflops:g} MFLOPs)")
    fig.update_yaxes(range=[0, 1.15 * top if top > 0 else 1])  # from 0: plotly's own range of a flat line is empty
    return fig


def rerank_figure(tables: ReportTables, study: optuna.Study) -> go.Figure | str:
    """Proxy (search) accuracy against re-ranked accuracy, one marker trace per rung; the winner starred."""
    rerank = tables.rerank
    if rerank.empty:
        return ("The study was not re-ranked: give its recipe a 'rerank' section or run 'nasprune rerank' "
                "(docs/search.md, Re-ranking).")
    fig = go.Figure()
    for rung, rows in rerank.groupby("rung", sort=True):
        fig.add_trace(go.Scatter(
            x=rows["proxy_acc"].tolist(), y=rows["val_acc"].tolist(), mode="markers+text",
            name=f"rung {rung} ({int(rows['epochs'].iloc[0])} epochs)", text=[f"{n}" for n in rows["number"]],
            textposition="top center", marker={"size": 9},
            hovertemplate="trial %{text}: proxy %{x:.2%}, re-ranked %{y:.2%}<extra></extra>"))
    won = rerank[rerank["winner"]]
    fig.add_trace(go.Scatter(x=won["proxy_acc"].tolist(), y=won["val_acc"].tolist(), mode="markers", name="winner",
                             marker={"symbol": "star", "size": 16, "color": "#d62728"}, hoverinfo="skip"))
    axis = percent_ticks([*rerank["proxy_acc"], *rerank["val_acc"]], pad=0.1)  # one scale for both axes
    fig.add_trace(go.Scatter(x=axis["range"], y=axis["range"], mode="lines", name="equal accuracy",
                             line={"color": "#999", "dash": "dot", "width": 1}, hoverinfo="skip"))
    fig.update_layout(**LAYOUT, height=420, xaxis_title="proxy accuracy (the search's validation accuracy)",
                      yaxis_title="re-ranked validation accuracy (mean over seeds)")
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    return fig


# -- the Pareto-optimal networks ------------------------------------------------------------------------
def _subtitle(row) -> str:
    name = f" {row.design}" if row.design else ""
    return (f"trial {row.number}{name}: {format_value(row.val_acc, '.1%')}, {format_value(row.mflops, '.1f')} MFLOPs, "
            f"{row.schedule or '?'} schedule, width {format_value(row.width, 'g')}")


def channels_figure(tables: ReportTables, study: optuna.Study) -> go.Figure | str:
    """Channels per prunable layer before and after pruning, one panel per Pareto-optimal trial."""
    if tables.layers.empty:
        return "No per-layer channel counts were recorded for the Pareto-optimal trials."
    pareto = tables.pareto[tables.pareto["number"].isin(tables.layers["number"])]
    panel, gap = 150, 75  # pixels per panel and between panels (room for tick labels and the next title)
    height = 110 + panel * len(pareto) + gap * (len(pareto) - 1)
    fig = make_subplots(rows=len(pareto), cols=1, vertical_spacing=gap / (height - 110),
                        subplot_titles=[_subtitle(r) for r in pareto.itertuples()])
    for i, row in enumerate(pareto.itertuples(), start=1):
        layers = tables.layers[tables.layers["number"] == row.number]
        labels = [name.removesuffix(".conv_pw").replace("blocks.", "block ") for name in layers["layer"]]
        color = SCHEDULE_COLORS.get(row.schedule, "#9467bd")
        fig.add_trace(go.Bar(x=labels, y=layers["before"].tolist(), name="before pruning", marker_color="#ddd",
                             legendgroup="before", showlegend=i == 1,
                             hovertemplate="%{x}: %{y} channels before<extra></extra>"), row=i, col=1)
        fig.add_trace(go.Bar(x=labels, y=layers["after"].tolist(), name="after pruning", marker_color=color,
                             legendgroup="after", showlegend=i == 1, customdata=layers["kept"].tolist(),
                             text=[f"{a}/{b}" for a, b in zip(layers["after"], layers["before"], strict=True)],
                             textposition="outside", textfont={"size": 9}, cliponaxis=False,
                             hovertemplate="%{x}: %{y} channels kept (%{customdata:.0%})<extra></extra>"),
                      row=i, col=1)
    fig.update_layout(**LAYOUT, barmode="overlay", height=height)
    fig.update_yaxes(title_text="channels")
    return fig


def resolution_figure(tables: ReportTables, study: optuna.Study) -> go.Figure | str:
    """Feature-map side per layer for each Pareto-optimal trial, and where its SE blocks sit."""
    features = tables.features
    if features.empty:
        return "No feature-map sizes were recorded for the Pareto-optimal trials."
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.6, 0.4],
                        subplot_titles=("feature-map side per layer", "squeeze-and-excitation blocks"))
    for number, rows in features.groupby("number", sort=False):
        schedule = rows["schedule"].iloc[0]
        color = SCHEDULE_COLORS.get(schedule, "#9467bd")
        label = f"trial {number} ({schedule or '?'})"
        fig.add_trace(go.Scatter(x=rows["layer"].tolist(), y=rows["size"].tolist(), mode="lines+markers",
                                 name=label, legendgroup=label, line={"color": color, "shape": "hv"},
                                 hovertemplate=f"trial {number}: " + "%{x} %{y}x%{y}<extra></extra>"),
                      row=1, col=1)
        se = rows[rows["se"]]
        fig.add_trace(go.Scatter(x=se["layer"].tolist(), y=[f"trial {number}"] * len(se), mode="markers",
                                 name=label, legendgroup=label, showlegend=False,
                                 marker={"color": color, "size": 12, "symbol": "square"},
                                 hovertemplate=f"trial {number}: SE in " + "%{x}<extra></extra>"), row=2, col=1)
    sides = sorted(features["size"].unique().tolist())
    fig.update_yaxes(type="log", title_text="side (pixels)", tickvals=sides, ticktext=[str(v) for v in sides],
                     row=1, col=1)
    trials = [f"trial {n}" for n in features["number"].unique()]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=trials[::-1],
                     range=[-0.5, len(trials) - 0.5], row=2, col=1)
    fig.update_xaxes(type="category", categoryorder="array",
                     categoryarray=features.sort_values("position")["layer"].unique().tolist())
    fig.update_layout(**LAYOUT, height=360 + 24 * features["number"].nunique())
    return fig


# -- what drives the objectives -------------------------------------------------------------------------
def ranked_params(tables: ReportTables) -> list[str]:
    """Parameter names, most important first (joint importance; by name without importances)."""
    imp = tables.importance
    joint = imp[imp["target"] == "pareto"].sort_values(["importance", "param"], ascending=[False, True])
    return joint["param"].tolist() or sorted(imp["param"].unique())


def importance_figure(tables: ReportTables, study: optuna.Study) -> go.Figure | str:
    """Horizontal bars per target for the ``TOP_PARAMS`` most important parameters (all of them: ``--csv``)."""
    if tables.importance_note:
        return tables.importance_note
    imp = tables.importance
    ranked = ranked_params(tables)
    order = ranked[:TOP_PARAMS][::-1]  # plotly draws the first category at the bottom
    n_trained = int(tables.trials["trained"].sum())
    fig = go.Figure()
    for target, rows in imp.groupby("target", sort=False):
        rows = rows.set_index("param").reindex(order).dropna().reset_index()
        label = "joint (Pareto front)" if target == "pareto" else target
        fig.add_trace(go.Bar(y=rows["param"].tolist(), x=rows["importance"].tolist(), orientation="h", name=label,
                             hovertemplate=f"{label}: " + "%{y} %{x:.3f}<extra></extra>"))
    shown = f"the {len(order)} most important of {len(ranked)} parameters" if len(ranked) > len(order) \
        else f"all {len(ranked)} parameters"
    equal = [o for o in tables.objectives if o not in set(imp["target"])]
    if equal:
        shown += f" ({', '.join(equal)} left out: equal in every trial)"
    fig.update_layout(**LAYOUT, barmode="group", height=max(320, 110 + 16 * len(order) * imp["target"].nunique()),
                      xaxis_title="importance (PED-ANOVA, sums to 1 per target)",
                      title={"text": f"{shown}, from {n_trained} trained feasible trials", "font": {"size": 13}})
    return fig


def parallel_figure(tables: ReportTables, study: optuna.Study) -> go.Figure | str:
    """Optuna's parallel coordinates of the trained feasible trials: objectives and the most important
    ``PARALLEL_PARAMS`` parameters (a 30-axis plot cannot be read)."""
    copy = trained_study(study, tables.trials, tables.objectives)
    reason = too_few_trials(copy)
    if reason:
        return reason
    present = {name for t in copy.get_trials(deepcopy=False) for name in t.params}
    params = [p for p in ranked_params(tables) if p in present] or sorted(present)
    fig = optuna.visualization.plot_parallel_coordinate(copy, params=params[:PARALLEL_PARAMS])
    fig.update_layout(template="plotly_white", height=480, title=None)
    return fig


Builder = Callable[[ReportTables, optuna.Study], "go.Figure | str"]
SECTIONS: tuple[tuple[str, str, str, Builder], ...] = (
    ("pareto_front", "Pareto front: accuracy against MFLOPs",
     "Every finished trial. Red points joined by the line are Pareto-optimal among the feasible trials; "
     "labelled diamonds are the hand designs the study started from (seed designs, and baselines), coloured like "
     "the rest; over-budget trials were never trained and sit in the strip below.",
     pareto_front_figure),
    ("accuracy_cost", "Accuracy against latency and parameters",
     "FLOPs are not speed: networks of equal MFLOPs differ in CPU latency with their downsampling schedule.",
     accuracy_cost_figure),
    ("hypervolume", "Hypervolume over trials",
     "Area dominated by the feasible trials so far (accuracy x MFLOPs below the reference). It only grows.",
     hypervolume_figure),
    ("rerank", "Re-ranking: proxy against re-ranked accuracy",
     "The top trials by the search's accuracy (a proxy), trained again with more epochs at each rung of successive "
     "halving; export --trial best takes the last rung's survivor. Points far from the dotted line are where the "
     "proxy misjudged.", rerank_figure),
    ("channels", "Channels per layer of the Pareto-optimal networks",
     "Grey: the parent's channels; coloured: what the pruned child keeps.", channels_figure),
    ("resolution", "Feature-map resolution and SE placement",
     "Fast downsampling shrinks feature maps early (cheap, FD-MobileNet); slow keeps them large (MobileNet).",
     resolution_figure),
    ("importance", "Parameter importance",
     "Which sampled dimensions separate the best trials from the rest: jointly (Pareto front) and per "
     "objective (Optuna's default PED-ANOVA evaluator, on the trained feasible trials).",
     importance_figure),
    ("parallel", "Parallel coordinates",
     "Objectives and sampled parameters of every trained trial, coloured by Pareto rank.", parallel_figure),
)


def build_sections(tables: ReportTables, study: optuna.Study) -> list[Section]:
    """Every view of the report, in page order."""
    sections = []
    for key, title, caption, builder in SECTIONS:
        result = builder(tables, study)
        if isinstance(result, str):
            sections.append(Section(key, title, caption, note=result))
        else:
            sections.append(Section(key, title, caption, figure=result))
    return sections
