"""CPU time and RAM of a local process tree (the local-subprocess runner), through psutil.

CPU time per process is ``user + system + children_user + children_system``: a child that exits
and is reaped moves its time into its parent's ``children_*`` fields, so the sum over the live
tree stays monotonic as children come and go. The child list is refreshed every
``children_refresh_s`` (a full /proc scan is too costly at 10 ms); a child found late brings its
whole CPU time with it. RAM is the sum of RSS over the tree (shared pages counted per process).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from typing import Any

from controller.meters.base import NAN, Availability, Metric, Trace, cpu_ram_metrics


class ProcessMeter:
    """Samples a pid and its descendants: cumulative CPU seconds and summed RSS."""

    name = "process"

    def __init__(
        self, pid: int, *, interval_s: float | None = None, children_refresh_s: float = 0.5
    ) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.children_refresh_s = children_refresh_s
        self.fields: tuple[str, ...] = ("cpu_time_s", "ram_bytes", "processes")
        self.availability = Availability.no("not opened")
        self._psutil: Any = None
        self._root: Any = None
        self._procs: dict[int, Any] = {}
        self._next_refresh = 0.0
        self._last_cpu = 0.0

    def open(self) -> Availability:
        try:
            self._psutil = importlib.import_module("psutil")
        except ImportError:
            self.availability = Availability.no("psutil not installed: `pip install psutil`")
            return self.availability
        try:
            self._root = self._psutil.Process(self.pid)
        except self._psutil.Error as exc:
            self.availability = Availability.no(f"process {self.pid} not found: {exc}")
            return self.availability
        self._procs = {self.pid: self._root}
        self._refresh()
        self.availability = Availability.ok()
        return self.availability

    def _refresh(self) -> None:
        try:
            children = self._root.children(recursive=True)
        except self._psutil.Error:
            return
        procs = {self.pid: self._procs.get(self.pid, self._root)}
        for c in children:
            # Keep the existing Process object: psutil caches its create time for pid reuse.
            procs[c.pid] = self._procs.get(c.pid, c)
        self._procs = procs
        self._next_refresh = time.monotonic() + self.children_refresh_s

    def read(self) -> Sequence[float]:
        ps = self._psutil
        if time.monotonic() >= self._next_refresh:
            self._refresh()
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
        if self.pid in gone:
            return (NAN, NAN, NAN)
        # Between a child's exit and its reaping its time is briefly in neither place;
        # never let the cumulative counter step back.
        cpu = max(cpu, self._last_cpu)
        self._last_cpu = cpu
        return (cpu, rss, float(alive))

    def close(self) -> None:
        self._procs = {}

    def describe(self) -> dict[str, Any]:
        return {
            **self.availability.to_dict(),
            "source": f"psutil, pid {self.pid} and descendants",
            "pid": self.pid,
        }

    def summarize(self, trace: Trace, t0: int, t1: int) -> dict[str, Metric]:
        return cpu_ram_metrics(
            trace,
            t0,
            t1,
            source=f"psutil pid {self.pid} + descendants",
            scope="process tree",
            ram_note="sum of RSS over the process tree (shared pages counted once per process)",
        )
