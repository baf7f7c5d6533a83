"""Loading run records back: a campaign directory as a Polars DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from controller.record import RecordError, load_record

COLUMNS: dict[str, Any] = {
    "run_id": pl.Utf8,
    "campaign": pl.Utf8,
    "status": pl.Utf8,
    "image": pl.Utf8,
    "engine": pl.Utf8,
    "provider": pl.Utf8,
    "model": pl.Utf8,
    "model_sha256": pl.Utf8,
    "model_size": pl.Utf8,
    "weights": pl.Utf8,
    "batch_size": pl.Int64,
    "runner": pl.Utf8,
    "image_id": pl.Utf8,
    "samples": pl.Int64,
    "window_s": pl.Float64,
    "throughput_sps": pl.Float64,
    "latency_ms_p50": pl.Float64,
    "latency_ms_p90": pl.Float64,
    "latency_ms_p99": pl.Float64,
    "load_s": pl.Float64,
    "compile_s": pl.Float64,
    "cpu_energy_j": pl.Float64,
    "cpu_energy_net_j": pl.Float64,
    "dram_energy_j": pl.Float64,
    "gpu_energy_j": pl.Float64,
    "gpu_energy_net_j": pl.Float64,
    "total_energy_j": pl.Float64,
    "total_energy_covers": pl.Utf8,
    "gpu_power_w": pl.Float64,
    "gpu_util_percent": pl.Float64,
    "cpu_percent": pl.Float64,
    "ram_peak_bytes": pl.Float64,
    "baseline_status": pl.Utf8,
    "failure_reason": pl.Utf8,
    "host": pl.Utf8,
    "cpu_model": pl.Utf8,
    "path": pl.Utf8,
}


def measured(record: dict[str, Any]) -> dict[str, Any]:
    """Meter figures as columns; an unavailable one is null (its reason stays in the record)."""
    measurements = record.get("measurements") or {}
    found = measurements.get("metrics") or {}
    value = lambda name, key="value": (found.get(name) or {}).get(key)  # noqa: E731
    return {
        "cpu_energy_j": value("cpu_energy_j"),
        "cpu_energy_net_j": value("cpu_energy_j", "net_j"),
        "dram_energy_j": value("dram_energy_j"),
        "gpu_energy_j": value("gpu_energy_j"),
        "gpu_energy_net_j": value("gpu_energy_j", "net_j"),
        "total_energy_j": value("total_energy_j"),
        "total_energy_covers": "+".join(value("total_energy_j", "covers") or []) or None,
        "gpu_power_w": value("gpu_power_w"),
        "gpu_util_percent": value("gpu_util_percent"),
        "cpu_percent": value("cpu_percent"),
        "ram_peak_bytes": value("ram_peak_bytes"),
        "baseline_status": (measurements.get("baseline") or {}).get("status"),
    }


def flatten(record: dict[str, Any], path: Path) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    spec = record.get("spec") or {}
    runner = record.get("runner") or {}
    host = record.get("host") or {}
    return {
        "run_id": record["run_id"],
        "campaign": record.get("campaign"),
        "status": record.get("status"),
        "image": record.get("image"),
        "engine": record.get("engine"),
        "provider": record.get("provider"),
        "model": record.get("model"),
        "model_sha256": (record.get("model_source") or {}).get("sha256"),
        "model_size": record.get("model_size"),
        "weights": record.get("weights"),
        "batch_size": spec.get("batch_size"),
        "runner": runner.get("kind"),
        "image_id": runner.get("image_id"),
        "samples": metrics.get("samples"),
        "window_s": metrics.get("window_s"),
        "throughput_sps": metrics.get("throughput_sps"),
        "latency_ms_p50": metrics.get("latency_ms_p50"),
        "latency_ms_p90": metrics.get("latency_ms_p90"),
        "latency_ms_p99": metrics.get("latency_ms_p99"),
        "load_s": (record.get("result") or {}).get("load_s"),
        "compile_s": (record.get("result") or {}).get("compile_s"),
        **measured(record),
        "failure_reason": (record.get("failure") or {}).get("reason"),
        "host": host.get("hostname"),
        "cpu_model": host.get("cpu_model"),
        "path": str(path),
    }


def load_campaign(directory: Path | str) -> pl.DataFrame:
    """One row per run record in ``directory`` (not recursive), in run-id order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordError(f"{directory} is not a directory of run records")
    rows = [flatten(load_record(p), p) for p in sorted(directory.glob("*.json"))]
    return pl.DataFrame(rows, schema=COLUMNS)
