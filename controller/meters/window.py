"""Window arithmetic on traces: what a column did over [t0, t1], and how far to trust it.

Cumulative counters are differenced (:func:`counter_delta`; energy counters go through ``edges``,
which knows when they update), rates integrated (:func:`integrate`; energy with its bound by :func:`integrate_power`),
gauges collected (:func:`window_values`). A counter that goes backwards inside the window, or steps
by more than its source can deliver in the time between two reads, is a :class:`CounterFault`:
the delta is refused with the reason, never turned into a number. :func:`short_window_flag` marks a
window only a few sampling intervals long.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.meters.base import Trace, flag, seconds

#: Windows shorter than this many sampling intervals are flagged with their expected edge bias.
SHORT_WINDOW_INTERVALS = 10
#: Gaps looked at on each side when estimating the sampling interval of a long window.
_EDGE_GAPS = 100


@dataclass(frozen=True)
class CounterFault:
    """A step of a cumulative counter between two reads that no real consumption explains."""

    kind: Literal["backwards", "jump"]
    t_ns: int  # the read that showed it
    step: float  # change since the read before, in counter units (negative: backwards)
    dt_s: float  # time the step was made in: since the read before (for a jump: before the last change)
    limit: float | None = None  # for a jump: the largest step the source can make in dt_s

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """One clause for people; ``scale`` turns counter units into ``unit`` (1e-6 for µJ -> J)."""
        u = f" {unit}" if unit else ""
        if self.kind == "backwards":
            return (
                f"the counter went backwards by {-self.step * scale:.6g}{u} between two reads "
                f"{seconds(self.dt_s)} apart (a counter reset: driver reload, device reset)"
            )
        limit = (self.limit or 0.0) * scale
        return (
            f"the counter jumped by {self.step * scale:.6g}{u} in {seconds(self.dt_s)}, more than the "
            f"{limit:.6g}{u} its source can deliver in that time"
        )


@dataclass(frozen=True)
class WindowValue:
    """A figure computed over a window, or why it could not be."""

    value: float | None
    reason: str | None = None
    samples: int = 0
    faults: tuple[CounterFault, ...] = ()

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


def _bracket(ts: Sequence[int], t0: int, t1: int) -> tuple[int, int]:
    """Indices of the last read at or before t0 and the first at or after t1 (clamped)."""
    return max(0, bisect_right(ts, t0) - 1), min(len(ts) - 1, bisect_left(ts, t1))


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


def counter_faults(
    ts: Sequence[int], vs: Sequence[float], t0: int, t1: int, max_rate: float | None = None, slack_s: float = 0.0
) -> list[CounterFault]:
    """Steps of a cumulative series, among the reads that bracket [t0, t1], that go backwards or,
    with ``max_rate`` (counter units per second), exceed what the source can deliver.

    A counter that updates less often than it is read holds its value, then steps by all it
    counted since: a step is bounded by ``max_rate`` times the time since the read before its
    previous change (plus ``slack_s``), not since the read before.
    """
    out: list[CounterFault] = []
    if len(ts) < 2:
        return out
    lo, hi = _bracket(ts, t0, t1)
    c = lo
    while c > 0 and vs[c] == vs[c - 1]:
        c -= 1
    held_since = ts[max(0, c - 1)]
    for i in range(lo + 1, hi + 1):
        step = vs[i] - vs[i - 1]
        if step < 0:
            out.append(CounterFault("backwards", ts[i], step, (ts[i] - ts[i - 1]) / 1e9))
        elif step > 0 and max_rate is not None:
            span_s = (ts[i] - held_since) / 1e9
            if step > max_rate * (span_s + slack_s):
                out.append(CounterFault("jump", ts[i], step, span_s, max_rate * (span_s + slack_s)))
        if step != 0:
            held_since = ts[i - 1]
    return out


def counter_delta(
    trace: Trace, name: str, t0: int, t1: int, *, max_rate: float | None = None, slack_s: float = 0.0
) -> WindowValue:
    """Increase of a cumulative column over [t0, t1], interpolated at both edges.

    Refused (``value`` None, ``faults`` set) when the counter goes backwards among the reads the
    window needs, or steps by more than ``max_rate`` allows (see :func:`counter_faults`).
    """
    ts, vs = trace.series(name)
    a = _interp(ts, vs, t0)
    b = _interp(ts, vs, t1)
    what = f"{trace.meter}.{name}"
    if a is None or b is None:
        return WindowValue(None, _coverage_reason(ts, t0, t1, what))
    n = bisect_right(ts, t1) - bisect_left(ts, t0)
    faults = counter_faults(ts, vs, t0, t1, max_rate, slack_s)
    if faults:
        more = f" ({len(faults) - 1} more such steps)" if len(faults) > 1 else ""
        return WindowValue(None, f"{what}: {faults[0].describe()}{more}", n, tuple(faults))
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


@dataclass(frozen=True)
class SampledEnergy:
    """Energy integrated from sampled power over a window (J), its bound's components, or why not."""

    value: float | None
    components: dict[str, float]
    reason: str | None = None
    samples: int = 0


def integrate_power(
    trace: Trace, name: str, t0: int, t1: int, lag_s: float = 0.0, resolution_w: float = 0.0
) -> SampledEnergy:
    """Energy over [t0, t1] from a power column, and the bound of what sampling leaves.

    Instantaneous power (``lag_s`` 0): trapezoids between the samples inside the window; over
    the part of an interval cut by an edge, the sample inside the window is held (exact when
    power steps at the edge, where the workload starts or stops; off by at most that part times
    the change across the interval otherwise: ``edge_interpolation``). Between samples, power
    that changes once in an interval makes a trapezoid off by up to half the change times the
    interval, evenly either way: their sum at 2 sigma (``power_sampling``); a gap of more than
    twice the usual interval, by up to the range of power around it (``sampling_gaps``).

    Power its source averaged or reported late (NVML's 1 s average: it lags by half a second; a
    wall meter's load, the mean of its last refresh period, polled up to a period later: by up
    to 1.5 s), by up to ``lag_s``: trapezoids with the edges interpolated, plus
    ``power_averaging``: up to ``lag_s`` worth of the power's swing around each edge moved
    across it (in a window shorter than twice the lag, any of its power may be from before).
    ``power_resolution``: each reading is rounded to ``resolution_w``.
    """
    ts, vs = trace.series(name)
    a = _interp(ts, vs, t0)
    b = _interp(ts, vs, t1)
    if a is None or b is None:
        return SampledEnergy(None, {}, _coverage_reason(ts, t0, t1, f"{trace.meter}.{name}"))
    i0, i1 = bisect_right(ts, t0), bisect_left(ts, t1)
    inside_t, inside_v = ts[i0:i1], vs[i0:i1]
    if lag_s <= 0 and inside_t:
        a, b = inside_v[0], inside_v[-1]  # held from the inside: the window's own power
    pts_t, pts_v = [t0, *inside_t, t1], [a, *inside_v, b]
    total = sum((pts_v[j] + pts_v[j - 1]) * 0.5 * (pts_t[j] - pts_t[j - 1]) for j in range(1, len(pts_t))) / 1e9
    components = _sampled_bound(ts, vs, t0, t1, i0, i1, lag_s)
    components["power_resolution"] = resolution_w / 2.0 * (t1 - t0) / 1e9
    return SampledEnergy(total, components, None, i1 - i0)


def _sampled_bound(
    ts: Sequence[int], vs: Sequence[float], t0: int, t1: int, i0: int, i1: int, lag_s: float
) -> dict[str, float]:
    """The components of :func:`integrate_power`'s bound (J)."""
    lo, hi = max(0, i0 - 1), min(len(ts) - 1, i1)
    steps = [abs(vs[j + 1] - vs[j]) for j in range(lo, hi)]  # steps[j - lo]: across (ts[j], ts[j+1])
    ordinary = 2.0 * statistics.median([ts[j + 1] - ts[j] for j in range(lo, hi)] or [0])
    uniform_var = 0.0
    worst = 0.0
    gaps = 0.0
    for j in range(i0, i1 - 1):  # whole intervals inside the window
        if ts[j + 1] - ts[j] > ordinary:
            # A sampling gap: power may have been anywhere in the range seen around it meanwhile.
            near = vs[max(0, j - 2) : j + 4]
            gaps += (max(near) - min(near)) * (ts[j + 1] - ts[j]) / 2e9
            continue
        # Power that changed across the neighbouring intervals may have changed inside this one
        # too, unseen: the largest step around it counts.
        step = max(steps[max(0, j - lo - 1) : j - lo + 2])
        half = step * (ts[j + 1] - ts[j]) / 2e9
        uniform_var += half * half / 3.0
        worst += half
    edges = 0.0
    for t, k in ((t0, lo), (t1, hi - 1)):
        if k + 1 < len(ts) and ts[k] < t < ts[k + 1]:
            part = (ts[k + 1] - t) if t == t0 else (t - ts[k])
            edges += part / 1e9 * abs(vs[k + 1] - vs[k])
    components = {
        "edge_interpolation": edges,
        "power_sampling": min(worst, 2.0 * math.sqrt(uniform_var)),
        "sampling_gaps": gaps,
    }
    if lag_s > 0:
        window_s = (t1 - t0) / 1e9
        span = int(2 * lag_s * 1e9)
        if window_s < 2 * lag_s:
            components["power_averaging"] = window_s * _swing(ts, vs, t0 - span, t1 + span)
        else:
            swings = _swing(ts, vs, t0 - span, t0 + span) + _swing(ts, vs, t1 - span, t1 + span)
            components["power_averaging"] = lag_s * swings
    return components


def _swing(ts: Sequence[int], vs: Sequence[float], lo: int, hi: int) -> float:
    """Highest minus lowest power sampled in [lo, hi]."""
    near = vs[bisect_left(ts, lo) : bisect_right(ts, hi)]
    return max(near) - min(near) if near else 0.0


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


def sampling_interval_s(trace: Trace, t0: int, t1: int) -> float | None:
    """Median time between the reads that bracket [t0, t1] (near its edges, for a long window);
    None with fewer than two reads."""
    t = trace.t_ns[: len(trace.t_ns)]
    if len(t) < 2:
        return None
    lo, hi = _bracket(t, t0, t1)
    if hi - lo > 2 * _EDGE_GAPS:  # the edges are where the bias comes from
        idx = [*range(lo + 1, lo + 1 + _EDGE_GAPS), *range(hi + 1 - _EDGE_GAPS, hi + 1)]
    else:
        idx = list(range(lo + 1, hi + 1))
    gaps = [t[i] - t[i - 1] for i in idx]
    return statistics.median(gaps) / 1e9 if gaps else None


def short_window_flag(
    meter: str,
    metric: str,
    window_s: float,
    interval_s: float | None,
    uncertainty_rel: float | None = None,
    what: str = "sampling interval",
) -> dict[str, Any] | None:
    """A ``short_window`` flag when the window is under :data:`SHORT_WINDOW_INTERVALS` intervals.

    Such a figure rests mostly on how its edges were reconstructed between reads; its bound
    (``uncertainty_rel``) says by how much it may be off, and is given in the flag.
    """
    if interval_s is None or interval_s <= 0 or window_s >= SHORT_WINDOW_INTERVALS * interval_s:
        return None
    bound = f" (+-{100 * uncertainty_rel:.1f} %)" if uncertainty_rel is not None else ""
    return flag(
        "short_window",
        f"{metric}: the window ({seconds(window_s)}) is shorter than {SHORT_WINDOW_INTERVALS} {what}s "
        f"({seconds(interval_s)} each): its energy rests mostly on the edges{bound}; measure a longer "
        "window or sample more often",
        meter=meter,
        metric=metric,
        window_s=window_s,
        interval_s=interval_s,
        uncertainty_rel=uncertainty_rel,
    )


def summary_stats(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, min and max of a list (None for an empty list)."""
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
