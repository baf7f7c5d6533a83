"""Tables of the papers' headline figures from our runs (definitions in ``figures``)."""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from controller.report.cells import groups, model_label
from controller.report.columns import COLUMNS
from controller.report.figures import (
    Correlation,
    Savings,
    Versus,
    cuda_twin,
    energy_ratio,
    native_source,
    savings_range,
    spearman,
    versus_best,
    versus_reference,
)
from controller.report.paper1 import GPU_PROVIDERS, NATIVE_ENGINES, table1_runs, table3_runs
from controller.report.paper2 import category_of, configuration_labels
from controller.report.table import Table, Value, fmt_p, num_value, text_value

POINT_METRICS = ("window_s", "total_energy", "cpu_energy", "gpu_energy", "gpu_util_percent", "gpu_power_w")
PAIRS = (("window_s", "total_energy"), ("gpu_util_percent", "gpu_power_w"))
PAPER1 = {
    ("window_s", "total_energy"): "ρ = 0.99, p = 6.54e-27",
    ("gpu_util_percent", "gpu_power_w"): "ρ = 0.81, p = 2.65e-08",
}
UNITS = (
    "per configuration, Table 1's rows (the first paper's unit)",
    "per configuration, every batch configuration",
    "per run, repetitions pooled (pseudo-replication: not the paper's unit; its p is far too small)",
)


def configuration_points(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """One point per model × batch × configuration: the mean of each figure over its runs."""
    out = []
    for (model, size, batch, conf), runs in groups(frame, ["model", "model_size", "batch_size", "configuration"]):
        r0 = runs.row(0, named=True)
        point: dict[str, Any] = {
            "model": model_label(model, size),
            "batch": batch,
            "device": "GPU" if r0["provider"] in GPU_PROVIDERS else "CPU",
            "configuration": conf,
            **{k: r0[k] for k in ("framework", "conversion", "engine", "provider", "converted")},
        }
        for m in POINT_METRICS:
            vals = [v for v in runs[m].to_list() if v is not None]
            point[m] = statistics.fmean(vals) if vals else None
        out.append(point)
    return out


def correlations(ok: pl.DataFrame) -> list[Correlation]:
    batch = ok.filter(~pl.col("serving"))
    sets = (
        configuration_points(table1_runs(batch)),
        configuration_points(batch),
        ok.select(*POINT_METRICS).to_dicts(),
    )
    return [spearman(rows, x, y, unit) for x, y in PAIRS for unit, rows in zip(UNITS, sets, strict=True)]


def correlation_table(corrs: list[Correlation]) -> Table:
    t = Table("correlations", "Spearman's rank correlation", ["Unit", "X", "Y", "n", "ρ", "p", "The first paper"])
    for c in corrs:
        row = [
            text_value(c.unit),
            text_value(COLUMNS[c.x].label),
            text_value(COLUMNS[c.y].label),
            Value(str(c.n), c.n),
            Value("n/a" if c.rho is None else f"{c.rho:.3f}", c.rho),
            Value(fmt_p(c.p), c.p),
            text_value(PAPER1[(c.x, c.y)] + " (32 configurations)" if c.unit == UNITS[0] else "-"),
        ]
        if c.note:
            row[4].notes.append(t.note(c.note))
        t.rows.append(row)
    t.remarks.append(
        "The first paper correlates its aggregated results: one point per configuration (a row of its Table 1, "
        "means over repetitions). Pooling every repetition as a point counts one configuration several times and "
        "makes p far smaller than the data support; it is kept, labelled, for comparison."
    )
    return t


def figures_table(ok: pl.DataFrame) -> Table:
    points = configuration_points(table1_runs(ok.filter(~pl.col("serving"))))
    t = Table(
        "figures",
        "The first paper's headline figures, from Table 1's rows (one point per configuration)",
        ["Figure", "n", "Ours", "p", "The first paper"],
    )
    for x, y in PAIRS:
        c = spearman(points, x, y, UNITS[0])
        v = Value("n/a" if c.rho is None else f"ρ = {c.rho:.3f}", c.rho)
        if c.note:
            v.notes.append(t.note(c.note))
        label = f"Spearman's ρ, {COLUMNS[x].label} vs {COLUMNS[y].label}"
        t.rows.append([text_value(label), Value(str(c.n), c.n), v, Value(fmt_p(c.p), c.p), text_value(PAPER1[(x, y)])])
    ratio, n, why = energy_ratio(points)
    v = Value("n/a" if ratio is None else f"{100 * ratio:.2f} %", ratio)
    if why:
        v.notes.append(t.note(why))
    t.rows.append(
        [text_value("Mean CPU energy / mean GPU energy"), Value(str(n), n), v, text_value("-"), text_value("51.71 %")]
    )
    return t


def _versus_rows(t: Table, paper: str, finding: str, found: list[Versus]) -> None:
    for v in found:
        t.rows.append(
            [
                text_value(paper),
                text_value(finding),
                text_value(v.where),
                text_value(f"{v.name} vs {v.reference}"),
                text_value(COLUMNS[v.metric].label),
                num_value(v.value),
                num_value(v.reference_value),
                Value(f"{v.ratio:.2f}×", v.ratio),
                Value(f"{100 * v.change:+.2f} %", 100 * v.change),
                Value(f"{100 * v.saving:.2f} %", 100 * v.saving) if v.saving >= 0 else text_value("-"),
            ]
        )


def headlines_table(ok: pl.DataFrame) -> Table:
    t = Table(
        "headlines",
        "The papers' comparisons, from the tables with the papers' definitions",
        [
            "Paper",
            "Finding",
            "Where",
            "Comparison",
            "Metric",
            "Value",
            "Reference",
            "× (value / reference)",
            "Change (value / reference − 1)",
            "Saving (1 − reference / value)",
        ],
    )
    batch = ok.filter(~pl.col("serving"))
    points = configuration_points(table1_runs(batch))
    keys = ("model", "batch", "device")
    natives = [p for p in points if p["engine"] in NATIVE_ENGINES]
    for metric in ("total_energy", "window_s", "cpu_energy", "gpu_energy"):
        _versus_rows(t, "first", "RQ1: a native framework vs the best native", versus_best(natives, keys, metric))
    for metric in ("total_energy", "window_s"):
        _versus_rows(
            t,
            "first",
            "RQ2: ONNX-converted vs its native source",
            versus_reference(points, keys, metric, native_source),
        )
    trt = configuration_points(table3_runs(batch))
    for metric in ("total_energy", "window_s"):
        _versus_rows(
            t, "first", "RQ3: TensorRT vs CUDA execution provider", versus_reference(trt, keys, metric, cuda_twin)
        )
    for metric in ("window_s", "total_energy"):
        _versus_rows(t, "second", "CPU vs CUDA execution provider, same engine", cpu_vs_cuda(ok, metric))
    t.remarks.append(
        '× is the papers\' "x-fold" ("3.3x higher"); Change is "% more" (+) or "% less" (−) than the reference '
        '("around 10 % more energy", "38.66 % less"); Saving is what the reference saves against the value '
        '("uses 3.78 % less energy than", the second paper\'s "energy savings"), shown where the reference is the '
        "lower. First paper: means over "
        "repetitions per configuration (its Table 1); second paper: medians per size category (its Tables 4-5)."
    )
    return t


def serving_medians(ok: pl.DataFrame, metric: str, by: str = "model") -> dict[str, dict[str, float]]:
    """{model, or size category: {<ENGINE, PROVIDER>: median}} of the serving runs: per model over its
    repetitions, per category over every run of its models (as Tables 4-5)."""
    serving = ok.filter(pl.col("serving"))
    labels = configuration_labels(serving) if serving.height else {}
    values: dict[str, dict[str, list[float]]] = {}
    for (model, size, conf), runs in groups(serving, ["model", "model_size", "configuration"]):
        vals = [v for v in runs[metric].to_list() if v is not None]
        if not vals:
            continue
        if by == "model":
            values.setdefault(model, {})[labels[conf]] = [statistics.median(vals)]
        else:
            values.setdefault(category_of(size), {}).setdefault(labels[conf], []).extend(vals)
    return {k: {c: statistics.median(v) for c, v in confs.items()} for k, confs in values.items()}


def cpu_vs_cuda(ok: pl.DataFrame, metric: str) -> list[Versus]:
    """Per size category, an engine on the CPU provider against the same engine on CUDA ("more than 20 times")."""
    out = []
    for cat, confs in sorted(serving_medians(ok, metric, by="category").items()):
        for label, value in sorted(confs.items()):
            if not label.endswith(", CPU>"):
                continue
            twin = label.replace(", CPU>", ", CUDA>")
            if confs.get(twin):
                out.append(Versus(f"category {cat}", metric, label, twin, value, confs[twin]))
    return out


def savings_table(ok: pl.DataFrame) -> Table | None:
    """The second paper's savings: the best configuration against the others, range over models."""
    serving = ok.filter(pl.col("serving"))
    if serving.height == 0:
        return None
    t = Table(
        "savings",
        "The second paper's savings: the best serving configuration against the others (per-model medians)",
        ["Scope", "Best", "Metric", "Saving from", "to", "Comparisons", "Lowest at", "Highest at"],
    )
    for metric in ("total_energy", "window_s"):
        per_model = serving_medians(ok, metric)
        confs = sorted({c for v in per_model.values() for c in v})
        for scope, members in (
            ("every configuration", confs),
            ("CPU execution provider", [c for c in confs if c.endswith(", CPU>")]),
            ("CUDA execution provider", [c for c in confs if c.endswith(", CUDA>")]),
        ):
            if len(members) < 2:
                continue
            best = min(members, key=lambda c: statistics.fmean(v[c] for v in per_model.values() if c in v))
            s = savings_range(per_model, best, members, metric)
            if s is not None:
                t.rows.append(_savings_row(scope, s))
    t.remarks.append(
        "Saving = 1 − value(best) / value(other), for every model and every other configuration of the scope; "
        "best = the lowest mean over models of the per-model medians. The second paper: <TORCH, CUDA> saves "
        "37.99 %–89.16 % energy and 47.84 %–89.74 % time against the other configurations; <ONNX, CPU> "
        "8.98 %–72.04 % energy within the CPU configurations (per-model medians from its replication package)."
    )
    return t if t.rows else None


def _savings_row(scope: str, s: Savings) -> list[Value]:
    return [
        text_value(scope),
        text_value(s.best),
        text_value(COLUMNS[s.metric].label),
        Value(f"{100 * s.low:.2f} %", 100 * s.low),
        Value(f"{100 * s.high:.2f} %", 100 * s.high),
        Value(str(s.n), s.n),
        text_value(s.low_at),
        text_value(s.high_at),
    ]
