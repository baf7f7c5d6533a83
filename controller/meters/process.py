"""CPU time and RAM of a local process tree (the local-subprocess runner).

CPU time per process is ``utime + stime + cutime + cstime``: a child that exits and is reaped
moves its time into its parent's ``c*`` fields, so the sum over the live tree stays monotonic as
children come and go. The child list is refreshed every ``children_refresh_s`` (finding children
means scanning /proc, too costly at every 10 ms tick); a child found late brings its whole CPU
time with it. RAM is the sum of RSS over the tree (shared pages counted once per process).

On Linux everything comes from one ``pread`` of ``/proc/<pid>/stat`` per process and tick (the
file is kept open); elsewhere psutil is used.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from typing import Any

from controller.meters.base import NAN, Availability, MeterSummary, Trace
from controller.meters.workload import WORKLOAD_UNITS, workload_summary

_PROC = "/proc"


def _parse_stat(data: bytes) -> tuple[int, int, int]:
    """(ppid, cpu clock ticks incl. reaped children, rss pages) from a /proc/<pid>/stat line."""
    f = data[data.rindex(b")") + 2 :].split()
    # f[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17, rss=24.
    return int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]), int(f[21])


class _ProcFiles:
    """Open /proc/<pid>/stat files of a process tree, read with one syscall each."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def open(self, pid: int) -> None:
        if pid not in self.fds:
            try:
                self.fds[pid] = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
            except OSError:
                pass

    def drop(self, pid: int) -> None:
        fd = self.fds.pop(pid, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        for pid in list(self.fds):
            self.drop(pid)


def _descendants(root: int) -> set[int]:
    """Pids below ``root``, from one scan of /proc (ppid of every process)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(_PROC):
        name = entry.name
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{_PROC}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, 512)
        except OSError:
            continue
        finally:
            os.close(fd)
        try:
            ppid = int(data[data.rindex(b")") + 2 :].split(maxsplit=2)[1])
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out: set[int] = set()
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


class ProcessMeter:
    """Samples a pid and its descendants: cumulative CPU seconds and summed RSS."""

    name = "process"
    units = WORKLOAD_UNITS

    def __init__(self, pid: int, *, interval_s: float | None = None, children_refresh_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.children_refresh_s = children_refresh_s
        self.fields: tuple[str, ...] = ("cpu_time_s", "ram_bytes", "processes")
        self.availability = Availability.no("not opened")
        self.backend = "procfs"
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._files = _ProcFiles()
        self._psutil: Any = None
        self._procs: dict[int, Any] = {}
        self._next_refresh = 0.0
        self._last_cpu = 0.0

    def open(self) -> Availability:
        if os.path.exists(f"{_PROC}/self/stat"):
            self._files.open(self.pid)
            if self.pid not in self._files.fds:
                self.availability = Availability.no(f"process {self.pid} not found in {_PROC}")
                return self.availability
        else:
            self.backend = "psutil"
            try:
                self._psutil = importlib.import_module("psutil")
            except ImportError:
                self.availability = Availability.no("no /proc and psutil not installed: `pip install psutil`")
                return self.availability
            try:
                self._procs = {self.pid: self._psutil.Process(self.pid)}
            except self._psutil.Error as exc:
                self.availability = Availability.no(f"process {self.pid} not found: {exc}")
                return self.availability
        self._refresh()
        self.availability = Availability.ok()
        return self.availability

    def _refresh(self) -> None:
        self._next_refresh = time.monotonic() + self.children_refresh_s
        if self.backend == "procfs":
            try:
                for pid in _descendants(self.pid):
                    self._files.open(pid)
            except OSError:
                pass
            return
        try:
            children = self._procs[self.pid].children(recursive=True)
        except (self._psutil.Error, KeyError):
            return
        for c in children:
            # Keep existing Process objects: psutil caches their create time against pid reuse.
            self._procs.setdefault(c.pid, c)

    def read(self) -> Sequence[float]:
        if time.monotonic() >= self._next_refresh:
            self._refresh()
        cpu, rss, alive, root_ok = self._read_procfs() if self.backend == "procfs" else self._read_psutil()
        if not root_ok:
            return (NAN, NAN, NAN)
        # Between a child's exit and its reaping its time is in neither place for a moment;
        # never let the cumulative counter step back.
        cpu = max(cpu, self._last_cpu)
        self._last_cpu = cpu
        return (cpu, rss, float(alive))

    def _read_procfs(self) -> tuple[float, float, int, bool]:
        ticks = 0
        pages = 0
        alive = 0
        gone: list[int] = []
        for pid, fd in self._files.fds.items():
            try:
                _, t, r = _parse_stat(os.pread(fd, 512, 0))
            except (OSError, ValueError, IndexError):
                gone.append(pid)
                continue
            ticks += t
            pages += r
            alive += 1
        for pid in gone:
            self._files.drop(pid)
        return ticks * self._tick_s, float(pages * self._page), alive, self.pid not in gone

    def _read_psutil(self) -> tuple[float, float, int, bool]:
        ps = self._psutil
        cpu = 0.0
        rss = 0.0
        alive = 0
        gone: list[int] = []
        for pid, p in self._procs.items():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    m = p.memory_info()
            except ps.Error:
                gone.append(pid)
                continue
            cpu += t.user + t.system + t.children_user + t.children_system
            rss += m.rss
            alive += 1
        for pid in gone:
            self._procs.pop(pid, None)
        return cpu, rss, alive, self.pid not in gone

    def close(self) -> None:
        self._files.close()
        self._procs = {}

    def source(self) -> str:
        where = "/proc/<pid>/stat" if self.backend == "procfs" else "psutil"
        return f"{where}, pid {self.pid} and descendants"

    def describe(self) -> dict[str, Any]:
        return {**self.availability.to_dict(), "source": self.source(), "pid": self.pid}

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.availability.reason or "not opened", self.name)

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        return workload_summary(
            trace,
            t0,
            t1,
            meter=self.name,
            source=self.source(),
            scope="process tree",
            ram_note="sum of RSS over the process tree (shared pages counted once per process)",
        )
