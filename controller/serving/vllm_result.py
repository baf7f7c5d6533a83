"""A serving load point as the result JSON vLLM's ``vllm bench serve --save-result --save-detailed``
writes, its field names and its definitions, so that our figures sit beside theirs in their tools.

Computed from the record's per-request times, with vLLM's definitions where they differ from ours
(:mod:`controller.serving.definitions`): TPOT = (E2EL - TTFT) / (output tokens - 1); mean, median,
standard deviation (numpy's, of the population) and percentiles with linear interpolation, as
``--metric-percentiles 50,90,99`` gives them; the peak output tokens per second over one-second
buckets and the peak of requests in flight. A closed loop of N is what vLLM runs with
``--max-concurrency N`` and an infinite request rate. What a record does not hold is null, never 0;
the ``joulebench`` key says where the figures came from, and what the run flagged.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from controller.record import percentile

PERCENTILES = (50, 90, 99)


def _stats(name: str, values_s: list[float]) -> dict[str, float | None]:
    v = sorted(x * 1000 for x in values_s)
    out: dict[str, float | None] = {
        f"mean_{name}_ms": statistics.fmean(v) if v else None,
        f"median_{name}_ms": statistics.median(v) if v else None,
        f"std_{name}_ms": statistics.pstdev(v) if v else None,
    }
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = percentile(v, p / 100) if v else None
    return out


def _gaps_s(r: dict[str, Any]) -> list[float]:
    """A request's gaps between token events, in s."""
    t = r.get("token_times_us") or []
    return [(b - a) / 1e6 for a, b in zip(t, t[1:], strict=False)]


def _peaks(ok: list[dict[str, Any]]) -> tuple[float | None, int | None]:
    """vLLM's max_output_tokens_per_s (one-second buckets from the first send) and max_concurrent_requests."""
    if not ok:
        return None, None
    t0 = min(r["t_start_ns"] for r in ok)
    buckets: dict[int, int] = {}
    edges: list[tuple[int, int]] = []
    for r in ok:
        for us in r.get("token_times_us") or []:
            second = (r["t_start_ns"] + us * 1000 - t0) // 1_000_000_000
            buckets[second] = buckets.get(second, 0) + 1
        edges += [(r["t_start_ns"], 1), (r["t_start_ns"] + r["latency_ns"], -1)]
    level = peak = 0
    for _, step in sorted(edges):  # an end before a start at the same time: half-open intervals
        level += step
        peak = max(peak, level)
    return float(max(buckets.values())) if buckets else None, peak


def vllm_result(record: dict[str, Any]) -> dict[str, Any]:
    """vLLM's bench serve result of one serving record (a load point)."""
    s = record.get("serving") or {}
    m = record.get("metrics") or {}
    load = s.get("load") or {}
    requests = s.get("requests") or []
    ok = [r for r in requests if r.get("ok")]
    ttfts = [r["ttft_ms"] / 1000 for r in ok if r.get("ttft_ms") is not None]
    latencies = [r["latency_ns"] / 1e9 for r in ok]
    tpots = [
        (r["latency_ns"] / 1e9 - r["ttft_ms"] / 1000) / (r["new_tokens"] - 1)
        for r in ok
        if r.get("ttft_ms") is not None and (r.get("new_tokens") or 0) > 1
    ]
    duration = m.get("window_s")
    out_lens = [r.get("new_tokens") or 0 for r in ok]
    in_known = all(isinstance(r.get("prompt_tokens"), int) for r in ok)
    total_in = sum(r["prompt_tokens"] for r in ok) if in_known else None
    peak_tps, peak_requests = _peaks(ok)
    started = record.get("started_at")
    closed = load.get("concurrency") is not None
    rate = load.get("request_rate")

    def per_s(n: float | None) -> float | None:
        return n / duration if n is not None and duration else None

    return {
        "date": _date(started),
        "endpoint_type": "openai",
        "backend": "openai",
        "label": f"joulebench {record.get('engine')} {record.get('run_id')}",
        "model_id": record.get("model"),
        "tokenizer_id": None,
        "num_prompts": len(requests),
        "request_rate": "inf" if closed or rate in ("inf", None) or rate == math.inf else rate,
        "burstiness": load.get("burstiness") if load.get("burstiness") is not None else 1.0,
        "max_concurrency": load.get("concurrency"),
        "duration": duration,
        "completed": len(ok),
        "failed": len(requests) - len(ok),
        "total_input_tokens": total_in,
        "total_output_tokens": sum(out_lens),
        "request_throughput": per_s(len(ok)),
        "request_goodput": m.get("goodput_rps"),
        "output_throughput": per_s(sum(out_lens)),
        "total_token_throughput": per_s(total_in + sum(out_lens)) if total_in is not None else None,
        "max_output_tokens_per_s": peak_tps,
        "max_concurrent_requests": peak_requests,
        **_stats("ttft", ttfts),
        **_stats("tpot", tpots),
        **_stats("itl", [g for r in ok for g in _gaps_s(r)]),
        **_stats("e2el", latencies),
        # --save-detailed
        "input_lens": [r.get("prompt_tokens") for r in requests],
        "output_lens": [(r.get("new_tokens") or 0) if r.get("ok") else 0 for r in requests],
        "ttfts": [r["ttft_ms"] / 1000 if r.get("ok") and r.get("ttft_ms") is not None else 0.0 for r in requests],
        "itls": [_gaps_s(r) if r.get("ok") else [] for r in requests],
        "latencies": [r["latency_ns"] / 1e9 if r.get("ok") else 0.0 for r in requests],
        "start_times": [r["t_start_ns"] / 1e9 for r in requests],
        "generated_texts": [r.get("text") or "" for r in requests],
        "errors": [r.get("error") or "" for r in requests],
        "joulebench": {
            "run_id": record.get("run_id"),
            "status": record.get("status"),
            "definitions": "vLLM bench serve's, computed from the record's per-request times (start_times: "
            "time.monotonic_ns() of the host, in s; TPOT = (E2EL - TTFT) / (output tokens - 1))",
            "output_tokens_source": m.get("output_tokens_source"),
            "serving_flags": m.get("serving_flags") or [],
        },
    }


def _date(iso: str | None) -> str | None:
    """vLLM's date format (%Y%m%d-%H%M%S) of the record's start."""
    if not iso:
        return None
    try:
        return time.strftime("%Y%m%d-%H%M%S", time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def write_vllm_results(records: list[tuple[Any, dict[str, Any]]], folder: Any) -> list[Any]:
    """``folder/<run_id>.json`` for each successful serving record: vLLM's result of its load point."""
    import json
    from pathlib import Path

    out = []
    for _, record in records:
        if record.get("mode") != "serving" or record.get("status") != "ok":
            continue
        path = Path(folder) / f"{record['run_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(vllm_result(record), indent=1) + "\n")
        out.append(path)
    return out
