"""Measuring the idle baseline: a run's meters (the same :class:`MeterSession`) on an idle host.

Besides each domain's mean idle power, the baseline records how much idle power wanders
(``spread``): the standard deviation of its mean over consecutive sub-windows of 0.1, 1, 10 and
60 s (each length with at least :data:`MIN_SUBWINDOWS` of them), cut from the same traces, and
the bound on the mean itself (``power_uncertainty_w``: the idle window's own energy bound over its
length, plus two standard errors of the mean at the longest sub-window). A run adds both, times
its window, to its net figures' bound (``baseline.net_energy``).
"""

from __future__ import annotations

import math
import statistics
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.meters.base import Trace
from controller.meters.baseline import DOMAINS, DOMAINS_WALL, IdleBaseline
from controller.meters.edges import update_points
from controller.meters.nvml_window import update_period_s
from controller.meters.session import MeterSession
from controller.meters.system import host_fingerprint

if TYPE_CHECKING:
    from typing import Unpack

    from controller.meters.session import MeterOptions

DEFAULT_IDLE_DURATION_S = 600.0
#: Sub-window lengths (s) over which the spread of idle power is recorded.
SPREAD_WINDOWS_S = (0.1, 1.0, 10.0, 60.0)
#: A sub-window length is recorded only with at least this many sub-windows in the idle window.
MIN_SUBWINDOWS = 5
SPREAD_METHOD = (
    "sample standard deviation of mean idle power over consecutive sub-windows of each length "
    "(cut from the meters' cumulative energy, counters at their reconstructed update instants)"
)


def measure_idle(
    duration_s: float = DEFAULT_IDLE_DURATION_S,
    *,
    interval_s: float = 0.01,
    fingerprint: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Unpack[MeterOptions],
) -> IdleBaseline:
    """Measure idle power per domain for ``duration_s`` with every meter available here.

    ``options`` are a run's (:class:`MeterOptions`); ``gpu_uuids`` left out measures every GPU,
    stored per UUID. Nothing else should run meanwhile. ``sleep`` is how the wait is done (tests
    pass one that advances fake counters).
    """
    if fingerprint is None:
        fingerprint = host_fingerprint(options.get("nvml"))
    with MeterSession(interval_s, **options) as ms:
        t0 = time.monotonic_ns()
        sleep(duration_s)
        t1 = time.monotonic_ns()
    summary = ms.summarize(t0, t1)
    window_s = summary["window_s"]
    series = energy_series(ms)
    domains: dict[str, dict[str, Any]] = {}
    for domain, metric_name in {**DOMAINS, **DOMAINS_WALL}.items():
        m = summary["metrics"].get(metric_name)
        if m is not None:
            domains[domain] = _idle_power(domain, m, window_s)
            _add_spread(domains[domain], domain, m, series, t0, t1)
    return IdleBaseline(
        fingerprint=fingerprint,
        measured_at_unix=time.time(),
        duration_s=window_s,
        interval_s=interval_s,
        domains=domains,
        flags=summary["flags"],
    )


def _idle_power(domain: str, m: dict[str, Any], window_s: float) -> dict[str, Any]:
    """A baseline's entry for one domain from its metric over the idle window."""
    if not m["available"] or m["value"] is None:
        return {"available": False, "reason": m["reason"], "power_w": None}
    entry: dict[str, Any] = {
        "available": True,
        "reason": None,
        "power_w": m["value"] / window_s,
        "energy_j": m["value"],
        "source": m["source"],
    }
    if domain == "gpu":
        entry["per_device"] = {
            d["uuid"]: (None if d["energy_j"] is None else d["energy_j"] / window_s) for d in m.get("per_device", [])
        }
    return entry


def energy_series(ms: MeterSession) -> dict[str, tuple[list[float], list[float]]]:
    """Cumulative energy (J) at instants (ns) per domain (``cpu``, ``dram``, ``wall``) and per
    GPU (``gpu:<uuid>``), from a stopped session's traces."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    rapl = ms.traces.get("rapl")
    if rapl is not None:
        for domain in ("cpu", "dram"):
            fields = [z.field for z in ms.rapl.zones if z.domain == domain]
            if fields:
                ts, vs = _summed(rapl, fields)
                p = update_points(ts, vs, ms.rapl.update_period_s * 1e9)
                out[domain] = (p.t, [v / 1e6 for v in p.v])
    nvml = ms.traces.get("nvml")
    for g in ms.nvml.gpus if nvml is not None else []:
        assert nvml is not None
        if g.energy_counter.available:
            ts, vs = nvml.series(f"gpu{g.index}.energy_mj")
            p = update_points(ts, vs, update_period_s(nvml, g, ms.nvml.counter_update_period_s) * 1e9)
            out[f"gpu:{g.uuid}"] = (p.t, [v / 1e3 for v in p.v])
        else:
            out[f"gpu:{g.uuid}"] = _cumulative_power(nvml, f"gpu{g.index}.power_w")
    wall = ms.traces.get("wall")
    if wall is not None:
        out["wall"] = _cumulative_power(wall, "power_w")
    return out


def _summed(trace: Trace, fields: list[str]) -> tuple[list[int], list[float]]:
    """Rows where every field was read, and the fields' sum there."""
    n = len(trace.t_ns)
    ts: list[int] = []
    vs: list[float] = []
    for i in range(n):
        row = [trace.columns[f][i] for f in fields]
        if not any(math.isnan(v) for v in row):
            ts.append(trace.t_ns[i])
            vs.append(sum(row))
    return ts, vs


def _cumulative_power(trace: Trace, name: str) -> tuple[list[float], list[float]]:
    ts, vs = trace.series(name)
    total = [0.0]
    for j in range(1, len(ts)):
        total.append(total[-1] + (vs[j] + vs[j - 1]) * 0.5 * (ts[j] - ts[j - 1]) / 1e9)
    return [float(t) for t in ts], total


def spread(t: list[float], e: list[float], t0: int, t1: int) -> list[dict[str, Any]]:
    """Standard deviation of mean power over consecutive sub-windows of each length in
    :data:`SPREAD_WINDOWS_S` that fits :data:`MIN_SUBWINDOWS` times into [t0, t1]."""
    out: list[dict[str, Any]] = []
    for length in SPREAD_WINDOWS_S:
        count = int((t1 - t0) / 1e9 // length)
        if count < MIN_SUBWINDOWS:
            continue
        edges = [_at(t, e, t0 + k * length * 1e9) for k in range(count + 1)]
        if any(x is None for x in edges):
            continue
        means = [(b - a) / length for a, b in zip(edges, edges[1:], strict=False) if a is not None and b is not None]
        out.append({"window_s": length, "std_power_w": statistics.stdev(means), "count": count})
    return out


def _at(t: list[float], e: list[float], when: float) -> float | None:
    i = bisect_left(t, when)
    if i < len(t) and t[i] == when:
        return e[i]
    if i == 0 or i >= len(t):
        return None
    return e[i - 1] + (e[i] - e[i - 1]) * (when - t[i - 1]) / (t[i] - t[i - 1])


def _add_spread(
    entry: dict[str, Any],
    domain: str,
    m: dict[str, Any],
    series: dict[str, tuple[list[float], list[float]]],
    t0: int,
    t1: int,
) -> None:
    """The domain's ``spread`` and ``power_uncertainty_w`` (per GPU too), where it was measured."""
    if not entry.get("available"):
        return
    duration = (t1 - t0) / 1e9
    if domain == "gpu":
        per_spread: dict[str, Any] = {}
        for dev in m.get("per_device", []):
            found = series.get(f"gpu:{dev['uuid']}")
            windows = spread(*found, t0, t1) if found else []
            if windows and dev.get("uncertainty_j") is not None:
                per_spread[dev["uuid"]] = {
                    "windows": windows,
                    "power_uncertainty_w": _estimate_bound(dev["uncertainty_j"], duration, windows),
                }
        if per_spread and len(per_spread) == len(m.get("per_device", [])):
            entry["per_device_spread"] = per_spread
            entry["spread"] = {"method": SPREAD_METHOD, "windows": _summed_windows(list(per_spread.values()))}
            entry["power_uncertainty_w"] = sum(d["power_uncertainty_w"] for d in per_spread.values())
        return
    found = series.get(domain)
    windows = spread(*found, t0, t1) if found else []
    if windows and m.get("uncertainty_j") is not None:
        entry["spread"] = {"method": SPREAD_METHOD, "windows": windows}
        entry["power_uncertainty_w"] = _estimate_bound(m["uncertainty_j"], duration, windows)


def _estimate_bound(uncertainty_j: float, duration_s: float, windows: list[dict[str, Any]]) -> float:
    """Bound on the mean idle power: the idle window's energy bound over its length, plus two
    standard errors of the mean at the longest sub-window."""
    longest = max(windows, key=lambda w: w["window_s"])
    return uncertainty_j / duration_s + 2.0 * longest["std_power_w"] / math.sqrt(longest["count"])


def _summed_windows(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPUs' spreads summed per sub-window length (linearly: never understated)."""
    lengths = sorted(set.intersection(*({w["window_s"] for w in d["windows"]} for d in devices)))
    out = []
    for length in lengths:
        rows = [next(w for w in d["windows"] if w["window_s"] == length) for d in devices]
        out.append({"window_s": length, "std_power_w": sum(r["std_power_w"] for r in rows), "count": rows[0]["count"]})
    return out
