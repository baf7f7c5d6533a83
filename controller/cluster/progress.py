"""The campaign bar across a cluster: what each node does now (a run, a cool-down, idle) and an ETA.

Nodes come and go: one that joins is ``checking`` until its readiness check answers, then idle
(or ``no block`` when it can run nothing of the campaign); one whose block stopped answering is
``unreachable`` until Ray says whether its node is gone (``lost``). Only busy and idle nodes count
as capacity on the line.

The ETA is the campaign's (time so far per finished run, times the runs left); with runs on
several nodes at once, time so far per finished run is already the cluster's pace.
"""

from __future__ import annotations

from typing import TextIO

from controller.progress import CampaignProgress, fmt_duration

IDLE = "idle"
LOST = "lost"
CHECKING = "checking"
UNFIT = "no block"
UNREACHABLE = "unreachable"
NOT_BUSY = (IDLE, LOST, CHECKING, UNFIT, UNREACHABLE)


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
        """Node ``name`` now does ``what`` (a cell's label, cool-down, idle, checking, lost ...)."""
        self.nodes[name] = what
        if what not in NOT_BUSY:
            self.current = f"{name}: {what}"

    def running(self, name: str, label: str) -> None:
        self.node(name, label)
        self._show("start")

    def count(self) -> tuple[int, int, int]:
        """(busy, idle, lost) nodes; nodes being checked, unreachable or unfit are none of these."""
        busy = sum(1 for v in self.nodes.values() if v not in NOT_BUSY)
        idle = sum(1 for v in self.nodes.values() if v == IDLE)
        return busy, idle, sum(1 for v in self.nodes.values() if v == LOST)

    def nodes_text(self) -> str:
        busy, idle, lost = self.count()
        others = {
            what: sum(1 for v in self.nodes.values() if v == what) for what in (CHECKING, UNREACHABLE, LOST, UNFIT)
        }
        extra = "".join(f" {n} {what}" for what, n in others.items() if n)
        return f"nodes {busy} busy {idle} idle{extra}"

    def _show(self, what: str) -> None:
        t = self.tally
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.nodes_text()} | {self.current}: {what}")
            return
        n = t.done + t.failed + 1
        self._line(
            f"[{n}/{t.total}  done {t.done}  failed {t.failed}  left {t.left}  {self.nodes_text()}  "
            f"ETA {fmt_duration(t.eta_s())}] {self.current}: {what}"
        )
