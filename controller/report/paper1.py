"""The first paper's tables rebuilt from our runs (means over repetitions, as the paper).

Which run goes where, as in the paper:
- Table 1: native frameworks (torch eager, TensorFlow/Keras, MXNet) and their ONNX conversions on
  ONNX Runtime's default execution provider: CUDA on a GPU (the paper); the CPU provider on a CPU
  (this suite's CPU analogue), never mixed in one group.
- Table 2: accuracy of the native models.
- Table 3: one converted model on several execution providers: CUDA vs TensorRT (the paper), and
  the native TensorRT runtime; on a CPU, the CPU provider vs OpenVINO's (the analogue). TensorRT
  appears here only.
- Beyond the paper: TorchScript, torch.compile, the OpenVINO runtime: their own table, their own
  bold, never competing with the paper's rows.
"""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from controller.report.cells import (
    bounded_columns,
    energy_remarks,
    groups,
    mark_best,
    measured_columns,
    metric_value,
    model_label,
    with_carbon,
)
from controller.report.columns import header
from controller.report.kinds import EnergyKind
from controller.report.table import Table, Value, text_value
from controller.report.work import Work

TABLE1_METRICS = (
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_power_w",
    "gpu_energy",
    "cpu_energy",
    "dram_energy",
    "total_energy",
    "window_s",
    "cpu_percent",
    "ram_peak_mib",
)
# Duration mode: beside the inference time derived for a fixed work, what the window measured.
DURATION_METRICS = ("time_per_sample_ms", "time_per_batch_ms", "throughput_sps")
NATIVE_ENGINES = ("torch", "tensorflow", "mxnet")
GPU_PROVIDERS = ("cuda", "tensorrt")
PAPER_TOTAL = "GPU + CPU energy, each net of idle"


def _device() -> pl.Expr:
    return pl.when(pl.col("provider").is_in(GPU_PROVIDERS)).then(pl.lit("GPU")).otherwise(pl.lit("CPU"))


def table1_runs(ok: pl.DataFrame) -> pl.DataFrame:
    """Native frameworks, and ONNX Runtime on its default provider (CUDA, or CPU on a CPU)."""
    native = pl.col("engine").is_in(NATIVE_ENGINES)
    ort_default = (pl.col("engine") == "onnxruntime") & pl.col("provider").is_in(("cuda", "cpu"))
    return ok.filter(native | ort_default).with_columns(_device().alias("device"))


def table3_runs(ok: pl.DataFrame) -> pl.DataFrame:
    return ok.filter(pl.col("engine").is_in(("onnxruntime", "tensorrt"))).with_columns(_device().alias("device"))


def beyond_runs(ok: pl.DataFrame) -> pl.DataFrame:
    ids = set(table1_runs(ok)["run_id"].to_list()) | set(table3_runs(ok)["run_id"].to_list())
    return ok.filter(~pl.col("run_id").is_in(list(ids))).with_columns(_device().alias("device"))


def table_metrics(runs: pl.DataFrame, kind: EnergyKind) -> list[str]:
    """Table 1's columns; in duration mode the time per sample, per batch and throughput after the
    inference time (the window itself is no result there)."""
    wanted = list(with_carbon(TABLE1_METRICS, kind))
    if runs.height and runs["duration_mode"].any():
        at = wanted.index("window_s") + 1
        wanted[at:at] = DURATION_METRICS
    return measured_columns(runs, wanted)


def _metric_table(
    key: str, title: str, first: list[str], runs: pl.DataFrame, kind: EnergyKind
) -> tuple[Table, list[str]]:
    metrics = table_metrics(runs, kind)
    t = Table(key, title, [*first, *(header(c) for c in metrics)])
    t.bounded = bounded_columns(len(first), metrics)
    return t, metrics


def time_remarks(runs: pl.DataFrame, work: Work) -> list[str]:
    """What the inference time is: the measured window, or (duration mode) derived for a fixed work."""
    if not (runs.height and runs["duration_mode"].any()) or work.samples is None:
        return ["Inference time is the harness's measured window."]
    return [
        f"Inference time of a duration-mode run (footnoted) is for a fixed work of {work.samples:,} samples "
        f"({work.how}): {work.samples:,} × its measured time per sample; its energies alike, {work.samples:,} × "
        "energy per sample. Time per sample and per batch are the window over the samples and batches actually "
        "done; throughput is samples done over the window. A sample-mode run's inference time is its measured "
        "window."
    ]


def _row(
    t: Table, metrics: list[str], runs: pl.DataFrame, key: tuple[Any, ...], what: str, runtime: str
) -> list[Value]:
    """One row of a paper-1 table: ``key`` = (model, size, batch, device), what ran (a framework or a
    conversion) on which runtime, the number of runs, then each metric's mean."""
    model, size, batch, device = key
    row = [
        text_value(model_label(model, size)),
        Value(str(batch), batch),
        text_value(device),
        text_value(what),
        text_value(runtime),
        Value(str(runs.height), runs.height),
    ]
    return row + [metric_value(t, runs, c) for c in metrics]


def _runtime(r0: dict[str, Any]) -> str:
    return f"{r0['engine']} / {r0['provider']}"


def table1(ok: pl.DataFrame, kind: EnergyKind, work: Work | None = None) -> Table:
    runs1 = table1_runs(ok)
    t, metrics = _metric_table(
        "table1",
        "Table 1: native frameworks and their ONNX conversions on ONNX Runtime's default execution provider "
        "(means over repetitions)",
        ["Model", "Batch", "Device", "Framework", "Runtime / provider", "Runs"],
        runs1,
        kind,
    )
    first = len(t.columns) - len(metrics)
    for (model, size, batch, device), group in groups(runs1, ["model", "model_size", "batch_size", "device"]):
        t.group_starts.add(len(t.rows))
        configs = groups(group, ["configuration"])
        configs.sort(key=lambda kg: (bool(kg[1]["converted"][0]), str(kg[1]["framework"][0]), kg[0]))
        kinds: dict[bool, list[int]] = {False: [], True: []}
        for _, runs in configs:
            r0 = runs.row(0, named=True)
            row = _row(t, metrics, runs, (model, size, batch, device), r0["framework"], _runtime(r0))
            kinds[bool(r0["converted"])].append(len(t.rows))
            t.rows.append(row)
        for rows in kinds.values():
            mark_best(t, rows, [(first + i, c) for i, c in enumerate(metrics)])
    if not t.rows:
        t.remarks.append("No run of these records is a native framework or ONNX Runtime on its default provider.")
    t.remarks.append(
        "Best (lowest) energy and time are bold within each model × batch size × device, among native and among "
        "converted runs separately, as in the paper. GPU rows are the paper's Table 1 (ONNX Runtime on the CUDA "
        "execution provider); CPU rows are this suite's CPU analogue. TensorRT is in Table 3 only; TorchScript, "
        "torch.compile and OpenVINO are in their own table."
    )
    t.remarks += time_remarks(runs1, work or Work(None))
    t.remarks += energy_remarks(runs1, kind, PAPER_TOTAL)
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
    for (framework,), runs in groups(frame, ["framework"]):
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
            note = t.note(f"n/a: {reason} (accuracy needs a labelled dataset and trained weights)")
            row.append(Value("n/a", None, notes=[note]))
        t.rows.append(row)
    t.remarks.append("Accuracy (%) of the original models only, as the paper: conversion does not change it.")
    t.remarks += converted_accuracy(ok)
    return t


def converted_accuracy(ok: pl.DataFrame) -> list[str]:
    """Converted models against their source's accuracy: the same, or the difference (in points)."""
    out = []
    for (model, size, dataset), group in groups(ok, ["model", "model_size", "dataset"]):
        mean = {
            fw: statistics.fmean(acc) * 100
            for (fw,), runs in groups(group, ["framework"])
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


def provider_label(engine: str, provider: str) -> str:
    return "TensorRT runtime (native)" if engine == "tensorrt" else provider


def table3(ok: pl.DataFrame, kind: EnergyKind, work: Work | None = None) -> Table:
    runs3 = table3_runs(ok)
    t, metrics = _metric_table(
        "table3",
        "Table 3: execution providers compared on the same converted model (means over repetitions)",
        ["Model", "Batch", "Device", "Conversion", "Execution provider", "Runs"],
        runs3,
        kind,
    )
    first = len(t.columns) - len(metrics)
    keys = ["model", "model_size", "batch_size", "device", "conversion"]
    counts = []
    for (model, size, batch, device, conversion), group in groups(runs3, keys):
        start = len(t.rows)
        t.group_starts.add(start)
        for (engine, provider), runs in groups(group, ["engine", "provider"]):
            key = (model, size, batch, device)
            row = _row(t, metrics, runs, key, conversion or "-", provider_label(engine, provider))
            t.rows.append(row)
        counts.append(len(t.rows) - start)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(metrics)])
    if not counts:
        t.remarks.append("No ONNX Runtime or TensorRT runs in these records: nothing to compare.")
    elif max(counts) < 2:
        t.remarks.append(
            "Each converted model ran on one execution provider only here; Table 3 compares providers (CUDA vs "
            "TensorRT on a GPU, CPU vs OpenVINO on a CPU) once runs of several exist."
        )
    t.remarks.append(
        "GPU groups are the paper's Table 3 (CUDA vs TensorRT execution providers; the native TensorRT runtime "
        "beside them); CPU groups (CPU vs OpenVINO execution provider) are this suite's CPU analogue. Best values "
        "are bold within each group."
    )
    t.remarks += time_remarks(runs3, work or Work(None))
    t.remarks += energy_remarks(runs3, kind, PAPER_TOTAL)
    return t


def beyond(ok: pl.DataFrame, kind: EnergyKind, work: Work | None = None) -> Table | None:
    """TorchScript, torch.compile, OpenVINO runtime: measured, shown, never in the paper's tables."""
    runs_b = beyond_runs(ok.filter(~pl.col("serving")))
    if runs_b.height == 0:
        return None
    t, metrics = _metric_table(
        "beyond",
        "Beyond the paper: TorchScript, torch.compile, OpenVINO runtime (means over repetitions)",
        ["Model", "Batch", "Device", "Framework", "Runtime / provider", "Runs"],
        runs_b,
        kind,
    )
    first = len(t.columns) - len(metrics)
    for (model, size, batch, device), group in groups(runs_b, ["model", "model_size", "batch_size", "device"]):
        start = len(t.rows)
        t.group_starts.add(start)
        for _, runs in groups(group, ["configuration"]):
            r0 = runs.row(0, named=True)
            row = _row(t, metrics, runs, (model, size, batch, device), r0["framework"], _runtime(r0))
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(metrics)])
    t.remarks.append(
        "Runtimes the first paper did not study. Bold marks the best among these rows only: they never compete "
        "with Table 1's rows for the paper's bold (compare them with Table 1 by eye, same model, batch and device)."
    )
    t.remarks += time_remarks(runs_b, work or Work(None))
    t.remarks += energy_remarks(runs_b, kind, PAPER_TOTAL)
    return t
