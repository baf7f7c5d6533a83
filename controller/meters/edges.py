"""A cumulative counter over a window: when it really took each value, its value at the window's
edges, and how far that can be off.

A counter (RAPL ``energy_uj``, NVML's total-energy counter) is read every few ms but updates on its
own clock (RAPL about every ms, NVML every 20-100 ms): a read returns what the counter held at its
last update, not at the read. :func:`update_points` turns reads into the instants the values were
taken (each with its own uncertainty); :func:`at_edge` estimates the counter at a window edge
between two such points, :func:`counter_window` the increase over a window with its bound.

At an edge the workload starts or stops, so power usually steps there. Interpolating linearly
across the bracketing points misses part of that step (a third of an interval per window, on
average, when it steps at both edges); instead the bracket's energy is split with the power just
outside it on each side (the interval before and after the bracket), and what that leaves
unexplained (``residual``) is spread evenly. That split is exact for a step at the edge, equals
linear interpolation at constant power, and its error is at most ``max(x, y) * |residual rate|``
whenever the bracket's deviation from the neighbours has one sign (one step anywhere in it, a
burst, a dip) -- which is the ``interpolation`` part of the bound.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UpdatePoints:
    """Instants (ns, as floats) at which a counter held each value.

    Each instant is off by at most ``h[i]`` on its own. Instants from a fitted update clock
    (``clock``) share two more errors: its phase (it shifts the whole reconstruction at once,
    which cancels at constant power) and its period (it stretches the reconstruction about the
    window's middle).
    """

    t: list[float]
    v: list[float]
    h: list[float]
    clock: Clock | None = None
    last_read: float = 0.0  # the counter's value is known to have held from its last update to here


@dataclass(frozen=True)
class Clock:
    """An update clock every seen update fits: update n at ``phase + n * period`` (n counted from
    the update nearest ``centre``), within ``+-phase_halfwidth`` (common to all), ``+-jitter`` (each)
    and a period within ``+-period_halfwidth``."""

    period: float
    phase_halfwidth: float
    period_halfwidth: float
    jitter: float


def update_points(
    ts: Sequence[int], vs: Sequence[float], period_ns: float, centre: float | None = None
) -> UpdatePoints:
    """When the counter took each value it was read with.

    A value first read at ``t_i`` was set by an update in ``(max(t_{i-1}, t_i - period), t_i]``:
    its midpoint, plus or minus half that span. A value still read more than two periods later
    was updated to itself (nothing drawn) until at least ``t_j - period``: a second point there.
    A counter slower than its reads (NVML) updates on its own clock: when every update seen fits
    one period and phase (:func:`_fit_clock`), the instants come from that clock instead, which
    is far more precise than any read interval alone once reads and updates drift against each other.
    """
    t: list[float] = []
    v: list[float] = []
    h: list[float] = []
    changes: list[tuple[int, float, float]] = []  # (point index, lo, hi) of updates seen happen
    n = len(ts)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and vs[j + 1] == vs[i]:
            j += 1
        lo = ts[i] - period_ns if i == 0 else max(ts[i - 1], ts[i] - period_ns)
        # The first read's update is somewhere in the period before it: placed by a clock if
        # one fits the others, never used to fit one.
        changes.append((len(t), float(lo), float(ts[i])))
        t.append((lo + ts[i]) / 2.0)
        h.append((ts[i] - lo) / 2.0)
        v.append(vs[i])
        if ts[j] - ts[i] > 2.0 * period_ns:
            t.append(ts[j] - period_ns)
            h.append(period_ns / 2.0)
            v.append(vs[i])
        i = j + 1
    last = float(ts[-1]) if n else 0.0
    if n < 2 or period_ns <= 1.5 * _median([b - a for a, b in itertools.pairwise(ts)]):
        return UpdatePoints(t, v, h, last_read=last)
    fit = _fit_clock(changes, centre)
    if fit is None:
        return UpdatePoints(t, v, h, last_read=last)
    clock, instants = fit
    for idx, (at, half) in instants.items():
        t[idx], h[idx] = at, half
    order = sorted(range(len(t)), key=t.__getitem__)  # a fitted instant never passes a neighbour
    return UpdatePoints([t[o] for o in order], [v[o] for o in order], [h[o] for o in order], clock, last)


def _median(xs: Sequence[float]) -> float:
    return float(sorted(xs)[len(xs) // 2]) if xs else 0.0


def _numbering(changes: Sequence[tuple[int, float, float]]) -> list[int] | None:
    """Update number of each seen update, counted from the first.

    Read-time noise makes one gap ambiguous (30 ms: one 20 ms period, or two?), so the count is
    chosen for the whole span: of the plausible numbers of periods between the first and the
    last update seen, the one whose clock every update lies closest to.
    """
    mids = [(lo + hi) / 2.0 for _, lo, hi in changes]
    gaps = [b - a for a, b in itertools.pairwise(mids)]
    typical = _median(gaps)
    if typical <= 0:
        return None
    skipped = sum(max(0, round(g / typical) - 1) for g in gaps)
    best: tuple[float, list[int]] | None = None
    for m in range(len(mids) - 1, len(mids) + skipped + 2):
        period = (mids[-1] - mids[0]) / m
        ns: list[int] = []
        worst = 0.0
        for x in mids:  # a wrong count drifts off soon: stop at the first miss worse than the best
            n = round((x - mids[0]) / period)
            worst = max(worst, abs(x - mids[0] - n * period))
            if (ns and n <= ns[-1]) or (best is not None and worst >= best[0]):
                break
            ns.append(n)
        else:
            best = (worst, ns)
    return None if best is None else best[1]


#: Updates at each end of the span whose pairs bound the clock's period.
_PERIOD_PAIRS = 8


def _fit_clock(
    changes: Sequence[tuple[int, float, float]], centre: float | None
) -> tuple[Clock, dict[int, tuple[float, float]]] | None:
    """An update clock every update seen within an ordinary read interval fits (each within its
    interval, widened by the smallest ``jitter`` that makes them all fit), and the instant on it
    of every update it places (point index -> (ns, half-width)). None with fewer than 8 such
    updates, or when the clock is no more precise than their read intervals alone.

    An update seen across a long read interval (a late sampler tick), and the first read's, is
    placed at the clock's last instant before that read (:func:`_place`).
    """
    spans = [hi - lo for _, lo, hi in changes]
    ordinary = _median(spans) * 1.5
    fitted = [c for c in changes if c[2] - c[1] <= ordinary]
    if len(fitted) < 8:
        return None
    ns = _numbering(fitted)
    if ns is None:
        return None
    mid = centre if centre is not None else (fitted[0][2] + fitted[-1][2]) / 2.0
    c = min(range(len(fitted)), key=lambda k: abs(fitted[k][2] - mid))
    ns = [x - ns[c] for x in ns]
    halfwidth = min(hi - lo for _, lo, hi in fitted) / 2.0
    best = _clock_at(fitted, ns, 0.0)
    lo_j, hi_j = 0.0, halfwidth
    if best is None:
        for _ in range(30):  # bisect the smallest jitter that fits
            jitter = (lo_j + hi_j) / 2.0
            found = _clock_at(fitted, ns, jitter)
            lo_j, hi_j, best = (lo_j, jitter, found) if found is not None else (jitter, hi_j, best)
    if best is None or best[0].jitter >= halfwidth:
        return None
    clock, phase = best
    instants = {idx: (phase + x * clock.period, clock.jitter) for (idx, _, _), x in zip(fitted, ns, strict=True)}
    for idx, lo, hi in changes:
        if idx not in instants:
            placed = _place(clock, phase, lo, hi)
            if placed is not None:
                instants[idx] = placed
    return clock, instants


def _place(clock: Clock, phase: float, lo: float, hi: float) -> tuple[float, float] | None:
    """The instant (and its half-width) on ``clock`` of the update a read at ``hi`` showed, known
    to lie in (lo, hi]: the last clock instant before the read. When the clock's own uncertainty
    leaves two instants possible, the one inside (lo, hi], widened to cover the other; None
    when the clock puts none there."""
    n = math.floor((hi - phase) / clock.period)
    reach: list[tuple[float, float]] = []
    for m in (n - 1, n, n + 1):
        at = phase + m * clock.period
        slack = clock.phase_halfwidth + abs(m) * clock.period_halfwidth + clock.jitter
        a, b = max(at - slack, lo), min(at + slack, hi)
        if a <= b:
            reach.append((a, b))
    at = phase + n * clock.period
    if not reach or not lo < at <= hi:
        return None
    return at, max(max(at - a, b - at) for a, b in reach)


def _clock_at(
    changes: Sequence[tuple[int, float, float]], ns: Sequence[int], jitter: float
) -> tuple[Clock, float] | None:
    """The clock (and its mid phase) that fits every update within its read interval +-jitter."""
    k = min(_PERIOD_PAIRS, len(changes) // 2)
    pairs = [(i, j) for i in range(k) for j in range(len(changes) - k, len(changes)) if ns[j] > ns[i]]
    if not pairs:
        return None
    p_lo = max((changes[j][1] - changes[i][2] - 2 * jitter) / (ns[j] - ns[i]) for i, j in pairs)
    p_hi = min((changes[j][2] - changes[i][1] + 2 * jitter) / (ns[j] - ns[i]) for i, j in pairs)
    if p_lo > p_hi or p_lo <= 0:
        return None
    period, dp = (p_lo + p_hi) / 2.0, (p_hi - p_lo) / 2.0
    f_lo = max(c[1] - jitter - x * period - abs(x) * dp for c, x in zip(changes, ns, strict=True))
    f_hi = min(c[2] + jitter - x * period + abs(x) * dp for c, x in zip(changes, ns, strict=True))
    if f_lo > f_hi:
        return None
    return Clock(period, (f_hi - f_lo) / 2.0, dp, jitter), (f_lo + f_hi) / 2.0


@dataclass(frozen=True)
class EdgeValue:
    """The counter at one edge, and bounds (counter units) on the parts of its error."""

    value: float
    interpolation: float  # where inside the bracket the energy was drawn
    timing: float  # when the bracketing (and neighbouring) values were really taken, each alone
    low: float  # lowest and highest mean rate (units/s) around the edge
    high: float


def _rate(p: UpdatePoints, i: int, j: int) -> float | None:
    if i < 0 or j >= len(p.t) or p.t[j] <= p.t[i]:
        return None
    return (p.v[j] - p.v[i]) / (p.t[j] - p.t[i]) * 1e9


def at_edge(p: UpdatePoints, t: int, other: int | None = None) -> EdgeValue | None:
    """The counter's value at ``t`` (ns) and its error bounds; None outside the points' span.
    ``other``: the window's other edge, whose own step says nothing of the power around this one."""
    k = bisect_right(p.t, t) - 1
    if k < 0 or (k + 1 >= len(p.t) and t > p.last_read):
        return None
    if k + 1 >= len(p.t):
        return _after_last(p, k, t)
    a, b = p.t[k], p.t[k + 1]
    s = p.v[k + 1] - p.v[k]
    span = (b - a) / 1e9
    x, y = (t - a) / 1e9, (b - t) / 1e9
    left, right = _rate(p, k - 1, k), _rate(p, k + 1, k + 2)
    mean = s / span
    if left is None and right is None:
        # Nothing to shape the bracket with: anything from 0 to all of it may lie before t.
        e = s * x / span
        own = mean * (p.h[k] * y + p.h[k + 1] * x) / span / 1e9
        return EdgeValue(p.v[k] + e, max(e, s - e), own, mean, mean)
    left = right if left is None else left
    right = left if right is None else right
    assert left is not None and right is not None
    residual = (s - x * left - y * right) / span  # rate the neighbours leave unexplained
    e = min(max(x * (left + residual), 0.0), s)
    # The unexplained energy (residual * span) lies somewhere in the bracket: all before t, or
    # all after it, at worst; and what lies before t is between none and all of the bracket's.
    lo = max(x * left + min(0.0, residual * span), 0.0)
    hi = min(x * left + max(0.0, residual * span), s)
    interpolation = max(e - lo, hi - e, 0.0) + min(x, y) * _roughness(p, k, left, right, other)
    rates = (left, right, mean)
    return EdgeValue(p.v[k] + e, interpolation, _timing(p, k, max(rates), x, y, span), min(rates), max(rates))


def _after_last(p: UpdatePoints, k: int, t: int) -> EdgeValue:
    """The counter at ``t``, after its last update but before its last read (a window that ends
    with the reads): the last update's value plus the rate into it over the time since, which may
    be anything from none to twice that (nothing after the last update shows what was drawn)."""
    x = (t - p.t[k]) / 1e9
    rate = max(_rate(p, k - 1, k) or 0.0, 0.0)
    e = x * rate
    return EdgeValue(p.v[k] + e, e, rate * p.h[k] / 1e9, rate, rate)


def _roughness(p: UpdatePoints, k: int, left: float, right: float, other: int | None) -> float:
    """How much the rate changes from one interval to the next just outside the bracket. Power
    that changes that often may change inside the bracket too, up and down, which the split by
    the neighbours' rates cannot see (its residual nets out): a change this large, at worst.
    An interval holding the window's other edge does not count: the workload starts or stops there."""

    def change(near: float, i: int, j: int) -> float:
        far = _rate(p, i, j)
        if far is None or (other is not None and p.t[min(i, k)] <= other <= p.t[max(j, k + 1)]):
            return 0.0
        return abs(near - far)

    return max(change(left, k - 2, k - 1), change(right, k + 2, k + 3))


def _timing(p: UpdatePoints, k: int, power: float, x: float, y: float, span: float) -> float:
    """What the instants of the bracketing and neighbouring points, each off by up to its own
    ``h``, can move the edge value by: the bracket's ends directly, the neighbours' rates through
    the split (weight x * y / span)."""
    own = max(power, 0.0) * (p.h[k] * y + p.h[k + 1] * x) / span / 1e9
    split = 0.0
    for i, j in ((k - 1, k), (k + 1, k + 2)):
        rate = _rate(p, i, j)
        if rate is not None:
            split += abs(rate) * (p.h[i] + p.h[j]) / (p.t[j] - p.t[i])
    return own + x * y / span * split


@dataclass
class CounterWindow:
    """A counter's increase over a window (counter units) and the bound's parts, or why not."""

    value: float | None
    components: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    clock_period_s: float | None = None  # the update clock's period, where one was fitted


def counter_window(
    ts: Sequence[int], vs: Sequence[float], t0: int, t1: int, *, period_s: float, resolution: float
) -> CounterWindow:
    """Increase over [t0, t1] of a counter read at ``ts`` that updates every ``period_s``.

    Components (counter units): ``edge_interpolation`` (where in the bracketing update intervals
    the energy was drawn), ``update_timing`` (when the bracketing values were taken, from the
    update period and the read times), ``counter_resolution`` (one count at each edge).
    """
    points = update_points(ts, vs, period_s * 1e9, (t0 + t1) / 2.0)
    start, end = at_edge(points, t0, t1), at_edge(points, t1, t0)
    if start is None or end is None:
        return CounterWindow(None, reason="the counter's updates do not bracket the window")
    clock = _clock_timing(points.clock, start, end, (t1 - t0) / 1e9)
    return CounterWindow(
        end.value - start.value,
        {
            "edge_interpolation": start.interpolation + end.interpolation,
            "update_timing": start.timing + end.timing + clock,
            "counter_resolution": 2.0 * resolution,
        },
        clock_period_s=None if points.clock is None else points.clock.period / 1e9,
    )


def _clock_timing(clock: Clock | None, start: EdgeValue, end: EdgeValue, window_s: float) -> float:
    """What a fitted clock's own uncertainty moves the window's increase by. Its phase shifts
    both edges alike (only the difference of the rates there counts); its period stretches the
    reconstruction about the window's middle (each edge by half the window's periods)."""
    if clock is None:
        return 0.0
    swing = max(abs(end.high - start.low), abs(start.high - end.low))
    stretch = clock.period_halfwidth / clock.period * window_s / 2.0 * (abs(start.high) + abs(end.high))
    return clock.phase_halfwidth / 1e9 * swing + stretch
