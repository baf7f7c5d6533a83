"""Did the server do what each request asked, and can its token times be trusted: checked after
the load, from what the client recorded, per request and per load point.

Per request (:func:`request_flags`, kept in ``RequestResult.flags``): an output longer than
``max_tokens`` (``over_long``); under ``ignore_eos`` an output shorter than ``max_tokens``, either
stopped at the end of sequence (``eos_despite_ignore_eos``: the server dropped ``ignore_eos``) or
at a length limit of its own (``short``). A stream cut without a finish reason is not a flag but a
failed request (``error_code`` "truncated", :mod:`controller.serving.client`).

Per load point (:func:`point_flags`, the record's ``metrics.serving_flags``): each of those, and
failed requests, counted with one line that says what it means and what to do; and
``token_times_disagree`` when the engine said when it made each token (our own server does) and
the client's median ITL or TPOT strays from the engine's by more than a quarter (and 50 µs): events
then reached the client in bursts, so ITL and TPOT measure delivery (a host too busy to run the
client or the HTTP process when a token is ready), not the engine.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from controller.serving.client import RequestResult

# RequestResult.flags
REQUEST_FLAGS = {
    "over_long": "more output tokens than max_tokens",
    "eos_before_min_tokens": "stopped at the end of sequence before the min_tokens sent (--extra-input)",
    "eos_despite_ignore_eos": "stopped at the end of sequence before max_tokens although ignore_eos was asked",
    "short": "fewer output tokens than max_tokens under ignore_eos, stopped by the server for another reason",
}
# How far the client's median ITL (or TPOT) may stray from the engine's before a point is flagged:
# a quarter of the engine's, and 50 µs more for the clock reads and the stream.
AGREE_SHARE = 0.25
AGREE_SLACK_MS = 0.05


def request_flags(r: RequestResult, min_tokens: int | None = None) -> list[str]:
    """What a successful request's output says about the server (empty: it did what was asked);
    ``min_tokens``: what the request sent as such (an --extra-input)."""
    if not r.ok or r.new_tokens is None or r.max_tokens is None:
        return []
    flags = []
    if r.new_tokens > r.max_tokens:
        flags.append("over_long")
    if min_tokens and r.new_tokens < min(min_tokens, r.max_tokens) and r.finish_reason == "stop":
        flags.append("eos_before_min_tokens")
    if r.ignore_eos and r.new_tokens < r.max_tokens:
        flags.append("eos_despite_ignore_eos" if r.finish_reason == "stop" else "short")
    return flags


def _flag(code: str, count: int, total: int, message: str) -> dict[str, Any]:
    return {"code": code, "count": count, "of": total, "message": f"{count} of {total} requests {message}"}


def point_flags(results: list[RequestResult], timing: dict[str, Any]) -> list[dict[str, Any]]:
    """The load point's flags: ``{"code", "count", "of", "message"}`` each."""
    n = len(results)
    flags: list[dict[str, Any]] = []
    failed = [r for r in results if not r.ok]
    truncated = [r for r in failed if r.error_code == "truncated"]
    if truncated:
        flags.append(
            _flag(
                "truncated_streams",
                len(truncated),
                n,
                "ended without a finish_reason (the server cut their streams; they count as failed, "
                "not as output): llama-cpp-python's server does so at concurrency above 1 unless it is "
                "started with --interrupt_requests false",
            )
        )
    others = [r for r in failed if r.error_code != "truncated"]
    if others:
        reasons = Counter((r.error_code or "?") for r in others)
        said = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        flags.append(_flag("requests_failed", len(others), n, f"failed ({said}): {others[0].error}"))
    by_flag: dict[str, list[RequestResult]] = {}
    for r in results:
        for f in r.flags:
            by_flag.setdefault(f, []).append(r)
    if "over_long" in by_flag:
        rs = by_flag["over_long"]
        worst = max(rs, key=lambda r: (r.new_tokens or 0) - (r.max_tokens or 0))
        why = (
            "the server did not stop where asked, or (no usage: its token events counted) sent more than one "
            "event per token"
            if worst.output_tokens_source == "events"
            else "the server did not stop where asked"
        )
        flags.append(
            _flag(
                "over_long_outputs",
                len(rs),
                n,
                f"returned more tokens than max_tokens (up to {worst.new_tokens} for {worst.max_tokens}, "
                f"counted from {worst.output_tokens_source}): {why}",
            )
        )
    if "eos_despite_ignore_eos" in by_flag:
        rs = by_flag["eos_despite_ignore_eos"]
        flags.append(
            _flag(
                "ignore_eos_not_honoured",
                len(rs),
                n,
                "stopped at the end of sequence before max_tokens although ignore_eos was sent: the server "
                "does not honour it; send what it needs instead, e.g. --extra-input min_tokens=N",
            )
        )
    if "eos_before_min_tokens" in by_flag:
        rs = by_flag["eos_before_min_tokens"]
        flags.append(
            _flag(
                "min_tokens_not_honoured",
                len(rs),
                n,
                "stopped at the end of sequence before the min_tokens they sent: the server does not honour it",
            )
        )
    if "short" in by_flag:
        rs = by_flag["short"]
        finishes = sorted({str(r.finish_reason) for r in rs})
        flags.append(
            _flag(
                "short_outputs",
                len(rs),
                n,
                f"returned fewer tokens than max_tokens under ignore_eos (finish_reason {', '.join(finishes)}): "
                "the server stopped them on a limit of its own (its context length?)",
            )
        )
    if timing.get("agree") is False:
        said = "; ".join(
            f"{what} median {timing[f'client_{what.lower()}_ms_median']:.3f} ms at the client, "
            f"{timing[f'engine_{what.lower()}_ms_median']:.3f} ms at the engine"
            for what in timing["disagree_on"]
        )
        flags.append(
            {
                "code": "token_times_disagree",
                "count": timing["requests_compared"],
                "of": n,
                "message": f"the client's token times differ from the engine's ({said}): tokens reached the client "
                "in bursts, so ITL and TPOT here measure their delivery (a host too busy to run the client or the "
                "HTTP server when a token is ready), not the engine; engine_itl_ms_* and engine_tpot_ms_* are the "
                "engine's own",
            }
        )
    return flags


def _engine_tpot_ns(times_us: list[int], tokens: int) -> float | None:
    if len(times_us) < 2 or tokens < 2:
        return None
    return (times_us[-1] - times_us[0]) * 1000 / (tokens - 1)


def token_timing(results: list[RequestResult]) -> dict[str, Any]:
    """The engine's token times beside the client's, over the successful requests the engine timed.

    ``engine_itl`` / ``engine_tpot``: the same definitions as the client's ITL and TPOT, on the
    engine's clock (when it made each token); ``delivery``: client time - engine time per token
    (how long a token took to reach the client, the HTTP server and the stream included).
    Returns the per-token figures in ns (``*_ns`` lists) and the comparison.
    """
    timed = [
        r
        for r in results
        if r.ok and r.engine_token_times_us is not None and len(r.engine_token_times_us) == len(r.token_times_us)
    ]
    out: dict[str, Any] = {
        "engine_reports": any(r.engine_token_times_us is not None for r in results),
        "requests_compared": len(timed),
        "engine_itl_ns": [float(b - a) * 1000 for r in timed for a, b in _pairs(r.engine_token_times_us or [])],
        "engine_tpot_ns": [
            t for r in timed if (t := _engine_tpot_ns(r.engine_token_times_us or [], r.new_tokens or 0)) is not None
        ],
        "delivery_ns": [
            float(c - e) * 1000
            for r in timed
            for c, e in zip(r.token_times_us, r.engine_token_times_us or [], strict=True)
        ],
        "client_itl_ms_median": None,
        "engine_itl_ms_median": None,
        "client_tpot_ms_median": None,
        "engine_tpot_ms_median": None,
        "agree": None,
        "disagree_on": [],
        "reason": None,
    }
    if not out["engine_reports"]:
        out["reason"] = "the server does not say when its engine made each token (only joulebench's own server does)"
        return out
    client = {
        "itl": [float(g) for r in timed for g in r.itls_ns()],
        "tpot": [t for r in timed if (t := r.tpot_ns) is not None],
    }
    engine = {"itl": out["engine_itl_ns"], "tpot": out["engine_tpot_ns"]}
    if not client["itl"] or not engine["itl"]:
        out["reason"] = "no request of two tokens or more with the engine's token times"
        return out
    for what in ("itl", "tpot"):
        if not client[what] or not engine[what]:
            continue
        c, e = statistics.median(client[what]) / 1e6, statistics.median(engine[what]) / 1e6
        out[f"client_{what}_ms_median"], out[f"engine_{what}_ms_median"] = c, e
        if abs(c - e) > AGREE_SHARE * e + AGREE_SLACK_MS:
            out["disagree_on"].append(what.upper())
    out["agree"] = not out["disagree_on"]
    return out


def _pairs(values: list[int]) -> list[tuple[int, int]]:
    return list(zip(values, values[1:], strict=False))
