"""A cluster campaign's dispatcher: ``placing.py`` gives blocks to nodes; here the replies become
records (written once, as they come back) and failures are told apart: a failed run's node is
checked again, a node that stops answering is lost (once Ray says so), its run in flight recorded
failed and run again within the campaign's retries, and its block moves."""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from controller.campaigns.session import ok_line, setup_failed
from controller.cluster.placing import BlockRun, Placing
from controller.cluster.progress import IDLE, LOST, UNREACHABLE
from controller.cluster.readiness import READINESS_TIMEOUT_S, _error_line, report_from, start_check
from controller.record import INTERRUPTED_REASON, Failure, record_path, write_atomic, write_record

# How long a node whose block stopped answering may stay alive in Ray's eyes before the block's
# Ray worker (not the node) counts as what died: Ray marks a node dead after missed health checks
# (about 15 s with its defaults).
LOSS_GRACE_S = 60.0


class NodeGone(Exception):
    """A block's node left the cluster and Ray did not fail its pending call."""


class Dispatcher(Placing):
    """Blocks to nodes, replies to records; nodes joining and leaving, node loss and retries."""

    def run(self, runs: list[BlockRun]) -> bool:
        """Run every block; True when interrupted (the runs in flight are then recorded interrupted)."""
        self.waiting = sorted(runs, key=lambda b: -b.seconds)
        try:
            while self.waiting or self.calls or self.suspects:
                self.poll()
                self.settle_suspects()
                self.place()
                self.expire()
                self.ask_for_nodes()
                self.step()
        except KeyboardInterrupt:
            self.interrupt()
            return True
        finally:
            self.ask_for_nodes(done=True)
        for ref in self.checks:
            with suppress(Exception):
                self.ray.cancel(ref, force=True)
        return False

    # --- the replies --------------------------------------------------------------------------

    def step(self) -> None:
        """Handle what answered within a second."""
        refs = [*self.calls, *self.checks]
        if not refs:
            time.sleep(1.0)
            return
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=1.0)
        for ref in ready:
            try:
                value = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as exc:
                self.answered(ref, exc, task_error=True)
            except self.ray.exceptions.RayError as exc:
                self.answered(ref, exc, task_error=False)
            else:
                self.answered(ref, value)
        now = time.monotonic()
        for ref, check in list(self.checks.items()):
            if check.kind == "check" and now - check.since > READINESS_TIMEOUT_S:
                del self.checks[ref]
                with suppress(Exception):
                    self.ray.cancel(ref, force=True)
                self.checked(check, None)

    def answered(self, ref: Any, value: Any, task_error: bool = False) -> None:
        if ref in self.checks:
            self.checked(self.checks.pop(ref), value)
            return
        br = self.calls.pop(ref)
        if not isinstance(value, BaseException):
            self.advance(br, value)
        elif not task_error:  # the actor or its node stopped answering
            self.lost(br, value)
        elif br.step == "recheck":  # the node's readiness check itself raised: the node is unfit
            self.rechecked(br, value)
        else:
            self.task_failed(br, value)

    def advance(self, br: BlockRun, value: dict[str, Any]) -> None:
        assert br.node is not None
        if br.step == "recheck":
            self.rechecked(br, value)
            return
        for note in value.get("notes") or []:
            self.note(f"{br.node.label}: {note}")
        if br.step == "run":
            record = value["record"]
            if record["status"] != "ok" and (record.get("failure") or {}).get("code") != Failure.INTERRUPTED:
                self.recheck(br, value)
                return
            self.home(br, value)
        self.next(br)

    def next(self, br: BlockRun) -> None:
        """The block's next call: a cool-down before each run, the run, or the end of the block."""
        assert br.node is not None
        name = br.node.label
        if not br.cells:
            self.busy.pop(br.node.node_id, None)
            self.progress.node(name, IDLE)
            br.actor.__ray_terminate__.remote()  # after its last call; frees the node
            return
        if br.step != "cool" and self.campaign.cooldown.mode != "none":
            self.progress.node(name, "cool-down")
            self.call(br, "cool", br.actor.cool_down.remote())
            return
        cell = br.cells.pop(0)
        br.cell, br.record_cell = cell, cell.to_record(self.session.seed, self.positions[cell.id], self.campaign.order)
        self.progress.running(name, cell.label)
        self.call(br, "run", br.actor.run.remote(cell, br.record_cell, br.placement()))

    def home(self, br: BlockRun, value: dict[str, Any], node_fault: str | None = None) -> Path:
        """Write the run's trace, then its record, into the campaign folder: once per run."""
        record = value["record"]
        if node_fault:
            record["cluster"] = (record.get("cluster") or {}) | {"node_fault": node_fault}
        path = record_path(self.where.results, self.campaign.name, record["run_id"])
        if record["run_id"] not in self.written:
            if value.get("trace") is not None:
                write_atomic(path.with_suffix(".trace.parquet"), value["trace"])
            write_record(path, record)
            self.written.add(record["run_id"])
            br.ran += 1
        if node_fault is None:
            ok = record["status"] == "ok"
            line = ok_line(record) if ok else str((record.get("failure") or {}).get("reason") or "?")
            self._finished(br, ok, line, path)
        return path

    def _finished(self, br: BlockRun, ok: bool, line: str, path: Path) -> None:
        assert br.cell is not None and br.node is not None
        if not ok:
            self.failed_now.append((br.cell, line, path.name))
        self.progress.finished(ok, f"{br.node.label}: {line} -> {path.name}")
        br.cell = None

    # --- failures -----------------------------------------------------------------------------

    def recheck(self, br: BlockRun, held: dict[str, Any]) -> None:
        """A run failed: before its record counts as the configuration's failure, its node is checked again."""
        assert br.node is not None
        br.held = held
        self.progress.node(br.node.label, "checking after a failed run")
        self.call(br, "recheck", start_check(self.cluster, self.campaign, self.settings.runner, br.node))

    def rechecked(self, br: BlockRun, answer: Any) -> None:
        """The node's fresh readiness: still able to run the cell, the failure stands; else it was the node's."""
        assert br.node is not None and br.cell is not None and br.held is not None
        report = report_from(br.node, answer, READINESS_TIMEOUT_S)
        self.reports[br.node.node_id] = report
        held, br.held = br.held, None
        why = "; ".join(report.why_not(br.cell))
        if not why:
            self.write_failed(br, held, None)
            self.next(br)
            return
        name = br.node.label
        self.lost_run(br, held, f"{name} could not run it any more when checked again after the failure: {why}")
        self.note(f"{name} can no longer run block {br.label}'s runs ({why}): it moves")
        self.ray.kill(br.actor, no_restart=True)
        self.leave(br, "could not run it any more", avoid=True)

    def write_failed(self, br: BlockRun, held: dict[str, Any], node_fault: str | None) -> Path:
        """A held failed run: its node's record, or (when our code raised on the node) a setup failure."""
        assert br.node is not None and br.cell is not None
        if "record" in held:
            path = self.home(br, held, node_fault)
            reason = str((held["record"].get("failure") or {}).get("reason") or "?")
        else:
            reason = f"on {br.node.label}: {held['error']}"
            cluster = br.node.identity() | br.placement() | ({"node_fault": node_fault} if node_fault else {})
            path = setup_failed(br.cell, self.where, br.record_cell, reason, Failure.SETUP, cluster)
            br.ran += 1
            if node_fault is None:
                self._finished(br, False, reason, path)
        return path if node_fault is None else self._lost_line(br, f"{reason}; {node_fault}", path)

    def _lost_line(self, br: BlockRun, line: str, path: Path) -> Path:
        """A run its node took with it: run again on a live node (within the campaign's retries), or failed now."""
        assert br.cell is not None and br.node is not None
        cell = br.cell
        self.lost_runs[cell.id] += 1
        if self.lost_runs[cell.id] <= self.campaign.retries:
            br.cells.insert(0, cell)
            self.progress.tally.total += 1
            self.progress.finished(False, f"{br.node.label}: {line} -> {path.name}; it runs again on a live node")
            br.cell = None
        else:
            self._finished(br, False, line, path)
        return path

    def lost_run(self, br: BlockRun, held: dict[str, Any] | None, why: str) -> None:
        """The run in flight (or a failed one held for its node's check) went with its node."""
        assert br.node is not None
        if br.cell is None:
            return
        if held is not None:
            self.write_failed(br, held, why)
            return
        cluster = br.node.identity() | br.placement()
        path = setup_failed(br.cell, self.where, br.record_cell, why, Failure.NODE_LOST, cluster)
        self._lost_line(br, why, path)

    def task_failed(self, br: BlockRun, exc: BaseException) -> None:
        """Our code raised on the node: in a run, a failed run (its node is checked again); in a
        hello or cool-down, the block moves."""
        assert br.node is not None
        why, name = _error_line(exc), br.node.label
        if br.step == "run" and br.cell is not None:
            self.recheck(br, {"error": why})
            return
        self.note(f"{name} could not take block {br.label} ({why}); it moves to another node")
        with suppress(Exception):
            self.ray.kill(br.actor, no_restart=True)
        self.leave(br, f"it failed there: {why}", avoid=True)

    def lost(self, br: BlockRun, exc: BaseException) -> None:
        """The block's actor stopped answering: its worker or its node died. Which one, Ray says
        once it has marked the node dead (or not) — until then the node is unreachable, not idle."""
        assert br.node is not None
        with suppress(Exception):
            self.ray.kill(br.actor, no_restart=True)  # one that is only unreachable must not go on measuring
        self.poll(force=True)
        if br.node.node_id not in self.live:
            self.settle(br, exc, gone=True)
            return
        self.unreachable.add(br.node.node_id)
        self.progress.node(br.node.label, UNREACHABLE)
        self.suspects.append((br, time.monotonic() + LOSS_GRACE_S, exc))

    def settle_suspects(self) -> None:
        """Blocks whose node stopped answering: lost once Ray says the node is gone, or after
        LOSS_GRACE_S with it alive (its worker died); and a block whose node left the cluster but
        whose call Ray has not failed within LOSS_GRACE_S is given up all the same."""
        now = time.monotonic()
        for nid, br in list(self.busy.items()):
            if nid not in self.live and now - self.left_at.get(nid, now) > LOSS_GRACE_S:
                ref = next((r for r, b in self.calls.items() if b is br), None)
                if ref is not None:
                    del self.calls[ref]
                    self.lost(br, NodeGone(f"{br.node.label if br.node else nid} left the cluster"))
        if not self.suspects:
            return
        self.poll()
        still = []
        for br, deadline, exc in self.suspects:
            assert br.node is not None
            if br.node.node_id not in self.live:
                self.settle(br, exc, gone=True)
            elif now >= deadline:
                self.settle(br, exc, gone=False)
            else:
                still.append((br, deadline, exc))
        self.suspects = still

    def settle(self, br: BlockRun, exc: BaseException, gone: bool) -> None:
        """The block's node left the cluster (gone), or only its Ray worker died: record the run in
        flight as lost, and move the block (away from that node)."""
        assert br.node is not None
        node, name = br.node, br.node.label
        self.unreachable.discard(node.node_id)
        self.progress.node(name, LOST if gone else IDLE)
        held, br.held = br.held, None
        if gone:
            why = f"node lost: {name} ({node.ip}) left the Ray cluster during the run ({type(exc).__name__})"
            self.note(f"{name} ({node.ip}) left the Ray cluster; block {br.label} moves to another node")
        else:
            why = f"node lost: the Ray worker running it on {name} died ({type(exc).__name__}); the node is still up"
        self.lost_run(br, held, why)
        self.leave(br, "lost" if gone else "its Ray worker died", avoid=not gone)

    def leave(self, br: BlockRun, why: str, avoid: bool) -> None:
        """The block leaves its node: back to the waiting blocks (or not run, after too many moves)."""
        assert br.node is not None
        node = br.node
        self.busy.pop(node.node_id, None)
        if br.ran:
            br.moved_from.append(f"{node.label} ({why})")
        if (self.homes.get(br.key) or {}).get("node_id") == node.node_id:
            del self.homes[br.key]
        if avoid:
            br.avoid.add(node.node_id)
        br.actor, br.node, br.cell, br.step, br.ran = None, None, None, "hello", 0
        if not br.cells:
            return
        if br.moves >= 2 * len(self.reports) + self.campaign.retries:
            self.not_run += br.cells
            self.note(f"block {br.label}: {len(br.cells)} runs not run: it failed on {br.moves + 1} nodes")
            return
        br.moves += 1
        self.waiting.append(br)
        self.waiting.sort(key=lambda b: -b.seconds)

    def interrupt(self) -> None:
        """Ctrl-C (or SIGTERM): the runs in flight are recorded interrupted; disconnecting stops the actors."""
        for br in self.calls.values():
            if br.step == "recheck" and br.held is not None and br.cell is not None:
                self.write_failed(br, br.held, None)
            elif br.step == "run" and br.cell is not None and br.node is not None:
                cluster = br.node.identity() | br.placement()
                setup_failed(br.cell, self.where, br.record_cell, INTERRUPTED_REASON, Failure.INTERRUPTED, cluster)
        self.note("interrupted: runs in flight are recorded as interrupted; run the same command to resume")
