"""The run's own CPU time and RAM over a window, shared by the cgroup and process meters."""

from __future__ import annotations

from typing import Any

from controller.meters.base import MeterSummary, Metric, Trace, flag
from controller.meters.window import counter_delta, window_values

#: What a workload meter reports: metric name -> unit.
WORKLOAD_UNITS = {"cpu_time_s": "s", "cpu_percent": "%", "ram_peak_bytes": "B", "ram_mean_bytes": "B"}


def workload_summary(
    trace: Trace,
    t0: int,
    t1: int,
    *,
    meter: str,
    source: str,
    scope: str,
    ram_note: str,
    ram_kernel_peak_field: str | None = None,
) -> MeterSummary:
    """cpu_time_s, cpu_percent, ram_peak_bytes and ram_mean_bytes over [t0, t1].

    Expects a cumulative ``cpu_time_s`` column and a sampled ``ram_bytes`` column.
    """
    window_s = (t1 - t0) / 1e9
    out: dict[str, Metric] = {}
    flags: list[dict[str, Any]] = []
    cpu = counter_delta(trace, "cpu_time_s", t0, t1)
    if cpu.value is None:
        reason = cpu.reason or "no CPU samples"
        out["cpu_time_s"] = Metric.unavailable("cpu_time_s", "s", reason, source, scope=scope)
        out["cpu_percent"] = Metric.unavailable("cpu_percent", "%", reason, source, scope=scope)
        if cpu.faults:
            flags.append(flag("cpu_time_counter_reset", f"{meter}: CPU time not measured: {reason}", meter=meter))
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
    return MeterSummary(out, flags)
