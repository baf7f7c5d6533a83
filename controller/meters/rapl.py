"""CPU package and DRAM energy from RAPL counters (zones found by ``powercap.discover``).

``energy_uj`` wraps at ``max_energy_range_uj``; the meter unwraps on every read, which is correct as
long as at most one wrap happens between two reads — :attr:`RaplMeter.max_safe_interval_s` says how
often that requires reading, assuming a pessimistic power. A step no zone can draw (a counter that
went backwards by less than a wrap would need, or jumped) makes the window's figure unavailable.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Metric, Trace, flag, seconds
from controller.meters.powercap import DEFAULT_POWERCAP_ROOT, RaplZone, discover
from controller.meters.window import (
    CounterFault,
    counter_delta,
    max_gap_ns,
    sampling_interval_s,
    short_window_flag,
)

__all__ = ["DEFAULT_POWERCAP_ROOT", "PESSIMISTIC_ZONE_POWER_W", "RaplMeter", "RaplZone", "discover"]

#: Assumed worst-case power of one zone, for sizing the poll period and bounding a counter step.
PESSIMISTIC_ZONE_POWER_W = 1000.0
#: Added to the time between two reads when bounding a step: the counters update about every ms.
UPDATE_SLACK_S = 0.002
#: What the RAPL meter reports: metric name -> unit.
RAPL_UNITS = {"cpu_energy_j": "J", "dram_energy_j": "J", "cpu_power_w": "W"}

_PERMISSION_HINT = (
    "energy_uj is readable by root only on kernels patched for CVE-2020-8694 (Platypus): run the "
    "controller as root, or grant read access (e.g. a udev rule / `chmod a+r "
    "/sys/class/powercap/intel-rapl:*/energy_uj` at boot)"
)

#: Opens a counter file for reading and returns a file descriptor. Tests may replace it to
#: simulate what a root-run test cannot produce with chmod (EACCES on a root-only file).
Opener = Callable[[str], int]


def _default_opener(path: str) -> int:
    return os.open(path, os.O_RDONLY)


class RaplMeter:
    """Reads package and DRAM energy counters; each read returns cumulative, unwrapped µJ."""

    name = "rapl"
    units = RAPL_UNITS

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT,
        *,
        interval_s: float | None = None,
        opener: Opener = _default_opener,
        pessimistic_power_w: float = PESSIMISTIC_ZONE_POWER_W,
    ) -> None:
        self.root = Path(root)
        self.interval_s = interval_s
        self._opener = opener
        self.pessimistic_power_w = pessimistic_power_w
        self.zones: list[RaplZone] = []
        self.fields: tuple[str, ...] = ()
        self.availability = Availability.no("not opened")
        self.dram = Availability.no("not opened")
        self.skipped: list[str] = []

    @property
    def max_safe_interval_s(self) -> float | None:
        """Longest gap between reads that still sees at most one wrap at the pessimistic power.

        Half of the time a counter takes to wrap at ``pessimistic_power_w`` (the other half is
        margin for scheduling stalls).
        """
        if not self.zones:
            return None
        rng = min(z.max_energy_range_uj for z in self.zones)
        return rng / (self.pessimistic_power_w * 1e6) / 2.0

    def open(self) -> Availability:
        found = discover(self.root)
        self.skipped = list(found.skipped)
        self.availability, self.dram = found.availability, found.dram
        zones: list[RaplZone] = []
        denied: list[str] = []
        for zone in found.zones:
            path = str(zone.path / "energy_uj")
            try:
                zone.fd = self._opener(path)
                zone.last_raw = self._read_raw(zone)
            except PermissionError:
                denied.append(path)
                self._close_zone(zone)
                continue
            except (OSError, ValueError) as exc:
                self.skipped.append(f"{path}: unreadable ({_describe(exc)})")
                self._close_zone(zone)
                continue
            zones.append(zone)
        self.zones = zones
        self.fields = tuple(z.field for z in zones)
        if not any(z.domain == "cpu" for z in zones) and found.availability.available:
            if denied:
                self.availability = Availability.no(
                    f"permission denied reading {', '.join(denied)}: {_PERMISSION_HINT}"
                )
            else:
                self.availability = Availability.no("RAPL package counters unreadable: " + "; ".join(self.skipped))
        if not any(z.domain == "dram" for z in zones) and found.dram.available:
            if denied:
                self.dram = Availability.no(f"permission denied reading DRAM energy_uj: {_PERMISSION_HINT}")
            else:
                self.dram = Availability.no("RAPL DRAM counter unreadable: " + "; ".join(self.skipped))
        return self.availability

    @staticmethod
    def _read_raw(zone: RaplZone) -> int:
        assert zone.fd is not None
        data = os.pread(zone.fd, 32, 0)
        return int(data)

    def read(self) -> Sequence[float]:
        out: list[float] = []
        for zone in self.zones:
            try:
                raw = self._read_raw(zone)
            except (OSError, ValueError):
                out.append(NAN)
                continue
            last = zone.last_raw
            if last is not None:
                delta = raw - last
                if delta < 0:
                    delta += zone.max_energy_range_uj
                    zone.wraps += 1
                zone.total_uj += delta
            zone.last_raw = raw
            out.append(zone.total_uj)
        return out

    def close(self) -> None:
        for zone in self.zones:
            self._close_zone(zone)

    @staticmethod
    def _close_zone(zone: RaplZone) -> None:
        if zone.fd is not None:
            try:
                os.close(zone.fd)
            except OSError:
                pass
            zone.fd = None

    def describe(self) -> dict[str, Any]:
        """Zones in use, zones skipped and why, and the wraparound sizing."""
        safe = self.max_safe_interval_s
        return {
            **self.availability.to_dict(),
            "source": f"powercap {self.root}",
            "zones": [
                {
                    "domain": z.domain,
                    "socket": z.socket,
                    "path": str(z.path),
                    "max_energy_range_uj": z.max_energy_range_uj,
                    "wraps": z.wraps,
                }
                for z in self.zones
            ],
            "skipped": list(self.skipped),
            "dram": self.dram.to_dict(),
            "max_safe_interval_s": None if safe is None or math.isinf(safe) else safe,
        }

    def source(self) -> str:
        return f"RAPL powercap {self.root}"

    def unavailable(self) -> MeterSummary:
        why = self.availability.reason or "not opened"
        return MeterSummary.unavailable(self.units, why, self.source(), dram_energy_j=self.dram.reason)

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        """cpu_energy_j (packages), dram_energy_j and cpu_power_w over [t0, t1], and flags."""
        window_s = (t1 - t0) / 1e9
        flags: list[dict[str, Any]] = []
        metrics = {
            "cpu_energy_j": self._energy(trace, "cpu", self.availability, t0, t1, flags),
            "dram_energy_j": self._energy(trace, "dram", self.dram, t0, t1, flags),
        }
        cpu = metrics["cpu_energy_j"]
        if cpu.value is not None and window_s > 0:
            metrics["cpu_power_w"] = Metric(
                "cpu_power_w",
                cpu.value / window_s,
                "W",
                cpu.source,
                extra={"stat": "mean over the window (package energy / window)"},
            )
        else:
            metrics["cpu_power_w"] = Metric.unavailable("cpu_power_w", "W", cpu.reason or "empty window", cpu.source)
        interval = sampling_interval_s(trace, t0, t1)
        for name in ("cpu_energy_j", "dram_energy_j"):
            short = short_window_flag(self.name, name, window_s, interval)
            if short is not None and metrics[name].available:
                flags.append(short)
        missed = self._missed_wrap_flag(trace, t0, t1)
        return MeterSummary(metrics, flags + ([missed] if missed else []))

    def _energy(
        self, trace: Trace, domain: str, avail: Availability, t0: int, t1: int, flags: list[dict[str, Any]]
    ) -> Metric:
        """One domain's energy summed over its zones; any zone unmeasurable makes it unavailable."""
        metric_name = f"{domain}_energy_j"
        zones = [z for z in self.zones if z.domain == domain]
        if not avail.available or not zones:
            return Metric.unavailable(metric_name, "J", avail.reason or f"no {domain} zone", self.source())
        per: dict[str, float | None] = {}
        reason: str | None = None
        for z in zones:
            d = counter_delta(trace, z.field, t0, t1, max_rate=self.pessimistic_power_w * 1e6, slack_s=UPDATE_SLACK_S)
            per[z.socket] = None if d.value is None else d.value / 1e6
            if d.faults:
                code, why = self._explain(z, d.faults[0])
                more = f" ({len(d.faults) - 1} more such steps)" if len(d.faults) > 1 else ""
                why = f"RAPL {domain} {z.socket}: {why}{more}"
                flags.append(flag(code, f"{why}; {metric_name} is not reported", meter=self.name, zone=str(z.path)))
                reason = reason or why
            reason = reason or d.reason
        if reason is not None:
            return Metric.unavailable(metric_name, "J", reason, self.source(), per_socket=per)
        return Metric(
            metric_name,
            sum(v for v in per.values() if v is not None),
            "J",
            self.source(),
            extra={
                "scope": "host (whole socket, not only the benchmark)",
                "per_socket": per,
                "zones": [str(z.path) for z in zones],
            },
        )

    def _explain(self, zone: RaplZone, fault: CounterFault) -> tuple[str, str]:
        """(flag code, clause) for a step of the unwrapped counter that no zone can draw."""
        rng = zone.max_energy_range_uj
        if fault.kind == "jump" and fault.step > rng / 2:
            # read() took the raw counter going backwards for a wrap; a real wrap adds what the
            # zone drew since the last read, not most of the counter's range.
            back = (rng - fault.step) / 1e6
            return "rapl_counter_reset", (
                f"energy_uj went backwards by {back:.6g} J within {seconds(fault.dt_s)}; as a "
                f"wraparound of its {rng / 1e6:.6g} J range that would be {fault.step / 1e6:.6g} J, more than "
                f"{self.pessimistic_power_w:.0f} W can draw: the counter was reset"
            )
        if fault.kind == "backwards":
            return "rapl_counter_reset", fault.describe(1e-6, "J")
        return "rapl_counter_jump", f"{fault.describe(1e-6, 'J')} at {self.pessimistic_power_w:.0f} W"

    def _missed_wrap_flag(self, trace: Trace, t0: int, t1: int) -> dict[str, Any] | None:
        safe = self.max_safe_interval_s
        if not self.zones or safe is None:
            return None
        gap_s = max_gap_ns(trace, t0, t1) / 1e9
        if gap_s <= safe:
            return None
        return flag(
            "rapl_possible_missed_wrap",
            f"RAPL was not read for {seconds(gap_s)}, longer than {seconds(safe)} (half the time a counter "
            f"takes to wrap at {self.pessimistic_power_w:.0f} W); energy may be short by a full counter range",
            gap_s=gap_s,
            max_safe_interval_s=safe,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
