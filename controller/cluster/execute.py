"""A campaign on a Ray cluster whose nodes come and go — read this after ``campaigns/execute.py``.

    connect -> every node's readiness -> lock the folder -> what is left (as locally) -> blocks
      -> the dispatcher, about once a second:
         nodes   a node that joins is checked (readiness, as at the start) before it gets a block;
                 one that leaves is lost
         blocks  each waiting block (longest first) goes to a free node that passed its readiness
                 check and can run all of it (the node of its earlier runs, on resume): one Host
                 actor per block, pinned to that node, holding its one joulebench_host
                 -> hello, then (cool-down, run) per cell, in campaign order
         replies each record written here, once, as it comes back
         demand  Ray's autoscaler is asked for as many measuring nodes as blocks are waiting or
                 running (the waiting ones are the dispatcher's, so Ray alone would not see them)
      -> a block's node stops answering: once Ray says the node is gone, its run in flight is
         recorded failed ("node lost") and the rest of the block (and the lost run, within the
         campaign's retries) waits for another node
      -> a run fails: its node is checked again; when it can no longer run that cell, the failure
         is the node's (``cluster.node_fault`` in the record) and the block moves
      -> no live node can run a waiting block: it waits up to ``--node-wait`` for one to join
      -> the head stops answering: one line, exit 3 (``connect.HeadWatch``); the same command resumes

The dispatcher decides which node takes which block, because only it knows which nodes passed
readiness; Ray places and holds: the actor asks for its node's joulebench_host, so nothing else is
measured there meanwhile, not even another controller's run. Records are written by this process
alone, so a controller killed with ``kill -9`` loses at most the runs in flight (Ray stops its
actors when its driver goes), and resuming is reading the folder.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.estimate import estimate
from controller.campaigns.history import locked, recorded
from controller.campaigns.session import Session, begin_session, ok_line, run_settings, setup_failed, summary
from controller.campaigns.spec import Campaign, Cell
from controller.cluster.blocks import block_key, blocks, makespan
from controller.cluster.connect import RESOURCE, Cluster, Node, connected, node_label
from controller.cluster.plan import node_lines
from controller.cluster.progress import CHECKING, IDLE, LOST, UNFIT, UNREACHABLE, ClusterProgress
from controller.cluster.readiness import (
    READINESS_TIMEOUT_S,
    ClusterAssessment,
    NodeReport,
    _error_line,
    assess_cluster,
    build_lines,
    build_missing,
    gpu_mix,
    report_from,
    start_build,
    start_check,
    unfit_reason,
)
from controller.progress import fmt_duration
from controller.record import INTERRUPTED_REASON, Failure, record_path, write_atomic, write_record

HERE = "on any node"
NODE_POLL_S = 2.0  # how often the cluster's nodes are read (joins, departures)
# How long a node whose block stopped answering may stay alive in Ray's eyes before the block's
# Ray worker (not the node) counts as what died: Ray marks a node dead after missed health checks
# (about 15 s with its defaults).
LOSS_GRACE_S = 60.0
NODE_WAIT_S = 600.0  # default of --node-wait
WAIT_NOTE_S = 60.0  # how often to say that blocks still wait for a node


class NodeGone(Exception):
    """A block's node left the cluster and Ray did not fail its pending call."""


@dataclass
class Settings:
    runner: str | None
    cache: Path | None
    build_images: bool = False
    node_wait_s: float = NODE_WAIT_S


def run_on_cluster(
    campaign: Campaign,
    results: Path,
    address: str,
    retry_failed: bool,
    settings: Settings,
    say: Callable[[str], None],
) -> int:
    with connected(address) as cluster:
        ca = assess_cluster(cluster, campaign, settings.runner, cluster.hosts())
        if settings.build_images:
            ca = build_missing(cluster, campaign, settings.runner, ca, say)
        say(f"cluster {address}: {len(ca.nodes)} nodes offer {RESOURCE}")
        for line in node_lines(ca):
            say(line)
        mix = gpu_mix(ca.nodes)
        if mix:
            say(f"warning: {mix}")
        with locked(results, campaign, say):
            if cluster.watch is not None:
                cluster.watch.resume_hint = (
                    f"when the cluster is back, run the same command (with the head's new address if it changed) "
                    f"to resume the campaign in {results / campaign.name}"
                )
            logged = {"cluster": address, "nodes": [r.node.identity() for r in ca.nodes]}
            session = begin_session(campaign, results, ca.merged, retry_failed, say, logged, here=HERE)
            return _run(cluster, ca, results, session, settings, say)


def _run(
    cluster: Cluster,
    ca: ClusterAssessment,
    results: Path,
    session: Session,
    settings: Settings,
    say: Callable[[str], None],
) -> int:
    campaign, plan = ca.merged.campaign, session.plan
    if not plan.run:
        print(summary(campaign, results, plan, [], session.history, interrupted_now=False, here=HERE))
        return 1 if plan.kept_failed or plan.blocked else 0
    groups = blocks(plan.run, campaign.block_by)
    durations = [estimate(b.cells, ca.merged, session.history).seconds for b in groups]
    usable = sum(1 for r in ca.nodes if any(r.runnable(c) for c in plan.run))
    wall = makespan(durations, usable)
    say(
        f"{len(groups)} blocks (cells alike in {', '.join(campaign.block_by) or 'nothing'}) on {usable} nodes; "
        f"estimated wall time ~{fmt_duration(wall)}; a block no live node can run waits up to "
        f"{fmt_duration(settings.node_wait_s)} for one to join (--node-wait)"
    )
    progress = ClusterProgress(len(plan.run), wall / len(plan.run), [r.label for r in ca.nodes])
    dispatcher = Dispatcher(cluster, ca, results, session, settings, progress)
    runs = [BlockRun(b.label, b.key, list(b.cells), d) for b, d in zip(groups, durations, strict=True)]
    with progress:
        interrupted_now = dispatcher.run(runs)
    history = recorded(results, campaign.name)
    print(summary(campaign, results, plan, dispatcher.failed_now, history, interrupted_now, here=HERE))
    if dispatcher.not_run:
        print(
            f"{len(dispatcher.not_run)} runs found no node that could run them: run the same command to run "
            "them once such a node has joined"
        )
    if interrupted_now:
        return 130
    return 1 if dispatcher.failed_now or dispatcher.not_run or plan.kept_failed or plan.blocked else 0


@dataclass
class BlockRun:
    """A block (or what is left of it) on its way through the cluster: waiting, then on one node."""

    label: str
    key: tuple[Any, ...]
    cells: list[Cell]  # not started yet, in run order
    seconds: float  # estimated, for the longest-first order
    avoid: set[str] = field(default_factory=set)  # nodes this block left after they failed it
    moves: int = 0
    moved_from: list[str] = field(default_factory=list)  # nodes its earlier runs were measured on, and why it left
    waiting_since: float | None = None  # since when no live node can run any of its cells
    actor: Any = None
    node: Node | None = None
    ran: int = 0  # records written from its present node
    step: str = "hello"  # what the pending call is: hello, cool, run, recheck
    cell: Cell | None = None  # the run in flight
    record_cell: dict[str, Any] = field(default_factory=dict)
    held: dict[str, Any] | None = None  # a failed run (its reply, or the error), until its node is checked again

    def placement(self) -> dict[str, Any]:
        """What the records of this block carry beside their node (``cluster``): the block, and the
        nodes it left, whose runs it is compared with."""
        return {"block": self.label} | ({"moved_from": list(self.moved_from)} if self.moved_from else {})


@dataclass
class _Check:
    node: Node
    kind: str  # check, build
    since: float
    built: bool = False


class Dispatcher:
    """Blocks to nodes, replies to records; nodes joining and leaving, node loss and retries."""

    def __init__(
        self,
        cluster: Cluster,
        ca: ClusterAssessment,
        results: Path,
        session: Session,
        settings: Settings,
        progress: ClusterProgress,
    ) -> None:
        from controller.cluster.host import Host

        self.cluster, self.ray = cluster, cluster.ray
        self.campaign = ca.merged.campaign
        self.session, self.progress, self.settings = session, progress, settings
        self.cache = str(settings.cache) if settings.cache else None
        self.where = run_settings(self.campaign, ca.merged.runner, results, settings.cache)[0]
        self.positions = {c.id: i for i, c in enumerate(session.plan.ordered)}
        self.homes = homes(self.campaign, session.history)
        self.host_class = self.ray.remote(Host)
        self.token = secrets.token_hex(4)
        self.reports: dict[str, NodeReport] = {r.node.node_id: r for r in ca.nodes}
        self.nodes: dict[str, Node] = {r.node.node_id: r.node for r in ca.nodes}
        self.live: set[str] = set(self.reports)
        self.unreachable: set[str] = set()
        self.left_at: dict[str, float] = {}
        self.busy: dict[str, BlockRun] = {}
        self.waiting: list[BlockRun] = []
        self.calls: dict[Any, BlockRun] = {}
        self.checks: dict[Any, _Check] = {}
        self.suspects: list[tuple[BlockRun, float, BaseException]] = []
        self.load: Counter[str] = Counter()
        self.lost_runs: Counter[str] = Counter()
        self.written: set[str] = set()
        self.failed_now: list[tuple[Cell, str, str]] = []
        self.not_run: list[Cell] = []
        self.polled = time.monotonic()
        self.wait_noted = 0.0
        self.mix = gpu_mix(ca.nodes)
        self.asked = -1
        for r in ca.nodes:
            if unfit_reason(r, session.plan.run):
                progress.node(r.label, UNFIT)

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

    def ask_for_nodes(self, done: bool = False) -> None:
        """Tell the autoscaler how many measuring nodes the blocks could use now (none when done)."""
        want = 0 if done else len(self.busy) + len(self.waiting)
        if want == self.asked or (done and self.asked <= 0):
            return
        self.asked = want
        self.cluster.request_nodes(want, wait_s=10.0 if done else 0.0)

    def name(self, node_id: str) -> str:
        node = self.nodes.get(node_id)
        return node.label if node else node_label("?", node_id)

    def note(self, text: str) -> None:
        self.progress.note(text)

    # --- nodes joining and leaving ------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        """Read the cluster's nodes: check those that joined, mark those that left."""
        now = time.monotonic()
        if not force and now - self.polled < NODE_POLL_S:
            return
        self.polled = now
        nodes = self.cluster.live()
        for node, amount in nodes:
            if node.node_id not in self.nodes:
                self.joined(node, amount)
        ids = {n.node_id for n, _ in nodes}
        for nid in self.live - ids:
            self.left_at[nid] = now
            if nid not in self.busy:  # a busy node's block says so when its call fails
                self.progress.node(self.name(nid), LOST)
                self.note(f"{self.name(nid)} ({self.nodes[nid].ip}) left the Ray cluster")
        self.live = ids

    def joined(self, node: Node, amount: float) -> None:
        self.nodes[node.node_id] = node
        if amount != 1:
            self.progress.node(node.label, UNFIT)
            self.note(
                f"{node.label} ({node.ip}) joined offering {RESOURCE} = {amount:g}; it gets no block: a node must "
                "offer exactly 1, so that it measures one run at a time"
            )
            return
        self.progress.node(node.label, CHECKING)
        self.note(f"{node.label} ({node.ip}) joined the cluster: checking what it can run before it gets a block")
        self.checks[start_check(self.cluster, self.campaign, self.settings.runner, node)] = _Check(
            node, "check", time.monotonic()
        )

    def checked(self, check: _Check, answer: Any) -> None:
        """A joined node's readiness (or image build) answered: it passes, builds first, or gets no block."""
        node, name = check.node, check.node.label
        if check.kind == "build":
            for line in build_lines(name, answer):
                self.note(line)
            ref = start_check(self.cluster, self.campaign, self.settings.runner, node)
            self.checks[ref] = _Check(node, "check", time.monotonic(), built=True)
            return
        report = report_from(node, answer, READINESS_TIMEOUT_S)
        if node.node_id not in self.live:  # it left while being checked: it is lost, and said so
            return
        if self.settings.build_images and report.unbuilt and not check.built and not report.problems:
            self.note(f"{name}: building {', '.join(report.unbuilt)} before it gets a block (minutes per image) ...")
            self.checks[start_build(self.cluster, node, report.unbuilt)] = _Check(node, "build", time.monotonic())
            return
        self.reports[node.node_id] = report
        why = unfit_reason(report, self.session.plan.run)
        if node.node_id in self.live:
            self.progress.node(name, UNFIT if why else IDLE)
        if why:
            self.note(f"{name} can run nothing of this campaign, so it gets no block: {why}")
        else:
            n = sum(1 for c in self.session.plan.run if report.runnable(c))
            total = len(self.session.plan.run)
            self.note(f"{name} passed its readiness check: it can run {n} of this session's {total} runs")
        mix = gpu_mix(list(self.reports.values()))
        if mix and mix != self.mix:
            self.note(f"warning: {mix}")
        self.mix = mix

    # --- placing blocks -----------------------------------------------------------------------

    def place(self) -> None:
        """Each waiting block, longest first, to a free node that passed readiness and can run all of it."""
        ready = {nid: r for nid, r in self.reports.items() if nid in self.live and nid not in self.unreachable}
        free = {nid for nid in ready if nid not in self.busy}
        now, newly = time.monotonic(), []
        for br in list(self.waiting):
            eligible = [r for r in ready.values() if all(r.runnable(c) for c in br.cells)]
            if not eligible:
                if not self.split(br, ready):
                    if br.waiting_since is None:
                        br.waiting_since = now
                        newly.append(br)
                continue
            br.waiting_since = None
            target = self.choose(br, eligible, free)
            if target is not None:
                self.waiting.remove(br)
                free.discard(target)
                self.start(br, ready[target])
        if newly:
            runs = sum(len(b.cells) for b in newly)
            self.note(
                f"no live node can run {len(newly)} waiting block(s) ({runs} runs): they wait up to "
                f"{fmt_duration(self.settings.node_wait_s)} for a node to join and pass its readiness check "
                "(--node-wait)"
            )
            self.wait_noted = now

    def split(self, br: BlockRun, ready: dict[str, NodeReport]) -> bool:
        """No live node can run the whole block: its cells go in parts to nodes that can run them (the
        cells none can run wait as a part of their own). False when no live node can run any."""
        parts: dict[frozenset[str], list[Cell]] = {}
        for cell in br.cells:
            parts.setdefault(frozenset(nid for nid, r in ready.items() if r.runnable(cell)), []).append(cell)
        if set(parts) == {frozenset()}:
            return False
        if sum(1 for nodes in parts if nodes) > 1:
            self.note(f"block {br.label} runs on several nodes: no live node can run all of it")
        i = self.waiting.index(br)
        self.waiting[i : i + 1] = [
            BlockRun(br.label, br.key, cells, br.seconds, set(br.avoid), br.moves, list(br.moved_from))
            for cells in parts.values()
        ]
        return True

    def choose(self, br: BlockRun, eligible: list[NodeReport], free: set[str]) -> str | None:
        """The free node the block goes to now: the node of its earlier runs (it waits for that one
        while it is busy), else one it did not fail on, the least loaded; None: it waits."""
        home = self.home_of(br, eligible)
        if home is not None:
            return home if home in free else None
        ids = [r.node.node_id for r in eligible]
        preferred = [i for i in ids if i not in br.avoid] or ids
        choices = [i for i in preferred if i in free]
        return min(choices, key=lambda i: (self.load[i], self.name(i))) if choices else None

    def home_of(self, br: BlockRun, eligible: list[NodeReport]) -> str | None:
        """The node the block's earlier runs were measured on, when it can take the block now."""
        home = self.homes.get(br.key)
        if home is None:
            return None
        ids = {r.node.node_id for r in eligible}
        if home.get("node_id") in ids:
            return str(home["node_id"])
        same = [r for r in eligible if (r.node.hostname, r.node.ip) == (home.get("hostname"), home.get("node_ip"))]
        if len(same) == 1:  # the same machine, after a restart of its Ray
            return same[0].node.node_id
        name = node_label(home.get("hostname"), home.get("node_id"))
        self.note(f"block {br.label} ran on {name} before, which cannot take it now: it moves")
        br.moved_from.append(f"{name} (not in the cluster when the campaign resumed)")
        del self.homes[br.key]
        return None

    def start(self, br: BlockRun, report: NodeReport) -> None:
        """A Host actor for the block, pinned to the node and holding its joulebench_host."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = report.node
        br.node, br.ran, br.step = node, 0, "hello"
        self.busy[node.node_id] = br
        self.load[node.node_id] += len(br.cells)
        options: dict[str, Any] = {
            "resources": {RESOURCE: 1},
            "num_cpus": 0,
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        }
        br.actor = self.host_class.options(**options).remote(
            self.campaign, self.token, self.settings.runner, self.cache
        )
        self.progress.node(node.label, f"block {br.label}")
        self.call(br, "hello", br.actor.hello.remote())

    def expire(self) -> None:
        """Blocks that waited for a capable node longer than --node-wait are not run."""
        now = time.monotonic()
        waiting = [br for br in self.waiting if br.waiting_since is not None]
        for br in waiting:
            assert br.waiting_since is not None
            if now - br.waiting_since >= self.settings.node_wait_s:
                self.waiting.remove(br)
                self.not_run += br.cells
                self.note(
                    f"block {br.label}: {len(br.cells)} runs not run: no live node could run them within "
                    f"{fmt_duration(self.settings.node_wait_s)}"
                )
        still = [br for br in self.waiting if br.waiting_since is not None]
        if still and now - self.wait_noted >= WAIT_NOTE_S:
            self.wait_noted = now
            left = min(self.settings.node_wait_s - (now - (br.waiting_since or now)) for br in still)
            self.note(
                f"{len(still)} block(s) ({sum(len(b.cells) for b in still)} runs) still wait for a node that can run "
                f"them ({fmt_duration(max(0.0, left))} left)"
            )

    # --- the replies --------------------------------------------------------------------------

    def call(self, br: BlockRun, step: str, ref: Any) -> None:
        br.step = step
        self.calls[ref] = br

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


def homes(campaign: Campaign, history: dict[str, list[dict[str, Any]]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Block key -> the node (``cluster`` of its latest ok record) its earlier cells ran on."""
    keys = {c.id: block_key(c, campaign.block_by) for c in campaign.matrix()}
    latest: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    for cid, recs in history.items():
        key = keys.get(cid)
        for r in recs:
            if key is None or r.get("status") != "ok" or not isinstance(r.get("cluster"), dict):
                continue
            if key not in latest or str(r.get("started_at")) > latest[key][0]:
                latest[key] = (str(r.get("started_at")), r["cluster"])
    return {k: v[1] for k, v in latest.items()}
