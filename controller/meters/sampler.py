"""The sampler thread: reads its meters on absolute deadlines into their traces.

Each read is stamped with ``time.monotonic_ns()`` — the clock the harness stamps its phase
markers with — so window figures can be cut from the traces afterwards (see ``window``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from controller.meters.base import Meter, Trace


@dataclass
class _Slot:
    meter: Meter
    trace: Trace
    every: int
    errors: int = 0
    last_error: str | None = None


class Sampler:
    """Background thread that reads its meters every ``interval_s`` on absolute deadlines.

    Deadline ``k`` is ``start + k * interval``; a late tick does not push later ones back, and
    deadlines that were missed entirely are skipped (counted in ``missed``) instead of being
    fired in a burst. Each read is stamped with the midpoint of ``monotonic_ns()`` before and
    after the read. The thread's own CPU time is measured with ``time.thread_time()``.
    """

    def __init__(self, interval_s: float = 0.01, name: str = "joulebench-sampler") -> None:
        if not interval_s > 0:
            raise ValueError(f"sampler interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self.name = name
        self._slots: tuple[_Slot, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first_tick = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.missed = 0
        self.max_lateness_ns = 0
        self.started_ns: int | None = None
        self.stopped_ns: int | None = None
        self.thread_cpu_s = 0.0
        self._thread_cpu_start = 0.0
        self.native_id: int | None = None

    def add(self, meter: Meter) -> Trace:
        """Register an opened meter (also while running) and return the trace it fills."""
        every = 1
        if meter.interval_s is not None:
            every = max(1, round(meter.interval_s / self.interval_s))
        slot = _Slot(meter, Trace(meter.name, meter.fields), every)
        with self._lock:
            self._slots = (*self._slots, slot)  # copy-on-write: the thread reads a snapshot
        return slot.trace

    def errors(self) -> dict[str, dict[str, Any]]:
        return {s.meter.name: {"errors": s.errors, "last_error": s.last_error} for s in self._slots if s.errors}

    def start(self, wait_first_tick: bool = True) -> None:
        """Start the thread; by default return once every meter has been read once."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if wait_first_tick:
            self._first_tick.wait(timeout=10.0)

    def stop(self) -> None:
        """Stop the thread after its current tick and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self, k: int = 0, force: bool = False) -> None:
        """Read every due meter once (every meter if ``force``). Called by the thread."""
        for slot in self._slots:
            if k % slot.every and not force:
                continue
            a = time.monotonic_ns()
            try:
                values = slot.meter.read()
            except Exception as exc:  # noqa: BLE001 -- a meter must never kill the sampler
                slot.errors += 1
                slot.last_error = f"{type(exc).__name__}: {exc}"
                continue
            slot.trace.append((a + time.monotonic_ns()) // 2, values)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self._thread_cpu_start = time.thread_time()
        interval_ns = int(self.interval_s * 1e9)
        start = time.monotonic_ns()
        self.started_ns = start
        k = 0
        try:
            while True:
                self.tick(k)
                self.ticks += 1
                if k == 0:
                    self._first_tick.set()
                k += 1
                deadline = start + k * interval_ns
                now = time.monotonic_ns()
                if now > deadline:
                    late = now - deadline
                    self.max_lateness_ns = max(self.max_lateness_ns, late)
                    skip = late // interval_ns + 1 if late >= interval_ns else 0
                    if skip:
                        self.missed += skip
                        k += skip
                        deadline = start + k * interval_ns
                # time.sleep, not Event.wait: on VMs a timed Event.wait costs several times
                # more CPU per wake-up. Sleep in slices so stop() is seen within 100 ms.
                while not self._stop.is_set():
                    remaining = deadline - time.monotonic_ns()
                    if remaining <= 0:
                        break
                    time.sleep(min(remaining, 100_000_000) / 1e9)
                if self._stop.is_set():
                    break
            # One last read of every meter, slow ones included, so that the traces reach the
            # moment stop() was called.
            self.tick(k, force=True)
        finally:
            self.stopped_ns = time.monotonic_ns()
            self.thread_cpu_s = time.thread_time() - self._thread_cpu_start
            self._first_tick.set()

    def stats(self) -> dict[str, Any]:
        """Ticks done vs requested, missed deadlines, and the thread's CPU cost."""
        end = self.stopped_ns if self.stopped_ns is not None else time.monotonic_ns()
        wall_s = (end - self.started_ns) / 1e9 if self.started_ns is not None else 0.0
        requested = int(wall_s / self.interval_s) + 1 if wall_s > 0 else 0
        cpu_s = self.thread_cpu_s
        if self.stopped_ns is None and self.running:
            cpu_s = float("nan")  # thread_time() is per-thread; known only at stop
        return {
            "interval_s": self.interval_s,
            "wall_s": wall_s,
            "ticks": self.ticks,
            "requested_ticks": requested,
            "achieved_rate_ratio": (self.ticks / requested) if requested else None,
            "missed_deadlines": self.missed,
            "max_lateness_ms": self.max_lateness_ns / 1e6,
            "thread_cpu_s": None if math.isnan(cpu_s) else cpu_s,
            "thread_cpu_percent_of_core": (100.0 * cpu_s / wall_s if wall_s > 0 and not math.isnan(cpu_s) else None),
            "meter_errors": self.errors(),
        }
