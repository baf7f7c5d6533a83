"""ML.ENERGY's steady state, computed beside ours, so that our figures can be set against their
leaderboard (the ML.ENERGY benchmark, ``mlenergy/benchmark/llm/benchmark.py``, ``RequestTracker``).

Their window: from the moment B requests have received their first output token (the server has
ramped up past the first prefill burst) to the moment N - B - 1 requests have finished (the queue is
about to drain; the -1 ends it a little early), N the requests sent, B the server's batch size
(their ``max_num_seqs``). Their energy per token: the window's energy over the output tokens
received inside it. Here B is the concurrency of a closed loop, and the engine's own concurrency
(as its server says) for an open loop or all at once; ours (``metrics.steady_window``) keeps the
load's target in flight instead, from the N-th send to the first answer after the last send.
"""

from __future__ import annotations

from typing import Any

from controller.serving.client import RequestResult
from controller.serving.load import LoadPoint

NAME = "ML.ENERGY"
DEFINITION = (
    "from the B-th first token received to the (N-B-1)-th response finished (N requests, B {basis}): "
    "the ML.ENERGY benchmark's steady state"
)


def _none(reason: str, b: int | None = None) -> dict[str, Any]:
    return {
        "name": NAME,
        "available": False,
        "t0_ns": None,
        "t1_ns": None,
        "s": None,
        "batch": b,
        "definition": None,
        "reason": reason,
    }


def batch_of(point: LoadPoint | None, engine_concurrency: dict[str, Any] | None) -> tuple[int | None, str]:
    """B: the requests the server serves at once, and what it was taken from."""
    engine = (engine_concurrency or {}).get("requests")
    if point is not None and point.concurrency is not None:
        if isinstance(engine, int) and engine < point.concurrency:
            return engine, "the engine's own concurrency (the server's result), below the load's"
        return point.concurrency, "the load's concurrency"
    if isinstance(engine, int):
        return engine, "the engine's own concurrency (the server's result)"
    return None, "the server does not say how many requests it batches"


def mlenergy_window(
    results: list[RequestResult], point: LoadPoint | None, engine_concurrency: dict[str, Any] | None
) -> dict[str, Any]:
    """ML.ENERGY's steady window over this load point's requests: ``{"name", "available", "t0_ns",
    "t1_ns", "s", "batch", "definition", "reason"}``."""
    b, basis = batch_of(point, engine_concurrency)
    if b is None:
        return _none(f"no batch size B: {basis}")
    firsts = sorted(r.t_first_token_ns for r in results if r.t_first_token_ns is not None)
    ends = sorted(r.t_start_ns + r.latency_ns for r in results if r.ok)
    n = len(results)
    finished = n - b - 1
    if finished < 1:
        return _none(f"{n} requests are too few for B = {b}: the window ends when N - B - 1 have finished", b)
    if len(firsts) < b or len(ends) < finished:
        return _none(f"fewer than B = {b} first tokens or {finished} finished requests", b)
    t0, t1 = firsts[b - 1], ends[finished - 1]
    if t1 <= t0:
        return _none(f"empty: the {finished}-th response finished before the {b}-th first token", b)
    return {
        "name": NAME,
        "available": True,
        "t0_ns": t0,
        "t1_ns": t1,
        "s": (t1 - t0) / 1e9,
        "batch": b,
        "batch_basis": basis,
        "definition": DEFINITION.format(basis=f"= {b}, {basis}"),
        "reason": None,
    }
