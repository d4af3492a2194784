"""Plotly figures as plain JSON (`{"data": [...], "layout": {...}}`), built from the pages' data.

The browser draws them with the plotly.js that ships inside the `plotly` Python package (served by the
site itself, no CDN); the same dicts are each page's `/api/.../plots` twin, so a script can redraw them.
Each trace keeps its run labels in `customdata` or `x`, so a test (or a reader) can match points to runs.
"""

from __future__ import annotations

from typing import Any

from orchestrator.analysis import UNLABELLED, ordered

Figure = dict[str, Any]
# Colour-blind-safe (Okabe-Ito), one per failure label, in the taxonomy's order of rules.
LABEL_COLOURS = {
    "format": "#999999",
    "truncated": "#E69F00",
    "loop": "#56B4E9",
    "arithmetic": "#D55E00",
    "relationship": "#0072B2",
    "unit": "#009E73",
    "copied_number": "#CC79A7",
    "other": "#F0E442",
    UNLABELLED: "#dddddd",
}
FONT = {"family": "system-ui, sans-serif", "size": 12}


def _layout(title: str, x: str, y: str, **more: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0, "font": {"size": 14}},
        "xaxis": {"title": {"text": x}, "automargin": True},
        "yaxis": {"title": {"text": y}, "automargin": True},
        "font": FONT,
        # plotly's own legend, on the right, makes room for itself; above or below it collides with long labels.
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "height": 360,
        **more,
    }


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (fewer or equal tokens and higher or equal accuracy, one of
    them strictly), ordered by tokens: the accuracy-versus-cost front."""
    front = []
    for i, (tokens, accuracy) in enumerate(points):
        dominated = any(
            t <= tokens and a >= accuracy and (t, a) != (tokens, accuracy) for j, (t, a) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def accuracy_vs_tokens(rows: list[dict[str, Any]]) -> Figure:
    """pass@1 (with its 95% Wilson interval) against mean output tokens; the Pareto front joined by a line."""
    xs = [row["mean_output_tokens"] for row in rows]
    ys = [100 * row["pass_at_1"] for row in rows]
    runs = [row["run"] for row in rows]
    front = pareto_front(list(zip(xs, ys, strict=True)))
    points = {
        "type": "scatter", "mode": "markers", "name": "runs", "x": xs, "y": ys, "customdata": runs,
        "error_y": {
            "type": "data", "symmetric": False,
            "array": [100 * row["ci_high"] - y for row, y in zip(rows, ys, strict=True)],
            "arrayminus": [y - 100 * row["ci_low"] for row, y in zip(rows, ys, strict=True)],
        },
        "marker": {"size": 10, "color": "#0072B2"},
        "hovertemplate": "%{customdata}<br>%{y:.1f}% at %{x:.0f} tokens<extra></extra>",
    }
    line = {
        "type": "scatter", "mode": "lines+markers", "name": "Pareto front",
        "x": [xs[i] for i in front], "y": [ys[i] for i in front], "customdata": [runs[i] for i in front],
        "line": {"color": "#D55E00", "dash": "dot"},
        "marker": {"size": 14, "symbol": "circle-open", "color": "#D55E00"},
        "hovertemplate": "%{customdata} (on the front)<extra></extra>",
    }
    layout = _layout("Accuracy vs mean output tokens (95% CI)", "mean output tokens per question", "pass@1 (%)")
    return {"data": [points, line], "layout": layout}


def _by_run_layout(title: str, x: str, runs: int, **more: Any) -> dict[str, Any]:
    """Horizontal bars, a run a row, best at the top: run labels are long, so they read along the y axis."""
    layout = _layout(title, x, "", height=160 + 34 * runs, **more)
    layout["yaxis"]["autorange"] = "reversed"
    return layout


def res_by_run(rows: list[dict[str, Any]]) -> Figure:
    """The Reasoning Efficiency Score of each run that has one, in the leaderboard's order."""
    shown = [row for row in rows if row.get("res") is not None]
    bar = {
        "type": "bar", "orientation": "h", "name": "RES", "y": [row["run"] for row in shown],
        "x": [row["res"] for row in shown], "marker": {"color": "#009E73"},
        "hovertemplate": "%{y}<br>RES %{x:.4f}<extra></extra>",
    }
    return {"data": [bar], "layout": _by_run_layout("RES by run", "RES: complexity × correct / tokens", len(shown))}


def taxonomy_bars(rows: list[dict[str, Any]], *, regressions_only: bool) -> Figure:
    """Failure labels stacked per run: of all wrong answers, or of the regressions against the reference."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        taxonomy = _taxonomy_of(row, regressions_only)
        if taxonomy is not None:
            counts[row["run"]] = taxonomy
    totals: dict[str, int] = {}
    for taxonomy in counts.values():
        for label, n in taxonomy.items():
            totals[label] = totals.get(label, 0) + n
    traces = [
        {
            "type": "bar", "orientation": "h", "name": label, "y": list(counts),
            "x": [counts[run].get(label, 0) for run in counts],
            "marker": {"color": LABEL_COLOURS.get(label, "#777777")},
            "hovertemplate": f"%{{y}}<br>{label}: %{{x}}<extra></extra>",
        }
        for label in ordered(totals)
    ]
    title = "Failure labels of the regressions vs the reference" if regressions_only else "Failure labels, all wrong"
    what = "regressions" if regressions_only else "wrong answers"
    return {"data": traces, "layout": _by_run_layout(title, what, len(counts), barmode="stack")}


def _taxonomy_of(row: dict[str, Any], regressions_only: bool) -> dict[str, int] | None:
    if not regressions_only:
        taxonomy: dict[str, int] | None = row.get("taxonomy")
        return taxonomy
    vs = row.get("vs_base") or {}
    found: dict[str, int] | None = vs.get("regression_taxonomy")
    return found


def loss_curves(curves: list[dict[str, Any]]) -> Figure:
    traces = [
        {
            "type": "scatter", "mode": "lines", "name": curve["label"],
            "x": list(range(1, len(curve["loss"]) + 1)), "y": curve["loss"],
        }
        for curve in curves
    ]
    return {"data": traces, "layout": _layout("Training loss of the sweep's adapters", "optimiser step", "loss")}


def pass_by_complexity(by_run: dict[str, list[dict[str, Any]]]) -> Figure:
    traces = [
        {
            "type": "scatter", "mode": "lines+markers", "name": run,
            "x": [p["complexity"] for p in points], "y": [100 * p["pass_at_1"] for p in points],
            "customdata": [p["n"] for p in points],
            "hovertemplate": f"{run}<br>complexity %{{x}}: %{{y:.1f}}% of %{{customdata}}<extra></extra>",
        }
        for run, points in by_run.items()
    ]
    layout = _layout("pass@1 by problem complexity", "solution steps", "pass@1 (%)")
    layout["xaxis"]["dtick"] = 1  # steps are whole numbers
    return {"data": traces, "layout": layout}


def transition_matrix(vs_base: dict[str, Any]) -> Figure:
    """The run against its reference, question by question: rows the reference, columns the run."""
    z = [[vs_base["both_right"], vs_base["regressions"]], [vs_base["fixes"], vs_base["both_wrong"]]]
    heatmap = {
        "type": "heatmap", "z": z, "x": ["run right", "run wrong"], "y": ["reference right", "reference wrong"],
        "text": [[str(v) for v in row] for row in z], "texttemplate": "%{text}",
        "colorscale": "Blues", "reversescale": True, "showscale": False,
        "hovertemplate": "%{y}, %{x}: %{z}<extra></extra>",
    }
    layout = _layout(f"vs {vs_base['reference']}", "", "", height=300)
    layout["yaxis"]["autorange"] = "reversed"
    return {"data": [heatmap], "layout": layout}


def sweep_figures(
    rows: list[dict[str, Any]], curves: list[dict[str, Any]], by_complexity: dict[str, list[dict[str, Any]]]
) -> dict[str, Figure]:
    """The sweep page's figures, by name; a figure with nothing to draw is left out."""
    figures: dict[str, Figure] = {}
    if rows:
        figures["accuracy"] = accuracy_vs_tokens(rows)
    if any(row.get("res") is not None for row in rows):
        figures["res"] = res_by_run(rows)
    if any(row.get("taxonomy") for row in rows):
        figures["taxonomy"] = taxonomy_bars(rows, regressions_only=False)
    if any((row.get("vs_base") or {}).get("regression_taxonomy") for row in rows):
        figures["regressions"] = taxonomy_bars(rows, regressions_only=True)
    if curves:
        figures["loss"] = loss_curves(curves)
    if by_complexity:
        figures["complexity"] = pass_by_complexity(by_complexity)
    return figures


def run_figures(row: dict[str, Any]) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    if row.get("taxonomy"):
        figures["taxonomy"] = taxonomy_bars([row], regressions_only=False)
    vs = row.get("vs_base")
    if vs and vs.get("both_right") is not None:
        figures["transitions"] = transition_matrix(vs)
    return figures
