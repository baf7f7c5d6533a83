"""GPU figures over a window, cut from an NVML trace (``gpu<k>.<field>`` columns).

Energy per GPU: the total-energy counter where it can be trusted over the window, else integrated
power, said so in ``source`` and ``per_device``, with a flag. The counter is not trusted when the
window is shorter than its update period, when it did not move while power was drawn, or when it
went backwards (reset: driver reload, GPU reset) or jumped by more than a GPU can draw.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any, Protocol

from controller.meters.base import Availability, MeterSummary, Metric, Trace, flag
from controller.meters.edges import counter_window
from controller.meters.uncertainty import COUNTER_METHOD, SAMPLED_METHOD, SUM_METHOD, add_components, bound_fields
from controller.meters.window import (
    WindowValue,
    counter_faults,
    integrate_power,
    sampling_interval_s,
    short_window_flag,
    summary_stats,
    window_values,
)

#: What the NVML meter reports: metric name -> unit.
NVML_UNITS = {
    "gpu_energy_j": "J",
    "gpu_power_w": "W",
    "gpu_util_percent": "%",
    "gpu_mem_util_percent": "%",
    "gpu_mem_used_bytes": "B",
    "gpu_mem_used_percent": "%",
    "gpu_sm_clock_mhz": "MHz",
    "gpu_temp_c": "C",
}
#: Relative difference between counter and integrated power above which a run is flagged.
DISAGREEMENT_THRESHOLD = 0.05
#: No single GPU draws this much (board limits are 1.2 kW and below): a counter step implying
#: more is a fault, not energy.
MAX_PLAUSIBLE_GPU_POWER_W = 3000.0
#: The total-energy counter counts millijoules.
COUNTER_RESOLUTION_MJ = 1.0
#: NVML reports power in milliwatts.
POWER_RESOLUTION_W = 0.001
#: What ``nvmlDeviceGetPowerUsage`` averages over on Ampere and later (NVIDIA documents 1 s); its
#: integral is bounded as if every GPU without the instant field averaged so.
POWER_AVERAGE_S = 1.0

# (metric, trace field, unit, how GPUs combine, what the figure is)
_GAUGES = (
    ("gpu_power_w", "power_w", "W", "sum_mean", "mean power, summed over GPUs"),
    ("gpu_util_percent", "util_gpu_percent", "%", "mean", "mean over samples and GPUs"),
    (
        "gpu_mem_util_percent",
        "util_mem_percent",
        "%",
        "mean",
        "mean memory-controller busy time over samples and GPUs",
    ),
    ("gpu_mem_used_bytes", "mem_used_bytes", "B", "sum_max", "peak, summed over GPUs (each GPU's own peak)"),
    ("gpu_sm_clock_mhz", "sm_clock_mhz", "MHz", "mean", "mean over samples and GPUs"),
    ("gpu_temp_c", "temp_c", "C", "max", "hottest GPU's peak"),
)


class Gpu(Protocol):
    """What the window arithmetic needs to know of one selected GPU."""

    index: int
    uuid: str
    name: str
    energy_counter: Availability
    power_source: str
    power_averaging: str
    mem_total_bytes: float | None


def update_period_s(trace: Trace, gpu: Gpu, default_s: float) -> float:
    """Median time between changes of the energy counter, or ``default_s`` with too few changes."""
    ts, vs = trace.series(f"gpu{gpu.index}.energy_mj")
    changes = [ts[i] for i in range(1, len(vs)) if vs[i] != vs[i - 1]]
    if len(changes) < 5:
        return default_s
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    return statistics.median(gaps) / 1e9


def gpu_summary(gpus: Sequence[Gpu], trace: Trace, t0: int, t1: int, default_period_s: float) -> MeterSummary:
    """GPU metrics over [t0, t1] summed over the selected GPUs, and flags."""
    window_s = (t1 - t0) / 1e9
    sampling_s = sampling_interval_s(trace, t0, t1)
    flags: list[dict[str, Any]] = []
    per_device: list[dict[str, Any]] = []
    edges: list[tuple[float, str]] = []
    for g in gpus:
        dev, dev_flags, edge = gpu_energy(trace, g, t0, t1, default_period_s, sampling_s)
        flags.extend(dev_flags)
        per_device.append(dev)
        if edge[0] is not None:
            edges.append((edge[0], edge[1]))
    missing = next((d for d in per_device if d["energy_j"] is None), None)
    metrics: dict[str, Metric] = {}
    if missing is not None:
        metrics["gpu_energy_j"] = Metric.unavailable(
            "gpu_energy_j", "J", f"GPU {missing['uuid']}: {missing['reason']}", "nvml", per_device=per_device
        )
    else:
        sources = sorted({d["energy_source"] for d in per_device})
        extra: dict[str, Any] = {"scope": "selected GPUs", "per_device": per_device}
        fallbacks = {d["uuid"]: d["fallback_reason"] for d in per_device if d.get("fallback_reason")}
        if fallbacks:
            extra["fallback"] = fallbacks
        value = sum(d["energy_j"] for d in per_device)
        methods = {d["uncertainty_method"] for d in per_device}
        method = methods.pop() if len(methods) == 1 else f"per GPU as its source allows; over GPUs, {SUM_METHOD}"
        extra.update(bound_fields(value, add_components(d["uncertainty_components"] for d in per_device), method))
        metrics["gpu_energy_j"] = Metric("gpu_energy_j", value, "J", "nvml: " + " + ".join(sources), extra=extra)
        interval, what = max(edges, default=(None, ""))
        short = short_window_flag("nvml", "gpu_energy_j", window_s, interval, extra["uncertainty_rel"], what)
        if short is not None:
            flags.append(short)
    metrics.update(_gauges(gpus, trace, t0, t1))
    metrics["gpu_mem_used_percent"] = _mem_used_percent(gpus, metrics["gpu_mem_used_bytes"])
    return MeterSummary(metrics, flags)


def gpu_energy(
    trace: Trace, g: Gpu, t0: int, t1: int, default_period_s: float, sampling_s: float | None
) -> tuple[dict[str, Any], list[dict[str, Any]], tuple[float | None, str]]:
    """One GPU's energy over [t0, t1] (its ``per_device`` entry), its flags, and the interval that
    sets the edge error of the source used (with what that interval is)."""
    window_s = (t1 - t0) / 1e9
    lag = POWER_AVERAGE_S / 2.0 if g.power_averaging != "instantaneous" else 0.0  # its middle is half a period back
    integ = integrate_power(trace, f"gpu{g.index}.power_w", t0, t1, lag, POWER_RESOLUTION_W)
    dev: dict[str, Any] = {
        "uuid": g.uuid,
        "name": g.name,
        "energy_j": None,
        "energy_source": None,
        "counter_j": None,
        "integrated_power_j": integ.value,
        "power_source": g.power_source,
        "reason": None,
    }
    problem: dict[str, Any] | None = None
    if g.energy_counter.available:
        period_s = update_period_s(trace, g, default_period_s)
        dev["counter_update_period_s"] = period_s
        delta, components, fitted = _counter(trace, g, t0, t1, period_s)
        if fitted is not None:
            dev["counter_update_period_s"] = fitted
            dev["counter_update_period_source"] = "update clock fitted to every update seen"
        else:
            dev["counter_update_period_source"] = "median time between the counter's changes (or the default)"
        if delta.value is None:
            dev["counter_reason"] = delta.reason
        else:
            dev["counter_j"] = delta.value / 1e3
        problem = _counter_problem(g, delta, integ.value, window_s, period_s)
        if problem is None and delta.value is not None:
            dev["energy_j"], dev["energy_source"] = dev["counter_j"], "total-energy counter"
            dev.update(bound_fields(dev["energy_j"], components, COUNTER_METHOD))
            return dev, _disagreement(g, dev["counter_j"], integ.value, dev), _edge(sampling_s, period_s)
    if problem is not None:
        problem["message"] += (
            "; integrated power is reported instead" if integ.value is not None else "; GPU energy is unavailable"
        )
    if integ.value is not None:
        if problem is not None:
            dev["fallback_reason"] = problem["message"]
        dev["energy_j"] = integ.value
        dev["energy_source"] = f"integrated power ({g.power_source})"
        dev.update(bound_fields(integ.value, integ.components, SAMPLED_METHOD))
    else:
        base = problem["message"].removeprefix(f"GPU {g.uuid}: ") if problem else None
        base = base or dev.get("counter_reason") or g.energy_counter.reason
        dev["reason"] = f"{base or 'no energy counter'}; power integration: {integ.reason}"
    return dev, [problem] if problem else [], (sampling_s, "sampling interval")


def _counter(
    trace: Trace, g: Gpu, t0: int, t1: int, period_s: float
) -> tuple[WindowValue, dict[str, float], float | None]:
    """The counter's increase over [t0, t1] (mJ), its bound's components (J) and the period of
    the update clock fitted to it (None: none fitted), or why not: refused when it went
    backwards or jumped among the reads the window needs."""
    field = f"gpu{g.index}.energy_mj"
    ts, vs = trace.series(field)
    what = f"{trace.meter}.{field}"
    faults = counter_faults(ts, vs, t0, t1, MAX_PLAUSIBLE_GPU_POWER_W * 1e3, period_s)
    if faults:
        more = f" ({len(faults) - 1} more such steps)" if len(faults) > 1 else ""
        return WindowValue(None, f"{what}: {faults[0].describe()}{more}", faults=tuple(faults)), {}, None
    w = counter_window(ts, vs, t0, t1, period_s=period_s, resolution=COUNTER_RESOLUTION_MJ)
    if w.value is None:
        return WindowValue(None, f"{what}: {w.reason}"), {}, None
    return WindowValue(w.value), {k: v / 1e3 for k, v in w.components.items()}, w.clock_period_s


def _counter_problem(
    g: Gpu, delta: WindowValue, integrated_j: float | None, window_s: float, period_s: float
) -> dict[str, Any] | None:
    """A flag when the counter cannot give this window's energy although it was read."""
    if delta.faults:
        fault = delta.faults[0]
        more = f" ({len(delta.faults) - 1} more such steps)" if len(delta.faults) > 1 else ""
        kind = "reset" if fault.kind == "backwards" else "jump"
        return flag(
            f"gpu_energy_counter_{kind}",
            f"GPU {g.uuid}: energy counter: {fault.describe(1e-3, 'J')}{more}",
            uuid=g.uuid,
            t_ns=fault.t_ns,
            step_j=fault.step / 1e3,
        )
    if window_s < period_s:
        return flag(
            "gpu_energy_short_window",
            f"GPU {g.uuid}: window {window_s * 1e3:.1f} ms is shorter than the energy counter's update period "
            f"(~{period_s * 1e3:.0f} ms); the counter cannot resolve it",
            uuid=g.uuid,
            window_s=window_s,
            counter_update_period_s=period_s,
        )
    if delta.value == 0.0 and (integrated_j or 0.0) > 0.0:
        return flag(
            "gpu_energy_counter_stalled",
            f"GPU {g.uuid}: the energy counter did not advance while power was drawn",
            uuid=g.uuid,
        )
    return None


def _edge(sampling_s: float | None, period_s: float) -> tuple[float | None, str]:
    """The interval that sets a counter's edge error: the reads, or the counter's own updates."""
    if sampling_s is None or period_s > sampling_s:
        return period_s, "energy-counter update period"
    return sampling_s, "sampling interval"


def _disagreement(g: Gpu, counter_j: float, integrated_j: float | None, dev: dict[str, Any]) -> list[dict[str, Any]]:
    if integrated_j is None or counter_j <= 0:
        return []
    rel = abs(counter_j - integrated_j) / counter_j
    dev["disagreement"] = rel
    if rel <= DISAGREEMENT_THRESHOLD:
        return []
    return [
        flag(
            "gpu_energy_disagreement",
            f"GPU {g.uuid}: energy counter {counter_j:.3f} J and integrated power {integrated_j:.3f} J differ "
            f"by {rel:.1%} (> {DISAGREEMENT_THRESHOLD:.0%}); power source: {g.power_source}",
            uuid=g.uuid,
            relative_difference=rel,
        )
    ]


def _combine(per: list[dict[str, float | None]], how: str) -> float | None:
    if any(p["mean"] is None for p in per):
        return None
    if how == "sum_mean":
        return sum(p["mean"] or 0.0 for p in per)
    if how == "sum_max":
        return sum(p["max"] or 0.0 for p in per)
    if how == "max":
        return max(p["max"] or 0.0 for p in per)
    return sum(p["mean"] or 0.0 for p in per) / len(per)


def _gauges(gpus: Sequence[Gpu], trace: Trace, t0: int, t1: int) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for metric_name, field, unit, how, stat in _GAUGES:
        per = [summary_stats(window_values(trace, f"gpu{g.index}.{field}", t0, t1)) for g in gpus]
        value = _combine(per, how)
        extra: dict[str, Any] = {"stat": stat, "per_device": per}
        src = "nvml"
        if field == "power_w":
            src = "nvml: " + " / ".join(sorted({g.power_source for g in gpus}))
            extra["averaging"] = sorted({g.power_averaging for g in gpus})
        if value is None:
            out[metric_name] = Metric.unavailable(
                metric_name, unit, f"no valid {field} samples in the window", src, **extra
            )
        else:
            out[metric_name] = Metric(metric_name, value, unit, src, extra=extra)
    return out


def _mem_used_percent(gpus: Sequence[Gpu], used: Metric) -> Metric:
    """The papers' "GPU used memory %": peak used over the GPUs' total memory."""
    totals = [g.mem_total_bytes for g in gpus]
    if not used.available or used.value is None:
        return Metric.unavailable("gpu_mem_used_percent", "%", used.reason or "GPU memory used not measured", "nvml")
    if any(t is None or t <= 0 for t in totals):
        return Metric.unavailable("gpu_mem_used_percent", "%", "NVML did not report the GPUs' total memory", "nvml")
    percent = 100.0 * used.value / sum(t for t in totals if t)
    return Metric("gpu_mem_used_percent", percent, "%", "nvml", extra={"stat": "peak used / total, over GPUs"})
