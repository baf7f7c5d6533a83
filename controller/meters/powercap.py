"""Which RAPL energy counters a powercap sysfs tree has, and which of them to sum.

Layout (``/sys/class/powercap``)::

    intel-rapl:0          name=package-0   energy_uj  max_energy_range_uj
    intel-rapl:0:0        name=core        (never added to the package: it is inside it)
    intel-rapl:0:1        name=uncore      (idem)
    intel-rapl:0:2        name=dram        (DRAM of socket 0; Intel server parts only)
    intel-rapl:1          name=package-1   (second socket)  -- or name=psys (platform, skipped)
    intel-rapl-mmio:0     name=package-0   (same package through MMIO: a duplicate, dropped)

AMD (Zen, ``intel_rapl_msr`` or ``amd_energy`` style) exposes package zones only: no DRAM domain.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from controller.meters.base import Availability

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

_ZONE_RE = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")


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


@dataclass
class _Found:
    """Zones sorted while walking the tree, before their counters are checked."""

    packages: dict[str, tuple[bool, Path, str]] = field(default_factory=dict)  # name -> (is_mmio, path, zone id)
    drams: list[tuple[str, Path, str]] = field(default_factory=list)  # (parent zone id, path, zone id)
    package_of: dict[str, str] = field(default_factory=dict)  # zone id ("intel-rapl:0") -> package name


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
    found = _Found()
    for zone_id, path in sorted(_zone_dirs(rootp).items()):
        m = _ZONE_RE.match(zone_id)
        assert m is not None
        name = _read_text(path / "name") or "?"
        if m.group(3) is None:
            _add_package(found, out, zone_id, m.group(1), name, path)
        else:
            _add_subzone(found, out, zone_id, m.group(1), name, path)
    for pkg_name, (_mmio, path, zone_id) in sorted(found.packages.items()):
        _add_zone(out, "cpu", pkg_name, pkg_name, path, zone_id)
    for parent, path, zone_id in found.drams:
        _add_zone(out, "dram", "dram", found.package_of.get(parent, parent), path, zone_id)
    _judge(out, rootp)
    return out


def _zone_dirs(rootp: Path) -> dict[str, Path]:
    """Zone id -> directory. Zones appear flat under /sys/class/powercap and nested inside their
    parent; walk both and dedupe by zone id, which sysfs keeps unique."""
    found: dict[str, Path] = {}
    for entry in sorted(rootp.iterdir()):
        if not _ZONE_RE.match(entry.name):
            continue
        found.setdefault(entry.name, entry)
        for child in sorted(entry.iterdir()) if entry.is_dir() else []:
            if _ZONE_RE.match(child.name):
                found.setdefault(child.name, child)
    return found


def _add_package(found: _Found, out: RaplDiscovery, zone_id: str, kind: str, name: str, path: Path) -> None:
    if not name.startswith("package"):
        out.skipped.append(f"{zone_id} ({name}): not a package zone, never summed")
        return
    is_mmio = kind == "intel-rapl-mmio"
    prev = found.packages.get(name)
    if prev is not None:
        if is_mmio or not prev[0]:
            out.skipped.append(f"{zone_id} ({name}): duplicate of {prev[2]}")
            return
        out.skipped.append(f"{prev[2]} ({name}): duplicate of {zone_id}")
    found.packages[name] = (is_mmio, path, zone_id)
    if not is_mmio:
        found.package_of[zone_id] = name


def _add_subzone(found: _Found, out: RaplDiscovery, zone_id: str, kind: str, name: str, path: Path) -> None:
    if name != "dram":
        out.skipped.append(f"{zone_id} ({name}): part of its package, never added")
    elif kind == "intel-rapl-mmio":
        out.skipped.append(f"{zone_id} (dram): MMIO duplicate")
    else:
        found.drams.append((zone_id.rsplit(":", 1)[0], path, zone_id))


def _add_zone(out: RaplDiscovery, domain: str, name: str, socket: str, path: Path, zone_id: str) -> None:
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
        return
    out.zones.append(RaplZone(domain, name, socket, path, rng))


def _judge(out: RaplDiscovery, rootp: Path) -> None:
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
