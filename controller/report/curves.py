"""The serving curves: for each configuration and model run at several load points (a sweep), its
points sorted by load, each the median over the runs of that point.

- latency against request throughput: TTFT median (solid, circles) and E2EL p99 (dashed, squares), ms;
- energy per output token against output-token throughput: over the measure window (solid) and
  over the steady window against the steady throughput (dashed), J, net of idle or gross as every
  energy of the report (the axis says which).

A curve with no measured point is omitted, and the report says why (never drawn at 0); a curve
measured at some of its points only is drawn through those, and the report says how many. An
energy point carries an error bar: its median's bound (each run within its own 95 % bound).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import polars as pl

from controller.report.cells import aggregate_bound, groups, model_label
from controller.report.data import EnergyKind, notes_of
from controller.report.loads import curve_groups, load_key
from controller.report.paper2 import configuration_labels
from controller.report.plots import MARKERS, MODEL_COLOURS, Plot, pyplot, save

LATENCY_KEY = "serving-curve-latency"
ENERGY_KEY = "serving-curve-energy-per-token"
# (y column, x column, line style, what the line is)
LATENCY_LINES = (
    ("ttft_ms_median", "request_throughput_rps", "-", "TTFT median"),
    ("e2el_ms_p99", "request_throughput_rps", "--", "E2EL p99"),
)
ENERGY_LINES = (
    ("energy_per_token", "output_token_throughput_tps", "-", "measure window"),
    ("energy_per_token_steady", "steady_output_token_throughput_tps", "--", "steady window"),
)
Point = tuple[float, float, str]
Bar = float | None


def short_load(variable: str | None, value: float | None) -> str:
    if value is None:
        return "?"
    shown = "inf" if value == float("inf") else f"{value:g}"
    return shown if variable == "concurrency" else f"{shown}/s"


def curve_points(runs: pl.DataFrame, x: str, y: str) -> tuple[list[Point], int]:
    """(x, y, load) per load point that measured both, medians over its runs, sorted by load; and
    how many load points there are."""
    points, _, n = curve_points_bounded(runs, x, y)
    return points, n


def curve_points_bounded(runs: pl.DataFrame, x: str, y: str) -> tuple[list[Point], list[Bar], int]:
    """``curve_points``, and each point's bound of y (an energy whose runs all state one; else None)."""
    points: list[Point] = []
    bars: list[Bar] = []
    by_load = sorted(groups(runs, ["load_variable", "load_value"]), key=lambda kg: load_key(*kg[0]))
    bound = f"{y}_uncertainty" if f"{y}_uncertainty" in runs.columns else None
    for (variable, value), g in by_load:
        xs = [v for v in g[x].to_list() if v is not None]
        pairs = [(r[0], r[1] if bound else None) for r in g.select([y, bound] if bound else [y]).iter_rows()]
        ys = [v for v, _ in pairs if v is not None]
        if xs and ys:
            points.append((statistics.median(xs), statistics.median(ys), short_load(variable, value)))
            us = [u for v, u in pairs if v is not None]
            ok = bound is not None and all(u is not None for u in us)
            bars.append(aggregate_bound(ys, [float(u or 0.0) for u in us], "median") if ok else None)
    return points, bars, len(by_load)


def _draw(ax: Any, points: list[Point], colour: str, marker: str, style: str, label: str, bars: list[Bar]) -> None:
    ax.plot([p[0] for p in points], [p[1] for p in points], linestyle=style, marker=marker, color=colour, label=label)
    if any(b is not None for b in bars):
        ax.errorbar(
            [p[0] for p in points],
            [p[1] for p in points],
            yerr=[b or 0.0 for b in bars],
            fmt="none",
            ecolor=colour,
            elinewidth=0.9,
            capsize=2,
        )
    for x, y, load in points:
        ax.annotate(load, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6, color=colour)


def _figure(
    serving: pl.DataFrame,
    curves: list[tuple[tuple[Any, ...], pl.DataFrame]],
    lines: tuple[tuple[str, str, str, str], ...],
    what: str,
) -> tuple[Any, list[str], int]:
    """One panel per model, a curve per configuration and line; (figure, what was left out, curves drawn)."""
    plt = pyplot()
    labels = configuration_labels(serving)
    confs = sorted({k[0] for k, _ in curves})
    models = sorted({model_label(k[1], k[2]) for k, _ in curves})
    fig, axes = plt.subplots(
        1, len(models), figsize=(max(5.5, 5.0 * len(models)), 4.0), squeeze=False, layout="constrained"
    )
    panel = {m: axes[0][i] for i, m in enumerate(models)}
    left_out, drawn = [], 0
    for (conf, model, size, variable), runs in curves:
        name = f"{labels[conf]}, model {model_label(model, size)}, {str(variable).replace('_', ' ')} sweep"
        i = confs.index(conf)
        for j, (y, x, style, line) in enumerate(lines):
            points, bars, n = curve_points_bounded(runs, x, y)
            if not points:
                why = "; ".join(notes_of(runs, y)) or "not measured (no reason recorded)"
                left_out.append(f"Serving curve, {what}, {line}, {name}: omitted, not measured ({why})")
                continue
            if len(points) < n:
                why = "; ".join(notes_of(runs, y)) or "no reason recorded"
                left_out.append(f"Serving curve, {what}, {line}, {name}: {len(points)} of {n} load points ({why})")
            ax = panel[model_label(model, size)]
            label = f"{labels[conf]}, {str(variable).replace('_', ' ')}: {line}"
            _draw(ax, points, MODEL_COLOURS[i % len(MODEL_COLOURS)], MARKERS[j % len(MARKERS)], style, label, bars)
            drawn += 1
    for m, ax in panel.items():
        ax.set_title(m, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, handlelength=3.5, title="numbers: load (concurrency or requests/s)", title_fontsize=6)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    return fig, left_out, drawn


def serving_curves(serving: pl.DataFrame, folder: Path, kind: EnergyKind) -> tuple[list[Plot], list[str]]:
    """The latency and the energy curves of the serving runs run at several load points."""
    plt = pyplot()
    curves = curve_groups(serving)
    if not curves:
        return [], [
            "Serving curves: no configuration and model was run at more than one load point "
            "(a sweep draws them: serve --concurrency 1,4,16 or --request-rate 1,2,inf)"
        ]
    out: list[Plot] = []
    skipped: list[str] = []
    fig, left_out, _ = _figure(serving, curves, LATENCY_LINES, "latency")
    for ax in fig.axes:
        ax.set_xlabel("Request throughput (requests/s)", fontsize=8)
        ax.set_ylabel("Latency (ms)", fontsize=8)
    title = "Serving: latency against request throughput, per load point (TTFT median, E2EL p99)"
    fig.suptitle(title, fontsize=9)
    out.append(save(fig, folder, LATENCY_KEY, title))
    skipped += left_out
    energy = f"energy per output token ({kind.label})"
    fig, left_out, drawn = _figure(serving, curves, ENERGY_LINES, energy)
    skipped += left_out
    if not drawn:
        plt.close(fig)
        skipped.append(f"Serving curves, {energy}: no curve, no load point measured energy (reasons above)")
        return out, skipped
    for ax in fig.axes:
        ax.set_xlabel("Output-token throughput (tokens/s)", fontsize=8)
        ax.set_ylabel(f"Energy per output token (J, {kind.label})", fontsize=8)
    title = (
        f"Serving: energy per output token ({kind.label}) against output-token throughput, per load point "
        "(bars: the median's 95 % bound)"
    )
    fig.suptitle(title, fontsize=9)
    out.append(save(fig, folder, ENERGY_KEY, title))
    return out, skipped
