"""The papers' tables rebuilt from our runs, and the stability/provenance table.

Table 1: per model × batch × framework (native, then converted), means over repetitions.
Table 2: accuracy of the native models. Table 3: ONNX Runtime execution providers compared.
Tables 4-5 (second paper): median energy and time per serving configuration and model-size
category, CPU and CUDA execution providers; and a per-model table of the serving runs.
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


def model_label(model: str, size: str | None) -> str:
    return model if size in ("full", "n/a", None) else f"{model} ({size})"


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
    t.remarks += converted_accuracy(ok)
    return t


def converted_accuracy(ok: pl.DataFrame) -> list[str]:
    """Converted models against their source's accuracy: the same, or the difference (in points)."""
    out = []
    for (model, size, dataset), group in _groups(ok, ["model", "model_size", "dataset"]):
        mean = {
            fw: statistics.fmean(acc) * 100
            for (fw,), runs in _groups(group, ["framework"])
            if (acc := [a for a in runs["accuracy"].to_list() if a is not None])
        }
        for fw, value in mean.items():
            source = {"torch2": "torch", "tf2": "tensorflow", "mx2": "mxnet"}.get(fw.split("2", 1)[0] + "2")
            if "2" not in fw or source not in mean:
                continue
            diff = value - mean[source]
            same = "the same as" if abs(diff) < 5e-3 else f"{diff:+.2f} points from"
            out.append(
                f"{model_label(model, size)} on {dataset}: {fw} {value:.2f} %, {same} {source} ({mean[source]:.2f} %)."
            )
    return out


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


# The second paper's names of the serving configurations: <runtime engine, execution provider>.
ENGINE_SHORT = {"torch": "TORCH", "onnxruntime": "ONNX", "openvino": "OV", "torchscript": "JIT"}
GPU_PROVIDERS = ("cuda", "tensorrt")
TABLE4_METRICS = ("total_energy", "window_s")
TABLE5_METRICS = ("cpu_energy", "gpu_energy", "total_energy", "window_s")
SERVING_TABLE_METRICS = (
    "total_energy",
    "energy_per_request",
    "energy_per_token",
    "window_s",
    "time_per_request_s",
    "tokens_per_s",
    "cpu_percent",
    "ram_peak_mib",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
)
SERVING_HEADERS = {"total_energy": "Global energy (J)", "window_s": "Execution time (s)"}


def serving_label(engine: str | None, provider: str | None) -> str:
    """<ONNX, CPU>, as the paper names a serving configuration."""
    return f"<{ENGINE_SHORT.get(engine or '?', (engine or '?').upper())}, {(provider or '?').upper()}>"


def category_of(model_size: str | None) -> str:
    """'1', '2', '3' for the paper's size categories; 'uncategorised' for other models."""
    size = model_size or ""
    return size.removeprefix("category-") if size.startswith("category-") else "uncategorised"


def _category_order(category: str) -> tuple[int, str]:
    return (0, category) if category.isdigit() else (1, category)


def median_value(t: Table, frame: pl.DataFrame, column: str) -> Value:
    """Median over the runs; n/a with the recorded reason when no run measured it, never 0."""
    values = [v for v in frame[column].to_list() if v is not None]
    notes = [t.note(n) for n in notes_of(frame, column)]
    if not values:
        return Value("n/a", None, notes=notes or [t.note("not measured (no reason recorded)")])
    v = num_value(statistics.median(values))
    if len(values) < frame.height:
        v.notes.append(t.note(f"measured in {len(values)} of {frame.height} runs; the median covers those"))
    v.notes += [n for n in notes if n not in v.notes]
    return v


def _configuration_labels(frame: pl.DataFrame) -> dict[str, str]:
    """configuration -> <ENGINE, PROVIDER>, with the configuration's name where two share a label."""
    pairs = {
        conf: serving_label(engine, provider)
        for conf, engine, provider in frame.select("configuration", "engine", "provider").unique().iter_rows()
    }
    labels = list(pairs.values())
    return {c: (lab if labels.count(lab) == 1 else f"{lab} {c}") for c, lab in pairs.items()}


def _serving_table(key: str, title: str, part: pl.DataFrame, metrics: tuple[str, ...]) -> Table:
    """Table 4 or 5: per size category × serving configuration, the median over every run of the
    category's models; then the mean of the category medians per configuration (the paper's last
    section)."""
    headers = [SERVING_HEADERS.get(c, header(c)) for c in metrics]
    t = Table(key, title, ["Model size category", "Serving configuration", "Models", "Runs", *headers])
    first = 4
    labels = _configuration_labels(part)
    by_conf: dict[str, dict[str, list[float]]] = {}
    categories = sorted({category_of(s) for s in part["model_size"].to_list()}, key=_category_order)
    for category in categories:
        group = part.filter(pl.col("model_size").map_elements(category_of, return_dtype=pl.Utf8) == category)
        start = len(t.rows)
        t.group_starts.add(start)
        for (conf,), runs in sorted(_groups(group, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
            models = sorted(set(runs["model"].to_list()))
            row = [
                text_value(category),
                text_value(labels[conf]),
                Value(str(len(models)), len(models)),
                Value(str(runs.height), runs.height),
            ]
            for c in metrics:
                v = median_value(t, runs, c)
                row.append(v)
                if isinstance(v.raw, (int, float)):
                    by_conf.setdefault(conf, {}).setdefault(c, []).append(float(v.raw))
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(metrics)])
    if len(categories) > 1:
        start = len(t.rows)
        t.group_starts.add(start)
        for (conf,), runs in sorted(_groups(part, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
            cats = sorted({category_of(s) for s in runs["model_size"].to_list()}, key=_category_order)
            row = [
                text_value(",".join(cats)),
                text_value(labels[conf]),
                Value(str(len(set(runs["model"].to_list()))), None),
                Value(str(runs.height), runs.height),
            ]
            for c in metrics:
                vals = by_conf.get(conf, {}).get(c, [])
                if vals:
                    v = num_value(statistics.fmean(vals))
                    if len(vals) < len(cats):
                        v.notes.append(t.note(f"mean of the {len(vals)} of {len(cats)} categories that measured it"))
                    v.notes += [t.note(n) for n in notes_of(runs, c) if t.note(n) not in v.notes]
                    row.append(v)
                else:
                    row.append(median_value(t, runs, c))  # n/a with the reasons
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(metrics)])
    prompts = sorted({p for p in part["prompts"].to_list() if p is not None})
    covers = sorted({c for c in part["total_energy_covers"].to_list() if c})
    t.remarks.append(
        "Medians over every run (every repetition of every model) of the size category, per serving "
        "configuration — the paper's aggregated median; the last section is the mean of the category medians "
        "per configuration, as in the paper. Best (lowest) values are bold within each section."
    )
    t.remarks.append(
        "Execution time: the measured window of a run, the client replaying all of its prompts "
        f"({', '.join(map(str, prompts)) or '?'} per run here; the paper: 164). Global energy: the energy "
        f"measured in that window over the domains {' / '.join(covers) if covers else 'that could be measured'}"
        " (the paper: CPU + GPU)."
    )
    return t


def tables45(ok: pl.DataFrame) -> list[Table] | str:
    """The second paper's Tables 4 (CPU execution provider) and 5 (CUDA), by model-size category;
    or why there are none."""
    serving = ok.filter(pl.col("serving"))
    if serving.height == 0:
        return (
            "Tables 4-5 (second paper: energy and time per serving configuration and model-size category) "
            "need serving runs; these records have none (run suite/campaigns/code-slm-serving.toml, or its "
            "CPU variant code-slm-serving-cpu.toml)."
        )
    cpu = serving.filter(~pl.col("provider").is_in(GPU_PROVIDERS))
    gpu = serving.filter(pl.col("provider").is_in(GPU_PROVIDERS))
    out: list[Table] = []
    if cpu.height:
        out.append(
            _serving_table(
                "table4",
                "Table 4: CPU execution provider — median energy and execution time by model size category",
                cpu,
                TABLE4_METRICS,
            )
        )
    if gpu.height:
        out.append(
            _serving_table(
                "table5",
                "Table 5: CUDA execution provider — median CPU, GPU and global energy and execution time by "
                "model size category",
                gpu,
                TABLE5_METRICS,
            )
        )
    missing = "Table 5 (CUDA execution provider)" if not gpu.height else "Table 4 (CPU execution provider)"
    if not (cpu.height and gpu.height):
        out[0].remarks.append(f"{missing}: no serving run of these records used it.")
    return out


def serving_models(ok: pl.DataFrame) -> Table:
    """Every serving model × configuration: medians over repetitions, per request and per token."""
    t = Table(
        "serving",
        "Serving runs per model and configuration (medians over repetitions)",
        ["Model", "Category", "Serving configuration", "Runs", *(header(c) for c in SERVING_TABLE_METRICS)],
    )
    first = 4
    serving = ok.filter(pl.col("serving"))
    labels = _configuration_labels(serving) if serving.height else {}
    for (model, size), group in _groups(serving, ["model", "model_size"]):
        start = len(t.rows)
        t.group_starts.add(start)
        for (conf,), runs in sorted(_groups(group, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
            row = [
                text_value(model),
                text_value(category_of(size)),
                text_value(labels[conf]),
                Value(str(runs.height), runs.height),
            ]
            row += [median_value(t, runs, c) for c in SERVING_TABLE_METRICS]
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(SERVING_TABLE_METRICS)])
    t.remarks.append(
        "Energy per request and per generated token divide the run's energy (the same as Global energy) by "
        "its requests and by the tokens it generated; time per request is the client's mean latency."
    )
    return t


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
