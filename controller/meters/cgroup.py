"""CPU time and RAM of one Docker container, read from its cgroup on the host.

cgroup v1: ``<root>/cpuacct/docker/<id>/cpuacct.usage`` (ns) and
``<root>/memory/docker/<id>/memory.usage_in_bytes``, or the systemd layout
``<root>/<controller>/system.slice/docker-<id>.scope``.
cgroup v2: ``<root>/system.slice/docker-<id>.scope`` (or ``<root>/docker/<id>``) with ``cpu.stat``
(``usage_usec``), ``memory.current`` and ``memory.peak`` (kernel 5.19+).

RAM is reported like ``docker stats``: usage minus inactive page cache (``inactive_file``), because
reading a model file charges its page cache to the container.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Trace
from controller.meters.workload import WORKLOAD_UNITS, workload_summary

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"


class _File:
    """A small kernel file kept open and re-read with pread (one syscall per read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def read(self) -> bytes:
        return os.pread(self.fd, 8192, 0)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _stat_value(data: bytes, key: bytes) -> float:
    """Value of ``key N`` in a flat-keyed cgroup file (cpu.stat, memory.stat); NaN if absent."""
    i = data.find(b"\n" + key + b" ")
    if i < 0:
        if not data.startswith(key + b" "):
            return NAN
        i = -1
    start = i + 1 + len(key) + 1
    end = data.find(b"\n", start)
    return float(data[start : end if end >= 0 else None])


def cgroup_version(root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT) -> int | None:
    """2 for the unified hierarchy, 1 for legacy/hybrid, None if no cgroup fs at ``root``."""
    r = Path(root)
    if (r / "cgroup.controllers").exists():
        return 2
    if (r / "cpuacct").is_dir() or (r / "cpu,cpuacct").is_dir() or (r / "memory").is_dir():
        return 1
    return None


def _find_dir(bases: Sequence[Path], container_id: str) -> Path | None:
    for base in bases:
        for rel in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
            if (base / rel).is_dir():
                return base / rel
    # An id prefix (docker ps shows 12 characters): accept a unique match.
    if len(container_id) >= 12:
        for base in bases:
            hits = [
                *base.glob(f"docker/{container_id}*"),
                *base.glob(f"system.slice/docker-{container_id}*.scope"),
            ]
            if len(hits) == 1:
                return hits[0]
    return None


class CgroupMeter:
    """Samples a container's cgroup: cumulative CPU seconds and RAM bytes."""

    name = "cgroup"
    units = WORKLOAD_UNITS

    def __init__(
        self,
        container_id: str,
        root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT,
        *,
        interval_s: float | None = None,
    ) -> None:
        self.container_id = container_id
        self.root = Path(root)
        self.interval_s = interval_s
        self.fields: tuple[str, ...] = (
            "cpu_time_s",
            "ram_bytes",
            "mem_usage_bytes",
            "mem_peak_bytes",
        )
        self.availability = Availability.no("not opened")
        self.version: int | None = None
        self.cpu_dir: Path | None = None
        self.mem_dir: Path | None = None
        self._cpu: _File | None = None
        self._mem: _File | None = None
        self._memstat: _File | None = None
        self._peak: _File | None = None

    def open(self) -> Availability:
        self.version = cgroup_version(self.root)
        cid = self.container_id
        if self.version is None:
            self.availability = Availability.no(f"no cgroup filesystem at {self.root}; pass the host's cgroup root")
            return self.availability
        if self.version == 2:
            d = _find_dir([self.root], cid)
            self.cpu_dir = self.mem_dir = d
            looked = f"{self.root}/system.slice/docker-{cid}.scope, {self.root}/docker/{cid}"
        else:
            self.cpu_dir = _find_dir([self.root / "cpuacct", self.root / "cpu,cpuacct", self.root / "cpu"], cid)
            self.mem_dir = _find_dir([self.root / "memory"], cid)
            looked = (
                f"{self.root}/cpuacct/docker/{cid}, "
                f"{self.root}/cpuacct/system.slice/docker-{cid}.scope, and memory/ alike"
            )
        if self.cpu_dir is None or self.mem_dir is None:
            self.availability = Availability.no(
                f"cgroup v{self.version} of container {cid} not found (looked in {looked}); "
                "is the container running, and is the controller on the Docker host?"
            )
            return self.availability
        try:
            if self.version == 2:
                self._cpu = _File(self.cpu_dir / "cpu.stat")
                self._mem = _File(self.mem_dir / "memory.current")
                self._memstat = _File(self.mem_dir / "memory.stat")
                if (self.mem_dir / "memory.peak").exists():
                    self._peak = _File(self.mem_dir / "memory.peak")
            else:
                self._cpu = _File(self.cpu_dir / "cpuacct.usage")
                self._mem = _File(self.mem_dir / "memory.usage_in_bytes")
                self._memstat = _File(self.mem_dir / "memory.stat")
                if (self.mem_dir / "memory.max_usage_in_bytes").exists():
                    self._peak = _File(self.mem_dir / "memory.max_usage_in_bytes")
        except OSError as exc:
            self.close()
            self.availability = Availability.no(f"cannot open cgroup files of {cid}: {exc}")
            return self.availability
        self.availability = Availability.ok()
        return self.availability

    def read(self) -> Sequence[float]:
        assert self._cpu is not None and self._mem is not None and self._memstat is not None
        try:
            if self.version == 2:
                cpu_s = _stat_value(self._cpu.read(), b"usage_usec") / 1e6
                inactive = _stat_value(self._memstat.read(), b"inactive_file")
            else:
                cpu_s = float(self._cpu.read()) / 1e9
                inactive = _stat_value(self._memstat.read(), b"total_inactive_file")
            usage = float(self._mem.read())
        except (OSError, ValueError):  # the cgroup goes away when the container exits
            return (NAN, NAN, NAN, NAN)
        if inactive != inactive:  # NaN: memory.stat without the key
            inactive = 0.0
        peak = NAN
        if self._peak is not None:
            try:
                peak = float(self._peak.read())
            except (OSError, ValueError):
                peak = NAN
        return (cpu_s, max(0.0, usage - inactive), usage, peak)

    def close(self) -> None:
        for f in (self._cpu, self._mem, self._memstat, self._peak):
            if f is not None:
                f.close()
        self._cpu = self._mem = self._memstat = self._peak = None

    def source(self) -> str:
        if self.version == 2:
            return f"cgroup v2 {self.cpu_dir} (cpu.stat usage_usec, memory.current)"
        return f"cgroup v1 {self.cpu_dir} (cpuacct.usage), {self.mem_dir} (memory.usage_in_bytes)"

    def describe(self) -> dict[str, Any]:
        return {
            **self.availability.to_dict(),
            "source": self.source() if self.availability.available else "cgroup",
            "container_id": self.container_id,
            "cgroup_version": self.version,
        }

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.availability.reason or "not opened", self.name)

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        return workload_summary(
            trace,
            t0,
            t1,
            meter=self.name,
            source=self.source(),
            scope="container",
            ram_note="cgroup memory usage minus inactive page cache, as `docker stats` shows it",
            ram_kernel_peak_field="mem_peak_bytes",
        )
