"""The papers' tables rebuilt from our runs, and the stability/provenance table.

Table 1: per model × batch × framework (native, then converted), means over repetitions.
Table 2: accuracy of the native models. Table 3: ONNX Runtime execution providers compared.
Tables 4-5 (second paper): energy and time per serving configuration, once serving runs exist.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import polars as pl

from controller.report.data import METRICS, notes_of
from controller.report.table import Table, Value, fmt_number, num_value, text_value

TABLE1_METRICS = (
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_power_w",
    "gpu_energy",
    "cpu_energy",
    "total_energy",
    "window_s",
    "cpu_percent",
    "ram_peak_mib",
)
CV_WARNING = 0.05


def header(column: str) -> str:
    m = METRICS[column]
    return f"{m.label} ({m.unit})"


def model_label(model: str, size: str) -> str:
    return model if size == "full" else f"{model} ({size})"


def metric_value(t: Table, frame: pl.DataFrame, column: str) -> Value:
    """Mean over the runs; n/a with the recorded reason when no run measured it; a note when some did not."""
    values = [v for v in frame[column].to_list() if v is not None]
    notes = [t.note(n) for n in notes_of(frame, column)]
    if not values:
        return Value("n/a", None, notes=notes or [t.note("not measured (no reason recorded)")])
    mean = statistics.fmean(values)
    v = Value(fmt_number(mean), mean)
    if len(values) < frame.height:
        v.notes.append(t.note(f"measured in {len(values)} of {frame.height} runs; the mean covers those"))
        v.notes += [n for n in notes if n not in v.notes]
    elif notes:  # e.g. gross energy
        v.notes += notes
    return v


def mark_best(t: Table, rows: list[int], columns: Iterable[tuple[int, str]]) -> None:
    """Bold the best value of each column among ``rows`` (needs two or more measured values)."""
    for idx, column in columns:
        better = METRICS[column].better
        if better is None:
            continue
        measured = [(t.rows[r][idx].raw, r) for r in rows if isinstance(t.rows[r][idx].raw, (int, float))]
        if len(measured) < 2:
            continue
        best = min(measured)[0] if better == "low" else max(measured)[0]
        for value, r in measured:
            if value == best:
                t.rows[r][idx].best = True


def _groups(frame: pl.DataFrame, keys: list[str]) -> list[tuple[tuple, pl.DataFrame]]:
    out = [(k if isinstance(k, tuple) else (k,), g) for k, g in frame.group_by(keys)]
    return sorted(out, key=lambda kg: tuple(str(x) for x in kg[0]))


def table1(ok: pl.DataFrame) -> Table:
    t = Table(
        "table1",
        "Table 1: inference per model × batch size × framework, native and ONNX-converted (means over repetitions)",
        ["Model", "Batch", "Framework", "Runtime / provider", "Runs", *(header(c) for c in TABLE1_METRICS)],
    )
    first = len(t.columns) - len(TABLE1_METRICS)
    for (model, size, batch), group in _groups(ok, ["model", "model_size", "batch_size"]):
        start = len(t.rows)
        t.group_starts.add(start)
        configs = _groups(group, ["configuration"])
        configs.sort(key=lambda kg: (bool(kg[1]["converted"][0]), str(kg[1]["framework"][0]), kg[0]))
        kinds: dict[bool, list[int]] = {False: [], True: []}
        for _, runs in configs:
            r0 = runs.row(0, named=True)
            row = [
                text_value(model_label(model, size)),
                Value(str(batch), batch),
                text_value(r0["framework"]),
                text_value(f"{r0['engine']} / {r0['provider']}"),
                Value(str(runs.height), runs.height),
            ]
            row += [metric_value(t, runs, c) for c in TABLE1_METRICS]
            kinds[bool(r0["converted"])].append(len(t.rows))
            t.rows.append(row)
        for rows in kinds.values():
            mark_best(t, rows, [(first + i, c) for i, c in enumerate(TABLE1_METRICS)])
    t.remarks.append(
        "Best (lowest) energy and time are bold within each model × batch size, among native and among "
        "converted runs separately, as in the paper. Inference time is the harness's measured window."
    )
    return t


def table2(ok: pl.DataFrame) -> Table:
    models = sorted({(m, s, d or "?") for m, s, d in ok.select("model", "model_size", "dataset").iter_rows()})
    t = Table(
        "table2",
        "Table 2: framework × model accuracy (native models)",
        ["Framework", *(f"{model_label(m, s)} ({d})" for m, s, d in models)],
    )
    native = ok.filter(~pl.col("converted"))
    frame = native if native.height else ok
    for (framework,), runs in _groups(frame, ["framework"]):
        row = [text_value(framework)]
        for m, s, _ in models:
            sel = runs.filter((pl.col("model") == m) & (pl.col("model_size") == s))
            acc = [a for a in sel["accuracy"].to_list() if a is not None]
            if acc:
                mean = statistics.fmean(acc) * 100
                row.append(Value(f"{mean:.2f}", mean))
                continue
            if sel.height == 0:
                row.append(Value("n/a", None, notes=[t.note("no run of this model with this framework")]))
                continue
            why = []
            if set(sel["dataset"].to_list()) - {None} <= {"synthetic"}:
                why.append("synthetic data")
            if "random" in sel["weights"].to_list():
                why.append("random weights")
            reason = " / ".join(why) or "accuracy not computed by the harness yet"
            row.append(
                Value(
                    "n/a",
                    None,
                    notes=[t.note(f"n/a: {reason} (accuracy needs a labelled dataset and trained weights)")],
                )
            )
        t.rows.append(row)
    t.remarks.append("Accuracy (%) of the original models only, as the paper: conversion does not change it.")
    return t


def table3(ok: pl.DataFrame) -> Table:
    t = Table(
        "table3",
        "Table 3: ONNX Runtime execution providers compared (converted models)",
        ["Model", "Batch", "Framework", "Execution provider", "Runs", *(header(c) for c in TABLE1_METRICS)],
    )
    first = len(t.columns) - len(TABLE1_METRICS)
    ort = ok.filter(pl.col("engine") == "onnxruntime")
    providers = sorted(set(ort["provider"].to_list())) if ort.height else []
    for (model, size, batch, framework), group in _groups(ort, ["model", "model_size", "batch_size", "framework"]):
        start = len(t.rows)
        t.group_starts.add(start)
        for (provider,), runs in _groups(group, ["provider"]):
            row = [
                text_value(model_label(model, size)),
                Value(str(batch), batch),
                text_value(framework),
                text_value(provider),
                Value(str(runs.height), runs.height),
            ]
            row += [metric_value(t, runs, c) for c in TABLE1_METRICS]
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(TABLE1_METRICS)])
    if not providers:
        t.remarks.append("No ONNX Runtime runs in these records: nothing to compare.")
    elif len(providers) == 1:
        t.remarks.append(
            f"Only the {providers[0]} execution provider appears in these records; Table 3 compares providers "
            "(CUDA vs TensorRT on a GPU, CPU vs OpenVINO on a CPU) once runs of several exist."
        )
    return t


def tables45(ok: pl.DataFrame) -> list[Table] | str:
    """The second paper's Tables 4 (CPU providers) and 5 (GPU providers), or why not."""
    serving = ok.filter(pl.col("serving"))
    if serving.height == 0:
        return (
            "Tables 4-5 (second paper: energy and time per serving configuration and model-size category) "
            "need serving runs; these records have none. They appear once serving runs exist "
            "(suite/campaigns/code-slm-serving.toml arrives with the serving issue)."
        )
    out = []
    for key, title, gpu in (
        ("table4", "Table 4: CPU execution provider, medians per serving configuration", False),
        ("table5", "Table 5: CUDA execution provider, medians per serving configuration", True),
    ):
        cols = ("cpu_energy", "gpu_energy", "total_energy", "window_s") if gpu else ("total_energy", "window_s")
        t = Table(key, title, ["Model", "Serving configuration", "Runs", *(header(c) for c in cols)])
        part = serving.filter((pl.col("provider") != "cpu") if gpu else (pl.col("provider") == "cpu"))
        for (model, size, conf), runs in _groups(part, ["model", "model_size", "configuration"]):
            row = [text_value(model_label(model, size)), text_value(conf), Value(str(runs.height), runs.height)]
            for c in cols:
                vals = [v for v in runs[c].to_list() if v is not None]
                if vals:
                    row.append(num_value(statistics.median(vals)))
                else:
                    row.append(
                        Value("n/a", None, notes=[t.note(n) for n in notes_of(runs, c)] or [t.note("not measured")])
                    )
            t.rows.append(row)
        out.append(t)
    return out


def cv(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def stability(ok: pl.DataFrame) -> Table:
    t = Table(
        "stability",
        "Stability and provenance per configuration",
        [
            "Model",
            "Batch",
            "Configuration",
            "Runs",
            "Inference time (s)",
            "CV time",
            "CV total energy",
            "Warning",
            "Hosts",
            "GPUs / driver",
            "Image / environment",
        ],
    )
    for (model, size, batch, conf), runs in _groups(ok, ["model", "model_size", "batch_size", "configuration"]):
        times = [v for v in runs["window_s"].to_list() if v is not None]
        energies = [v for v in runs["total_energy"].to_list() if v is not None]
        cv_t, cv_e = cv(times), cv(energies)
        warn = []
        if runs.height < 3:
            warn.append(f"only {runs.height} repetition{'s' if runs.height != 1 else ''}")
        for name, c in (("time", cv_t), ("energy", cv_e)):
            if c is not None and c > CV_WARNING:
                warn.append(f"{name} CV {c:.1%} > {CV_WARNING:.0%}")

        def pct(c: float | None, what: str, energies: list[float] = energies, runs: pl.DataFrame = runs) -> Value:
            if c is not None:
                return Value(f"{c:.1%}", c)
            if what == "energy" and not energies:
                return Value("n/a", None, notes=[t.note(n) for n in notes_of(runs, "total_energy")])
            return Value("n/a", None, notes=[t.note("fewer than 2 measured repetitions")])

        hosts = sorted({f"{h} ({fp})" for h, fp in runs.select("host", "fingerprint_id").iter_rows()})
        gpus = sorted({f"{g} / {d}" for g, d in runs.select("gpu_names", "driver").iter_rows()})
        envs = sorted({e for e in runs["environment"].to_list()})
        t.rows.append(
            [
                text_value(model_label(model, size)),
                Value(str(batch), batch),
                text_value(conf),
                Value(str(runs.height), runs.height),
                num_value(statistics.fmean(times) if times else None),
                pct(cv_t, "time"),
                pct(cv_e, "energy"),
                text_value("; ".join(warn) or "-"),
                text_value(", ".join(hosts)),
                text_value(", ".join(gpus)),
                text_value(" | ".join(envs)),
            ]
        )
    t.remarks.append(
        f"CV: coefficient of variation (sample standard deviation / mean); warning above {CV_WARNING:.0%}."
    )
    return t


def failures(failed: pl.DataFrame, ok: pl.DataFrame) -> Table:
    t = Table("failures", "Failed runs", ["Run", "Cell", "Configuration", "Model", "Batch", "Reason", "Later ok"])
    ok_cells = set(ok["cell_id"].to_list())
    for r in failed.sort("run_id").iter_rows(named=True):
        t.rows.append(
            [
                text_value(r["run_id"]),
                text_value(r["cell_id"] or "-"),
                text_value(r["configuration"] or "-"),
                text_value(model_label(r["model"], r["model_size"])),
                Value(str(r["batch_size"]), r["batch_size"]),
                text_value(r["failure_reason"] or "?"),
                text_value("yes" if r["cell_id"] in ok_cells else "no"),
            ]
        )
    return t
