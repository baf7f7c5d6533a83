"""The load: which request is sent when.

- closed loop, ``--concurrency N``: N clients, each sending its next request when its last one is
  answered, until the requests run out;
- open loop, ``--request-rate R``: requests arrive at R per second whatever the server does, the
  gaps drawn from a gamma distribution of shape ``--burstiness`` b and mean 1/R (b = 1: Poisson
  arrivals; b < 1 burstier, b > 1 more even), seeded; the first arrives at once;
- ``--request-rate inf``: every request at once.

A sweep (``--concurrency 1,4,16`` or ``--request-rate 1,2,4,inf``) is one :class:`LoadPoint` each.
:func:`run_point` drives one point through a ``send`` function (the client, bound to its endpoint)
and returns every request's result and the measure window around them.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from controller.serving.client import RequestResult, WorkItem

# send(item, scheduled_ns) -> the request's result; never raises for what the server does
Send = Callable[[WorkItem, int | None], RequestResult]
# stop() -> why no further request should be sent (the server is gone), or None
Stop = Callable[[], str | None]
MAX_THREADS = 1024


class LoadError(ValueError):
    """A load option that makes no sense; the message says which and what is valid."""


@dataclass(frozen=True)
class LoadPoint:
    concurrency: int | None = None  # closed loop
    request_rate: float | None = None  # open loop, per second; math.inf: all at once
    burstiness: float = 1.0
    seed: int = 0

    @property
    def variable(self) -> str:
        return "concurrency" if self.concurrency is not None else "request_rate"

    @property
    def value(self) -> float | str:
        """The swept variable's value; "inf" for all at once (JSON has no infinity)."""
        if self.concurrency is not None:
            return float(self.concurrency)
        return "inf" if self.request_rate == math.inf else float(self.request_rate or 0)

    @property
    def kind(self) -> str:
        if self.concurrency is not None:
            return "closed-loop"
        if self.request_rate == math.inf:
            return "all-at-once"
        return "poisson" if self.burstiness == 1.0 else "gamma"

    def describe(self) -> dict[str, Any]:
        rate = self.request_rate
        return {
            "kind": self.kind,
            "concurrency": self.concurrency,
            "request_rate": "inf" if rate == math.inf else rate,
            "burstiness": self.burstiness if self.concurrency is None else None,
            "seed": self.seed if self.kind in ("poisson", "gamma") else None,
        }


def _numbers(text: str, option: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise LoadError(f"{option} {text!r}: give one value or a comma-separated sweep, e.g. {option} 1,4,16")
    return items


def parse_concurrency(text: str) -> list[int]:
    out = []
    for t in _numbers(text, "--concurrency"):
        try:
            n = int(t)
        except ValueError:
            raise LoadError(f"--concurrency {t!r} is not a whole number of requests in flight") from None
        if n < 1:
            raise LoadError(f"--concurrency must be at least 1, got {n}")
        out.append(n)
    return out


def parse_rates(text: str) -> list[float]:
    out = []
    for t in _numbers(text, "--request-rate"):
        try:
            r = float(t)
        except ValueError:
            raise LoadError(f"--request-rate {t!r} is not a number of requests per second (or inf)") from None
        if math.isnan(r) or r <= 0:
            raise LoadError(f"--request-rate must be above 0 requests per second (or inf: all at once), got {t}")
        out.append(r)
    return out


def plan_points(
    concurrency: str | None, request_rate: str | None, burstiness: float = 1.0, seed: int = 0
) -> list[LoadPoint]:
    """The load points of one command; LoadError for nonsense (checked before anything starts)."""
    if concurrency is not None and request_rate is not None:
        raise LoadError(
            "give --concurrency (closed loop) or --request-rate (open loop), not both: one command sweeps one of them"
        )
    if math.isnan(burstiness) or burstiness <= 0:
        raise LoadError(f"--burstiness must be above 0 (1: Poisson arrivals), got {burstiness:g}")
    if request_rate is not None:
        return [LoadPoint(request_rate=r, burstiness=burstiness, seed=seed) for r in parse_rates(request_rate)]
    return [LoadPoint(concurrency=n) for n in parse_concurrency(concurrency or "1")]


def arrival_offsets_s(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """When each of n requests arrives, in seconds after the first (which arrives at 0)."""
    if rate == math.inf:
        return [0.0] * n
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)  # mean gap: burstiness * scale = 1 / rate
    out, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.gammavariate(burstiness, scale)
        out.append(t)
    return out


@dataclass
class PointRun:
    point: LoadPoint
    results: list[RequestResult]
    window_ns: tuple[int, int]  # the measure window: before the first send, after the last answer
    stopped: str | None = None  # why sending stopped early, if it did


def run_point(send: Send, items: list[WorkItem], point: LoadPoint, stop: Stop | None = None) -> PointRun:
    """Send every item as ``point`` says; the window opens before the first send and closes after the last answer."""
    halt: list[str] = []

    def halted() -> bool:
        if not halt and stop is not None and (why := stop()) is not None:
            halt.append(why)
        return bool(halt)

    t0 = time.monotonic_ns()
    if point.concurrency is not None:
        results = _closed_loop(send, items, point.concurrency, halted)
    else:
        results = _open_loop(send, items, point, halted)
    t1 = time.monotonic_ns()
    return PointRun(point, sorted(results, key=lambda r: r.index), (t0, t1), halt[0] if halt else None)


def _closed_loop(
    send: Send, items: list[WorkItem], concurrency: int, halted: Callable[[], bool]
) -> list[RequestResult]:
    lock = threading.Lock()
    queue = iter(items)
    results: list[RequestResult] = []

    def client() -> None:
        while not halted():
            with lock:
                item = next(queue, None)
            if item is None:
                return
            r = send(item, time.monotonic_ns())
            with lock:
                results.append(r)

    threads = [
        threading.Thread(target=client, name=f"joulebench-client-{i}") for i in range(min(concurrency, len(items)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _open_loop(send: Send, items: list[WorkItem], point: LoadPoint, halted: Callable[[], bool]) -> list[RequestResult]:
    assert point.request_rate is not None
    offsets = arrival_offsets_s(len(items), point.request_rate, point.burstiness, point.seed)
    with ThreadPoolExecutor(
        max_workers=min(len(items), MAX_THREADS) or 1, thread_name_prefix="joulebench-client"
    ) as pool:
        start = time.monotonic_ns()
        futures = []
        for item, offset in zip(items, offsets, strict=True):
            due = start + int(offset * 1e9)
            while (wait := due - time.monotonic_ns()) > 0:
                time.sleep(min(wait / 1e9, 0.05))
            if halted():
                break
            futures.append(pool.submit(send, item, due))
        return [f.result() for f in futures]


def run_warmup(send: Send, items: list[WorkItem], concurrency: int, stop: Stop | None = None) -> list[RequestResult]:
    """Warm-up requests, ``concurrency`` in flight (so every client and server slot is exercised)."""
    return run_point(send, items, LoadPoint(concurrency=max(1, concurrency)), stop).results
