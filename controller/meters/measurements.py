"""What a session adds on top of its meters' figures: net of idle, the total, and the checks that
hold for every meter (no negative energy, enough samples)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from controller.meters.base import Metric, Trace, flag
from controller.meters.baseline import DOMAINS, BaselineStatus, net_energy
from controller.meters.uncertainty import SUM_METHOD, bound_fields
from controller.meters.window import max_gap_ns

#: Below this share of the requested sample rate a window is flagged.
MIN_SAMPLE_RATE_RATIO = 0.95
#: Energy metrics net of idle: every domain a baseline holds, and the wall socket.
NET_DOMAINS = {**DOMAINS, "wall": "wall_energy_j"}


def refuse_negative_energy(metrics: dict[str, Metric]) -> list[dict[str, Any]]:
    """The last line: no meter may report a negative energy. One that did is made unavailable."""
    out: list[dict[str, Any]] = []
    for name, m in metrics.items():
        if m.unit != "J" or m.value is None or not m.available or m.value >= 0:
            continue
        why = f"{name} came out negative ({m.value:.6g} J), which no energy is; this is a joulebench bug"
        metrics[name] = Metric.unavailable(name, "J", why, m.source, **m.extra)
        out.append(flag("negative_energy_refused", why, metric=name, value=m.value))
    return out


def subtract_idle(
    metrics: dict[str, Metric],
    window_s: float,
    baseline: BaselineStatus | None,
    gpu_uuids: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """Add gross/idle/net to every energy domain; flag a net that came out below zero."""
    out: list[dict[str, Any]] = []
    for domain, name in NET_DOMAINS.items():
        met = metrics[name]
        gross = met.value if met.available else None
        bound = met.extra.get("uncertainty_j") if gross is not None else None
        met.extra.update(net_energy(gross, domain, window_s, baseline, gpu_uuids=gpu_uuids, gross_uncertainty_j=bound))
        net = met.extra["net_j"]
        if net is not None and net < 0:
            out.append(
                flag(
                    "net_energy_negative",
                    f"{name}: net of idle is {net:.6g} J: the run drew less than the idle baseline's "
                    f"{met.extra['idle_power_w']:.4g} W; the baseline may be stale or measured in another state",
                    metric=name,
                    net_j=net,
                )
            )
    return out


def total_energy(metrics: Mapping[str, Metric]) -> Metric:
    """cpu + dram + gpu where measured, listing what it covers; net only if every part has one."""
    covers = [d for d, name in DOMAINS.items() if metrics[name].available and metrics[name].value is not None]
    not_covered = {d: metrics[name].reason for d, name in DOMAINS.items() if d not in covers}
    if not covers:
        return Metric.unavailable(
            "total_energy_j",
            "J",
            "no energy domain could be measured: " + "; ".join(f"{d}: {r}" for d, r in not_covered.items()),
            None,
            covers=[],
            not_covered=not_covered,
        )
    parts = [metrics[DOMAINS[d]] for d in covers]
    nets = [p.extra.get("net_j") for p in parts]
    idles = [p.extra.get("idle_j") for p in parts]
    net_ok = all(n is not None for n in nets)
    reasons = [
        f"{d}: {p.extra.get('net_reason')}" for d, p in zip(covers, parts, strict=True) if p.extra.get("net_j") is None
    ]
    gross = sum(float(p.value or 0.0) for p in parts)
    return Metric(
        "total_energy_j",
        gross,
        "J",
        " + ".join(str(p.source) for p in parts),
        extra={
            "covers": covers,
            "not_covered": not_covered,
            "gross_j": gross,
            "idle_j": sum(i for i in idles if i is not None) if net_ok else None,
            "net_j": sum(n for n in nets if n is not None) if net_ok else None,
            "net_reason": None if net_ok else "; ".join(reasons),
            "note": "wall-socket energy is reported apart (it already includes all of these)",
            **_total_bound(covers, parts, gross, net_ok),
        },
    )


def _total_bound(covers: list[str], parts: list[Metric], gross: float, net_ok: bool) -> dict[str, Any]:
    """The total's bound: its parts' bounds summed (per domain in the components), gross and net."""
    bounds = [p.extra.get("uncertainty_j") for p in parts]
    if any(b is None for b in bounds):
        return {"uncertainty_j": None, "uncertainty_reason": "a part has no bound"}
    out = bound_fields(gross, {d: float(b or 0.0) for d, b in zip(covers, bounds, strict=True)}, SUM_METHOD)
    nets = [p.extra.get("net_uncertainty_j") for p in parts]
    out["net_uncertainty_j"] = sum(n or 0.0 for n in nets) if net_ok and all(n is not None for n in nets) else None
    out["net_uncertainty_components"] = (
        {d: n for d, n in zip(covers, nets, strict=True)} if out["net_uncertainty_j"] is not None else None
    )
    why = [
        f"{d}: {p.extra.get('net_uncertainty_reason')}"
        for d, p in zip(covers, parts, strict=True)
        if p.extra.get("net_uncertainty_reason")
    ]
    out["net_uncertainty_reason"] = "; ".join(why) or None if net_ok else None
    return out


def sampling_flags(
    traces: Mapping[str, Trace], intervals: Mapping[str, float], t0: int, t1: int
) -> list[dict[str, Any]]:
    """Too few samples, or a long gap, in the window of any trace read at ``intervals[name]``."""
    window_s = (t1 - t0) / 1e9
    out: list[dict[str, Any]] = []
    for name, trace in traces.items():
        interval = intervals.get(name)
        if interval is None:
            continue
        n = sum(1 for t in trace.t_ns if t0 <= t <= t1)
        expected = window_s / interval
        if expected >= 10 and n < MIN_SAMPLE_RATE_RATIO * math.floor(expected):
            out.append(
                flag(
                    "sample_rate_low",
                    f"{name}: {n} samples in the window, {expected:.0f} requested "
                    f"({n / expected:.0%}); the host was too busy for the sampler",
                    meter=name,
                    ratio=n / expected,
                )
            )
        gap = max_gap_ns(trace, t0, t1) / 1e9
        if gap > max(5 * interval, 0.05) and n:
            out.append(
                flag(
                    "sample_gap",
                    f"{name}: {gap * 1e3:.0f} ms without a sample inside the window",
                    meter=name,
                    gap_s=gap,
                )
            )
    return out
