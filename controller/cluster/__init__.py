"""Campaigns across many machines, on Ray: one run per machine at a time, every record home once.

Each measuring machine is a Ray node offering one ``joulebench_host`` resource. ``connect``
finds them (and watches the head); ``readiness`` asks each (a Ray task pinned to it) what it can
run, at the start and whenever a node joins; ``blocks`` groups the cells compared with each other,
which run on one node; ``execute`` gives each block to a node that passed readiness, through a
``host.Host`` actor pinned there that holds the node's joulebench_host (so nothing else measures
there meanwhile), writes the records that come back, and copes with nodes that join, leave and get
replaced (its dispatcher: ``placing``, then ``dispatcher``); ``plan`` says what the cluster can run
and how far its blocks let it speed up; ``local`` starts a cluster of processes on this machine for
trials and tests."""

from __future__ import annotations

from pathlib import Path

from controller.campaigns.spec import Campaign


def plan_on_cluster(campaign: Campaign, results: Path, address: str, runner: str | None, as_json: bool) -> int:
    """`campaign plan --cluster`: the plan over the cluster, what each node can run and why not the rest."""
    from controller.campaigns.history import resolve_seed
    from controller.cluster.connect import connected
    from controller.cluster.plan import cluster_json, render_cluster_plan
    from controller.cluster.readiness import assess_cluster

    with connected(address) as cluster:
        ca = assess_cluster(cluster, campaign, runner, cluster.hosts())
    if as_json:
        print(cluster_json(ca))
    else:
        print(render_cluster_plan(ca, results, resolve_seed(results, campaign), address))
    return 0
