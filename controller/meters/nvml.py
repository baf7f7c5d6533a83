"""NVIDIA GPU energy, power and utilisation through NVML (``nvidia-ml-py``, module ``pynvml``).

The library is imported lazily; tests pass a fake module object implementing the handful of
functions used here. GPUs are selected by UUID. Per GPU and per read the meter records the
total-energy counter (mJ, Volta and later), instant power, utilisation, memory used, SM clock and
temperature. Window energy: the counter is the primary figure, integrated power the cross-check.
"""

from __future__ import annotations

import importlib
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.meters.base import (
    NAN,
    Availability,
    Metric,
    Trace,
    counter_delta,
    flag,
    integrate,
    summary_stats,
    window_values,
)

#: Relative difference between counter and integrated power above which a run is flagged.
DISAGREEMENT_THRESHOLD = 0.05
#: Assumed update period of the total-energy counter when the trace is too short to estimate it.
DEFAULT_COUNTER_UPDATE_PERIOD_S = 0.1

POWER_SOURCE_INSTANT = "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)"
POWER_SOURCE_AVERAGE = "nvmlDeviceGetPowerUsage"
POWER_AVERAGING_INSTANT = "instantaneous"
POWER_AVERAGING_AVERAGE = (
    "about 1 s moving average on Ampere and later (instant on older GPUs): the timeline is "
    "smoothed and lags short bursts"
)

GPU_FIELDS = (
    "energy_mj",
    "power_w",
    "util_gpu_percent",
    "util_mem_percent",
    "mem_used_bytes",
    "sm_clock_mhz",
    "temp_c",
)


def load_pynvml() -> Any:
    """Import NVIDIA's ``pynvml`` module (from ``nvidia-ml-py``); raises ImportError if absent."""
    return importlib.import_module("pynvml")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class GpuInfo:
    """One selected GPU and what it supports."""

    index: int  # position in the meter's selection, used in trace field names (gpu0, gpu1, ...)
    uuid: str
    name: str
    handle: Any
    energy_counter: Availability
    power_source: str
    power_averaging: str
    mem_total_bytes: float | None = None  # for the papers' "GPU used memory %"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "energy_counter": self.energy_counter.to_dict(),
            "power_source": self.power_source,
            "power_averaging": self.power_averaging,
            "mem_total_bytes": self.mem_total_bytes,
        }


class NvmlMeter:
    """Samples the selected GPUs; a missing library or GPU makes it unavailable, not a crash.

    ``gpu_uuids=None`` selects every visible GPU; an empty list selects none (unavailable).
    """

    name = "nvml"

    def __init__(
        self,
        nvml: Any | None = None,
        gpu_uuids: Sequence[str] | None = None,
        *,
        interval_s: float | None = None,
        counter_update_period_s: float = DEFAULT_COUNTER_UPDATE_PERIOD_S,
    ) -> None:
        self._nv: Any = nvml
        self.gpu_uuids = None if gpu_uuids is None else list(gpu_uuids)
        self.interval_s = interval_s
        self.counter_update_period_s = counter_update_period_s
        self.gpus: list[GpuInfo] = []
        self.fields: tuple[str, ...] = ()
        self.availability = Availability.no("not opened")
        self.driver_version: str | None = None
        self._initialised = False

    # -- setup --------------------------------------------------------------------------

    def open(self) -> Availability:
        if self.gpu_uuids is not None and not self.gpu_uuids:
            self.availability = Availability.no("no GPU selected for this run")
            return self.availability
        if self._nv is None:
            try:
                self._nv = load_pynvml()
            except ImportError:
                self.availability = Availability.no(
                    "NVML bindings not installed: `pip install nvidia-ml-py` (NVIDIA's official "
                    "bindings) on a host with an NVIDIA driver"
                )
                return self.availability
        nv = self._nv
        try:
            nv.nvmlInit()
        except Exception as exc:  # noqa: BLE001 -- NVMLError, or OSError from a broken library
            self.availability = Availability.no(
                f"NVML init failed ({_text(exc) or type(exc).__name__}): no NVIDIA driver on this "
                "host, or the controller cannot see it (in a container: run with --gpus)"
            )
            return self.availability
        self._initialised = True
        try:
            self.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        except nv.NVMLError:
            self.driver_version = None
        try:
            handles = self._select_handles()
        except LookupError as exc:
            self.availability = Availability.no(str(exc))
            return self.availability
        for k, (uuid, handle) in enumerate(handles):
            self.gpus.append(self._probe(k, uuid, handle))
        self.fields = tuple(f"gpu{g.index}.{f}" for g in self.gpus for f in GPU_FIELDS)
        self.availability = Availability.ok()
        return self.availability

    def _select_handles(self) -> list[tuple[str, Any]]:
        nv = self._nv
        count = int(nv.nvmlDeviceGetCount())
        visible: list[tuple[str, Any]] = []
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            visible.append((_text(nv.nvmlDeviceGetUUID(h)), h))
        if not visible:
            raise LookupError("NVML found no NVIDIA GPU on this host")
        if self.gpu_uuids is None:
            return visible
        by_uuid = dict(visible)
        chosen: list[tuple[str, Any]] = []
        for uuid in self.gpu_uuids:
            if uuid in by_uuid:
                chosen.append((uuid, by_uuid[uuid]))
                continue
            try:
                chosen.append((uuid, nv.nvmlDeviceGetHandleByUUID(uuid)))
            except nv.NVMLError as exc:
                raise LookupError(
                    f"GPU {uuid} not found ({_text(exc)}); visible GPUs: "
                    f"{', '.join(u for u, _ in visible)} (see `nvidia-smi -L`)"
                ) from exc
        return chosen

    def _probe(self, k: int, uuid: str, handle: Any) -> GpuInfo:
        nv = self._nv
        try:
            name = _text(nv.nvmlDeviceGetName(handle))
        except nv.NVMLError:
            name = "?"
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            counter = Availability.ok()
        except nv.NVMLError as exc:
            counter = Availability.no(
                f"total-energy counter not supported on {name} ({_text(exc)}): it needs Volta or "
                "later; energy falls back to integrated power"
            )
        if self._instant_power_mw(handle) is not None:
            source, averaging = POWER_SOURCE_INSTANT, POWER_AVERAGING_INSTANT
        else:
            source, averaging = POWER_SOURCE_AVERAGE, POWER_AVERAGING_AVERAGE
        total: float | None = None
        try:
            found = getattr(nv.nvmlDeviceGetMemoryInfo(handle), "total", None)
            total = float(found) if found else None
        except nv.NVMLError:
            pass
        return GpuInfo(k, uuid, name, handle, counter, source, averaging, total)

    def _instant_power_mw(self, handle: Any) -> float | None:
        nv = self._nv
        field_id = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", 186)
        try:
            values = nv.nvmlDeviceGetFieldValues(handle, [field_id])
        except (nv.NVMLError, AttributeError):
            return None
        v = values[0]
        if getattr(v, "nvmlReturn", 0) != getattr(nv, "NVML_SUCCESS", 0):
            return None
        return _field_value(nv, v)

    # -- sampling -----------------------------------------------------------------------

    def read(self) -> Sequence[float]:
        nv = self._nv
        err = nv.NVMLError
        clock_sm = getattr(nv, "NVML_CLOCK_SM", 1)
        temp_gpu = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        out: list[float] = []
        for g in self.gpus:
            h = g.handle
            if g.energy_counter.available:
                try:
                    out.append(float(nv.nvmlDeviceGetTotalEnergyConsumption(h)))
                except err:
                    out.append(NAN)
            else:
                out.append(NAN)
            if g.power_source == POWER_SOURCE_INSTANT:
                mw = self._instant_power_mw(h)
                out.append(NAN if mw is None else mw / 1e3)
            else:
                try:
                    out.append(nv.nvmlDeviceGetPowerUsage(h) / 1e3)
                except err:
                    out.append(NAN)
            try:
                u = nv.nvmlDeviceGetUtilizationRates(h)
                out.extend((float(u.gpu), float(u.memory)))
            except err:
                out.extend((NAN, NAN))
            try:
                out.append(float(nv.nvmlDeviceGetMemoryInfo(h).used))
            except err:
                out.append(NAN)
            try:
                out.append(float(nv.nvmlDeviceGetClockInfo(h, clock_sm)))
            except err:
                out.append(NAN)
            try:
                out.append(float(nv.nvmlDeviceGetTemperature(h, temp_gpu)))
            except err:
                out.append(NAN)
        return out

    def close(self) -> None:
        if self._initialised:
            try:
                self._nv.nvmlShutdown()
            except Exception:  # noqa: BLE001, S110 -- shutting down; nothing useful to do
                pass
            self._initialised = False

    def describe(self) -> dict[str, Any]:
        return {
            **self.availability.to_dict(),
            "source": "NVML (nvidia-ml-py)",
            "driver_version": self.driver_version,
            "gpus": [g.to_dict() for g in self.gpus],
        }

    # -- window figures -----------------------------------------------------------------

    def estimate_update_period_s(self, trace: Trace, gpu: GpuInfo) -> float:
        """Median time between changes of the energy counter, or the configured default."""
        ts, vs = trace.series(f"gpu{gpu.index}.energy_mj")
        changes = [ts[i] for i in range(1, len(vs)) if vs[i] != vs[i - 1]]
        if len(changes) < 5:
            return self.counter_update_period_s
        gaps = [b - a for a, b in itertools.pairwise(changes)]
        return statistics.median(gaps) / 1e9

    def summarize(self, trace: Trace, t0: int, t1: int) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        """GPU metrics over [t0, t1] summed over the selected GPUs, and flags."""
        window_s = (t1 - t0) / 1e9
        flags: list[dict[str, Any]] = []
        per_device: list[dict[str, Any]] = []
        energy_total = 0.0
        energy_reason: str | None = None
        sources: set[str] = set()
        for g in self.gpus:
            dev, dev_flags = self._gpu_energy(trace, g, t0, t1, window_s)
            flags.extend(dev_flags)
            per_device.append(dev)
            if dev["energy_j"] is None:
                energy_reason = energy_reason or f"GPU {g.uuid}: {dev['reason']}"
            else:
                energy_total += dev["energy_j"]
                sources.add(dev["energy_source"])
        metrics: dict[str, Metric] = {}
        if energy_reason is not None:
            metrics["gpu_energy_j"] = Metric.unavailable(
                "gpu_energy_j", "J", energy_reason, "nvml", per_device=per_device
            )
        else:
            metrics["gpu_energy_j"] = Metric(
                "gpu_energy_j",
                energy_total,
                "J",
                "nvml: " + " + ".join(sorted(sources)),
                extra={"scope": "selected GPUs", "per_device": per_device},
            )

        def _mean_over_gpus(field: str, combine: str) -> tuple[float | None, list[Any]]:
            per: list[Any] = []
            for g in self.gpus:
                vals = window_values(trace, f"gpu{g.index}.{field}", t0, t1)
                per.append(summary_stats(vals))
            if any(p["mean"] is None for p in per):
                return None, per
            if combine == "sum_mean":
                return sum(p["mean"] for p in per), per
            if combine == "sum_max":
                return sum(p["max"] for p in per), per
            if combine == "max":
                return max(p["max"] for p in per), per
            return sum(p["mean"] for p in per) / len(per), per

        specs = (
            ("gpu_power_w", "power_w", "W", "sum_mean", "mean power, summed over GPUs"),
            ("gpu_util_percent", "util_gpu_percent", "%", "mean", "mean over samples and GPUs"),
            (
                "gpu_mem_util_percent",
                "util_mem_percent",
                "%",
                "mean",
                "mean memory-controller busy time over samples and GPUs",
            ),
            (
                "gpu_mem_used_bytes",
                "mem_used_bytes",
                "B",
                "sum_max",
                "peak, summed over GPUs (each GPU's own peak)",
            ),
            ("gpu_sm_clock_mhz", "sm_clock_mhz", "MHz", "mean", "mean over samples and GPUs"),
            ("gpu_temp_c", "temp_c", "C", "max", "hottest GPU's peak"),
        )
        power_src = sorted({g.power_source for g in self.gpus})
        for metric_name, field, unit, combine, stat in specs:
            value, per = _mean_over_gpus(field, combine)
            extra: dict[str, Any] = {"stat": stat, "per_device": per}
            src = "nvml"
            if field == "power_w":
                src = "nvml: " + " / ".join(power_src)
                extra["averaging"] = sorted({g.power_averaging for g in self.gpus})
            if value is None:
                metrics[metric_name] = Metric.unavailable(
                    metric_name, unit, f"no valid {field} samples in the window", src, **extra
                )
            else:
                metrics[metric_name] = Metric(metric_name, value, unit, src, extra=extra)
        # The papers' "GPU used memory %": peak used over the GPUs' total memory.
        used = metrics["gpu_mem_used_bytes"]
        totals = [g.mem_total_bytes for g in self.gpus]
        if not used.available or used.value is None:
            metrics["gpu_mem_used_percent"] = Metric.unavailable(
                "gpu_mem_used_percent", "%", used.reason or "GPU memory used not measured", "nvml"
            )
        elif any(t is None or t <= 0 for t in totals):
            metrics["gpu_mem_used_percent"] = Metric.unavailable(
                "gpu_mem_used_percent", "%", "NVML did not report the GPUs' total memory", "nvml"
            )
        else:
            percent = 100.0 * used.value / sum(t for t in totals if t)
            metrics["gpu_mem_used_percent"] = Metric(
                "gpu_mem_used_percent", percent, "%", "nvml", extra={"stat": "peak used / total, over GPUs"}
            )
        return metrics, flags

    def _gpu_energy(
        self, trace: Trace, g: GpuInfo, t0: int, t1: int, window_s: float
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        flags: list[dict[str, Any]] = []
        integ = integrate(trace, f"gpu{g.index}.power_w", t0, t1)
        integrated_j = integ.value
        dev: dict[str, Any] = {
            "uuid": g.uuid,
            "name": g.name,
            "energy_j": None,
            "energy_source": None,
            "counter_j": None,
            "integrated_power_j": integrated_j,
            "power_source": g.power_source,
            "reason": None,
        }
        counter_j: float | None = None
        period_s: float | None = None
        if g.energy_counter.available:
            delta = counter_delta(trace, f"gpu{g.index}.energy_mj", t0, t1)
            counter_j = None if delta.value is None else delta.value / 1e3
            dev["counter_j"] = counter_j
            period_s = self.estimate_update_period_s(trace, g)
            dev["counter_update_period_s"] = period_s
            if delta.value is None:
                dev["counter_reason"] = delta.reason
        short = period_s is not None and window_s < period_s
        stalled = counter_j == 0.0 and (integrated_j or 0.0) > 0.0
        if counter_j is not None and not short and not stalled:
            dev["energy_j"], dev["energy_source"] = counter_j, "total-energy counter"
            if integrated_j is not None and counter_j > 0:
                rel = abs(counter_j - integrated_j) / counter_j
                dev["disagreement"] = rel
                if rel > DISAGREEMENT_THRESHOLD:
                    flags.append(
                        flag(
                            "gpu_energy_disagreement",
                            f"GPU {g.uuid}: energy counter {counter_j:.3f} J and integrated "
                            f"power {integrated_j:.3f} J differ by {rel:.1%} (> "
                            f"{DISAGREEMENT_THRESHOLD:.0%}); power source: {g.power_source}",
                            uuid=g.uuid,
                            relative_difference=rel,
                        )
                    )
            return dev, flags
        if short:
            assert period_s is not None
            flags.append(
                flag(
                    "gpu_energy_short_window",
                    f"GPU {g.uuid}: window {window_s * 1e3:.1f} ms is shorter than the energy "
                    f"counter's update period (~{period_s * 1e3:.0f} ms); the counter cannot "
                    "resolve it, integrated power is reported instead",
                    uuid=g.uuid,
                    window_s=window_s,
                    counter_update_period_s=period_s,
                )
            )
        elif stalled:
            flags.append(
                flag(
                    "gpu_energy_counter_stalled",
                    f"GPU {g.uuid}: the energy counter did not advance while power was drawn; "
                    "integrated power is reported instead",
                    uuid=g.uuid,
                )
            )
        if integrated_j is not None:
            dev["energy_j"] = integrated_j
            dev["energy_source"] = f"integrated power ({g.power_source})"
        else:
            if short:
                base = "window shorter than the energy counter's update period"
            else:
                base = dev.get("counter_reason") or g.energy_counter.reason or "no counter"
            dev["reason"] = f"{base}; power integration: {integ.reason}"
        return dev, flags


def _field_value(nv: Any, v: Any) -> float | None:
    """Value of an ``nvmlFieldValue_t`` according to its ``valueType``."""
    vt = getattr(v, "valueType", getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_INT", 1))
    attr = {
        getattr(nv, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
    }.get(vt, "uiVal")
    raw = getattr(v.value, attr, None)
    return None if raw is None else float(raw)
