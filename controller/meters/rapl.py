"""CPU package and DRAM energy from RAPL counters (zones found by ``powercap.discover``).

``energy_uj`` wraps at ``max_energy_range_uj``; the meter unwraps on every read, which is correct as
long as the zone draws less than one counter range between two reads. Whether a gap in the reads
could hide more is judged from the power the zone was actually seen drawing (twice the highest,
over reads too close together to hide a wrap even at a pessimistic power): a gap that could makes
the figure unavailable. A step no zone can draw (a counter that went backwards by less than a wrap
would need, or jumped) does too.

The counter updates about every millisecond (observed when the meter opens); window figures
reconstruct when each read value was taken and split the bracketing intervals at the window's
edges with the power on either side (``edges``), and carry the bound of what that leaves.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Metric, Trace, flag, seconds
from controller.meters.edges import counter_window
from controller.meters.powercap import DEFAULT_POWERCAP_ROOT, RaplZone, discover
from controller.meters.uncertainty import COUNTER_METHOD, add_components, bound_fields
from controller.meters.window import CounterFault, counter_faults, sampling_interval_s, short_window_flag

__all__ = ["DEFAULT_POWERCAP_ROOT", "PESSIMISTIC_ZONE_POWER_W", "RaplMeter", "RaplZone", "discover"]

#: Assumed worst-case power of one zone, for sizing the poll period and bounding a counter step.
PESSIMISTIC_ZONE_POWER_W = 1000.0
#: Added to the time between two reads when bounding a step: the counters update about every ms.
UPDATE_SLACK_S = 0.002
#: How often RAPL counters update when it cannot be observed (Intel documents about 1 ms; AMD too).
DEFAULT_UPDATE_PERIOD_S = 0.001
#: Smallest step of ``energy_uj``: the energy status unit, 2^-14 J (61 uJ) on most Intel parts
#: (15.3 uJ on server parts; AMD 15.3 uJ): the coarsest is assumed.
RESOLUTION_UJ = 61.0
#: A gap may hide a wrap when this many times the highest power seen could fill the counter's range.
WRAP_POWER_MARGIN = 2.0
#: How long the meter watches a counter when it opens, to see how often it updates.
PROBE_S = 0.01
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
        update_period_s: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.interval_s = interval_s
        self._opener = opener
        self.pessimistic_power_w = pessimistic_power_w
        # None: observed when the meter opens (the default where it cannot be seen).
        self.update_period_s = update_period_s or DEFAULT_UPDATE_PERIOD_S
        self.update_period_source = "given" if update_period_s else "not observed yet"
        self._probe = update_period_s is None
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
        if self._probe and zones:
            self._observe_update_period(zones[0])
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

    def _observe_update_period(self, zone: RaplZone) -> None:
        """Watch one counter for :data:`PROBE_S`: the median time between its changes is how often
        it updates. A counter that moves fewer than four times (an idle zone, a fake) keeps the
        documented 1 ms, said so."""
        changes: list[int] = []
        last = self._read_raw(zone)
        end = time.monotonic_ns() + int(PROBE_S * 1e9)
        while time.monotonic_ns() < end and len(changes) < 12:
            raw = self._read_raw(zone)
            if raw != last:
                changes.append(time.monotonic_ns())
                last = raw
        gaps = sorted(b - a for a, b in itertools.pairwise(changes))
        if len(gaps) >= 3:
            self.update_period_s = gaps[len(gaps) // 2] / 1e9
            self.update_period_source = f"observed when the meter opened ({len(changes)} updates of {zone.path.name})"
        else:
            self.update_period_s = DEFAULT_UPDATE_PERIOD_S
            self.update_period_source = (
                f"assumed (Intel and AMD document about 1 ms; {zone.path.name} moved {len(changes)} times "
                f"in {seconds(PROBE_S)} when the meter opened)"
            )
        zone.last_raw = last

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
            "update_period_s": self.update_period_s,
            "update_period_source": self.update_period_source,
            "resolution_uj": RESOLUTION_UJ,
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
            m = metrics[name]
            short = short_window_flag(self.name, name, window_s, interval, m.extra.get("uncertainty_rel"))
            if short is not None and m.available:
                flags.append(short)
        return MeterSummary(metrics, flags)

    def _energy(
        self, trace: Trace, domain: str, avail: Availability, t0: int, t1: int, flags: list[dict[str, Any]]
    ) -> Metric:
        """One domain's energy summed over its zones, with its bound; any zone unmeasurable makes
        it unavailable."""
        metric_name = f"{domain}_energy_j"
        zones = [z for z in self.zones if z.domain == domain]
        if not avail.available or not zones:
            return Metric.unavailable(metric_name, "J", avail.reason or f"no {domain} zone", self.source())
        per: dict[str, float | None] = {}
        parts: list[dict[str, float]] = []
        wraps: dict[str, dict[str, float | None]] = {}
        reason: str | None = None
        for z in zones:
            value, components, why = self._zone_energy(trace, z, t0, t1, flags, wraps)
            per[z.socket] = value
            if why is not None:
                reason = reason or f"RAPL {domain} {z.socket}: {why}"
            else:
                parts.append(components)
        if reason is not None:
            return Metric.unavailable(metric_name, "J", reason, self.source(), per_socket=per)
        value = sum(v for v in per.values() if v is not None)
        return Metric(
            metric_name,
            value,
            "J",
            self.source(),
            extra={
                "scope": "host (whole socket, not only the benchmark)",
                "per_socket": per,
                "zones": [str(z.path) for z in zones],
                "update_period_s": self.update_period_s,
                "wrap_check": wraps,
                **bound_fields(value, add_components(parts), COUNTER_METHOD),
            },
        )

    def _zone_energy(
        self,
        trace: Trace,
        z: RaplZone,
        t0: int,
        t1: int,
        flags: list[dict[str, Any]],
        wraps: dict[str, dict[str, float | None]],
    ) -> tuple[float | None, dict[str, float], str | None]:
        """One zone's energy over the window (J), its bound's components (J), or why not."""
        ts, vs = trace.series(z.field)
        faults = counter_faults(ts, vs, t0, t1, self.pessimistic_power_w * 1e6, UPDATE_SLACK_S)
        if faults:
            code, why = self._explain(z, faults[0])
            more = f" ({len(faults) - 1} more such steps)" if len(faults) > 1 else ""
            flags.append(
                flag(
                    code,
                    f"RAPL {z.domain} {z.socket}: {why}{more}; {z.domain}_energy_j is not reported",
                    meter=self.name,
                    zone=str(z.path),
                )
            )
            return None, {}, why + more
        check = wrap_check(ts, vs, t0, t1, z.max_energy_range_uj, self.pessimistic_power_w)
        wraps[z.socket] = check.to_dict()
        if check.possible_wraps >= 1:
            basis = (
                f"{WRAP_POWER_MARGIN:g} x the most it was seen drawing"
                if check.power_seen_w is not None
                else "the pessimistic zone power: no two reads were close enough to see its power unaliased"
            )
            why = (
                f"energy_uj was not read for {seconds(check.largest_gap_s)}, in which the zone could draw "
                f"{check.largest_gap_s * check.power_bound_w:.6g} J at {check.power_bound_w:.4g} W "
                f"({basis}), more than the counter's {z.max_energy_range_uj / 1e6:.6g} J range: it may have "
                "wrapped more than once between two reads, which unwrapping cannot see"
            )
            flags.append(
                flag(
                    "rapl_possible_missed_wrap",
                    f"RAPL {z.domain} {z.socket}: {why}; {z.domain}_energy_j is not reported",
                    meter=self.name,
                    zone=str(z.path),
                    **check.to_dict(),
                )
            )
            return None, {}, why
        w = counter_window(ts, vs, t0, t1, period_s=self.update_period_s, resolution=RESOLUTION_UJ)
        if w.value is None:
            return None, {}, f"{trace.meter}.{z.field}: {w.reason}"
        components = {k: v / 1e6 for k, v in w.components.items()}
        components["wrap_risk"] = 0.0
        return w.value / 1e6, components, None

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


@dataclass(frozen=True)
class WrapCheck:
    """Whether a gap in a zone's reads could hide a wrap: the largest gap around the window, the
    power the zone was seen drawing (None: no reads close enough to tell), the power assumed for
    the gap, and how many counter ranges the gap could hold at it (1 or more: it may have
    wrapped more than once between two reads)."""

    largest_gap_s: float
    power_seen_w: float | None
    power_bound_w: float
    counter_range_j: float
    possible_wraps: float

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def wrap_check(ts: list[int], vs: list[float], t0: int, t1: int, range_uj: int, pessimistic_w: float) -> WrapCheck:
    """Whether a gap between the reads around [t0, t1] could hide a wrap the unwrapping missed.

    The power bound is :data:`WRAP_POWER_MARGIN` times the highest power seen over reads close
    enough together that even ``pessimistic_w`` could not fill the range between them (so their
    own deltas cannot be aliased by a missed wrap); ``pessimistic_w`` itself when no reads are.
    """
    seen = 0.0
    trusted = False
    for i in range(1, len(ts)):
        dt = (ts[i] - ts[i - 1]) / 1e9
        if dt > 0 and dt * pessimistic_w * 1e6 < range_uj:
            trusted = True
            seen = max(seen, (vs[i] - vs[i - 1]) / 1e6 / dt)
    bound_w = WRAP_POWER_MARGIN * seen if trusted else pessimistic_w
    lo = max(0, bisect_right(ts, t0) - 1)
    hi = min(len(ts) - 1, bisect_left(ts, t1))
    gap = max(((ts[i] - ts[i - 1]) / 1e9 for i in range(lo + 1, hi + 1)), default=0.0)
    return WrapCheck(gap, seen if trusted else None, bound_w, range_uj / 1e6, gap * bound_w * 1e6 / range_uj)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
