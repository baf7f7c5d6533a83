"""NVIDIA GPU energy, power and utilisation through NVML (``nvidia-ml-py``, module ``pynvml``).

The library is imported lazily; tests pass a fake module object implementing the handful of
functions used here. GPUs are selected by UUID. Per GPU and per read the meter records the
total-energy counter (mJ, Volta and later), instant power, utilisation, memory used, SM clock and
temperature. Window figures are cut from the trace in ``nvml_window``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Trace
from controller.meters.nvml_window import DISAGREEMENT_THRESHOLD, NVML_UNITS, gpu_summary, update_period_s

__all__ = ["DISAGREEMENT_THRESHOLD", "GpuInfo", "NvmlMeter", "load_pynvml"]

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
    units = NVML_UNITS

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
        # Per GPU (uuid): how often its energy counter updates, and how that was found (the
        # last window's trace: its update clock, else the median time between its changes).
        self.counter_updates: dict[str, dict[str, Any]] = {}

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
            "gpus": [{**g.to_dict(), **self.counter_updates.get(g.uuid, {})} for g in self.gpus],
        }

    # -- window figures -----------------------------------------------------------------

    def estimate_update_period_s(self, trace: Trace, gpu: GpuInfo) -> float:
        """Median time between changes of the energy counter, or the configured default."""
        return update_period_s(trace, gpu, self.counter_update_period_s)

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.availability.reason or "not opened", "nvml")

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        """GPU metrics over [t0, t1] summed over the selected GPUs, and flags."""
        out = gpu_summary(self.gpus, trace, t0, t1, self.counter_update_period_s)
        for dev in out.metrics["gpu_energy_j"].extra.get("per_device", []):
            if "counter_update_period_s" in dev:
                self.counter_updates[dev["uuid"]] = {
                    "counter_update_period_s": dev["counter_update_period_s"],
                    "counter_update_period_source": dev.get("counter_update_period_source"),
                }
        return out


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
