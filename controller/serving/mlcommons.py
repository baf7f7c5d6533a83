"""A serving load point in the shape of MLCommons' proposed energy reporting schema (MLPerf Inference
issue #2558, PR #2587: ``energy-reporting/mlperf_energy_schema_v6.json``, version 6.1), and every
point's per-request table as Parquet.

The schema's names and units are kept. What a record cannot fill is null with the reason beside it
(``<field>_null_reason``), never 0: the schema's ``measurement_method`` holds one interface, so a
total that sums RAPL and NVML leaves it null; its scenarios are MLPerf's (SingleStream: one request
at a time; Server: arrivals at a rate; Offline: all at once), so a closed loop of more than one has
none. ``energy_per_token_joules.mean`` is ``generation_energy_joules / output_token_count`` (its
RULE-07), ``std`` the spread of each request's own decode energy per output token. Our bounds,
active figures and definitions are under ``joulebench``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from controller.serving.request_energy import REQUEST_ENERGY_KEYS

SCHEMA = "https://mlcommons.org/schemas/mlperf_energy_v6.1.json"
METHODS = {"cpu": "rapl", "dram": "rapl", "gpu": "nvml"}
REQUEST_COLUMNS = (
    "index",
    "prompt_id",
    "ok",
    "finish_reason",
    "prompt_tokens",
    "new_tokens",
    "ttft_ms",
    "tpot_ms",
    "e2el_ms",
    *REQUEST_ENERGY_KEYS,
    "request_energy_reason",
    "phase_basis",
)


class Fields:
    """The fields in the schema's order, each null with its reason beside it when it cannot be filled."""

    def __init__(self) -> None:
        self.out: dict[str, Any] = {}

    def put(self, name: str, value: Any, reason: str | None = None) -> None:
        self.out[name] = value
        if value is None:
            self.out[f"{name}_null_reason"] = reason or "not measured"


def _positive(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _figure(m: dict[str, Any], name: str) -> tuple[float | None, str | None]:
    f = m.get(name) or {}
    if not f.get("available"):
        return None, f.get("reason") or f"the record has no {name} (written before joulebench split phases)"
    v = _positive(f.get("value"))
    return v, None if v is not None else f"{name} came out {f.get('value')!r}: the schema needs more than 0"


def scenario(load: dict[str, Any]) -> tuple[str | None, str | None]:
    """MLPerf's scenario of a load point, or why it has none."""
    c, rate = load.get("concurrency"), load.get("request_rate")
    if c == 1:
        return "singlestream", None
    if c is not None:
        return None, f"a closed loop of {c} requests in flight is none of MLPerf's scenarios"
    if rate == "inf":
        return "offline", None
    return "server", None


def method(total: dict[str, Any]) -> tuple[str | None, str | None]:
    kinds = sorted({METHODS[d] for d in total.get("covers") or [] if d in METHODS})
    if len(kinds) == 1:
        return kinds[0], None
    if not kinds:
        return None, total.get("reason") or "no energy domain was measured"
    return None, f"the total sums {' and '.join(kinds)}; the schema's measurement_method holds one interface"


def _idle_power(metrics: dict[str, Any], total: dict[str, Any]) -> tuple[float | None, str | None]:
    covers = total.get("covers") or []
    if not covers:
        return None, total.get("reason") or "no energy measured"
    parts = [(metrics.get(f"{d}_energy_j") or {}) for d in covers]
    if any(p.get("idle_power_w") is None for p in parts):
        return None, f"no idle baseline: {total.get('net_reason') or 'none given'}"
    return sum(float(p["idle_power_w"]) for p in parts), None


def _stabilization(record: dict[str, Any], first: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """Warm-up before the window: the settings' idle warm-up plus the span from the warm-up's first
    request (the sweep's first record keeps it) to this window's start."""
    window = ((record.get("measurements") or {}).get("window") or {}).get("t0_ns")
    events = ((first or record).get("events")) or []
    start = next((e["t_ns"] for e in events if e.get("phase") == "warmup" and e.get("edge") == "start"), None)
    if window is None or start is None:
        return None, "the record does not say when the warm-up started"
    return float((record.get("serving") or {}).get("warmup_s") or 0.0) + (window - start) / 1e9, None


def _per_request(requests: list[dict[str, Any]]) -> dict[str, list[float]]:
    ok = [r for r in requests if r.get("ok")]

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in ok if isinstance(r.get(key), (int, float))]

    decode = [
        r["request_decode_energy_j"] / r["new_tokens"]
        for r in ok
        if isinstance(r.get("request_decode_energy_j"), (int, float)) and r.get("new_tokens")
    ]
    return {
        "prompt": values("prompt_tokens"),
        "output": values("new_tokens"),
        "energy": values("request_energy_j"),
        "decode_per_token": decode,
    }


def _stats(values: list[float], mean: float | None = None) -> dict[str, float] | None:
    if not values and mean is None:
        return None
    out = {"mean": mean if mean is not None else statistics.fmean(values)}
    if len(values) > 1:
        out["std"] = statistics.pstdev(values)
    return out


def mlcommons_fields(record: dict[str, Any], first: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema's fields of one serving record (a load point); ``first``: its sweep's first record."""
    m = record.get("metrics") or {}
    measurements = record.get("measurements") or {}
    metrics = measurements.get("metrics") or {}
    total = metrics.get("total_energy_j") or {}
    serving = record.get("serving") or {}
    load = serving.get("load") or {}
    per = _per_request(serving.get("requests") or [])
    f = Fields()
    f.put("task_type", "llm")
    total_j = _positive(total.get("value")) if total.get("available") else None
    f.put("total_energy_joules", total_j, total.get("reason"))
    f.put("static_power_baseline_watts", *_idle_power(metrics, total))
    window_s = _positive(m.get("window_s"))
    peak = _positive((m.get("phase_attribution") or {}).get("peak_power_w"))
    power = {"mean": total_j / window_s} | ({"peak": peak} if peak else {}) if total_j and window_s else None
    f.put("inference_active_power_watts", power, total.get("reason") or "the window is empty")
    f.put("measurement_method", *method(total))
    interval = _positive((measurements.get("sampler") or {}).get("interval_s"))
    f.put("sampling_rate_hz", 1.0 / interval if interval else None, "the record has no sampling interval")
    f.put("thermal_stabilization_seconds", *_stabilization(record, first))
    f.put("scenario", *scenario(load))
    measured_gpus = (metrics.get("gpu_energy_j") or {}).get("per_device") or []
    gpus = len(measured_gpus) if "gpu" in (total.get("covers") or []) else 0
    f.put("accelerator_count", gpus or None, "no accelerator was measured (a CPU run)")
    versions = {k: str(v) for k, v in ((record.get("result") or {}).get("versions") or {}).items() if v is not None}
    f.put("software_runtime_versions", versions or None, "the server did not report its packages' versions")
    decode, why_decode = _figure(m, "decode_energy_j")
    tokens = int(sum(per["output"])) or None
    per_token = decode / tokens if decode and tokens else None
    f.put(
        "energy_per_token_joules",
        _stats(per["decode_per_token"], per_token) if per_token else None,
        why_decode or "no output token",
    )
    f.put("prefill_energy_joules", *_figure(m, "prefill_energy_j"))
    f.put("generation_energy_joules", decode, why_decode)
    f.put("output_token_count", tokens, "no successful request gave a token")
    batch, why_batch = _batch(load, m)
    f.put("batch_size", batch, why_batch)
    f.put("input_sequence_length", _mean_int(per["prompt"]), "the server did not say the prompts' tokens")
    f.put("output_sequence_length", _mean_int(per["output"]), "no successful request")
    f.put("energy_per_query_joules", _stats(per["energy"]), _request_reason(serving.get("requests") or []))
    f.out["joulebench"] = _ours(record, m, per)
    return f.out


def _mean_int(values: list[float]) -> int | None:
    return max(1, round(statistics.fmean(values))) if values else None


def _batch(load: dict[str, Any], m: dict[str, Any]) -> tuple[int | None, str | None]:
    engine = (m.get("engine_concurrency") or {}).get("requests")
    if load.get("concurrency") == 1 or engine == 1:
        return 1, None
    return None, "the engine batches requests as they come (continuous batching): no fixed batch size"


def _request_reason(requests: list[dict[str, Any]]) -> str:
    reasons = [r.get("request_energy_reason") for r in requests if r.get("request_energy_reason")]
    return str(reasons[0]) if reasons else "the record has no per-request energy (written before joulebench split it)"


def _ours(record: dict[str, Any], m: dict[str, Any], per: dict[str, list[float]]) -> dict[str, Any]:
    def bound(name: str) -> Any:
        return (m.get(name) or {}).get("uncertainty_j")

    def active(name: str) -> Any:
        return (m.get(name) or {}).get("active_j")

    return {
        "schema": SCHEMA,
        "run_id": record.get("run_id"),
        "model": record.get("model"),
        "engine": record.get("engine"),
        "image": record.get("image"),
        "load": (record.get("serving") or {}).get("load"),
        "uncertainty_joules": {
            "total_energy_joules": ((record.get("measurements") or {}).get("metrics") or {})
            .get("total_energy_j", {})
            .get("uncertainty_j"),
            "prefill_energy_joules": bound("prefill_energy_j"),
            "generation_energy_joules": bound("decode_energy_j"),
            "energy_per_token_joules": bound("energy_per_output_token_decode_j"),
        },
        "active_joules": {
            "prefill": active("prefill_energy_j"),
            "generation": active("decode_energy_j"),
            "window": (m.get("active_energy_j") or {}).get("value"),
        },
        "static_joules": (m.get("static_energy_j") or {}).get("value"),
        "other_energy_joules": (m.get("other_energy_j") or {}).get("value"),
        "sequence_lengths": {
            "input_min": min(per["prompt"], default=None),
            "input_max": max(per["prompt"], default=None),
            "output_min": min(per["output"], default=None),
            "output_max": max(per["output"], default=None),
        },
        "mlenergy_steady_energy_per_token_joules": (m.get("energy_per_output_token_mlenergy_steady_j") or {}).get(
            "value"
        ),
        "definitions": "joulebench's prefill_energy_j, decode_energy_j, energy_per_output_token_decode_j (the "
        "record's serving.definitions); gross energies (idle included) as the schema's total; input and output "
        "sequence lengths are the means over the successful requests; inference_active_power_watts.peak: the "
        "highest mean over one sampling interval",
        "method": (m.get("phase_attribution") or {}).get("method"),
    }


def write_mlcommons(records: list[tuple[Any, dict[str, Any]]], folder: Path) -> list[Path]:
    """``folder/<run_id>.json`` for each successful serving record."""
    by_id = {r.get("run_id"): r for _, r in records}
    out = []
    for _, record in records:
        if record.get("mode") != "serving" or record.get("status") != "ok":
            continue
        group = ((record.get("serving") or {}).get("sweep") or {}).get("group")
        path = folder / f"{record['run_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(mlcommons_fields(record, by_id.get(group)), indent=1) + "\n")
        out.append(path)
    return out


def request_rows(record: dict[str, Any], configuration: str) -> list[dict[str, Any]]:
    """The record's per-request table: identity, load, times, tokens and energies (None: unmeasured)."""
    serving = record.get("serving") or {}
    sweep = serving.get("sweep") or {}
    head = {
        "run_id": record.get("run_id"),
        "configuration": configuration,
        "model": record.get("model"),
        "load_variable": sweep.get("variable"),
        "load_value": float("inf") if sweep.get("value") == "inf" else sweep.get("value"),
    }
    return [head | {c: r.get(c) for c in REQUEST_COLUMNS} for r in serving.get("requests") or []]


def write_request_tables(records: list[tuple[Any, dict[str, Any]]], labels: dict[str, str], folder: Path) -> list[Path]:
    """``folder/<run_id>.parquet`` per successful serving record, and ``folder/requests.parquet`` of all;
    ``labels``: run id -> configuration."""
    import polars as pl

    schema: dict[str, Any] = {
        "run_id": pl.Utf8,
        "configuration": pl.Utf8,
        "model": pl.Utf8,
        "load_variable": pl.Utf8,
        "load_value": pl.Float64,
        "index": pl.Int64,
        "prompt_id": pl.Utf8,
        "ok": pl.Boolean,
        "finish_reason": pl.Utf8,
        "prompt_tokens": pl.Int64,
        "new_tokens": pl.Int64,
        **{c: pl.Float64 for c in REQUEST_COLUMNS if c.endswith("_j") or c.endswith("_ms")},
        "request_energy_reason": pl.Utf8,
        "phase_basis": pl.Utf8,
    }
    out, every = [], []
    for _, record in records:
        if record.get("mode") != "serving" or record.get("status") != "ok":
            continue
        rows = request_rows(record, labels.get(record["run_id"], ""))
        every += rows
        path = folder / f"{record['run_id']}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows, schema=schema).write_parquet(path)
        out.append(path)
    if every:
        pl.DataFrame(every, schema=schema).write_parquet(folder / "requests.parquet")
        out.append(folder / "requests.parquet")
    return out
