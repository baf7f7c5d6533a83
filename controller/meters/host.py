"""System-wide CPU and RAM use: what the whole host did over the window, beside the run's own.

The second paper's CPU and RAM usage are system-wide (psutil's ``cpu_percent`` and
``virtual_memory``); joulebench's ``cpu_percent`` and ``ram_*_bytes`` are the run's own process
tree or container. This meter reads ``/proc/stat`` (the first line: time every logical CPU spent
busy and idle, in clock ticks) and ``/proc/meminfo`` (``MemTotal`` and ``MemAvailable``) with one
``pread`` each on files kept open: a few microseconds a read. Where ``/proc`` cannot be read it
falls back to psutil, and without either its figures are unavailable with the reason.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Metric, Trace
from controller.meters.window import counter_delta, window_values

#: What the host meter reports: metric name -> unit.
HOST_UNITS = {"system_cpu_percent": "%", "system_ram_used_percent": "%", "system_ram_used_bytes": "B"}
SCOPE = "host-wide: every process on the host, all logical CPUs (psutil's system-wide figures)"
DEFAULT_PROC = "/proc"


def parse_stat(data: bytes) -> tuple[float, float]:
    """(busy, total) clock ticks over all CPUs from ``/proc/stat``'s first line.

    Busy is user + nice + system + irq + softirq + steal (guest time is already inside user);
    idle and iowait are not busy, as psutil counts them.
    """
    line = data.split(b"\n", 1)[0].split()
    if not line or line[0] != b"cpu":
        raise ValueError("/proc/stat does not start with the cpu line")
    v = [float(x) for x in line[1:9]] + [0.0] * max(0, 9 - len(line))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def parse_meminfo(data: bytes) -> tuple[float, float]:
    """(used, total) bytes from ``/proc/meminfo``: used is MemTotal - MemAvailable."""
    found: dict[bytes, float] = {}
    for line in data.split(b"\n"):
        key, _, rest = line.partition(b":")
        if key in (b"MemTotal", b"MemAvailable"):
            found[key] = float(rest.split()[0]) * 1024.0
    if len(found) < 2:
        raise ValueError("/proc/meminfo lacks MemTotal or MemAvailable (kernel older than 3.14?)")
    return found[b"MemTotal"] - found[b"MemAvailable"], found[b"MemTotal"]


class HostMeter:
    """Reads the host's CPU ticks and memory in use; cheap enough for the 50 ms workload rate."""

    name = "host"
    units = HOST_UNITS
    fields: tuple[str, ...] = ("cpu_busy_ticks", "cpu_total_ticks", "ram_used_bytes", "ram_total_bytes")

    def __init__(self, proc: str = DEFAULT_PROC, *, interval_s: float | None = None, psutil: Any = None) -> None:
        self.proc = proc
        self.interval_s = interval_s
        self._psutil = psutil
        self._fds: dict[str, int] = {}
        self.mode = "none"
        self.availability = Availability.no("not opened")

    def open(self) -> Availability:
        try:
            for name in ("stat", "meminfo"):
                self._fds[name] = os.open(f"{self.proc}/{name}", os.O_RDONLY)
            parse_stat(os.pread(self._fds["stat"], 4096, 0))
            parse_meminfo(os.pread(self._fds["meminfo"], 8192, 0))
            self.mode = "proc"
            self.availability = Availability.ok()
            return self.availability
        except (OSError, ValueError) as exc:
            self.close()
            proc_error = f"{self.proc}/stat, {self.proc}/meminfo unreadable ({exc})"
        try:
            ps = self._psutil or importlib.import_module("psutil")
            ps.cpu_times()
            ps.virtual_memory()
        except Exception as exc:  # noqa: BLE001 -- ImportError, or psutil unsupported here
            self.availability = Availability.no(f"{proc_error}, and psutil cannot say either ({exc})")
            return self.availability
        self._psutil, self.mode = ps, "psutil"
        self.availability = Availability.ok()
        return self.availability

    def read(self) -> Sequence[float]:
        try:
            if self.mode == "proc":
                busy, total = parse_stat(os.pread(self._fds["stat"], 4096, 0))
                used, ram = parse_meminfo(os.pread(self._fds["meminfo"], 8192, 0))
            else:
                t = self._psutil.cpu_times()
                busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
                busy += getattr(t, "steal", 0.0)
                total = busy + t.idle + getattr(t, "iowait", 0.0)
                vm = self._psutil.virtual_memory()
                used, ram = float(vm.total - vm.available), float(vm.total)
        except (OSError, ValueError, AttributeError):
            return (NAN, NAN, NAN, NAN)
        return (busy, total, used, ram)

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    def describe(self) -> dict[str, Any]:
        source = {"proc": f"{self.proc}/stat, {self.proc}/meminfo", "psutil": "psutil"}.get(self.mode)
        return {**self.availability.to_dict(), "source": source, "interval_s": self.interval_s}

    def source(self) -> str:
        return {"proc": f"{self.proc}/stat and /meminfo", "psutil": "psutil"}.get(self.mode, "host")

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.availability.reason or "not opened", self.source())

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        """Mean share of all CPUs busy, and mean RAM in use, over [t0, t1]."""
        src = self.source()
        out: dict[str, Metric] = {}
        busy = counter_delta(trace, "cpu_busy_ticks", t0, t1)
        total = counter_delta(trace, "cpu_total_ticks", t0, t1)
        if busy.value is None or total.value is None or total.value <= 0:
            why = busy.reason or total.reason or "no CPU time passed between the reads around the window"
            out["system_cpu_percent"] = Metric.unavailable("system_cpu_percent", "%", why, src, scope=SCOPE)
        else:
            out["system_cpu_percent"] = Metric(
                "system_cpu_percent",
                100.0 * busy.value / total.value,
                "%",
                src,
                extra={"scope": SCOPE, "stat": "mean over the window; 100 = every logical CPU busy"},
            )
        used = window_values(trace, "ram_used_bytes", t0, t1, hold=True)
        ram = window_values(trace, "ram_total_bytes", t0, t1, hold=True)
        if not used or not ram:
            why = f"no memory samples around the window ({len(trace)} samples in the trace)"
            for name, unit in (("system_ram_used_bytes", "B"), ("system_ram_used_percent", "%")):
                out[name] = Metric.unavailable(name, unit, why, src, scope=SCOPE)
        else:
            mean = sum(used) / len(used)
            extra = {"scope": SCOPE, "stat": "mean over the samples in the window", "samples": len(used)}
            out["system_ram_used_bytes"] = Metric("system_ram_used_bytes", mean, "B", src, extra=extra)
            out["system_ram_used_percent"] = Metric(
                "system_ram_used_percent",
                100.0 * sum(u / r for u, r in zip(used, ram, strict=False)) / len(used),
                "%",
                src,
                extra={**extra, "note": "MemTotal - MemAvailable over MemTotal, as psutil's virtual_memory().percent"},
            )
        return MeterSummary(out)
