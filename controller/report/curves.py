"""The serving curves: for each configuration and model run at several load points (a sweep), what
the load does to it. The load (concurrency, or request rate) is the x axis, its points evenly spaced
and named (1, 4, 16; 1/s, 2/s, inf), and every y axis starts at 0, so a flat result looks flat:

- request throughput against the load, the median over the runs of each point: where it stops
  growing, the server is saturated;
- latency distributions against the load: a box per configuration and load point of every request's
  TTFT (top) and E2EL (bottom), ms, from the records' requests;
- energy per output token against the load: over the measure window (solid) and over the steady
  window (dashed), J, net of idle or gross as every energy of the report (the axis says which).

A curve with no measured point is omitted, and the report says why (never drawn at 0); a curve
measured at some of its points only is drawn through those, and the report says how many.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import polars as pl

from controller.report.cells import aggregate_bound, groups, model_label
from controller.report.data import notes_of
from controller.report.kinds import EnergyKind
from controller.report.loads import curve_groups, load_key
from controller.report.paper2 import configuration_labels
from controller.report.plots import MARKERS, MODEL_COLOURS, Plot, pyplot, save

THROUGHPUT_KEY = "serving-curve-throughput"
LATENCY_KEY = "serving-curve-latency"
ENERGY_KEY = "serving-curve-energy-per-token"
THROUGHPUT_LINES = (("request_throughput_rps", "-", "request throughput"),)
# (y column, line style, what the line is)
ENERGY_LINES = (
    ("energy_per_token", "-", "measure window"),
    ("energy_per_token_steady", "--", "steady window"),
)
LATENCIES = (("ttft_ms", "TTFT (ms)"), ("e2el_ms", "E2EL (ms)"))
AXIS = {"concurrency": "Concurrency (requests in flight)", "request_rate": "Request rate (requests/s)"}
Curve = tuple[tuple[Any, ...], pl.DataFrame]


def short_load(variable: str | None, value: float | None) -> str:
    if value is None:
        return "?"
    shown = "inf" if value == float("inf") else f"{value:g}"
    return shown if variable == "concurrency" else f"{shown}/s"


def by_load(runs: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """The runs of each load point, named as the x axis names it, in order of load."""
    found = sorted(groups(runs, ["load_variable", "load_value"]), key=lambda kg: load_key(*kg[0]))
    return [(short_load(variable, value), g) for (variable, value), g in found]


def curve_points(runs: pl.DataFrame, y: str) -> tuple[list[tuple[str, float]], int]:
    """(load, median of ``y`` over its runs) per load point that measured it, in order of load; and
    how many load points there are."""
    points, _, n = curve_points_bounded(runs, y)
    return points, n


def curve_points_bounded(runs: pl.DataFrame, y: str) -> tuple[list[tuple[str, float]], list[float | None], int]:
    """``curve_points``, and each point's bound of y: the median's 95 % bound where every run of the
    point states one (an energy), else None."""
    points: list[tuple[str, float]] = []
    bars: list[float | None] = []
    loads = by_load(runs)
    bound = f"{y}_uncertainty" if f"{y}_uncertainty" in runs.columns else None
    for load, g in loads:
        pairs = [(r[0], r[1] if bound else None) for r in g.select([y, bound] if bound else [y]).iter_rows()]
        ys = [v for v, _ in pairs if v is not None]
        if ys:
            points.append((load, statistics.median(ys)))
            us = [u for v, u in pairs if v is not None]
            ok = bound is not None and all(u is not None for u in us)
            bars.append(aggregate_bound(ys, [float(u or 0.0) for u in us], "median") if ok else None)
    return points, bars, len(loads)


def _panels(curves: list[Curve]) -> dict[tuple[str, str], list[str]]:
    """One panel per model and swept variable; the load points it spans, in order (its x axis)."""
    spans: dict[tuple[str, str], dict[str, tuple[int, str, float]]] = {}
    for (_, model, size, variable), runs in curves:
        span = spans.setdefault((model_label(model, size), str(variable)), {})
        for (var, value), _g in groups(runs, ["load_variable", "load_value"]):
            span[short_load(var, value)] = load_key(var, value)
    return {panel: sorted(span, key=lambda k: span[k]) for panel, span in spans.items()}


def _axes(rows: int, panels: dict[tuple[str, str], list[str]]) -> tuple[Any, dict[tuple[str, str], list[Any]]]:
    plt = pyplot()
    fig, axes = plt.subplots(
        rows, len(panels), figsize=(max(5.5, 4.6 * len(panels)), 3.4 * rows), squeeze=False, layout="constrained"
    )
    by_panel = {panel: [axes[r][i] for r in range(rows)] for i, panel in enumerate(panels)}
    for (model, variable), column in by_panel.items():
        ticks = panels[(model, variable)]
        for ax in column:
            ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
            ax.set_xlim(-0.5, len(ticks) - 0.5)
            ax.grid(alpha=0.3, axis="y")
            ax.tick_params(axis="y", labelsize=8)
        column[0].set_title(f"{model}, {variable.replace('_', ' ')} sweep", fontsize=9)
        column[-1].set_xlabel(AXIS.get(variable, variable), fontsize=8)
    return fig, by_panel


def _from_zero(fig: Any) -> None:
    for ax in fig.axes:
        if ax.lines or ax.patches or ax.collections:
            ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1e-12) * 1.08)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", fontsize=8, transform=ax.transAxes)


def _lines(
    serving: pl.DataFrame, curves: list[Curve], lines: tuple[tuple[str, str, str], ...], what: str
) -> tuple[Any, list[str], int]:
    """A line per configuration and measure over the load points, a panel per model; (figure, what was
    left out, lines drawn)."""
    labels = configuration_labels(serving)
    confs = sorted({k[0] for k, _ in curves})
    panels = _panels(curves)
    fig, by_panel = _axes(1, panels)
    left_out, drawn = [], 0
    for (conf, model, size, variable), runs in curves:
        panel = (model_label(model, size), str(variable))
        name = f"{labels[conf]}, model {panel[0]}, {panel[1].replace('_', ' ')} sweep"
        colour = MODEL_COLOURS[confs.index(conf) % len(MODEL_COLOURS)]
        for j, (y, style, line) in enumerate(lines):
            points, bars, n = curve_points_bounded(runs, y)
            if not points:
                why = "; ".join(notes_of(runs, y)) or "not measured (no reason recorded)"
                left_out.append(f"Serving curve, {what}, {line}, {name}: omitted, not measured ({why})")
                continue
            if len(points) < n:
                why = "; ".join(notes_of(runs, y)) or "no reason recorded"
                left_out.append(f"Serving curve, {what}, {line}, {name}: {len(points)} of {n} load points ({why})")
            ticks = panels[panel]
            xs, ys = [ticks.index(p[0]) for p in points], [p[1] for p in points]
            label = labels[conf] if len(lines) == 1 else f"{labels[conf]}: {line}"
            marker = MARKERS[j % len(MARKERS)]
            by_panel[panel][0].plot(xs, ys, linestyle=style, marker=marker, color=colour, label=label)
            if any(b is not None for b in bars):  # an energy's bound: the median's 95 % bound
                errors = [b or 0.0 for b in bars]
                by_panel[panel][0].errorbar(xs, ys, yerr=errors, fmt="none", ecolor=colour, elinewidth=0.9, capsize=2)
            drawn += 1
    for column in by_panel.values():
        if column[0].lines:
            column[0].legend(fontsize=7, handlelength=3.0)
    _from_zero(fig)
    return fig, left_out, drawn


def request_latencies(records: Path | None) -> dict[str, dict[str, list[float]]]:
    """Per run id, every successful request's TTFT and E2EL (ms) as the record keeps them."""
    from controller.report.records import read_folder

    if records is None:
        return {}
    out: dict[str, dict[str, list[float]]] = {}
    for _, record in read_folder(records).records:
        found: dict[str, list[float]] = {"ttft_ms": [], "e2el_ms": []}
        for r in (record.get("serving") or {}).get("requests") or []:
            if not r.get("ok"):
                continue
            e2el = r.get("e2el_ms", r["latency_ns"] / 1e6 if isinstance(r.get("latency_ns"), int) else None)
            for key, value in (("ttft_ms", r.get("ttft_ms")), ("e2el_ms", e2el)):
                if isinstance(value, (int, float)):
                    found[key].append(float(value))
        out[record["run_id"]] = found
    return out


def _boxes(serving: pl.DataFrame, curves: list[Curve], latencies: dict[str, dict[str, list[float]]]) -> Any:
    """TTFT and E2EL boxes per configuration and load point, a panel column per model."""
    labels = configuration_labels(serving)
    confs = sorted({k[0] for k, _ in curves})
    panels = _panels(curves)
    fig, by_panel = _axes(len(LATENCIES), panels)
    width = 0.8 / len(confs)
    for (conf, model, size, variable), runs in curves:
        panel = (model_label(model, size), str(variable))
        i = confs.index(conf)
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        for row, (key, axis) in enumerate(LATENCIES):
            ax = by_panel[panel][row]
            ax.set_ylabel(axis, fontsize=8)
            for load, g in by_load(runs):
                values = [v for run_id in g["run_id"].to_list() for v in latencies.get(run_id, {}).get(key, [])]
                if not values:
                    continue
                x = panels[panel].index(load) - 0.4 + width * (i + 0.5)
                box = ax.boxplot(
                    [values], positions=[x], widths=width * 0.85, patch_artist=True, showfliers=False,
                    manage_ticks=False,
                )  # fmt: skip
                for patch in box["boxes"]:
                    patch.set(facecolor=colour, alpha=0.45, edgecolor=colour)
                for part in ("medians", "whiskers", "caps"):
                    for artist in box[part]:
                        artist.set_color(colour if part != "medians" else "#000000")
            ax.plot([], [], color=colour, linewidth=6, alpha=0.45, label=labels[conf])  # the legend's swatch
    for column in by_panel.values():
        column[0].legend(fontsize=7)
    _from_zero(fig)
    return fig


def serving_curves(
    serving: pl.DataFrame, folder: Path, kind: EnergyKind, records: Path | None = None
) -> tuple[list[Plot], list[str]]:
    """The throughput, latency and energy curves of the serving runs run at several load points
    (``records``: their folder, for every request's latency)."""
    plt = pyplot()
    curves = curve_groups(serving)
    if not curves:
        return [], [
            "Serving curves: no configuration and model was run at more than one load point "
            "(a sweep draws them: serve --concurrency 1,4,16 or --request-rate 1,2,inf)"
        ]
    out: list[Plot] = []
    skipped: list[str] = []
    fig, left_out, _ = _lines(serving, curves, THROUGHPUT_LINES, "request throughput")
    for ax in fig.axes:
        ax.set_ylabel("Request throughput (requests/s)", fontsize=8)
    title = "Serving: request throughput against the load (median over the runs of each load point)"
    fig.suptitle(title, fontsize=9)
    out.append(save(fig, folder, THROUGHPUT_KEY, title))
    skipped += left_out
    latencies = request_latencies(records)
    if any(v for by_key in latencies.values() for v in by_key.values()):
        fig = _boxes(serving, curves, latencies)
        title = "Serving: latency of every request against the load (TTFT and E2EL; boxes: quartiles, whiskers 1.5 IQR)"
        fig.suptitle(title, fontsize=9)
        out.append(save(fig, folder, LATENCY_KEY, title))
    else:
        skipped.append("Serving latency distributions: the records keep no request's latency")
    energy = f"energy per output token ({kind.label})"
    fig, left_out, drawn = _lines(serving, curves, ENERGY_LINES, energy)
    skipped += left_out
    if not drawn:
        plt.close(fig)
        skipped.append(f"Serving curves, {energy}: no curve, no load point measured energy (reasons above)")
        return out, skipped
    for ax in fig.axes:
        ax.set_ylabel(f"Energy per output token (J, {kind.label})", fontsize=8)
    title = f"Serving: energy per output token ({kind.label}) against the load (bars: the median's 95 % bound)"
    fig.suptitle(title, fontsize=9)
    out.append(save(fig, folder, ENERGY_KEY, title))
    return out, skipped
