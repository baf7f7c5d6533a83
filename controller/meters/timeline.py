"""A domain's cumulative energy at any instant of a run, each value with its bound: what cuts a
window's energy at instants inside it (a served request's phases, ``controller/serving/phases.py``).

Counters (RAPL zones, NVML's total-energy counter) are placed at their real update instants
(:func:`controller.meters.edges.update_points`) and valued between them as a window edge is
(:func:`controller.meters.edges.at_edge`): the bracketing interval split with the power on either
side, bounded by what that leaves unexplained, by when the values were really taken, and by one
count. Sampled power (a GPU without the counter) is integrated by trapezoids, bounded by the
change of power across the interval holding the instant (and its averaging lag).

The difference of two values is the energy between the instants; its bound is the sum of the two
values' bounds. A sum over many pieces cut at instants ``t_k`` with weights ``w`` (a phase's share
of each piece) telescopes: only the instants where the weight changes carry error, each by
``|change of w| x bound(t_k)``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.meters.base import Trace
from controller.meters.edges import UpdatePoints, at_edge, update_points
from controller.meters.nvml_window import COUNTER_RESOLUTION_MJ, POWER_AVERAGE_S, POWER_RESOLUTION_W
from controller.meters.rapl import RESOLUTION_UJ, UPDATE_SLACK_S
from controller.meters.window import counter_faults

#: The energy domains a timeline is built for (wall-socket meters read every second: too coarse).
DOMAINS = ("cpu", "dram", "gpu")

Value = tuple[float, float]  # (J, bound J)


class CounterCurve:
    """A cumulative counter's value at any instant inside its reads (J), from its update points."""

    def __init__(self, points: UpdatePoints, scale: float, resolution: float) -> None:
        self.points, self.scale, self.resolution = points, scale, resolution

    def at(self, t_ns: int) -> Value | None:
        edge = at_edge(self.points, t_ns)
        if edge is None:
            return None
        bound = edge.interpolation + edge.timing + self.resolution
        return edge.value * self.scale, bound * self.scale


class PowerCurve:
    """The integral of sampled power from its first sample (J)."""

    def __init__(self, ts: Sequence[int], vs: Sequence[float], lag_s: float, resolution_w: float) -> None:
        self.ts, self.vs, self.lag_s, self.resolution_w = list(ts), list(vs), lag_s, resolution_w
        self.cum = [0.0]
        for i in range(1, len(self.ts)):
            self.cum.append(self.cum[-1] + (self.vs[i] + self.vs[i - 1]) / 2.0 * (self.ts[i] - self.ts[i - 1]) / 1e9)

    def at(self, t_ns: int) -> Value | None:
        ts, vs = self.ts, self.vs
        if len(ts) < 2 or t_ns < ts[0] or t_ns > ts[-1]:
            return None
        i = min(bisect_right(ts, t_ns) - 1, len(ts) - 2)
        span = ts[i + 1] - ts[i]
        x = (t_ns - ts[i]) / span
        power = vs[i] + (vs[i + 1] - vs[i]) * x
        value = self.cum[i] + (vs[i] + power) / 2.0 * (t_ns - ts[i]) / 1e9
        return value, self.local_bound(t_ns) + self.resolution_w / 2.0 * (t_ns - ts[0]) / 1e9

    def local_bound(self, t_ns: int) -> float:
        """The bound at ``t_ns`` of what the samples around it leave unknown (J), without the power
        reads' resolution accumulated since the first sample: power may have changed anywhere in the
        interval holding ``t_ns`` (up to half the change times its length), and its averaging lag."""
        ts, vs = self.ts, self.vs
        i = max(0, min(bisect_right(ts, t_ns) - 1, len(ts) - 2))
        bound = abs(vs[i + 1] - vs[i]) * (ts[i + 1] - ts[i]) / 2e9
        if self.lag_s > 0:
            near = vs[max(0, i - 2) : i + 4]
            bound += self.lag_s * (max(near) - min(near))
        return bound


class ShapedCounterCurve:
    """A counter that updates more slowly than the phases it must split (NVML's, every 20-100 ms),
    shaped by instantaneous power read between its updates: each update interval's counted energy
    spread over the interval as the integrated power spreads. The counter keeps the total; the power
    says where in the interval it was drawn. Bound: the power integral's own bound at the two
    instants, scaled as the energy is, plus when the counter's values were really taken and one count."""

    def __init__(self, counter: CounterCurve, power: PowerCurve) -> None:
        self.counter, self.power = counter, power

    def at(self, t_ns: int) -> Value | None:
        p = self.counter.points
        k = bisect_right(p.t, t_ns) - 1
        edge = at_edge(p, t_ns)
        if edge is None or k < 0 or k + 1 >= len(p.t):
            return self.counter.at(t_ns)
        a, b = int(p.t[k]), int(p.t[k + 1])
        pa, pb, pt = self.power.at(a), self.power.at(b), self.power.at(t_ns)
        if pa is None or pb is None or pt is None or pb[0] - pa[0] <= 0:
            return self.counter.at(t_ns)
        scale = self.counter.scale
        counted = (p.v[k + 1] - p.v[k]) * scale
        per_joule = counted / (pb[0] - pa[0])  # the counter's J per J of integrated power here
        share = (pt[0] - pa[0]) / (pb[0] - pa[0])
        value = p.v[k] * scale + share * counted
        # The share's error: that of the power integral from a to t, and (scaled by the share) a to b;
        # each the samples' local bounds at its ends plus the reads' resolution over its length.
        power, res = self.power, self.power.resolution_w / 2e9
        to_t = power.local_bound(t_ns) + power.local_bound(a) + res * (t_ns - a)
        to_b = power.local_bound(b) + power.local_bound(a) + res * (b - a)
        shape = min((to_t + share * to_b) * per_joule, abs(counted))
        bound = shape + (edge.timing + self.counter.resolution) * scale
        plain = self.counter.at(t_ns)
        return plain if plain is not None and plain[1] < bound else (value, bound)  # the tighter of the two


class SumCurve:
    """Several curves added (a domain's zones or GPUs); bounds add linearly."""

    def __init__(self, parts: Sequence[CounterCurve | PowerCurve | ShapedCounterCurve]) -> None:
        self.parts = list(parts)

    def at(self, t_ns: int) -> Value | None:
        total, bound = 0.0, 0.0
        for part in self.parts:
            v = part.at(t_ns)
            if v is None:
                return None
            total, bound = total + v[0], bound + v[1]
        return total, bound


@dataclass(frozen=True)
class DomainCurve:
    """One energy domain's cumulative energy (``curve.at(t_ns)`` -> (J, bound J)), or why there is none.

    ``resolution_s``: how finely the domain's energy is seen in time (its reads, or its counter's
    updates where they are slower)."""

    domain: str
    curve: SumCurve | None
    source: str
    resolution_s: float | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.curve is not None


def counter_points(ts: Sequence[int], vs: Sequence[float], period_s: float, centre: float) -> UpdatePoints:
    return update_points(ts, vs, period_s * 1e9, centre)


def _median_gap_s(ts: Sequence[int]) -> float | None:
    gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False))
    return gaps[len(gaps) // 2] / 1e9 if gaps else None


def rapl_curve(rapl: Any, trace: Trace, domain: str, t0: int, t1: int) -> DomainCurve:
    """The RAPL zones of ``domain`` (cpu: packages, dram) as one curve; faults refuse it."""
    zones = [z for z in rapl.zones if z.domain == domain]
    if not zones:
        return DomainCurve(domain, None, "rapl", None, f"no RAPL {domain} zone was read")
    parts: list[CounterCurve | PowerCurve] = []
    gap: float | None = None
    for z in zones:
        ts, vs = trace.series(z.field)
        if counter_faults(ts, vs, t0, t1, rapl.pessimistic_power_w * 1e6, UPDATE_SLACK_S):
            why = f"RAPL {domain} {z.socket}: the counter faulted in the window"
            return DomainCurve(domain, None, "rapl", None, why)
        parts.append(CounterCurve(counter_points(ts, vs, rapl.update_period_s, (t0 + t1) / 2), 1e-6, RESOLUTION_UJ))
        gap = max(gap or 0.0, _median_gap_s(ts) or 0.0)
    return DomainCurve(domain, SumCurve(parts), "RAPL energy_uj counters", max(gap or 0.0, rapl.update_period_s))


def gpu_curve(gpus: Sequence[Any], trace: Trace, per_device: Sequence[dict[str, Any]], t0: int, t1: int) -> DomainCurve:
    """The selected GPUs as one curve, each from the source its window figure used (the counter,
    shaped by instantaneous power where the GPU gives it; or integrated power when the counter
    could not be trusted)."""
    parts: list[CounterCurve | PowerCurve | ShapedCounterCurve] = []
    sources, resolution = set(), 0.0
    by_uuid = {d.get("uuid"): d for d in per_device}
    for g in gpus:
        dev = by_uuid.get(g.uuid) or {}
        if dev.get("energy_source") == "total-energy counter":
            ts, vs = trace.series(f"gpu{g.index}.energy_mj")
            period = float(dev.get("counter_update_period_s") or 0.1)
            counter = CounterCurve(counter_points(ts, vs, period, (t0 + t1) / 2), 1e-3, COUNTER_RESOLUTION_MJ)
            pts, pvs = trace.series(f"gpu{g.index}.power_w")
            if g.power_averaging == "instantaneous" and len(pts) >= 2:
                parts.append(ShapedCounterCurve(counter, PowerCurve(pts, pvs, 0.0, POWER_RESOLUTION_W)))
                sources.add("NVML total-energy counter, shaped by instantaneous power")
                resolution = max(resolution, _median_gap_s(pts) or 0.0)
            else:
                parts.append(counter)
                sources.add("NVML total-energy counter")
                resolution = max(resolution, period, _median_gap_s(ts) or 0.0)
        elif dev.get("energy_j") is not None:
            ts, vs = trace.series(f"gpu{g.index}.power_w")
            lag = POWER_AVERAGE_S / 2.0 if g.power_averaging != "instantaneous" else 0.0
            parts.append(PowerCurve(ts, vs, lag, POWER_RESOLUTION_W))
            sources.add(f"NVML integrated power ({g.power_source})")
            resolution = max(resolution, _median_gap_s(ts) or 0.0, 2 * lag)
        else:
            return DomainCurve("gpu", None, "nvml", None, f"GPU {g.uuid}: {dev.get('reason') or 'no energy'}")
    return DomainCurve("gpu", SumCurve(parts), " + ".join(sorted(sources)), resolution or None)


def domain_curves(session: Any, measurements: dict[str, Any], t0: int, t1: int) -> dict[str, DomainCurve]:
    """Each energy domain's curve over [t0, t1] from a session's traces; a domain whose window figure
    is unavailable has none, with that figure's reason."""
    metrics = measurements.get("metrics") or {}
    out: dict[str, DomainCurve] = {}
    builders: dict[str, Callable[[], DomainCurve]] = {
        "cpu": lambda: rapl_curve(session.rapl, session.traces["rapl"], "cpu", t0, t1),
        "dram": lambda: rapl_curve(session.rapl, session.traces["rapl"], "dram", t0, t1),
        "gpu": lambda: gpu_curve(
            session.nvml.gpus, session.traces["nvml"], metrics["gpu_energy_j"].get("per_device") or [], t0, t1
        ),
    }
    for domain in DOMAINS:
        figure = metrics.get(f"{domain}_energy_j") or {}
        if not figure.get("available"):
            out[domain] = DomainCurve(domain, None, str(figure.get("source") or ""), None, figure.get("reason"))
            continue
        out[domain] = builders[domain]()
    return out
