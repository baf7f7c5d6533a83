"""Fakes of the lowest hardware boundary only: a powercap sysfs tree and the NVML module, and a
known power profile to drive their counters with."""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

MAX_RANGE_UJ = 262_143_328_850  # a real Skylake-SP value


@dataclass(frozen=True)
class PowerProfile:
    """Known power: ``steps`` of (from_s, watts), constant until the next step, 0 W before the
    first. Energy is its exact integral, so a meter's figure can be checked against it."""

    steps: tuple[tuple[float, float], ...]

    @classmethod
    def constant(cls, watts: float) -> PowerProfile:
        return cls(((0.0, watts),))

    @classmethod
    def burst(cls, idle_w: float, busy_w: float, t0_s: float, t1_s: float) -> PowerProfile:
        """``idle_w``, stepping to ``busy_w`` over [t0_s, t1_s) (a workload starting and stopping)."""
        return cls(((0.0, idle_w), (t0_s, busy_w), (t1_s, idle_w)))

    def watts(self, t_s: float) -> float:
        i = bisect_right([s for s, _ in self.steps], t_s) - 1
        return self.steps[i][1] if i >= 0 else 0.0

    def joules(self, t_s: float, from_s: float = 0.0) -> float:
        """Energy over [from_s, t_s]."""
        total = 0.0
        bounds = [*self.steps[1:], (math.inf, 0.0)]
        for (start, w), (end, _) in zip(self.steps, bounds, strict=True):
            lo, hi = max(start, from_s), min(end, t_s)
            if hi > lo:
                total += w * (hi - lo)
        return total


def _last_update(t_s: float, period_s: float, phase_s: float) -> float:
    """The last instant ``phase_s + k * period_s`` at or before ``t_s`` (``t_s`` with no period)."""
    if not period_s:
        return t_s
    return phase_s + math.floor((t_s - phase_s) / period_s + 1e-9) * period_s


class PowercapTree:
    """Writes zones like the kernel lays them out: nested dirs plus flat symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ranges: dict[str, int] = {}
        self._base_uj: dict[str, float] = {}
        self._last_uj: dict[str, float] = {}
        self._fds: dict[str, int] = {}

    def zone(
        self,
        zone_id: str,
        name: str,
        energy_uj: int = 0,
        max_range_uj: int | str | None = MAX_RANGE_UJ,
    ) -> Path:
        parts = zone_id.split(":")
        if len(parts) == 3:  # subzone: nested in its parent, symlinked flat
            parent = self.root / ":".join(parts[:2])
            d = parent / zone_id
            d.mkdir(parents=True)
            (self.root / zone_id).symlink_to(d)
        else:
            d = self.root / zone_id
            d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        if max_range_uj is not None:
            (d / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        if isinstance(max_range_uj, int):
            self.ranges[zone_id] = max_range_uj
        self._base_uj[zone_id] = self._last_uj[zone_id] = float(energy_uj)
        return d

    def set(self, zone_id: str, energy_uj: int) -> None:
        """Write the counter in place, as sysfs shows it (the number and a newline), padded with
        spaces to a fixed width so that a shorter number leaves no digits behind: opening the file
        for every write costs milliseconds on some filesystems, and a trace has thousands."""
        fd = self._fds.get(zone_id)
        if fd is None:
            fd = self._fds[zone_id] = os.open(self.root / zone_id / "energy_uj", os.O_WRONLY)
        os.pwrite(fd, f"{energy_uj}\n".encode().ljust(24), 0)

    def follow(
        self, zone_id: str, profile: PowerProfile, t_s: float, update_period_s: float = 0.0, phase_s: float = 0.0
    ) -> None:
        """Set the counter to what the zone has counted by ``t_s`` under ``profile``, wrapped at
        its ``max_energy_range_uj`` as the hardware does. With ``update_period_s`` the counter
        holds what it counted at its last update (RAPL updates about every ms), at
        ``phase_s + k * update_period_s``."""
        t_q = _last_update(t_s, update_period_s, phase_s)
        total = self._base_uj[zone_id] + profile.joules(t_q) * 1e6
        self._last_uj[zone_id] = total
        self.set(zone_id, round(total) % self.ranges[zone_id])

    def reset_counter(self, zone_id: str) -> None:
        """The counter starts again from 0 after the last value written (firmware reset)."""
        self._base_uj[zone_id] -= self._last_uj[zone_id]


# ---------------------------------------------------------------------------------------------
# Fake NVML


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 6: "Not Found", 12: "NVML Shared Library Not Found"}.get(
            self.value, f"error {self.value}"
        )


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    energy_mj: int = 1_000_000
    power_mw: int = 200_000  # instant (field API)
    avg_power_mw: int = 190_000  # nvmlDeviceGetPowerUsage
    counter_supported: bool = True
    field_supported: bool = True
    util_gpu: int = 50
    util_mem: int = 20
    mem_used: int = 4 * 1024**3
    sm_clock: int = 1980
    temp: int = 45
    power_readable: bool = True  # False: both power reads fail (NVML_ERROR_NOT_SUPPORTED)
    counter_base_mj: float = 1_000_000.0

    def follow(
        self,
        profile: PowerProfile,
        t_s: float,
        counter_period_s: float = 0.0,
        phase_s: float = 0.0,
        average_s: float = 0.0,
    ) -> None:
        """Power now and the total-energy counter as ``profile`` makes them at ``t_s``; the counter
        moves only every ``counter_period_s`` (NVML's counters update every few tens of ms), at
        ``phase_s + k * counter_period_s``. ``average_s``: ``nvmlDeviceGetPowerUsage`` returns the
        mean power over that long before ``t_s`` (1 s on Ampere and later), not the instant one."""
        self.power_mw = round(profile.watts(t_s) * 1e3)
        if average_s:
            self.avg_power_mw = round((profile.joules(t_s) - profile.joules(t_s - average_s)) / average_s * 1e3)
        else:
            self.avg_power_mw = self.power_mw
        t_q = _last_update(t_s, counter_period_s, phase_s)
        self.energy_mj = round(self.counter_base_mj + profile.joules(t_q) * 1e3)

    def reset_counter(self) -> None:
        """Driver reload or GPU reset: the counter starts again from 0 after its last value."""
        self.counter_base_mj -= self.energy_mj


@dataclass
class FakeNvml:
    """Module-like object with the pynvml functions the meter uses."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    driver: str = "550.54.15"
    calls: list[str] = field(default_factory=list)

    NVMLError = FakeNVMLError
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_VALUE_TYPE_UNSIGNED_INT = 1
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def nvmlInit(self) -> None:  # noqa: N802 -- pynvml's names
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.driver

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:  # noqa: N802
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:  # noqa: N802
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        raise FakeNVMLError(6)

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:  # noqa: N802
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:  # noqa: N802
        return h.name

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:  # noqa: N802
        if not h.counter_supported:
            raise FakeNVMLError(3)
        return h.energy_mj

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[int]) -> list[Any]:  # noqa: N802
        assert ids == [self.NVML_FI_DEV_POWER_INSTANT]
        ret = 0 if h.field_supported and h.power_readable else 3
        return [
            SimpleNamespace(
                fieldId=ids[0],
                nvmlReturn=ret,
                valueType=self.NVML_VALUE_TYPE_UNSIGNED_INT,
                value=SimpleNamespace(uiVal=h.power_mw),
            )
        ]

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:  # noqa: N802
        if not h.power_readable:
            raise FakeNVMLError(3)
        return h.avg_power_mw

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=h.util_gpu, memory=h.util_mem)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:  # noqa: N802
        return SimpleNamespace(used=h.mem_used, total=80 * 1024**3, free=0)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, kind: int) -> int:  # noqa: N802
        assert kind == self.NVML_CLOCK_SM
        return h.sm_clock

    def nvmlDeviceGetTemperature(self, h: FakeGpu, kind: int) -> int:  # noqa: N802
        return h.temp
