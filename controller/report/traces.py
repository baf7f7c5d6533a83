"""Power traces of runs that kept one (``keep_trace``): power per domain over the run, the measure
window shaded; CPU use where the trace has no power meter."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from controller.report.cells import model_label
from controller.report.plots import Plot, pyplot, save

MAX_TRACES = 6


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
    plt = pyplot()
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
        plots.append(save(fig, folder, f"trace-{r['run_id']}", title, caption=f"run {r['run_id']}"))
    return plots
