"""The serving load against one OpenAI-compatible endpoint: warm-up, then each load point's
measure window (``controller/serving/workload.py`` makes one run record of each point).

The warm-up sends prompts that are not measured (:func:`suite.prompts.warmup_prompts`: the measured
ones' pieces turned around), so no measured request finds its prompt already in a prefix cache.
Every request's output is checked against what it asked (:mod:`controller.serving.checks`).

Failures: a failed request (a truncated stream included) is a failed request in the record. A
point fails (and the ones after it are not run) when the server went away during it or when more
than half of its requests failed (its figures would describe the few that did not); a failed
warm-up fails them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from controller.serving.checks import request_flags
from controller.serving.client import Endpoint, RequestResult, WorkItem, stream_completion
from controller.serving.load import LoadPoint, PointRun, Stop, run_point, run_warmup
from controller.serving.settings import ServingFailed
from suite.prompts import Prompt, warmup_prompts


def work_items(prompts: list[Prompt], max_new_tokens: int, ignore_eos: bool) -> list[WorkItem]:
    """One request per prompt; a prompt's own output length (synthetic prompts) wins over the run's."""
    return [WorkItem(i, p, p.max_tokens or max_new_tokens, ignore_eos) for i, p in enumerate(prompts)]


def max_tokens_asked(items: list[WorkItem]) -> dict[str, Any]:
    """The max_tokens the measured requests ask for (the record's ``serving.max_tokens_asked``)."""
    asked = [i.max_tokens for i in items]
    return {"min": min(asked), "max": max(asked), "requests": len(asked)} if asked else {}


def client_event(phase: str, edge: str, t_ns: int | None = None, **info: Any) -> dict[str, Any]:
    t = time.monotonic_ns() if t_ns is None else t_ns
    return {"kind": "event", "phase": phase, "edge": edge, "t_ns": t, "source": "client", **info}


@dataclass
class Driven:
    runs: list[PointRun] = field(default_factory=list)
    events: list[list[dict[str, Any]]] = field(default_factory=list)  # client events of each point
    warmup: list[RequestResult] = field(default_factory=list)
    warmup_events: list[dict[str, Any]] = field(default_factory=list)
    failure: ServingFailed | None = None  # of the last run (or the warm-up, with no runs)


def drive(
    ep: Endpoint,
    items: list[WorkItem],
    points: list[LoadPoint],
    *,
    warmup_requests: int,
    timeout_s: float,
    say: Callable[[str], None],
    stop: Stop | None = None,
    exit_note: Callable[[], str] = str,
    extra: dict[str, Any] | None = None,
) -> Driven:
    """Warm up, then run every point; stops at the first point that fails."""

    min_tokens = (extra or {}).get("min_tokens")
    min_tokens = min_tokens if isinstance(min_tokens, int) and not isinstance(min_tokens, bool) else None

    def send(item: WorkItem, due: int | None) -> RequestResult:
        r = stream_completion(ep, item, timeout_s, due, extra)
        r.flags = request_flags(r, min_tokens)
        return r

    out = Driven()
    concurrency = max(p.concurrency or 1 for p in points)
    n = max(warmup_requests, concurrency) if warmup_requests else 0
    prompts = warmup_prompts([i.prompt for i in items], n)
    warm = [replace(items[i % len(items)], index=i, prompt=prompts[i]) for i in range(n)]
    out.warmup_events.append(client_event("warmup", "start", requests=n, concurrency=concurrency))
    out.warmup = run_warmup(send, warm, concurrency, stop) if warm else []
    out.warmup_events.append(client_event("warmup", "end"))
    bad = next((r for r in out.warmup if not r.ok), None)
    if bad is not None:
        out.failure = ServingFailed(
            "warmup", f"warm-up request {bad.index} ({bad.prompt_id}): {bad.error}{exit_note()}"
        )
        return out
    for k, point in enumerate(points):
        what = ", ".join(f"{key} {v}" for key, v in point.describe().items() if v is not None)
        say(f"  measure {k + 1}/{len(points)}: {len(items)} requests, {what} ...")
        run = run_point(send, items, point, stop)
        out.runs.append(run)
        out.events.append(
            [
                client_event("measure", "start", run.window_ns[0], point=k, **point.describe()),
                client_event("measure", "end", run.window_ns[1], point=k),
            ]
        )
        out.failure = _point_failure(run, stop, exit_note)
        if out.failure is not None:
            break
    return out


def _point_failure(run: PointRun, stop: Stop | None, exit_note: Callable[[], str]) -> ServingFailed | None:
    bad = next((r for r in run.results if not r.ok), None)
    if bad is None:
        return None
    time.sleep(0.2)  # let a dying server's exit be seen, for the reason
    gone = run.stopped or (stop() if stop is not None else None)
    first = f"request {bad.index} ({bad.prompt_id}) failed: {bad.error}"
    if gone:
        return ServingFailed("measure", f"{first}; {gone}{exit_note()}")
    failed = sum(1 for r in run.results if not r.ok)
    if failed == len(run.results):
        return ServingFailed("measure", f"every request failed; {first}{exit_note()}")
    if 2 * failed > len(run.results):
        truncated = sum(1 for r in run.results if r.error_code == "truncated")
        cut = f" ({truncated} truncated: streams ended without a finish_reason)" if truncated else ""
        return ServingFailed(
            "measure",
            f"{failed} of {len(run.results)} requests failed{cut}, more than half: the point's figures would "
            f"describe the few that did not; {first}{exit_note()}",
        )
    return None


def request_dicts(results: list[RequestResult]) -> list[dict[str, Any]]:
    """Per request in the record: the client's fields plus TTFT, TPOT and E2EL in ms."""
    out = []
    for r in results:
        d = asdict(r)
        d["ttft_ms"] = r.ttft_ns / 1e6 if r.ttft_ns is not None else None
        d["tpot_ms"] = r.tpot_ns / 1e6 if r.tpot_ns is not None else None
        d["e2el_ms"] = r.latency_ns / 1e6 if r.ok else None
        out.append(d)
    return out
