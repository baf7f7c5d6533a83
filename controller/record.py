"""Run records: one JSON file per run, written atomically, with a schema version."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def timing_metrics(result: dict[str, Any], window_ns: tuple[int, int] | None) -> dict[str, Any]:
    """Throughput over the measure window and per-batch latency percentiles."""
    lat_ms = sorted(v / 1e6 for v in result["latencies_ns"])
    metrics: dict[str, Any] = {
        "batches": result["batches"],
        "samples": result["samples"],
        "latency_ms_mean": statistics.fmean(lat_ms),
        "latency_ms_p50": _percentile(lat_ms, 0.50),
        "latency_ms_p90": _percentile(lat_ms, 0.90),
        "latency_ms_p99": _percentile(lat_ms, 0.99),
    }
    if window_ns is not None:
        window_s = (window_ns[1] - window_ns[0]) / 1e9
        metrics["window_s"] = window_s
        metrics["throughput_sps"] = result["samples"] / window_s if window_s > 0 else None
    else:
        metrics["window_s"] = None
        metrics["throughput_sps"] = None
    return metrics


def record_path(results: Path, campaign: str, run_id: str) -> Path:
    return results / campaign / f"{run_id}.json"
