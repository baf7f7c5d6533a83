"""Plots of the report (matplotlib, Agg): box plots per metric by configuration, the second paper's
Figures 3-5 for serving runs, energy vs time. Each is written as PNG and SVG; the HTML embeds the PNG.

Boxes show the median (black line) and quartiles, whiskers 1.5 IQR, the mean as a white triangle;
both are in every legend. Models get twelve distinct colours (tab20 would give six pairs of shades).
An energy point carries an error bar: its run's 95 % bound (none where the record states none)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from controller.report.cells import groups, model_label
from controller.report.columns import BOUNDED, COLUMNS
from controller.report.data import notes_of
from controller.report.paper1 import GPU_PROVIDERS
from controller.report.paper2 import category_of, category_order, configuration_labels

BOX_METRICS = (
    "window_s",
    "throughput_sps",
    "total_energy",
    "cpu_energy",
    "gpu_energy",
    "gpu_power_w",
    "cpu_usage_percent",
    "ram_usage_percent",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
    "cpu_percent",
    "ram_peak_mib",
)
SERVING_BOX_METRICS = (
    "total_energy",
    "window_s",
    "energy_per_token",
    "tokens_per_s",
    "cpu_energy",
    "gpu_energy",
    "cpu_usage_percent",
    "ram_usage_percent",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
    "cpu_percent",
    "ram_peak_mib",
)
# Twelve colours apart from each other for the second paper's twelve models (Trubetskoy's list).
MODEL_COLOURS = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#469990",
    "#9a6324",
    "#800000",
    "#000075",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
MEDIAN_COLOUR, MEAN_COLOUR = "#000000", "#ffffff"  # apart from every model colour
BOX_STYLE: dict[str, Any] = {
    "showmeans": True,
    "showfliers": False,
    "medianprops": {"color": MEDIAN_COLOUR, "linewidth": 2.0},
    "meanprops": {"marker": "^", "markerfacecolor": MEAN_COLOUR, "markeredgecolor": "#000000", "markersize": 7},
}


@dataclass
class Plot:
    key: str
    title: str
    png: Path
    svg: Path
    caption: str = ""


def pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in the SVGs: searchable, testable
    import matplotlib.pyplot as plt

    return plt


def save(fig, folder: Path, key: str, title: str, caption: str = "") -> Plot:  # type: ignore[no-untyped-def]
    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{key}.png", folder / f"{key}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return Plot(key, title, png, svg, caption)


def model_colours(models: list[str]) -> dict[str, str]:
    """A distinct colour per model; beyond twelve they repeat (with another marker in scatter plots)."""
    return {m: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, m in enumerate(models)}


def box_legend(extra: list[Any] | None = None) -> list[Any]:
    plt = pyplot()
    return [
        plt.Line2D([], [], color=MEDIAN_COLOUR, linewidth=2.0, label="median"),
        plt.Line2D(
            [], [], marker="^", linestyle="", markerfacecolor=MEAN_COLOUR, markeredgecolor="#000000", label="mean"
        ),
        *(extra or []),
    ]


FIXED_WORK = ("window_s", "gpu_energy", "cpu_energy", "dram_energy", "total_energy", "carbon_g")


def _unit_label(metric: str, frame: pl.DataFrame | None = None) -> str:
    """The axis label; a time or energy of duration-mode runs says it is for a fixed work."""
    c = COLUMNS[metric]
    fixed = frame is not None and metric in FIXED_WORK and bool(frame["duration_mode"].any())
    return f"{c.label} ({c.unit})" + ("\nduration mode: for a fixed work" if fixed else "")


def run_bounds(runs: pl.DataFrame, metric: str) -> list[float] | None:
    """Each measured run's bound of ``metric`` (0 where it states none), or None: not an energy, or no bound."""
    if metric not in BOUNDED or f"{metric}_uncertainty" not in runs.columns:
        return None
    bounds = [u for v, u in runs.select(metric, f"{metric}_uncertainty").iter_rows() if v is not None]
    if all(u is None for u in bounds):
        return None
    return [float(u or 0.0) for u in bounds]


def error_bars(ax: Any, xs: list[float], ys: list[float], bounds: list[float] | None, colour: Any) -> None:
    """The runs' 95 % bounds as vertical bars (nothing when none is stated)."""
    if bounds is not None and ys:
        ax.errorbar(xs, ys, yerr=bounds, fmt="none", ecolor=colour, elinewidth=0.9, capsize=2, alpha=0.8, zorder=2)


def bar_legend() -> Any:
    plt = pyplot()
    return plt.Line2D([], [], marker="|", linestyle="", color="#555555", markersize=10, label="run's 95 % bound")


def box_plots(ok: pl.DataFrame, folder: Path) -> tuple[list[Plot], list[str]]:
    """One figure per metric: a panel per model × batch size, a box per configuration."""
    plt = pyplot()
    plots, skipped = [], []
    panels = groups(ok, ["model", "model_size", "batch_size"])
    for metric in BOX_METRICS:
        if ok[metric].null_count() == ok.height:
            reasons = "; ".join(notes_of(ok, metric)) or "not measured"
            skipped.append(f"{COLUMNS[metric].label}: no box plot, not measured ({reasons})")
            continue
        size = (max(4.5, 3.8 * len(panels)), 3.8)
        fig, axes = plt.subplots(1, len(panels), figsize=size, squeeze=False, layout="constrained")
        bars = False
        for ax, ((model, size, batch), group) in zip(axes[0], panels, strict=True):
            confs = groups(group, ["configuration"])
            kept = [
                (k[0], d, run_bounds(runs, metric))
                for k, runs in confs
                if (d := [v for v in runs[metric].to_list() if v is not None])
            ]
            if kept:
                ax.boxplot([d for _, d, _ in kept], tick_labels=[lab for lab, _, _ in kept], **BOX_STYLE)
                for i, (_, d, bounds) in enumerate(kept, 1):
                    ax.scatter([i] * len(d), d, s=10, alpha=0.6, color="tab:blue", zorder=3)
                    error_bars(ax, [i] * len(d), d, bounds, "tab:blue")
                    bars = bars or bounds is not None
            ax.set_title(f"{model_label(model, size)}, batch {batch}", fontsize=9)
            ax.set_ylabel(_unit_label(metric, group), fontsize=8)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            ax.grid(axis="y", alpha=0.3)
        run = plt.Line2D([], [], marker="o", linestyle="", color="tab:blue", alpha=0.6, label="one run")
        extra = [run, bar_legend()] if bars else [run]
        fig.legend(handles=box_legend(extra), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        title = f"{COLUMNS[metric].label} by configuration (box: median and quartiles)"
        fig.suptitle(title, fontsize=10)
        plots.append(save(fig, folder, f"box-{metric}", title))
    return plots, skipped


def _serving_panel(ax: Any, part: pl.DataFrame, metric: str, labels: dict[str, str], colours: dict[str, str]) -> None:
    pos, ticks, names = 0.0, [], []
    part = part.with_columns(pl.col("model_size").map_elements(category_of, return_dtype=pl.Utf8).alias("cat"))
    for category in sorted(set(part["cat"].to_list()), key=category_order):
        group = part.filter(pl.col("cat") == category)
        for (conf,), runs in sorted(groups(group, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
            values = [v for v in runs[metric].to_list() if v is not None]
            pos += 1
            ticks.append(pos)
            names.append(f"{labels[conf]}\n{'cat. ' + category if category.isdigit() else category}")
            if not values:
                continue
            ax.boxplot([values], positions=[pos], widths=0.6, **BOX_STYLE)
            bound = f"{metric}_uncertainty" if metric in BOUNDED else None
            cols = ["model", metric, bound] if bound else ["model", metric]
            for row in runs.select(cols).iter_rows():
                if row[1] is None:
                    continue
                ax.scatter([pos], [row[1]], s=12, alpha=0.8, color=colours[row[0]], zorder=3)
                if bound and row[2] is not None:
                    error_bars(ax, [pos], [row[1]], [row[2]], colours[row[0]])
        pos += 0.5  # a gap between categories
    ax.set_xticks(ticks, names, fontsize=7, rotation=30)
    ax.set_ylabel(_unit_label(metric), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if part[metric].null_count() == part.height:
        why = "; ".join(notes_of(part, metric)) or "not measured"
        ax.text(
            0.5,
            0.5,
            f"not measured:\n{why[:120]}",
            ha="center",
            va="center",
            fontsize=7,
            transform=ax.transAxes,
            wrap=True,
        )


def serving_box_plots(serving: pl.DataFrame, folder: Path) -> tuple[list[Plot], list[str]]:
    """The second paper's Figures 3-5: per metric, a box per model-size category × serving
    configuration, CUDA execution provider on the left and CPU on the right on one shared y-axis,
    one colour per model."""
    plt = pyplot()
    plots, skipped = [], []
    labels = configuration_labels(serving)
    models = sorted(set(serving["model"].to_list()))
    colours = model_colours(models)
    sides = [
        (name, part)
        for name, part in (
            ("CUDA execution provider", serving.filter(pl.col("provider").is_in(GPU_PROVIDERS))),
            ("CPU execution provider", serving.filter(~pl.col("provider").is_in(GPU_PROVIDERS))),
        )
        if part.height
    ]
    for metric in SERVING_BOX_METRICS:
        label = COLUMNS[metric].label
        if serving[metric].null_count() == serving.height:
            reasons = "; ".join(notes_of(serving, metric)) or "not measured"
            skipped.append(f"Serving, {label}: no box plot, not measured ({reasons})")
            continue
        size = (max(5.0, 4.8 * len(sides)), 4.2)
        fig, axes = plt.subplots(1, len(sides), figsize=size, squeeze=False, sharey=True, layout="constrained")
        for ax, (side, part) in zip(axes[0], sides, strict=True):
            _serving_panel(ax, part, metric, labels, colours)
            ax.set_title(side, fontsize=9)
            ax.yaxis.set_tick_params(labelleft=True)
        dots = [plt.Line2D([], [], marker="o", linestyle="", color=colours[x], label=x) for x in models]
        if run_bounds(serving, metric) is not None:
            dots.append(bar_legend())
        fig.legend(
            handles=box_legend(dots),
            fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            title="model, per run",
            title_fontsize=7,
        )
        shared = " (one y-axis for both panels)" if len(sides) > 1 else ""
        title = f"Serving: {label} by model size category and configuration{shared}"
        fig.suptitle(title + "\nbox: median and quartiles of every run of the category", fontsize=9)
        plots.append(save(fig, folder, f"serving-box-{metric}", title))
    return plots, skipped


def energy_vs_time(ok: pl.DataFrame, folder: Path) -> list[Plot] | str:
    """Every run: a colour per model, a marker per configuration; linear and log-log."""
    plt = pyplot()
    both = ok.filter(pl.col("total_energy").is_not_null() & pl.col("window_s").is_not_null())
    if both.height == 0:
        reasons = "; ".join(notes_of(ok, "total_energy")) or "not measured"
        return f"Energy vs time: no run measured energy ({reasons})"
    models = sorted({model_label(m, s) for m, s in both.select("model", "model_size").iter_rows()})
    confs = sorted(set(both["configuration"].to_list()))
    colours = model_colours(models)
    markers = {c: MARKERS[i % len(MARKERS)] for i, c in enumerate(confs)}
    out = []
    for log in (False, True):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for (model, size, conf), runs in groups(both, ["model", "model_size", "configuration"]):
            name = model_label(model, size)
            xs, ys = runs["window_s"].to_list(), runs["total_energy"].to_list()
            ax.scatter(xs, ys, s=22, alpha=0.8, color=colours[name], marker=markers[conf])
            error_bars(ax, xs, ys, run_bounds(runs, "total_energy"), colours[name])
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        fixed = " (duration mode: for a fixed work)" if both["duration_mode"].any() else ""
        ax.set_xlabel("Inference time (s)" + fixed + (", log scale" if log else ""))
        ax.set_ylabel("Total energy (J)" + fixed + (", log scale" if log else ""))
        ax.grid(alpha=0.3, which="both" if log else "major")
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[m], label=m) for m in models]
        handles += [plt.Line2D([], [], marker=markers[c], linestyle="", color="#555555", label=c) for c in confs]
        if run_bounds(both, "total_energy") is not None:
            handles.append(bar_legend())
        ax.legend(
            handles=handles,
            fontsize=6,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            title="colour: model; marker: configuration",
            title_fontsize=6,
        )
        title = "Energy vs time, every run" + (" (log-log)" if log else "")
        ax.set_title(title, fontsize=10)
        out.append(save(fig, folder, "energy-vs-time-log" if log else "energy-vs-time", title))
    return out
