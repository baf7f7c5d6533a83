"""Where a cluster campaign's blocks go (the dispatcher's first half; ``dispatcher.py`` handles the
replies and failures): the nodes that join (checked before they get a block) and leave, each waiting
block to a free node that passed readiness and can run all of it (the node of its earlier runs, on
resume), and the demand for nodes told to Ray's autoscaler."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.session import Session, run_settings
from controller.campaigns.spec import Campaign, Cell
from controller.cluster.blocks import block_key
from controller.cluster.connect import RESOURCE, Cluster, Node, node_label
from controller.cluster.progress import CHECKING, IDLE, LOST, UNFIT, ClusterProgress
from controller.cluster.readiness import (
    READINESS_TIMEOUT_S,
    ClusterAssessment,
    NodeReport,
    build_lines,
    gpu_mix,
    report_from,
    start_build,
    start_check,
    unfit_reason,
)
from controller.progress import fmt_duration

NODE_POLL_S = 2.0  # how often the cluster's nodes are read (joins, departures)
NODE_WAIT_S = 600.0  # default of --node-wait
WAIT_NOTE_S = 60.0  # how often to say that blocks still wait for a node


@dataclass
class Settings:
    runner: str | None
    cache: Path | None
    build_images: bool = False
    node_wait_s: float = NODE_WAIT_S


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


class Placing:
    """Blocks to nodes: nodes joining and leaving, blocks waiting, placed, split or not run."""

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

    def call(self, br: BlockRun, step: str, ref: Any) -> None:
        br.step = step
        self.calls[ref] = br

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
