"""The campaign bar across a cluster: what each node does now (a run, a cool-down, idle) and an ETA.

The ETA is the campaign's (time so far per finished run, times the runs left); with runs on
several nodes at once, time so far per finished run is already the cluster's pace.
"""

from __future__ import annotations

from typing import TextIO

from controller.progress import CampaignProgress, fmt_duration

IDLE = "idle"
LOST = "lost"


class ClusterProgress(CampaignProgress):
    def __init__(
        self,
        total: int,
        first_guess_s: float,
        nodes: list[str],
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        super().__init__(total, first_guess_s, stream, live)
        self.nodes = dict.fromkeys(nodes, IDLE)

    def node(self, name: str, what: str) -> None:
        """Node ``name`` now does ``what`` (a cell's label, cool-down, idle, lost)."""
        self.nodes[name] = what
        if what not in (IDLE, LOST):
            self.current = f"{name}: {what}"

    def running(self, name: str, label: str) -> None:
        self.node(name, label)
        self._show("start")

    def count(self) -> tuple[int, int]:
        """(busy, idle) nodes; lost ones are neither."""
        busy = sum(1 for v in self.nodes.values() if v not in (IDLE, LOST))
        return busy, sum(1 for v in self.nodes.values() if v == IDLE)

    def _show(self, what: str) -> None:
        t = self.tally
        busy, idle = self.count()
        if self._bar is not None:
            self._bar.update(self._task, description=f"nodes {busy} busy {idle} idle | {self.current}: {what}")
            return
        n = t.done + t.failed + 1
        self._line(
            f"[{n}/{t.total}  done {t.done}  failed {t.failed}  left {t.left}  nodes {busy} busy {idle} idle  "
            f"ETA {fmt_duration(t.eta_s())}] {self.current}: {what}"
        )
