"""Serving figures of one load point, from the client's per-request timestamps and the meters.

Per request (RequestResult): TTFT = first token event - sent; TPOT = (last token event - first) /
(output tokens - 1), for requests of two tokens or more; ITL = the gaps between successive token
events; E2EL = response complete - sent. Aggregates: mean, median, p90, p99 (linear interpolation,
numpy's default) over the successful requests, ITL over every gap of every one of them. Throughput
over the measure window (first send to last answer): requests/s and output tokens/s; goodput:
requests/s that succeeded and met every SLO given (a one-token request has no TPOT and meets a
TPOT SLO). These follow vLLM's benchmark_serving and SGLang's bench_serving.

Energy per request and per output token: the meters' total energy over the window divided by the
successful requests / their output tokens; ``value`` is gross, ``net_j`` idle-subtracted where the
meters have an idle baseline. Steady-state energy per output token: the same over the steady
window (:func:`steady_window`), divided by the output tokens generated inside it.

Where the server says where a request's time went (ours: ``timings``), queueing (waiting for the
engine, busy with the requests ahead) is its own figure, ``queue_ms_*``, and the HTTP + server
overhead is what is left of the E2EL after the queue and the server's own work. Where the engine
says when it made each token (ours), its ITL and TPOT are beside the client's, with the delivery
time of each token; :mod:`controller.serving.checks` flags a point where they disagree, and what a
server did that was not asked. Every figure's definition, and its name in vLLM's, GuideLLM's and
AIPerf's results: :mod:`controller.serving.definitions`.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Any

from controller.record import percentile
from controller.serving.checks import point_flags, token_timing
from controller.serving.client import RequestResult
from controller.serving.load import LoadPoint

SLO_KEYS = ("ttft", "tpot", "e2el")
_SLO_ITEM = re.compile(r"^(?P<key>[a-z0-9_]+)\s*=\s*(?P<num>[0-9.eE+-]+)\s*(?P<unit>ms|s)?$")


def parse_slo(text: str) -> dict[str, float]:
    """``ttft=500ms,tpot=50ms[,e2el=2s]`` -> {"ttft": 500.0, ...} in ms (a bare number is ms)."""
    out: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",")):
        m = _SLO_ITEM.match(item)
        if m is None or m["key"] not in SLO_KEYS:
            raise ValueError(
                f"--slo {text!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(SLO_KEYS)} and VALUE in "
                "ms or s, e.g. --slo ttft=500ms,tpot=50ms"
            )
        try:
            value = float(m["num"]) * (1000.0 if m["unit"] == "s" else 1.0)
        except ValueError:
            raise ValueError(f"--slo {text!r}: {m['num']!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"--slo {text!r}: {m['key']} must be a positive time")
        if m["key"] in out:
            raise ValueError(f"--slo {text!r}: {m['key']} is given twice")
        out[m["key"]] = value
    return out


def stats_ms(values_ns: list[float], name: str) -> dict[str, float | None]:
    """``{name}_ms_mean``, ``_median``, ``_p90``, ``_p99``; None for each when there is no value."""
    v = sorted(x / 1e6 for x in values_ns)
    return {
        f"{name}_ms_mean": statistics.fmean(v) if v else None,
        f"{name}_ms_median": percentile(v, 0.50) if v else None,
        f"{name}_ms_p90": percentile(v, 0.90) if v else None,
        f"{name}_ms_p99": percentile(v, 0.99) if v else None,
    }


def steady_window(results: list[RequestResult], point: LoadPoint | None) -> dict[str, Any]:
    """The part of the measure window where the load runs at its target, from the request timestamps.

    Closed loop at concurrency N (and all-at-once, with N = every request): from the send of the
    N-th request (the first moment N are in flight) to the first response completed after the
    last send (from then on fewer than N are in flight, for good). Between the two every answer is
    followed by the next send, so N are in flight except for the client's turnaround between one
    response's end and its next send (microseconds). Open loop at a rate: from the first arrival to
    the last, the time the arrival process runs at that rate; after it the server only drains.

    Returns ``{"available", "t0_ns", "t1_ns", "s", "definition", "reason"}``.
    """
    sends = sorted(r.t_start_ns for r in results)
    if point is None or not sends:
        return _no_steady("no requests were sent" if point is not None else "no load point")
    if point.concurrency is not None or point.request_rate == math.inf:
        n = point.concurrency if point.concurrency is not None else len(sends)
        definition = f"{n} in flight: from the send that made them {n} to the first answer after the last send"
        if len(sends) < n:
            return _no_steady(f"{len(sends)} requests were sent, fewer than the concurrency {n}")
        ends = [r.t_start_ns + r.latency_ns for r in results]
        t0 = sends[n - 1]
        t1 = min((e for e in ends if e >= sends[-1]), default=0)
    else:
        definition = f"arrivals at {point.request_rate:g}/s: from the first arrival to the last"
        t0, t1 = sends[0], sends[-1]
    if t1 <= t0:
        return _no_steady(f"the window is empty ({definition})")
    return {"available": True, "t0_ns": t0, "t1_ns": t1, "s": (t1 - t0) / 1e9, "definition": definition, "reason": None}


def _no_steady(reason: str) -> dict[str, Any]:
    return {"available": False, "t0_ns": None, "t1_ns": None, "s": None, "definition": None, "reason": reason}


def tokens_between(results: list[RequestResult], t0: int, t1: int) -> float:
    """Output tokens generated in [t0, t1]: each request's tokens pro rata of its token events inside."""
    total = 0.0
    for r in results:
        if not r.ok or not r.token_times_us:
            continue
        inside = sum(1 for t in r.token_times_ns() if t0 <= t <= t1)
        total += (r.new_tokens or 0) * inside / len(r.token_times_us)
    return total


def _energy_per(measurements: dict[str, Any] | None, count: float, what: str, name: str) -> dict[str, Any]:
    def unavailable(reason: str) -> dict[str, Any]:
        return {"name": name, "value": None, "unit": "J", "available": False, "reason": reason}

    if not measurements:
        return unavailable("no measure window")
    total = measurements["metrics"].get("total_energy_j", {})
    if not total.get("available"):
        return unavailable(total.get("reason", "no energy"))
    if count <= 0:
        return unavailable(f"no {what}s in the window")
    net = total.get("net_j")
    bound, net_bound = total.get("uncertainty_j"), total.get("net_uncertainty_j")
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
        # The window's energy bound shared over the count (which is counted, not measured).
        "uncertainty_j": bound / count if bound is not None else None,
        "uncertainty_rel": total.get("uncertainty_rel"),
        "net_uncertainty_j": net_bound / count if net is not None and net_bound is not None else None,
    }


def meets(r: RequestResult, slo: dict[str, float]) -> bool:
    checks = {
        "ttft": r.ttft_ns,
        "tpot": r.tpot_ns if r.tpot_ns is not None else 0.0,  # one token: nothing to pace
        "e2el": r.latency_ns,
    }
    return r.ok and all(checks[k] is not None and checks[k] / 1e6 <= limit for k, limit in slo.items())  # type: ignore[operator]


def serving_metrics(
    results: list[RequestResult],
    window_ns: tuple[int, int],
    measurements: dict[str, Any] | None,
    *,
    point: LoadPoint | None = None,
    slo: dict[str, float] | None = None,
    steady: dict[str, Any] | None = None,
    steady_measurements: dict[str, Any] | None = None,
    engine_concurrency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Latencies, throughput, goodput and energy of one load point; what the checks found.

    ``engine_concurrency``: how many requests the engine serves at once, as the server says
    (``{"requests": 1, "basis": ...}``; None: not known), for the queueing it explains.
    """
    ok = [r for r in results if r.ok]
    window_s = (window_ns[1] - window_ns[0]) / 1e9
    per_s = (lambda n: n / window_s) if window_s > 0 else (lambda n: None)
    new_tokens = sum(r.new_tokens or 0 for r in ok)
    prompt_known = all(r.prompt_tokens is not None for r in ok)
    prompt_tokens = sum(r.prompt_tokens or 0 for r in ok)
    lat_ns = [float(r.latency_ns) for r in ok]
    timed = [r for r in ok if r.server_ms and "total" in r.server_ms]
    server_total = [r.server_ms["total"] for r in timed]  # type: ignore[index]
    queue_ns = [r.server_ms["queue"] * 1e6 for r in timed if "queue" in r.server_ms]  # type: ignore[operator,index]
    overhead = [r.latency_ns / 1e6 - r.server_ms["total"] - r.server_ms.get("queue", 0.0) for r in timed]  # type: ignore[index,union-attr]
    timing = token_timing(results)
    legacy = stats_ms(lat_ns, "latency")
    out: dict[str, Any] = {
        # Same names as batch runs (one request = one sample = one batch of 1), for the report.
        "batches": len(ok),
        "samples": len(ok),
        "latency_ms_mean": legacy["latency_ms_mean"],
        "latency_ms_p50": legacy["latency_ms_median"],
        "latency_ms_p90": legacy["latency_ms_p90"],
        "latency_ms_p99": legacy["latency_ms_p99"],
        "window_s": window_s,
        "throughput_sps": per_s(len(ok)),
        # Serving's own.
        "requests": len(results),
        "requests_ok": len(ok),
        "requests_failed": len(results) - len(ok),
        "requests_truncated": sum(1 for r in results if r.error_code == "truncated"),
        "failure_reasons": dict(Counter(_reason(r.error) for r in results if not r.ok)),
        "finish_reasons": dict(Counter(str(r.finish_reason) for r in results)),
        "time_per_request_s": statistics.fmean(lat_ns) / 1e9 if lat_ns else None,
        "prompt_tokens_total": prompt_tokens if prompt_known else None,
        "new_tokens_total": new_tokens,
        "output_tokens_source": sorted({r.output_tokens_source or "server" for r in ok}),
        "request_throughput_rps": per_s(len(ok)),
        "output_token_throughput_tps": per_s(new_tokens),
        "total_token_throughput_tps": per_s(new_tokens + prompt_tokens) if prompt_known else None,
        **stats_ms([float(r.ttft_ns) for r in ok if r.ttft_ns is not None], "ttft"),
        **stats_ms([r.tpot_ns for r in ok if r.tpot_ns is not None], "tpot"),
        **stats_ms([float(g) for r in ok for g in r.itls_ns()], "itl"),
        **stats_ms(lat_ns, "e2el"),
        **stats_ms(
            [float(r.t_start_ns - r.t_scheduled_ns) for r in results if r.t_scheduled_ns is not None], "send_lag"
        ),
        **stats_ms(queue_ns, "queue"),
        "server_ms_mean": statistics.fmean(server_total) if server_total else None,
        "http_overhead_ms_mean": statistics.fmean(overhead) if overhead else None,
        "engine_concurrency": engine_concurrency,
        **stats_ms(timing["engine_itl_ns"], "engine_itl"),
        **stats_ms(timing["engine_tpot_ns"], "engine_tpot"),
        **stats_ms(timing["delivery_ns"], "delivery"),
        "token_timing": {k: v for k, v in timing.items() if not k.endswith("_ns")},
        "serving_flags": point_flags(results, timing),
        "energy_per_request_j": _energy_per(measurements, len(ok), "request", "energy_per_request_j"),
        "energy_per_token_j": _energy_per(measurements, new_tokens, "token", "energy_per_token_j")
        | {"divides": "the whole measure window's energy (prefill, decode and the rest) by the output tokens"},
    }
    if point is not None:
        out["load_variable"], out["load_value"] = point.variable, point.value
    out.update(_goodput(results, slo, per_s))
    out.update(_steady(results, steady, steady_measurements))
    return out


def _reason(error: str | None) -> str:
    return (error or "?").split(" (mid-stream")[0][:200]


def _goodput(results: list[RequestResult], slo: dict[str, float] | None, per_s: Any) -> dict[str, Any]:
    if not slo:
        return {"slo_ms": None, "requests_meeting_slo": None, "goodput_rps": None}
    good = sum(1 for r in results if meets(r, slo))
    return {"slo_ms": dict(slo), "requests_meeting_slo": good, "goodput_rps": per_s(good)}


def _steady(
    results: list[RequestResult], steady: dict[str, Any] | None, measurements: dict[str, Any] | None
) -> dict[str, Any]:
    name = "energy_per_output_token_steady_j"
    if steady is None or not steady["available"]:
        reason = steady["reason"] if steady else "no steady window computed"
        return {
            "steady_window": steady,
            "steady_output_tokens": None,
            "steady_output_token_throughput_tps": None,
            name: {"name": name, "value": None, "unit": "J", "available": False, "reason": reason},
        }
    tokens = tokens_between(results, steady["t0_ns"], steady["t1_ns"])
    return {
        "steady_window": steady,
        "steady_output_tokens": tokens,
        "steady_output_token_throughput_tps": tokens / steady["s"],
        name: _energy_per(measurements, tokens, "output token", name),
    }


def _ms(m: dict[str, Any], name: str) -> str:
    parts = [
        f"{q} {m[f'{name}_ms_{q}']:.1f}"
        for q in ("mean", "median", "p90", "p99")
        if m.get(f"{name}_ms_{q}") is not None
    ]
    return "   ".join(parts) + " ms" if parts else "n/a"


def _joules(e: dict[str, Any]) -> str:
    if not e["available"]:
        return f"unavailable: {str(e['reason']).split(':')[0]}"
    net = f" (net of idle {e['net_j']:.4f}{_pm(e.get('net_uncertainty_j'))} J)" if e.get("net_j") is not None else ""
    return f"{e['value']:.4f}{_pm(e.get('uncertainty_j'))} J{net}"


def _pm(bound: float | None) -> str:
    """`` ± u`` for a figure that has a bound, nothing for one that has none (older records)."""
    return f" ± {bound:.2g}" if bound is not None else ""


def _e2el_parts(m: dict[str, Any]) -> str:
    """Where a request's time went besides the engine's work: queueing, named, apart from the overhead."""
    overhead, queue = m.get("http_overhead_ms_mean"), m.get("queue_ms_mean")
    parts = [f"queued {queue:.2f} ms" if queue is not None else None]
    parts.append(f"HTTP + server overhead {overhead:.2f} ms" if overhead is not None else None)
    shown = [p for p in parts if p]
    return f"   (mean: {', '.join(shown)})" if shown else ""


def queueing_line(m: dict[str, Any], in_flight: float | None) -> str | None:
    """What concurrency does when the engine serves one request at a time: the others queue."""
    engine = m.get("engine_concurrency") or {}
    if engine.get("requests") != 1 or not in_flight or in_flight <= 1:
        return None
    queue, ttft = m.get("queue_ms_mean"), m.get("ttft_ms_mean")
    share = (
        f"{queue:.1f} ms of the mean TTFT {ttft:.1f} ms is waiting for the requests ahead"
        if queue is not None and ttft
        else "TTFT and E2EL include the wait for the requests ahead (this server does not say how long)"
    )
    return f"queueing   the engine serves one request at a time ({engine.get('basis')}): {share}"


def metric_lines(m: dict[str, Any], in_flight: float | None = None) -> list[str]:
    """The summary's lines for one load point's metrics (unavailable figures say so); ``in_flight``:
    the requests the load keeps in flight (its concurrency; inf: all at once)."""
    rate = m.get("output_token_throughput_tps")
    truncated = m.get("requests_truncated") or 0
    lines = [
        f"requests   {m['requests_ok']} ok, {m.get('requests_failed', 0)} failed"
        + (f" ({truncated} truncated)" if truncated else "")
        + f" in {m['window_s']:.3f} s   "
        + (f"{rate:.2f} tokens/s   " if rate is not None else "")
        + f"{m['new_tokens_total']} tokens out, "
        + (f"{m['prompt_tokens_total']} in" if m.get("prompt_tokens_total") is not None else "tokens in unknown"),
        f"TTFT       {_ms(m, 'ttft')}",
        f"TPOT       {_ms(m, 'tpot')}",
        f"ITL        {_ms(m, 'itl')}",
        f"E2EL       {_ms(m, 'e2el')}{_e2el_parts(m)}",
    ]
    if m.get("engine_itl_ms_median") is not None:
        tpot, delivery = m.get("engine_tpot_ms_median"), m.get("delivery_ms_median")
        lines.append(
            f"engine     ITL median {m['engine_itl_ms_median']:.3f} ms"
            + (f"   TPOT median {tpot:.3f} ms" if tpot is not None else "")
            + "   (its own token times"
            + (f"; a token reached the client {delivery:.3f} ms later, median)" if delivery is not None else ")")
        )
    queueing = queueing_line(m, in_flight)
    if queueing:
        lines.append(queueing)
    if m.get("slo_ms"):
        slo = ",".join(f"{k}={v:g}ms" for k, v in m["slo_ms"].items())
        rps = m.get("goodput_rps")
        shown = f"{rps:.3f} requests/s" if rps is not None else "n/a (an empty window)"
        lines.append(f"goodput    {shown} ({m['requests_meeting_slo']} met {slo})")
    steady = m.get("steady_window") or {}
    lines.append(
        f"steady     {steady['s']:.3f} s: {steady['definition']}"
        if steady.get("available")
        else f"steady     unavailable: {steady.get('reason')}"
    )
    for name, label in (
        ("energy_per_request_j", "per request"),
        ("energy_per_token_j", "per token, window"),
        ("energy_per_output_token_steady_j", "per token, steady"),
    ):
        if name in m:
            lines.append(f"energy     {label:<18} {_joules(m[name])}")
    from controller.serving.phase_lines import phase_lines  # it needs this module's figures

    lines += phase_lines(m)
    lines += [f"warning    {f['message']}" for f in m.get("serving_flags") or []]
    return lines
