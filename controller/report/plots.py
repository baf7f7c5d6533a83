"""Plots of the report (matplotlib, Agg): box plots per metric by configuration, energy vs time,
power traces of runs that kept one. Each is written as PNG and SVG; the HTML embeds the PNG."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from controller.report.data import METRICS, notes_of
from controller.report.papers import (
    GPU_PROVIDERS,
    _category_order,
    _configuration_labels,
    _groups,
    category_of,
    model_label,
)

BOX_METRICS = (
    "window_s",
    "throughput_sps",
    "total_energy",
    "cpu_energy",
    "gpu_energy",
    "gpu_power_w",
    "gpu_util_percent",
    "cpu_percent",
    "ram_peak_mib",
)
MAX_TRACES = 6


@dataclass
class Plot:
    key: str
    title: str
    png: Path
    svg: Path
    caption: str = ""


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, key: str, title: str, caption: str = "") -> Plot:  # type: ignore[no-untyped-def]
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{key}.png", folder / f"{key}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return Plot(key, title, png, svg, caption)


def box_plots(ok: pl.DataFrame, folder: Path) -> tuple[list[Plot], list[str]]:
    """One figure per metric: a panel per model × batch size, a box per configuration."""
    plt = _pyplot()
    plots, skipped = [], []
    groups = _groups(ok, ["model", "model_size", "batch_size"])
    for metric in BOX_METRICS:
        if ok[metric].null_count() == ok.height:
            reasons = "; ".join(notes_of(ok, metric)) or "not measured"
            skipped.append(f"{METRICS[metric].label}: no box plot, not measured ({reasons})")
            continue
        fig, axes = plt.subplots(1, len(groups), figsize=(max(4.5, 3.6 * len(groups)), 3.6), squeeze=False)
        for ax, ((model, size, batch), group) in zip(axes[0], groups, strict=True):
            confs = _groups(group, ["configuration"])
            data = [[v for v in runs[metric].to_list() if v is not None] for _, runs in confs]
            labels = [k[0] for k, _ in confs]
            kept = [(lab, d) for lab, d in zip(labels, data, strict=True) if d]
            if kept:
                ax.boxplot([d for _, d in kept], tick_labels=[lab for lab, _ in kept], showmeans=True, showfliers=False)
                for i, (_, d) in enumerate(kept, 1):
                    ax.scatter([i] * len(d), d, s=10, alpha=0.6, color="tab:blue", zorder=3)
            ax.set_title(f"{model_label(model, size)}, batch {batch}", fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            ax.grid(axis="y", alpha=0.3)
        m = METRICS[metric]
        axes[0][0].set_ylabel(f"{m.label} ({m.unit})")
        fig.suptitle(f"{m.label} by configuration", fontsize=10)
        plots.append(_save(fig, folder, f"box-{metric}", f"{m.label} by configuration"))
    return plots, skipped


SERVING_BOX_METRICS = (
    "total_energy",
    "window_s",
    "energy_per_token",
    "tokens_per_s",
    "cpu_energy",
    "gpu_energy",
    "cpu_percent",
    "ram_peak_mib",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
)


def serving_box_plots(serving: pl.DataFrame, folder: Path) -> tuple[list[Plot], list[str]]:
    """The second paper's Figures 3-5: per metric, a box per model-size category × serving
    configuration, CUDA execution provider on the left and CPU on the right, one colour per model."""
    plt = _pyplot()
    plots, skipped = [], []
    labels = _configuration_labels(serving)
    models = sorted(set(serving["model"].to_list()))
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(models)}
    sides = [
        (name, part)
        for name, part in (
            ("CUDA execution provider", serving.filter(pl.col("provider").is_in(GPU_PROVIDERS))),
            ("CPU execution provider", serving.filter(~pl.col("provider").is_in(GPU_PROVIDERS))),
        )
        if part.height
    ]
    for metric in SERVING_BOX_METRICS:
        m = METRICS[metric]
        if serving[metric].null_count() == serving.height:
            reasons = "; ".join(notes_of(serving, metric)) or "not measured"
            skipped.append(f"Serving, {m.label}: no box plot, not measured ({reasons})")
            continue
        fig, axes = plt.subplots(1, len(sides), figsize=(max(5.0, 4.8 * len(sides)), 4.0), squeeze=False)
        for ax, (side, part) in zip(axes[0], sides, strict=True):
            pos, ticks, names = 0, [], []
            part = part.with_columns(pl.col("model_size").map_elements(category_of, return_dtype=pl.Utf8).alias("cat"))
            for category in sorted(set(part["cat"].to_list()), key=_category_order):
                group = part.filter(pl.col("cat") == category)
                for (conf,), runs in sorted(_groups(group, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
                    values = [v for v in runs[metric].to_list() if v is not None]
                    pos += 1
                    ticks.append(pos)
                    names.append(f"{labels[conf]}\n{'cat. ' + category if category.isdigit() else category}")
                    if not values:
                        continue
                    ax.boxplot([values], positions=[pos], widths=0.6, showmeans=True, showfliers=False)
                    for model, value in runs.select("model", metric).drop_nulls().iter_rows():
                        ax.scatter([pos], [value], s=12, alpha=0.7, color=colours[model], zorder=3)
                pos += 0.5  # a gap between categories
            ax.set_xticks(ticks, names, fontsize=7, rotation=30)
            ax.set_title(side, fontsize=9)
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
        axes[0][0].set_ylabel(f"{m.label} ({m.unit})")
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[x], label=x) for x in models]
        fig.legend(
            handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="model", title_fontsize=7
        )
        fig.suptitle(f"Serving: {m.label} by model size category and configuration", fontsize=10)
        title = f"Serving: {m.label} by model size category and configuration"
        plots.append(_save(fig, folder, f"serving-box-{metric}", title))
    return plots, skipped


def energy_vs_time(ok: pl.DataFrame, folder: Path) -> Plot | str:
    plt = _pyplot()
    both = ok.filter(pl.col("total_energy").is_not_null() & pl.col("window_s").is_not_null())
    if both.height == 0:
        reasons = "; ".join(notes_of(ok, "total_energy")) or "not measured"
        return f"Energy vs time: no run measured energy ({reasons})"
    fig, ax = plt.subplots(figsize=(6, 4))
    for (conf,), runs in _groups(both, ["configuration"]):
        ax.scatter(runs["window_s"].to_list(), runs["total_energy"].to_list(), label=conf, s=18)
    ax.set_xlabel("Inference time (s)")
    ax.set_ylabel("Total energy (J)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Energy vs time, every run", fontsize=10)
    return _save(fig, folder, "energy-vs-time", "Energy vs time")


def _trace_series(trace: pl.DataFrame) -> tuple[str, str, dict[str, tuple[list[float], list[float]]]]:
    """(quantity, unit, {label: (t_ns, values)}): power when the trace has any, else CPU use."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    fields = sorted(set(trace["field"].to_list()))
    for f in fields:
        sel = trace.filter(pl.col("field") == f).drop_nulls("value").sort("t_ns")
        t, v = sel["t_ns"].to_list(), sel["value"].to_list()
        if f.endswith("power_w"):
            series[f] = (t, v)
        elif f.endswith("energy_uj") or f.endswith("energy_mj"):
            scale = 1e-6 if f.endswith("uj") else 1e-3
            pw = [
                (v[i] - v[i - 1]) * scale / ((t[i] - t[i - 1]) / 1e9)
                for i in range(1, len(t))
                if t[i] > t[i - 1] and v[i] >= v[i - 1]
            ]
            ts = [t[i] for i in range(1, len(t)) if t[i] > t[i - 1] and v[i] >= v[i - 1]]
            if not any(f.replace("energy_uj", "power_w").replace("energy_mj", "power_w") == g for g in fields):
                series[f.rsplit("energy", 1)[0] + "power (from counter)"] = (ts, pw)
    if series:
        return "Power", "W", series
    for f in fields:
        if f.endswith("cpu_time_s"):
            sel = trace.filter(pl.col("field") == f).drop_nulls("value").sort("t_ns")
            t, v = sel["t_ns"].to_list(), sel["value"].to_list()
            pts = [
                (t[i], (v[i] - v[i - 1]) / ((t[i] - t[i - 1]) / 1e9) * 100) for i in range(1, len(t)) if t[i] > t[i - 1]
            ]
            series[f.replace("cpu_time_s", "CPU")] = ([p[0] for p in pts], [p[1] for p in pts])
    return "CPU use (no power meter in this trace)", "% of a core", series


def power_traces(ok: pl.DataFrame, folder: Path, records: Path) -> list[Plot]:
    plt = _pyplot()
    plots = []
    with_trace = ok.filter(pl.col("trace_path").is_not_null()).sort("run_id")
    chosen = with_trace.unique(subset=["configuration", "model", "batch_size"], keep="first", maintain_order=True)
    for r in chosen.head(MAX_TRACES).iter_rows(named=True):
        path = records / r["trace_path"]
        if not path.is_file():
            continue
        trace = pl.read_parquet(path)
        quantity, unit, series = _trace_series(trace)
        if not series:
            continue
        record = json.loads(Path(r["path"]).read_text())
        window = (record.get("measurements") or {}).get("window") or {}
        t0 = min(min(t) for t, _ in series.values() if t)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for label, (t, v) in series.items():
            ax.plot([(x - t0) / 1e9 for x in t], v, label=label, linewidth=1)
        if window.get("t0_ns") and window.get("t1_ns"):
            ax.axvspan(
                (window["t0_ns"] - t0) / 1e9,
                (window["t1_ns"] - t0) / 1e9,
                alpha=0.15,
                color="tab:green",
                label="measure window",
            )
        ax.set_xlabel("time since the trace began (s)")
        ax.set_ylabel(f"{quantity.split(' (')[0]} ({unit})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        title = f"{quantity}: {r['configuration']}, {model_label(r['model'], r['model_size'])}, batch {r['batch_size']}"
        ax.set_title(title, fontsize=9)
        plots.append(_save(fig, folder, f"trace-{r['run_id']}", title, caption=f"run {r['run_id']}"))
    return plots
