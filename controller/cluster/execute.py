"""A campaign on a Ray cluster — read this after ``campaigns/execute.py``.

    connect -> every node's readiness -> lock the folder -> what is left (as locally) -> blocks
      -> per block one Host actor, which asks for a node's one joulebench_host (Ray queues it
         until a node is free) -> hello, then (cool-down, run) per cell, in campaign order
      -> each record written here, once, as it comes back
      -> a node lost mid-run: its run recorded failed ("node lost"); the rest of the block (and the
         lost run, within the campaign's retry budget) goes to a live node

Ray does the scheduling: which free node takes which waiting block. This module only decides what
a block may not do: run on a node that cannot run it, or leave the node its earlier cells ran on.
Records are written by this process alone, so a controller killed with ``kill -9`` loses at most
the runs in flight (Ray stops its actors when its driver goes), and resuming is reading the folder.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.estimate import estimate
from controller.campaigns.history import locked, recorded
from controller.campaigns.session import Session, begin_session, ok_line, run_settings, setup_failed, summary
from controller.campaigns.spec import Campaign, Cell
from controller.cluster.blocks import block_key, blocks, makespan
from controller.cluster.connect import RESOURCE, Cluster, Node, connected, labels
from controller.cluster.plan import node_lines
from controller.cluster.progress import IDLE, LOST, ClusterProgress
from controller.cluster.readiness import ClusterAssessment, _error_line, assess_cluster, build_missing
from controller.progress import fmt_duration
from controller.record import INTERRUPTED_REASON, Failure, record_path, write_atomic, write_record

HERE = "on any node"
NO_NODE_NOTE_S = 30.0  # how often to say that no node is alive to run the waiting blocks


def run_on_cluster(
    campaign: Campaign,
    results: Path,
    address: str,
    retry_failed: bool,
    cache: Path | None,
    runner: str | None,
    build_images: bool,
    say: Callable[[str], None],
) -> int:
    with connected(address) as cluster:
        ca = assess_cluster(cluster, campaign, runner, cluster.hosts())
        if build_images:
            ca = build_missing(cluster, campaign, runner, ca, say)
        say(f"cluster {address}: {len(ca.nodes)} nodes offer {RESOURCE}")
        for line in node_lines(ca):
            say(line)
        with locked(results, campaign, say):
            logged = {"cluster": address, "nodes": [r.node.identity() for r in ca.nodes]}
            session = begin_session(campaign, results, ca.merged, retry_failed, say, logged, here=HERE)
            return _run(cluster, ca, results, session, runner, cache, say)


def _run(
    cluster: Cluster,
    ca: ClusterAssessment,
    results: Path,
    session: Session,
    runner: str | None,
    cache: Path | None,
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
        f"estimated wall time ~{fmt_duration(wall)}"
    )
    progress = ClusterProgress(len(plan.run), wall / len(plan.run), list(labels([r.node for r in ca.nodes]).values()))
    dispatcher = Dispatcher(cluster, ca, results, session, runner, cache, progress)
    with progress:
        interrupted_now = dispatcher.run(groups)
    history = recorded(results, campaign.name)
    print(summary(campaign, results, plan, dispatcher.failed_now, history, interrupted_now, here=HERE))
    if interrupted_now:
        return 130
    return 1 if dispatcher.failed_now or dispatcher.not_run or plan.kept_failed or plan.blocked else 0


@dataclass
class BlockRun:
    """A block (or what is left of it) on its way through one Host actor."""

    label: str
    key: tuple[Any, ...]
    cells: list[Cell]  # not started yet, in run order
    avoid: set[str] = field(default_factory=set)  # nodes this block left after they failed it
    moves: int = 0
    actor: Any = None
    node: Node | None = None
    step: str = "hello"  # what the pending call is: hello, cool, run
    cell: Cell | None = None  # the run in flight
    record_cell: dict[str, Any] = field(default_factory=dict)


class Dispatcher:
    """Blocks to Host actors, replies to records; node loss and retries. One Ray call in flight per block."""

    def __init__(
        self,
        cluster: Cluster,
        ca: ClusterAssessment,
        results: Path,
        session: Session,
        runner: str | None,
        cache: Path | None,
        progress: ClusterProgress,
    ) -> None:
        from controller.cluster.host import Host

        self.cluster, self.ray, self.ca = cluster, cluster.ray, ca
        self.campaign = ca.merged.campaign
        self.session, self.progress = session, progress
        self.runner, self.cache = runner, str(cache) if cache else None
        self.where = run_settings(self.campaign, ca.merged.runner, results, cache)[0]
        self.positions = {c.id: i for i, c in enumerate(session.plan.ordered)}
        self.homes = homes(self.campaign, session.history)
        self.names = labels([r.node for r in ca.nodes])
        self.host_class = self.ray.remote(Host)
        self.token = secrets.token_hex(4)
        self.active: dict[Any, BlockRun] = {}
        self.pinned: Counter[str] = Counter()
        self.lost_runs: Counter[str] = Counter()
        self.written: set[str] = set()
        self.failed_now: list[tuple[Cell, str, str]] = []
        self.not_run: list[Cell] = []
        self.max_moves = 2 * len(ca.nodes) + self.campaign.retries

    def run(self, groups: list[Any]) -> bool:
        """Run every block; True when interrupted (the runs in flight are then recorded interrupted)."""
        for b in groups:
            self.submit(BlockRun(b.label, b.key, list(b.cells)))
        quiet_since = time.monotonic()
        try:
            while self.active:
                if self.step():
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > NO_NODE_NOTE_S:
                    quiet_since = time.monotonic()
                    if not self.cluster.live():
                        self.progress.note(f"no node offering {RESOURCE} is alive: the blocks wait for one to join")
        except KeyboardInterrupt:
            self.interrupt()
            return True
        return False

    # --- placing blocks -----------------------------------------------------------------------

    def submit(self, br: BlockRun) -> None:
        """A Host actor for the block on a node that can run all of it (or parts, where none can)."""
        live = {n.node_id for n, _ in self.cluster.live()}
        eligible = self.ca.eligible(br.cells, live)
        if not eligible:
            self.split(br, live)
            return
        preferred = [r for r in eligible if r.node.node_id not in br.avoid] or eligible
        pin = self.pin(br, [r.node for r in preferred], live)
        options: dict[str, Any] = {"resources": {RESOURCE: 1}, "num_cpus": 0, "max_restarts": 0, "max_task_retries": 0}
        if pin is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(pin, soft=False)
            self.pinned[pin] += len(br.cells)
        br.actor = self.host_class.options(**options).remote(self.campaign, self.token, self.runner, self.cache)
        self.call(br, "hello", br.actor.hello.remote())

    def split(self, br: BlockRun, live: set[str]) -> None:
        """No live node can run the whole block: its cells go in parts to nodes that can run them."""
        parts: dict[frozenset[str], list[Cell]] = {}
        for cell in br.cells:
            nodes = frozenset(r.node.node_id for r in self.ca.eligible([cell], live))
            parts.setdefault(nodes, []).append(cell)
        dropped = parts.pop(frozenset(), [])
        if dropped:
            self.not_run += dropped
            self.progress.note(f"block {br.label}: {len(dropped)} runs not run: no live node can run them")
        if len(parts) > 1:
            self.progress.note(f"block {br.label} runs on {len(parts)} nodes: no live node can run all of it")
        for cells in parts.values():
            self.submit(BlockRun(br.label, br.key, cells, set(br.avoid), br.moves))

    def pin(self, br: BlockRun, preferred: list[Node], live: set[str]) -> str | None:
        """The node a block must run on: where it ran before, else (when only some nodes can run
        it) the least loaded of those; None lets Ray choose any free node."""
        ids = {n.node_id for n in preferred}
        home = self.homes.get(br.key)
        if home is not None:
            if home["node_id"] in ids:
                return str(home["node_id"])
            same = [n for n in preferred if n.hostname == home["hostname"]]
            if len(same) == 1:
                return same[0].node_id
            self.progress.note(f"block {br.label} ran on {home['hostname']} before, which cannot take it now: it moves")
        if ids >= live and not br.avoid & live:
            return None
        return min(ids, key=lambda i: (self.pinned[i], i))

    # --- the replies --------------------------------------------------------------------------

    def call(self, br: BlockRun, step: str, ref: Any) -> None:
        br.step = step
        self.active[ref] = br

    def step(self) -> bool:
        """Handle the calls that answered within a second; False when none did."""
        ready, _ = self.ray.wait(list(self.active), num_returns=1, timeout=1.0)
        for ref in ready:
            br = self.active.pop(ref)
            try:
                value = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as exc:
                self.task_failed(br, exc)
            except self.ray.exceptions.RayError as exc:
                self.lost(br, exc)
            else:
                self.advance(br, value)
        return bool(ready)

    def name(self, node: Node | None) -> str:
        if node is None:
            return "a node"
        return self.names.get(node.node_id) or f"{node.hostname}#{node.node_id[:6]}"

    def advance(self, br: BlockRun, value: dict[str, Any]) -> None:
        for note in value.get("notes") or []:
            self.progress.note(f"{self.name(br.node)}: {note}")
        if br.step == "hello":
            br.node = Node(value["node"]["node_id"], value["node"]["node_ip"], value["node"]["hostname"])
            self.homes.setdefault(br.key, value["node"])
        elif br.step == "run":
            self.home(br, value)
        self.next(br)

    def next(self, br: BlockRun) -> None:
        """The block's next call: a cool-down before each run, the run, or the end of the block."""
        name = self.name(br.node)
        if not br.cells:
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
        self.call(br, "run", br.actor.run.remote(cell, br.record_cell))

    def home(self, br: BlockRun, value: dict[str, Any]) -> None:
        """Write the run's trace, then its record, into the campaign folder: once per run."""
        record = value["record"]
        path = record_path(self.where.results, self.campaign.name, record["run_id"])
        if record["run_id"] not in self.written:
            if value.get("trace") is not None:
                write_atomic(path.with_suffix(".trace.parquet"), value["trace"])
            write_record(path, record)
            self.written.add(record["run_id"])
        ok = record["status"] == "ok"
        line = ok_line(record) if ok else str((record.get("failure") or {}).get("reason") or "?")
        self._finished(br, ok, line, path)

    def _finished(self, br: BlockRun, ok: bool, line: str, path: Path) -> None:
        assert br.cell is not None
        if not ok:
            self.failed_now.append((br.cell, line, path.name))
        self.progress.finished(ok, f"{self.name(br.node)}: {line} -> {path.name}")
        br.cell = None

    # --- failures -----------------------------------------------------------------------------

    def task_failed(self, br: BlockRun, exc: BaseException) -> None:
        """Our code raised on the node: a run's is a failed record; a hello's or cool-down's moves the block."""
        why, name = _error_line(exc), self.name(br.node)
        if br.step == "run" and br.cell is not None:
            node = br.node.identity() if br.node else None
            path = setup_failed(br.cell, self.where, br.record_cell, f"on {name}: {why}", Failure.SETUP, node)
            self._finished(br, False, f"on {name}: {why}", path)
            self.next(br)
            return
        self.progress.note(f"{name} could not take block {br.label} ({why}); it moves to another node")
        self.ray.kill(br.actor, no_restart=True)
        self.move(br, avoid=br.node)

    def lost(self, br: BlockRun, exc: BaseException) -> None:
        """The actor, its worker or its node died (or its node is gone before it started)."""
        name, node = self.name(br.node), br.node
        alive = node is not None and self.cluster.alive(node.node_id)
        try:
            self.ray.kill(br.actor, no_restart=True)  # one that is only unreachable must not go on measuring
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        if node is not None:
            self.progress.node(name, IDLE if alive else LOST)
        if br.step == "run" and br.cell is not None and node is not None:
            if alive:
                reason = f"node lost: the Ray worker running it on {name} died ({type(exc).__name__})"
            else:
                reason = f"node lost: {name} ({node.ip}) left the Ray cluster during the run ({type(exc).__name__})"
            cell = br.cell
            path = setup_failed(cell, self.where, br.record_cell, reason, Failure.NODE_LOST, node.identity())
            self.lost_runs[cell.id] += 1
            retry = self.lost_runs[cell.id] <= self.campaign.retries
            if retry:
                br.cells.insert(0, cell)
                self.progress.tally.total += 1
                self.progress.finished(False, f"{name}: {reason} -> {path.name}; it runs again on a live node")
                br.cell = None
            else:
                self._finished(br, False, reason, path)
        self.move(br, avoid=node if alive else None)

    def move(self, br: BlockRun, avoid: Node | None) -> None:
        if not br.cells:
            return
        if br.moves >= self.max_moves:
            self.not_run += br.cells
            self.progress.note(f"block {br.label}: {len(br.cells)} runs not run: it failed on {br.moves} nodes")
            return
        avoided = br.avoid | ({avoid.node_id} if avoid is not None else set())
        self.submit(BlockRun(br.label, br.key, br.cells, avoided, br.moves + 1))

    def interrupt(self) -> None:
        """Ctrl-C (or SIGTERM): the runs in flight are recorded interrupted; disconnecting stops the actors."""
        for br in self.active.values():
            if br.step == "run" and br.cell is not None:
                node = br.node.identity() if br.node else None
                setup_failed(br.cell, self.where, br.record_cell, INTERRUPTED_REASON, Failure.INTERRUPTED, node)
        self.progress.note("interrupted: runs in flight are recorded as interrupted; run the same command to resume")


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
