"""A campaign's records as one Polars DataFrame for the report: the store's columns, plus what the
report needs from each record (configuration, net energies, GPU memory utilisation, identity,
why each unmeasured metric is unmeasured)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from controller.errors import UserError
from controller.store import RecordError, load_campaign, load_record

# Metrics of the report: column, label, unit, which direction is better (None: no "best").
# Energies are net of idle where an idle baseline was subtracted, else gross (a footnote says so).


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    unit: str
    better: str | None  # "low", "high" or None
    record_name: str | None  # the name in record["measurements"]["metrics"], for its reason
    scale: float = 1.0  # shown = value * scale


METRICS: dict[str, Metric] = {
    m.column: m
    for m in (
        Metric("gpu_util_percent", "GPU util. cores", "%", None, "gpu_util_percent"),
        Metric("gpu_mem_util_percent", "GPU util. memory", "%", None, "gpu_mem_util_percent"),
        Metric("gpu_mem_used_percent", "GPU used memory", "%", None, "gpu_mem_used_percent"),
        Metric("gpu_power_w", "GPU power", "W", None, "gpu_power_w"),
        Metric("gpu_energy", "GPU energy", "J", "low", "gpu_energy_j"),
        Metric("cpu_energy", "CPU energy", "J", "low", "cpu_energy_j"),
        Metric("total_energy", "Total energy", "J", "low", "total_energy_j"),
        Metric("window_s", "Inference time", "s", "low", None),
        Metric("throughput_sps", "Throughput", "samples/s", "high", None),
        Metric("latency_ms_p50", "Latency p50", "ms", "low", None),
        Metric("cpu_percent", "CPU", "% of a core", None, "cpu_percent"),
        Metric("ram_peak_mib", "RAM peak", "MiB", None, "ram_peak_bytes"),
        # Serving runs (the second paper): per request and per generated token.
        Metric("energy_per_request", "Energy per request", "J", "low", "total_energy_j"),
        Metric("energy_per_token", "Energy per token", "J", "low", "total_energy_j"),
        Metric("time_per_request_s", "Time per request", "s", "low", None),
        Metric("tokens_per_s", "Throughput", "tokens/s", "high", None),
    )
}
SERVING_METRICS = ("energy_per_request", "energy_per_token", "time_per_request_s", "tokens_per_s")
ENERGIES = ("gpu_energy", "cpu_energy", "total_energy")
IDENTITY = ("fingerprint_id", "gpu_identity", "environment")


def _energy(metric: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """(net if an idle baseline was subtracted else gross, 'gross' when it is gross)."""
    if not metric or not metric.get("available") or metric.get("value") is None:
        return None, None
    if metric.get("net_j") is not None:
        return float(metric["net_j"]), None
    return float(metric["value"]), "gross"


def _short_reason(name: str, reason: str | None) -> str:
    reason = reason or "not measured (no reason recorded)"
    if name == "total_energy_j" and reason.startswith("no energy domain could be measured"):
        return "no energy domain could be measured (see the CPU and GPU energy notes)"
    return reason


def framework_of(record: dict[str, Any]) -> str:
    """torch, tensorflow, ... for native runs; the conversion (torch2onnx, ...) for converted ones;
    a converted model on another runtime than ONNX Runtime names it (torch2onnx→openvino)."""
    conversion = record.get("conversion")
    engine = record.get("engine") or "?"
    if not conversion:
        return engine
    target = conversion.split("2", 1)[1]
    runtime = {"onnx": "onnxruntime"}.get(target, target)
    return conversion if engine == runtime else f"{conversion}→{engine}"


def extra_row(record: dict[str, Any]) -> dict[str, Any]:
    cell = record.get("cell") or {}
    runner = record.get("runner") or {}
    result = record.get("result") or {}
    host = record.get("host") or {}
    gpus = record.get("gpus") or {}
    measurements = record.get("measurements") or {}
    metrics = measurements.get("metrics") or {}
    row: dict[str, Any] = {"run_id": record["run_id"]}
    row["cell_id"] = cell.get("id")
    row["repetition"] = cell.get("repetition")
    framework = framework_of(record)
    row["framework"] = framework
    row["converted"] = bool(record.get("conversion"))
    row["configuration"] = cell.get("configuration") or f"{record.get('image')}:{framework}"
    row["conversion"] = record.get("conversion")
    row["dataset"] = (record.get("spec") or {}).get("dataset")
    # Accuracy is computed by the controller (controller/accuracy.py); with random weights it is
    # recorded but meaningless, so the tables leave it out.
    accuracy = (record.get("metrics") or {}).get("accuracy") or {}
    acc = accuracy.get("value") if accuracy.get("meaningful") else None
    row["accuracy"] = float(acc) if isinstance(acc, (int, float)) else None
    serving = record.get("mode") == "serving"
    row["serving"] = serving
    run_metrics = record.get("metrics") or {}
    row["requests_ok"] = run_metrics.get("requests_ok") if serving else None
    row["new_tokens"] = run_metrics.get("new_tokens_total") if serving else None
    row["prompts"] = ((record.get("serving") or {}).get("prompts") or {}).get("count") if serving else None
    row["time_per_request_s"] = run_metrics.get("time_per_request_s") if serving else None
    row["tokens_per_s"] = run_metrics.get("tokens_per_s") if serving else None
    row["trace_path"] = record.get("trace_path")
    row["elapsed_s"] = record.get("elapsed_s")
    row["gpu_mem_util_percent"] = (metrics.get("gpu_mem_util_percent") or {}).get("value")
    row["gpu_mem_used_percent"] = (metrics.get("gpu_mem_used_percent") or {}).get("value")
    ram = (metrics.get("ram_peak_bytes") or {}).get("value")
    row["ram_peak_mib"] = None if ram is None else float(ram) / 2**20
    notes: dict[str, str] = {}
    for col, name in (
        ("gpu_energy", "gpu_energy_j"),
        ("cpu_energy", "cpu_energy_j"),
        ("total_energy", "total_energy_j"),
    ):
        value, kind = _energy(metrics.get(name))
        row[col] = value
        if kind == "gross" and measurements:
            status = (measurements.get("baseline") or {}).get("status", "missing")
            notes[col] = f"gross energy: no idle baseline subtracted (baseline {status})"
    # Per request and per token from the same total as the tables (net where a baseline was
    # subtracted), so that the columns agree with each other.
    total = row["total_energy"]
    for col, count in (("energy_per_request", row["requests_ok"]), ("energy_per_token", row["new_tokens"])):
        row[col] = total / count if total is not None and count else None
        if serving and "total_energy" in notes:
            notes[col] = notes["total_energy"]
    for col, metric in METRICS.items():
        if metric.record_name is None:
            continue
        m = metrics.get(metric.record_name)
        if not measurements:
            notes.setdefault(col, "the record has no measurements (the run measured no window)")
        elif not m or not m.get("available"):
            notes.setdefault(col, _short_reason(metric.record_name, (m or {}).get("reason")))
    row["notes"] = json.dumps(notes)
    # Identity: runs that differ in any of these are not mixed in one table without --mix.
    row["fingerprint_id"] = host.get("fingerprint_id")
    devices = gpus.get("devices") or []
    row["gpu_identity"] = (
        "; ".join(f"{d.get('name')} {d.get('uuid')} driver {d.get('driver')}" for d in devices) or "no GPU"
    )
    if runner.get("kind") == "docker":
        env = f"{record.get('image')} {runner.get('image_id')}"
    else:
        versions = ",".join(f"{k}=={v}" for k, v in sorted((result.get("versions") or {}).items()))
        env = f"{record.get('image')} local:{host.get('python')}:{versions}"
    row["environment"] = env
    row["versions"] = json.dumps(result.get("versions") or {}, sort_keys=True)
    row["gpu_names"] = ", ".join(sorted({str(d.get("name")) for d in devices})) or "-"
    row["driver"] = ", ".join(sorted({str(d.get("driver")) for d in devices})) or "-"
    return row


EXTRA_SCHEMA: dict[str, Any] = {
    "run_id": pl.Utf8,
    "cell_id": pl.Utf8,
    "repetition": pl.Int64,
    "framework": pl.Utf8,
    "converted": pl.Boolean,
    "configuration": pl.Utf8,
    "conversion": pl.Utf8,
    "dataset": pl.Utf8,
    "accuracy": pl.Float64,
    "serving": pl.Boolean,
    "requests_ok": pl.Int64,
    "new_tokens": pl.Int64,
    "prompts": pl.Int64,
    "time_per_request_s": pl.Float64,
    "tokens_per_s": pl.Float64,
    "energy_per_request": pl.Float64,
    "energy_per_token": pl.Float64,
    "trace_path": pl.Utf8,
    "elapsed_s": pl.Float64,
    "gpu_mem_util_percent": pl.Float64,
    "gpu_mem_used_percent": pl.Float64,
    "ram_peak_mib": pl.Float64,
    "gpu_energy": pl.Float64,
    "cpu_energy": pl.Float64,
    "total_energy": pl.Float64,
    "notes": pl.Utf8,
    "fingerprint_id": pl.Utf8,
    "gpu_identity": pl.Utf8,
    "environment": pl.Utf8,
    "versions": pl.Utf8,
    "gpu_names": pl.Utf8,
    "driver": pl.Utf8,
}


@dataclass
class Runs:
    """All records of a folder: ``ok`` (the runs the tables use: per cell, its latest ok run) and
    ``failed`` (failed runs, with reasons), plus runs superseded by a later ok run of their cell."""

    folder: Path
    all: pl.DataFrame
    ok: pl.DataFrame
    failed: pl.DataFrame


def load_runs(folder: Path) -> Runs:
    folder = Path(folder)
    try:
        base = load_campaign(folder)
    except RecordError as exc:
        raise UserError(str(exc)) from None
    if base.height == 0:
        raise UserError(f"{folder} holds no run records (*.json); run a campaign into it first")
    rows = []
    for path in base["path"]:
        try:
            rows.append(extra_row(load_record(Path(path))))
        except RecordError as exc:
            raise UserError(str(exc)) from None
    extra = pl.DataFrame(rows, schema=EXTRA_SCHEMA)
    df = base.join(extra, on="run_id", how="left")
    df = df.with_columns(pl.col("cell_id").fill_null(pl.col("run_id")))
    # A serving run sends one prompt per request: batch size 1, as its metrics count it.
    df = df.with_columns(
        pl.when(pl.col("serving")).then(pl.col("batch_size").fill_null(1)).otherwise(pl.col("batch_size"))
    )
    ok = df.filter(pl.col("status") == "ok")
    # A cell run ok twice (a resumed campaign never does; copied records might): keep the latest.
    ok = ok.sort("run_id").unique(subset=["cell_id"], keep="last", maintain_order=True)
    failed = df.filter(pl.col("status") != "ok")
    return Runs(folder, df, ok, failed)


def identity_problems(ok: pl.DataFrame) -> list[str]:
    """Why these runs should not share a table: differing host, GPU/driver, or environment per image."""
    problems = []
    hosts = ok.select("fingerprint_id", "host", "cpu_model").unique()
    if hosts.height > 1:
        shown = "; ".join(
            f"{r['host']} ({r['cpu_model']}, fingerprint {r['fingerprint_id']})" for r in hosts.to_dicts()
        )
        problems.append(f"{hosts.height} different hosts: {shown}")
    gpus = ok["gpu_identity"].unique().to_list()
    if len(gpus) > 1:
        problems.append(f"{len(gpus)} different GPU/driver sets: {' | '.join(str(g) for g in gpus)}")
    for image, group in ok.group_by("image"):
        envs = sorted(set(group["environment"].to_list()))
        if any(_environments_differ(a, b) for i, a in enumerate(envs) for b in envs[i + 1 :]):
            problems.append(f"image {image[0]} in {len(envs)} different builds/environments: {' | '.join(envs)}")
    return problems


def _environments_differ(a: str, b: str) -> bool:
    """Two runs' environments of one image differ: other Docker image ids; or, run locally, another
    Python or another version of a package both report (engines of one image report different
    package sets: torch alone for TorchScript, torch and transformers for serving on torch)."""
    if not (a.split(" ", 1)[-1].startswith("local:") and b.split(" ", 1)[-1].startswith("local:")):
        return a != b

    def parse(env: str) -> tuple[str, dict[str, str]]:
        _, python, versions = env.split(" ", 1)[1].split(":", 2)
        pairs = (item.split("==", 1) for item in versions.split(",") if "==" in item)
        return python, dict(pairs)

    (py_a, va), (py_b, vb) = parse(a), parse(b)
    return py_a != py_b or any(va[k] != vb[k] for k in va.keys() & vb.keys())


def notes_of(frame: pl.DataFrame, column: str) -> list[str]:
    """The distinct reasons (or gross-energy notes) recorded for ``column`` in these runs."""
    out: list[str] = []
    for text in frame["notes"].to_list():
        note = json.loads(text or "{}").get(column)
        if note and note not in out:
            out.append(note)
    return out
