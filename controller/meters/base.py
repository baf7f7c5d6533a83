"""Building blocks shared by every meter: availability, metrics, traces and the sampler thread.

A meter reads one hardware or kernel source and returns a fixed tuple of floats per read
(``NaN`` where one value could not be read). The :class:`Sampler` thread calls its meters on
absolute deadlines and appends each read to the meter's :class:`Trace`, stamped with
``time.monotonic_ns()`` — the clock the harness stamps its phase markers with. Window figures
are computed afterwards from the traces (:func:`counter_delta`, :func:`integrate`,
:func:`window_values`).
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

NAN = math.nan


@dataclass(frozen=True)
class Availability:
    """Whether a meter (or one of its figures) can be measured here, and if not, why."""

    available: bool
    reason: str | None = None

    @classmethod
    def ok(cls) -> Availability:
        return cls(True, None)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason}


@dataclass
class Metric:
    """One figure of a run. The unit is in the name (``gpu_energy_j``) and in ``unit``.

    An unmeasured figure has ``value=None`` and ``available=False`` with a ``reason`` — never 0.
    ``extra`` carries figure-specific context (gross/idle/net, cross-checks, scope, ...).
    """

    name: str
    value: float | None
    unit: str
    source: str | None
    available: bool = True
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, name: str, unit: str, reason: str, source: str | None = None, **extra: Any) -> Metric:
        return cls(name, None, unit, source, False, reason, dict(extra))

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        if value is not None and not math.isfinite(value):
            # A NaN/inf leaking to here is a bug upstream; refuse to pass it off as a number.
            return {
                "value": None,
                "unit": self.unit,
                "source": self.source,
                "available": False,
                "reason": f"non-finite value {value!r} computed; this is a joulebench bug",
                **self.extra,
            }
        out: dict[str, Any] = {
            "value": value if self.available else None,
            "unit": self.unit,
            "source": self.source,
            "available": self.available,
            "reason": self.reason,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Sample:
    """One read of one meter: ``t_ns`` from ``time.monotonic_ns()`` and the values by field name."""

    t_ns: int
    values: dict[str, float | None]


class Trace:
    """Column store of one meter's reads. Appends are cheap; memory is 8 bytes per value.

    Columns are appended before the timestamp, so a reader that takes ``len(t_ns)`` first sees
    only complete rows while the sampler thread is still appending.
    """

    def __init__(self, meter: str, fields: Sequence[str]) -> None:
        self.meter = meter
        self.fields: tuple[str, ...] = tuple(fields)
        self.t_ns: array[int] = array("q")
        self.columns: dict[str, array[float]] = {f: array("d") for f in self.fields}
        self._cols: tuple[array[float], ...] = tuple(self.columns[f] for f in self.fields)

    def append(self, t_ns: int, values: Sequence[float]) -> None:
        for col, v in zip(self._cols, values, strict=True):
            col.append(v)
        self.t_ns.append(t_ns)

    def __len__(self) -> int:
        return len(self.t_ns)

    def samples(self) -> list[Sample]:
        """All complete rows as :class:`Sample` objects (NaN becomes None)."""
        n = len(self.t_ns)
        out: list[Sample] = []
        for i in range(n):
            vals = {f: _none_if_nan(self.columns[f][i]) for f in self.fields}
            out.append(Sample(self.t_ns[i], vals))
        return out

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """Timestamps and values of one field, rows with NaN dropped."""
        n = len(self.t_ns)
        col = self.columns[name]
        ts: list[int] = []
        vs: list[float] = []
        for i in range(n):
            v = col[i]
            if not math.isnan(v):
                ts.append(self.t_ns[i])
                vs.append(v)
        return ts, vs


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else v


@runtime_checkable
class Meter(Protocol):
    """What the sampler needs from a meter.

    ``open()`` probes the source once and fixes ``fields``; ``read()`` returns one float per field
    (NaN when a value could not be read this time) and must be cheap and must not block long.
    """

    name: str
    fields: tuple[str, ...]
    interval_s: float | None  # None: the sampler's interval

    def open(self) -> Availability: ...

    def read(self) -> Sequence[float]: ...

    def close(self) -> None: ...


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


# --------------------------------------------------------------------------------------------
# Window arithmetic on traces


@dataclass(frozen=True)
class WindowValue:
    """A figure computed over a window, or why it could not be."""

    value: float | None
    reason: str | None = None
    samples: int = 0

    @property
    def ok(self) -> bool:
        return self.value is not None


def _interp(ts: Sequence[int], vs: Sequence[float], t: int) -> float | None:
    """Linear interpolation of (ts, vs) at t; None if t is outside the covered span."""
    if not ts or t < ts[0] or t > ts[-1]:
        return None
    i = bisect_left(ts, t)
    if ts[i] == t:
        return vs[i]
    t_a, t_b = ts[i - 1], ts[i]
    v_a, v_b = vs[i - 1], vs[i]
    return v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)


def _coverage_reason(ts: Sequence[int], t0: int, t1: int, what: str) -> str:
    if not ts:
        return f"{what}: no valid samples were recorded"
    if ts[0] > t0:
        return (
            f"{what}: first valid sample is {(ts[0] - t0) / 1e6:.1f} ms after the window start "
            "(meter started or attached too late)"
        )
    return (
        f"{what}: last valid sample is {(t1 - ts[-1]) / 1e6:.1f} ms before the window end "
        "(meter stopped too early, or the source disappeared)"
    )


def counter_delta(trace: Trace, name: str, t0: int, t1: int) -> WindowValue:
    """Increase of a monotonic cumulative column over [t0, t1], interpolated at both edges."""
    ts, vs = trace.series(name)
    a = _interp(ts, vs, t0)
    b = _interp(ts, vs, t1)
    if a is None or b is None:
        return WindowValue(None, _coverage_reason(ts, t0, t1, f"{trace.meter}.{name}"))
    n = bisect_right(ts, t1) - bisect_left(ts, t0)
    return WindowValue(b - a, None, n)


def integrate(trace: Trace, name: str, t0: int, t1: int) -> WindowValue:
    """Trapezoidal integral over [t0, t1] of a rate column (e.g. watts -> joules)."""
    ts, vs = trace.series(name)
    a = _interp(ts, vs, t0)
    b = _interp(ts, vs, t1)
    if a is None or b is None:
        return WindowValue(None, _coverage_reason(ts, t0, t1, f"{trace.meter}.{name}"))
    i0 = bisect_right(ts, t0)
    i1 = bisect_left(ts, t1)
    pts_t = [t0, *ts[i0:i1], t1]
    pts_v = [a, *vs[i0:i1], b]
    total = 0.0
    for j in range(1, len(pts_t)):
        total += (pts_v[j] + pts_v[j - 1]) * 0.5 * (pts_t[j] - pts_t[j - 1])
    return WindowValue(total / 1e9, None, i1 - i0)


def window_values(trace: Trace, name: str, t0: int, t1: int, hold: bool = False) -> list[float]:
    """Valid values of one column sampled inside [t0, t1].

    ``hold``: for a gauge read less often than the window is long, when no sample falls inside,
    the samples just before and just after the window (the values it held then).
    """
    ts, vs = trace.series(name)
    i0, i1 = bisect_left(ts, t0), bisect_right(ts, t1)
    if i0 == i1 and hold:
        return vs[max(0, i0 - 1) : i1 + 1]
    return vs[i0:i1]


def max_gap_ns(trace: Trace, t0: int, t1: int) -> int:
    """Longest gap between consecutive rows that touch [t0, t1] (0 if fewer than two)."""
    t = trace.t_ns[: len(trace.t_ns)]
    i0 = max(0, bisect_left(t, t0) - 1)
    i1 = min(len(t), bisect_right(t, t1) + 1)
    gap = 0
    for i in range(i0 + 1, i1):
        gap = max(gap, t[i] - t[i - 1])
    return gap


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def flag(code: str, message: str, **context: Any) -> dict[str, Any]:
    """A warning attached to a run's measurements: a stable ``code`` and a sentence for people."""
    return {"code": code, "message": message, **context}


def summary_stats(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, min and max of a list (None for an empty list)."""
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def cpu_ram_metrics(
    trace: Trace,
    t0: int,
    t1: int,
    *,
    source: str,
    scope: str,
    ram_note: str,
    ram_kernel_peak_field: str | None = None,
) -> dict[str, Metric]:
    """cpu_time_s, cpu_percent, ram_peak_bytes and ram_mean_bytes over [t0, t1].

    Expects a cumulative ``cpu_time_s`` column and a sampled ``ram_bytes`` column.
    """
    window_s = (t1 - t0) / 1e9
    out: dict[str, Metric] = {}
    cpu = counter_delta(trace, "cpu_time_s", t0, t1)
    if cpu.value is None:
        reason = cpu.reason or "no CPU samples"
        out["cpu_time_s"] = Metric.unavailable("cpu_time_s", "s", reason, source, scope=scope)
        out["cpu_percent"] = Metric.unavailable("cpu_percent", "%", reason, source, scope=scope)
    else:
        out["cpu_time_s"] = Metric("cpu_time_s", cpu.value, "s", source, extra={"scope": scope})
        out["cpu_percent"] = Metric(
            "cpu_percent",
            100.0 * cpu.value / window_s if window_s > 0 else None,
            "%",
            source,
            available=window_s > 0,
            reason=None if window_s > 0 else "empty window",
            extra={"scope": scope, "note": "100 = one core fully busy over the window"},
        )
    # RAM is read every 50 ms by default: a shorter window takes the values around it.
    ram = window_values(trace, "ram_bytes", t0, t1, hold=True)
    if not ram:
        reason = f"no RAM samples inside the window ({len(trace)} samples in the trace)"
        out["ram_peak_bytes"] = Metric.unavailable("ram_peak_bytes", "B", reason, source)
        out["ram_mean_bytes"] = Metric.unavailable("ram_mean_bytes", "B", reason, source)
    else:
        extra: dict[str, Any] = {"scope": scope, "note": ram_note, "samples": len(ram)}
        if ram_kernel_peak_field is not None:
            peaks = window_values(trace, ram_kernel_peak_field, t0, t1)
            extra["kernel_peak_since_start_bytes"] = max(peaks) if peaks else None
        out["ram_peak_bytes"] = Metric("ram_peak_bytes", max(ram), "B", source, extra=extra)
        out["ram_mean_bytes"] = Metric("ram_mean_bytes", sum(ram) / len(ram), "B", source, extra=dict(extra))
    return out
