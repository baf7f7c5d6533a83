"""Serving figures of one run: per-request time, tokens/s, energy per request and per generated token."""

from __future__ import annotations

import statistics
from typing import Any

from controller.record import percentile
from controller.serving.client import RequestResult


def _energy_per(measurements: dict[str, Any] | None, count: int, what: str) -> dict[str, Any]:
    name = f"energy_per_{what}_j"
    if not measurements:
        return {"name": name, "value": None, "unit": "J", "available": False, "reason": "no measure window"}
    total = measurements["metrics"].get("total_energy_j", {})
    if not total.get("available"):
        return {
            "name": name,
            "value": None,
            "unit": "J",
            "available": False,
            "reason": total.get("reason", "no energy"),
        }
    if count <= 0:
        return {"name": name, "value": None, "unit": "J", "available": False, "reason": f"no {what}s in the window"}
    net = total.get("net_j")
    return {
        "name": name,
        "value": total["value"] / count,
        "unit": "J",
        "available": True,
        "reason": None,
        "net_j": net / count if net is not None else None,
        "net_reason": total.get("net_reason"),
        "covers": total.get("covers"),
        "gross": True,
    }


def serving_metrics(
    results: list[RequestResult], window_ns: tuple[int, int], measurements: dict[str, Any] | None
) -> dict[str, Any]:
    """Per-request time, tokens/s and energy per request and per generated token."""
    ok = [r for r in results if r.ok]
    lat_ms = sorted(r.latency_ns / 1e6 for r in ok)
    window_s = (window_ns[1] - window_ns[0]) / 1e9
    new_tokens = sum(r.new_tokens or 0 for r in ok)
    prompt_tokens = sum(r.prompt_tokens or 0 for r in ok)
    server_total = [r.server_ms["total"] for r in ok if r.server_ms]
    overhead = [r.latency_ns / 1e6 - r.server_ms["total"] for r in ok if r.server_ms]
    return {
        # Same names as batch runs (one request = one sample = one batch of 1), for the report.
        "batches": len(ok),
        "samples": len(ok),
        "latency_ms_mean": statistics.fmean(lat_ms) if lat_ms else None,
        "latency_ms_p50": percentile(lat_ms, 0.50) if lat_ms else None,
        "latency_ms_p90": percentile(lat_ms, 0.90) if lat_ms else None,
        "latency_ms_p99": percentile(lat_ms, 0.99) if lat_ms else None,
        "window_s": window_s,
        "throughput_sps": len(ok) / window_s if window_s > 0 else None,
        # Serving's own.
        "requests": len(results),
        "requests_ok": len(ok),
        "http_errors": len(results) - len(ok),
        "time_per_request_s": statistics.fmean(lat_ms) / 1e3 if lat_ms else None,
        "prompt_tokens_total": prompt_tokens,
        "new_tokens_total": new_tokens,
        "tokens_per_s": new_tokens / window_s if window_s > 0 else None,
        "server_ms_mean": statistics.fmean(server_total) if server_total else None,
        "http_overhead_ms_mean": statistics.fmean(overhead) if overhead else None,
        "energy_per_request_j": _energy_per(measurements, len(ok), "request"),
        "energy_per_token_j": _energy_per(measurements, new_tokens, "token"),
    }
