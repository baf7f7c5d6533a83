"""Tables of the papers' headline figures from our runs (definitions in ``figures``)."""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from controller.report.cells import aggregate_bound, groups, model_label
from controller.report.columns import BOUNDED, COLUMNS
from controller.report.figures import (
    Correlation,
    Savings,
    Versus,
    cuda_twin,
    energy_ratio,
    energy_ratio_bounds,
    native_source,
    savings_range,
    spearman,
    versus_best,
    versus_reference,
)
from controller.report.paper1 import GPU_PROVIDERS, NATIVE_ENGINES, table1_runs, table3_runs
from controller.report.paper2 import category_of, configuration_labels
from controller.report.table import Table, Value, bounded_value, fmt_bounded, fmt_p, num_value, text_value

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
            if m in BOUNDED:
                point[f"{m}_uncertainty"] = _bound(runs, m, "mean")
        out.append(point)
    return out


def _bound(runs: pl.DataFrame, metric: str, stat: str) -> float | None:
    """The bound of the mean (median) of ``metric`` over ``runs``; None when a run states none."""
    pairs = [(v, u) for v, u in runs.select(metric, f"{metric}_uncertainty").iter_rows() if v is not None]
    if not pairs or any(u is None for _, u in pairs):
        return None
    return aggregate_bound([v for v, _ in pairs], [u for _, u in pairs], stat)


def correlations(ok: pl.DataFrame) -> list[Correlation]:
    batch = ok.filter(~pl.col("serving"))
    sets = (
        configuration_points(table1_runs(batch)),
        configuration_points(batch),
        ok.select(*POINT_METRICS).to_dicts(),
    )
    return [spearman(rows, x, y, unit) for x, y in PAIRS for unit, rows in zip(UNITS, sets, strict=True)]


def correlation_table(corrs: list[Correlation]) -> Table:
    t = Table(
        "correlations",
        "Spearman's rank correlation",
        ["Unit", "X", "Y", "n", "ρ", "p", "p computed", "The first paper"],
    )
    for c in corrs:
        row = [
            text_value(c.unit),
            text_value(COLUMNS[c.x].label),
            text_value(COLUMNS[c.y].label),
            Value(str(c.n), c.n),
            Value("n/a" if c.rho is None else f"{c.rho:.3f}", c.rho),
            Value(fmt_p(c.p), c.p),
            text_value(c.method or "-"),
            text_value(PAPER1[(c.x, c.y)] + " (32 configurations)" if c.unit == UNITS[0] else "-"),
        ]
        if c.note:
            row[4].notes.append(t.note(c.note))
        t.rows.append(row)
    t.remarks.append(
        "The first paper correlates its aggregated results: one point per configuration (a row of its Table 1, "
        "means over repetitions). Pooling every repetition as a point counts one configuration several times and "
        "makes p far smaller than the data support; it is kept, labelled, for comparison. p is two-sided: exact "
        "(the share of every permutation of the ranks whose |ρ| reaches the observed one) up to 9 points, where "
        "the asymptotic approximation is far off (4 points at ρ = 1: it gives p = 0, the exact p is 1/12); "
        "asymptotic (Student's t) above, as the paper's."
    )
    return t


def figures_table(ok: pl.DataFrame) -> Table:
    points = configuration_points(table1_runs(ok.filter(~pl.col("serving"))))
    t = Table(
        "figures",
        "The first paper's headline figures, from Table 1's rows (one point per configuration)",
        ["Figure", "n", "Ours", "p", "The first paper"],
    )
    t.bounded = {2}
    for x, y in PAIRS:
        c = spearman(points, x, y, UNITS[0])
        v = Value("n/a" if c.rho is None else f"ρ = {c.rho:.3f}", c.rho)
        if c.note:
            v.notes.append(t.note(c.note))
        p = Value(fmt_p(c.p), c.p)
        if c.method:
            p.notes.append(t.note(f"p {c.method}"))
        label = f"Spearman's ρ, {COLUMNS[x].label} vs {COLUMNS[y].label}"
        t.rows.append([text_value(label), Value(str(c.n), c.n), v, p, text_value(PAPER1[(x, y)])])
    ratio, n, why = energy_ratio(points)
    v = Value("n/a" if ratio is None else f"{100 * ratio:.2f} %", ratio)
    if why:
        v.notes.append(t.note(why))
    elif (bounds := energy_ratio_bounds(points)) is not None:
        assert ratio is not None
        low, high = 100 * bounds[0], 100 * bounds[1]
        u = max(high - 100 * ratio, 100 * ratio - low)
        v = Value(fmt_bounded(100 * ratio, u) + " %", ratio, uncertainty=u / 100)
        v.notes.append(t.note(f"± from the CPU and GPU energies' bounds: the ratio lies in {low:.2f} % … {high:.2f} %"))
    else:
        v.notes.append(
            t.note("no ±: the CPU or GPU energies state no bound (records written before joulebench stated them)")
        )
    t.rows.append(
        [text_value("Mean CPU energy / mean GPU energy"), Value(str(n), n), v, text_value("-"), text_value("51.71 %")]
    )
    return t


def _separation(t: Table, v: Versus) -> tuple[Value, Value]:
    """The change's interval from the two figures' bounds, and whether it decides the sign."""
    bounds = v.change_bounds
    if bounds is not None:
        interval = text_value(f"{100 * bounds[0]:+.2f} % … {100 * bounds[1]:+.2f} %")
        return interval, text_value("yes" if v.separated else "no")
    if v.metric not in BOUNDED:
        why = "no bound is stated for times: the spread across runs (statistics tables) is what separates them"
    elif v.value_bound is None or v.reference_bound is None:
        why = "no bound: a figure of the two states none (records written before joulebench stated bounds)"
    else:
        why = "the reference's bound reaches 0: the change is unbounded"
    note = t.note(why)
    return Value("n/a", None, notes=[note]), Value("n/a", None, notes=[note])


def _versus_rows(t: Table, paper: str, finding: str, found: list[Versus]) -> None:
    for v in found:
        interval, separated = _separation(t, v)
        change = Value(f"{100 * v.change:+.2f} %", 100 * v.change)
        saving = Value(f"{100 * v.saving:.2f} %", 100 * v.saving) if v.saving >= 0 else text_value("-")
        if v.separated is False:
            # The bounds overlap: the measurement cannot say which is lower, so no "N % less" is claimed.
            unsure = t.note(
                "not separated: the two figures' bounds overlap, so the measurement does not decide which is lower "
                '(the change lies anywhere in its interval); no "% more / % less" is claimed'
            )
            change.text += " (not separated)"
            change.notes.append(unsure)
            if v.saving >= 0:
                saving = Value("not separated", 100 * v.saving, notes=[unsure])
        t.rows.append(
            [
                text_value(paper),
                text_value(finding),
                text_value(v.where),
                text_value(f"{v.name} vs {v.reference}"),
                text_value(COLUMNS[v.metric].label),
                bounded_value(v.value, v.value_bound) if v.metric in BOUNDED else num_value(v.value),
                bounded_value(v.reference_value, v.reference_bound)
                if v.metric in BOUNDED
                else num_value(v.reference_value),
                Value(f"{v.ratio:.2f}×" if v.ratio >= 0.1 else f"{v.ratio:.2g}×", v.ratio),
                change,
                saving,
                interval,
                separated,
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
            "Change within the bounds",
            "Sign separated by the bounds",
        ],
    )
    t.bounded = {5, 6}
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
    t.remarks.append(
        "Energy figures carry their bounds (±); the change within the bounds is value / reference − 1 with each "
        "figure anywhere within its own. Where that interval holds 0 the sign is not separated by the "
        "measurement: the row says so and claims no saving. The bounds are the measurement's, not the spread "
        "across runs: the statistics tables test that."
    )
    return t


def serving_medians(ok: pl.DataFrame, metric: str, by: str = "model") -> dict[str, dict[str, float]]:
    """{model, or size category: {<ENGINE, PROVIDER>: median}} of the serving runs: per model over its
    repetitions, per category over every run of its models (as Tables 4-5)."""
    return {k: {c: m for c, (m, _) in confs.items()} for k, confs in serving_medians_bounded(ok, metric, by).items()}


def serving_medians_bounded(
    ok: pl.DataFrame, metric: str, by: str = "model"
) -> dict[str, dict[str, tuple[float, float | None]]]:
    """As ``serving_medians``, each median with its bound (an energy whose runs all state one; else None)."""
    serving = ok.filter(pl.col("serving"))
    labels = configuration_labels(serving) if serving.height else {}
    bound = f"{metric}_uncertainty" if metric in BOUNDED else None
    values: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    for (model, size, conf), runs in groups(serving, ["model", "model_size", "configuration"]):
        cols = [metric, bound] if bound else [metric]
        pairs = [(r[0], r[1] if bound else None) for r in runs.select(cols).iter_rows() if r[0] is not None]
        if not pairs:
            continue
        key = model if by == "model" else category_of(size)
        values.setdefault(key, {}).setdefault(labels[conf], []).extend(pairs)
    out: dict[str, dict[str, tuple[float, float | None]]] = {}
    for key, confs in values.items():
        for conf, pairs in confs.items():
            vs, us = [v for v, _ in pairs], [u for _, u in pairs]
            u = None if any(x is None for x in us) else aggregate_bound(vs, [float(x or 0.0) for x in us], "median")
            out.setdefault(key, {})[conf] = (statistics.median(vs), u)
    return out


def cpu_vs_cuda(ok: pl.DataFrame, metric: str) -> list[Versus]:
    """Per size category, an engine on the CPU provider against the same engine on CUDA ("more than 20 times")."""
    out = []
    for cat, confs in sorted(serving_medians_bounded(ok, metric, by="category").items()):
        for label, (value, u) in sorted(confs.items()):
            if not label.endswith(", CPU>"):
                continue
            twin = label.replace(", CPU>", ", CUDA>")
            if twin in confs and confs[twin][0]:
                ref, ref_u = confs[twin]
                out.append(Versus(f"category {cat}", metric, label, twin, value, ref, u, ref_u))
    return out


def savings_table(ok: pl.DataFrame) -> Table | None:
    """The second paper's savings: the best configuration against the others, range over models."""
    serving = ok.filter(pl.col("serving"))
    if serving.height == 0:
        return None
    t = Table(
        "savings",
        "The second paper's savings: the best serving configuration against the others (per-model medians)",
        [
            "Scope",
            "Best",
            "Metric",
            "Saving from",
            "to",
            "Comparisons",
            "Lowest at",
            "Highest at",
            "Not separated by the bounds",
        ],
    )
    for metric in ("total_energy", "window_s"):
        bounded = serving_medians_bounded(ok, metric)
        per_model = {m: {c: v for c, (v, _) in confs.items()} for m, confs in bounded.items()}
        bounds = {m: {c: u for c, (_, u) in confs.items()} for m, confs in bounded.items()}
        confs = sorted({c for v in per_model.values() for c in v})
        for scope, members in (
            ("every configuration", confs),
            ("CPU execution provider", [c for c in confs if c.endswith(", CPU>")]),
            ("CUDA execution provider", [c for c in confs if c.endswith(", CUDA>")]),
        ):
            if len(members) < 2:
                continue
            best = min(members, key=lambda c: statistics.fmean(v[c] for v in per_model.values() if c in v))
            s = savings_range(per_model, best, members, metric, bounds)
            if s is not None:
                t.rows.append(_savings_row(t, scope, s))
    t.remarks.append(
        "Saving = 1 − value(best) / value(other), for every model and every other configuration of the scope; "
        "best = the lowest mean over models of the per-model medians. The second paper: <TORCH, CUDA> saves "
        "37.99 %–89.16 % energy and 47.84 %–89.74 % time against the other configurations; <ONNX, CPU> "
        "8.98 %–72.04 % energy within the CPU configurations (per-model medians from its replication package)."
    )
    t.remarks.append(
        "Not separated by the bounds: the comparisons (of energy, whose figures carry a bound) where the two "
        "medians' bounds overlap, so the measurement does not say the best one saves anything there; a range "
        "whose end is such a comparison is marked."
    )
    return t if t.rows else None


def _savings_row(t: Table, scope: str, s: Savings) -> list[Value]:
    low, high = Value(f"{100 * s.low:.2f} %", 100 * s.low), Value(f"{100 * s.high:.2f} %", 100 * s.high)
    if s.not_separated is None:
        why = (
            "no bound is stated for times"
            if s.metric not in BOUNDED
            else "no bound: the figures state none (records written before joulebench stated bounds)"
        )
        unseparated = Value("n/a", None, notes=[t.note(why)])
    else:
        shown = ", ".join(s.not_separated[:5]) + (
            f" and {len(s.not_separated) - 5} more" if len(s.not_separated) > 5 else ""
        )
        unseparated = Value(f"{len(s.not_separated)} of {s.judged}", len(s.not_separated))
        if s.not_separated:
            unseparated.notes.append(t.note(f"{scope}, {COLUMNS[s.metric].label}: bounds overlap in {shown}"))
        for cell, at in ((low, s.low_at), (high, s.high_at)):
            if at in s.not_separated:
                cell.text += " (not separated)"
                cell.notes.append(t.note(f"{at}: the two medians' bounds overlap; this saving is not separated"))
    return [
        text_value(scope),
        text_value(s.best),
        text_value(COLUMNS[s.metric].label),
        low,
        high,
        Value(str(s.n), s.n),
        text_value(s.low_at),
        text_value(s.high_at),
        unseparated,
    ]
