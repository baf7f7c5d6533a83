"""Campaigns across many machines, on Ray: one run per machine at a time, every record home once.

Each measuring machine is a Ray node offering one ``joulebench_host`` resource. ``connect``
finds them; ``readiness`` asks each (a Ray task pinned to it) what it can run; ``blocks`` groups
the cells compared with each other, which run on one node; ``execute`` hands each block to a
``host.Host`` actor — it asks for a node's joulebench_host, so Ray gives it a free node and
nothing else measures there meanwhile — and writes the records that come back. Ray does the
scheduling; nothing here decides which free node takes which block, beyond what a block may not do.
"""

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
