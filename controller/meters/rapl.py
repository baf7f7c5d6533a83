"""CPU package and DRAM energy from RAPL through the Linux powercap sysfs tree.

Layout (``/sys/class/powercap``)::

    intel-rapl:0          name=package-0   energy_uj  max_energy_range_uj
    intel-rapl:0:0        name=core        (never added to the package: it is inside it)
    intel-rapl:0:1        name=uncore      (idem)
    intel-rapl:0:2        name=dram        (DRAM of socket 0; Intel server parts only)
    intel-rapl:1          name=package-1   (second socket)  -- or name=psys (platform, skipped)
    intel-rapl-mmio:0     name=package-0   (same package through MMIO: a duplicate, dropped)

AMD (Zen, ``intel_rapl_msr`` or ``amd_energy`` style) exposes package zones only: no DRAM domain.
``energy_uj`` wraps at ``max_energy_range_uj``; the meter unwraps on every read, which is correct as
long as at most one wrap happens between two reads — :attr:`RaplMeter.max_safe_interval_s` says how
often that requires reading, assuming a pessimistic power.
"""

from __future__ import annotations

import errno
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.meters.base import NAN, Availability, Metric, Trace, counter_delta, flag, max_gap_ns

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
#: Assumed worst-case power of one zone when sizing the poll period for wraparound.
PESSIMISTIC_ZONE_POWER_W = 1000.0

_ZONE_RE = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")
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


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass
class RaplZone:
    """One RAPL energy counter the meter reads."""

    domain: str  # "cpu" (package) or "dram"
    name: str  # zone name from sysfs: package-0, dram
    socket: str  # package name this zone belongs to, e.g. package-0
    path: Path
    max_energy_range_uj: int
    fd: int | None = None
    last_raw: int | None = None
    total_uj: float = 0.0
    wraps: int = 0

    @property
    def field(self) -> str:
        return f"{self.domain}.{self.socket}.energy_uj"


@dataclass
class RaplDiscovery:
    """Zones found under a powercap root and what was skipped, with reasons."""

    zones: list[RaplZone] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    availability: Availability = field(default_factory=Availability.ok)
    dram: Availability = field(default_factory=Availability.ok)


def discover(root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT) -> RaplDiscovery:
    """Find package and DRAM zones under ``root`` without opening their counters."""
    rootp = Path(root)
    out = RaplDiscovery()
    if not rootp.is_dir():
        out.availability = Availability.no(
            f"no powercap on this host ({rootp} missing): RAPL is not exposed in VMs and "
            "containers; run the controller on bare metal, on the host (modprobe intel_rapl_msr)"
        )
        out.dram = out.availability
        return out

    # Zones appear flat under /sys/class/powercap and nested inside their parent; walk both and
    # dedupe by zone id, which sysfs keeps unique.
    candidates: dict[str, tuple[str, Path]] = {}
    for entry in sorted(rootp.iterdir()):
        m = _ZONE_RE.match(entry.name)
        if not m:
            continue
        candidates.setdefault(entry.name, (entry.name, entry))
        for child in sorted(entry.iterdir()) if entry.is_dir() else []:
            if _ZONE_RE.match(child.name):
                candidates.setdefault(child.name, (child.name, child))

    packages: dict[str, tuple[bool, Path, str]] = {}  # package name -> (is_mmio, path, zone id)
    drams: list[tuple[str, Path, str]] = []  # (parent zone id, path, zone id)
    zone_pkg_name: dict[str, str] = {}  # zone id ("intel-rapl:0") -> package name
    for zone_id, path in sorted(candidates.values()):
        m = _ZONE_RE.match(zone_id)
        assert m is not None
        kind, top, sub = m.group(1), m.group(2), m.group(3)
        name = _read_text(path / "name") or "?"
        if sub is None:
            if not name.startswith("package"):
                out.skipped.append(f"{zone_id} ({name}): not a package zone, never summed")
                continue
            is_mmio = kind == "intel-rapl-mmio"
            prev = packages.get(name)
            if prev is not None:
                if is_mmio or not prev[0]:
                    out.skipped.append(f"{zone_id} ({name}): duplicate of {prev[2]}")
                    continue
                out.skipped.append(f"{prev[2]} ({name}): duplicate of {zone_id}")
            packages[name] = (is_mmio, path, zone_id)
            if not is_mmio:
                zone_pkg_name[f"{kind}:{top}"] = name
        else:
            if name == "dram":
                if kind == "intel-rapl-mmio":
                    out.skipped.append(f"{zone_id} (dram): MMIO duplicate")
                    continue
                drams.append((f"{kind}:{top}", path, zone_id))
            else:
                out.skipped.append(f"{zone_id} ({name}): part of its package, never added")

    for pkg_name, (_mmio, path, zone_id) in sorted(packages.items()):
        zone = _make_zone("cpu", pkg_name, pkg_name, path, zone_id, out)
        if zone is not None:
            out.zones.append(zone)
    for parent, path, zone_id in drams:
        socket = zone_pkg_name.get(parent, parent)
        zone = _make_zone("dram", "dram", socket, path, zone_id, out)
        if zone is not None:
            out.zones.append(zone)

    if not any(z.domain == "cpu" for z in out.zones):
        why = "; ".join(out.skipped) or "no intel-rapl:N zones"
        out.availability = Availability.no(
            f"no RAPL package zone under {rootp} ({why}); load intel_rapl_msr (Intel, AMD Zen) and run on bare metal"
        )
    if not any(z.domain == "dram" for z in out.zones):
        out.dram = Availability.no(
            f"no DRAM zone under {rootp}: this CPU/platform does not expose RAPL DRAM energy "
            "(AMD and most client Intel CPUs expose package zones only)"
        )
    return out


def _make_zone(domain: str, name: str, socket: str, path: Path, zone_id: str, out: RaplDiscovery) -> RaplZone | None:
    rng_text = _read_text(path / "max_energy_range_uj")
    try:
        rng = int(rng_text) if rng_text is not None else 0
    except ValueError:
        rng = 0
    if rng <= 0:
        out.skipped.append(
            f"{zone_id} ({name}): max_energy_range_uj unreadable ({rng_text!r}); without it "
            "wraparound cannot be handled, so the zone is not used"
        )
        return None
    return RaplZone(domain, name, socket, path, rng)


class RaplMeter:
    """Reads package and DRAM energy counters; each read returns cumulative, unwrapped µJ."""

    name = "rapl"

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

    def summarize(self, trace: Trace, t0: int, t1: int) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        """cpu_energy_j (packages), dram_energy_j and cpu_power_w over [t0, t1], and flags."""
        window_s = (t1 - t0) / 1e9
        flags: list[dict[str, Any]] = []
        metrics: dict[str, Metric] = {}
        for domain, metric_name, avail in (
            ("cpu", "cpu_energy_j", self.availability),
            ("dram", "dram_energy_j", self.dram),
        ):
            zones = [z for z in self.zones if z.domain == domain]
            src = f"RAPL powercap {self.root}"
            if not avail.available or not zones:
                metrics[metric_name] = Metric.unavailable(metric_name, "J", avail.reason or f"no {domain} zone", src)
                continue
            per: dict[str, float | None] = {}
            reason: str | None = None
            for z in zones:
                d = counter_delta(trace, z.field, t0, t1)
                per[z.socket] = None if d.value is None else d.value / 1e6
                reason = reason or d.reason
            if reason is not None:
                metrics[metric_name] = Metric.unavailable(metric_name, "J", reason, src, per_socket=per)
                continue
            total = sum(v for v in per.values() if v is not None)
            metrics[metric_name] = Metric(
                metric_name,
                total,
                "J",
                src,
                extra={
                    "scope": "host (whole socket, not only the benchmark)",
                    "per_socket": per,
                    "zones": [str(z.path) for z in zones],
                },
            )
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
        safe = self.max_safe_interval_s
        if self.zones and safe is not None:
            gap_s = max_gap_ns(trace, t0, t1) / 1e9
            if gap_s > safe:
                flags.append(
                    flag(
                        "rapl_possible_missed_wrap",
                        f"RAPL was not read for {gap_s:.1f} s, longer than the {safe:.1f} s in "
                        "which a counter can wrap at "
                        f"{self.pessimistic_power_w:.0f} W; energy may be short by a full "
                        "counter range",
                        gap_s=gap_s,
                        max_safe_interval_s=safe,
                    )
                )
        return metrics, flags


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
