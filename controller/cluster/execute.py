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

The dispatcher is in two parts: ``placing.py`` (nodes joining and leaving, blocks to nodes) and
``dispatcher.py`` (replies to records, failures, node loss and retries).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.campaigns.estimate import estimate
from controller.campaigns.history import locked, recorded
from controller.campaigns.session import Session, begin_session, summary
from controller.campaigns.spec import Campaign
from controller.cluster.blocks import blocks, makespan
from controller.cluster.connect import RESOURCE, Cluster, connected
from controller.cluster.dispatcher import Dispatcher
from controller.cluster.placing import BlockRun, Settings
from controller.cluster.plan import node_lines
from controller.cluster.progress import ClusterProgress
from controller.cluster.readiness import ClusterAssessment, assess_cluster, build_missing, gpu_mix
from controller.progress import fmt_duration

HERE = "on any node"


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
