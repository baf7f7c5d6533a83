"""What `campaign plan --cluster` prints: the campaign's plan over the whole cluster, then per node
what it can and cannot run and why, then the blocks and the wall time they should take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controller.campaigns.estimate import estimate
from controller.campaigns.history import cell_state, recorded
from controller.campaigns.plan import render_plan, to_json
from controller.campaigns.spec import Campaign
from controller.cluster.blocks import blocks, makespan
from controller.cluster.readiness import ClusterAssessment, NodeReport
from controller.progress import fmt_duration


def render_cluster_plan(ca: ClusterAssessment, results: Path, seed: int, address: str) -> str:
    lines = [render_plan(ca.merged, results, seed, here="on any node"), ""]
    lines.append(f"cluster {address}: {len(ca.nodes)} nodes offer joulebench_host")
    lines += node_lines(ca)
    lines += block_lines(ca, results, seed)
    return "\n".join(lines)


def _meters(report: NodeReport) -> str:
    ok = [m["name"] for m in report.meters if m.get("ok") is True]
    missing = [m["name"] for m in report.meters if m.get("ok") is False]
    return f"meters ok: {', '.join(ok) or 'none'}" + (f"; unavailable: {', '.join(missing)}" if missing else "")


def node_lines(ca: ClusterAssessment) -> list[str]:
    """Per node: its runner, meters and idle baseline; how many runs it can run; why not the rest."""
    campaign = ca.merged.campaign
    cells = campaign.matrix()
    out = []
    for r in ca.nodes:
        can = sum(1 for c in cells if r.runnable(c))
        base = r.baseline
        baseline = f"idle baseline {base.get('status', '?')}" if base else "idle baseline not checked"
        details = f"runner {r.runner_note}; {_meters(r)}; {baseline}" if r.runner else "not checked"
        out.append(f"  {r.label} (node {r.node.node_id[:8]}, {r.node.ip}): {details}")
        out.append(f"      can run {can} of {len(cells)} runs")
        out += [f"      cannot run anything: {p}" for p in r.problems]
        by_reason: dict[str, list[str]] = {}
        for combo in r.combos:
            shown = f"{_shown(campaign, combo['model'])} on {combo['configuration']}"
            for reason in combo["reasons"]:
                by_reason.setdefault(reason, []).append(shown)
        for reason, where in by_reason.items():
            out += [f"      cannot: {reason}", f"          -> {', '.join(where)}"]
    return out


def _shown(campaign: Campaign, model: str) -> str:
    return campaign.serving_model(model)[0] if campaign.mode == "serving" else model


def block_lines(ca: ClusterAssessment, results: Path, seed: int) -> list[str]:
    campaign = ca.merged.campaign
    history = recorded(results, campaign.name)
    left = [c for c in campaign.ordered(seed) if cell_state(history.get(c.id, [])) != "ok"]
    todo = [c for c in left if ca.merged.runnable(c)[0]]
    groups = blocks(todo, campaign.block_by)
    if not groups:
        return ["blocks: none left to run"]
    by = ", ".join(campaign.block_by) or "nothing (one block)"
    durations = [estimate(b.cells, ca.merged, history).seconds for b in groups]
    usable = sum(1 for r in ca.nodes if any(r.runnable(c) for c in todo))
    lines = [
        f"blocks: {len(groups)} (cells alike in {by}), each run on one node; estimated wall time on {usable} "
        f"nodes ~{fmt_duration(makespan(durations, usable))} (longest block ~{fmt_duration(max(durations))})"
    ]
    split = [b.label for b in groups if not ca.eligible(b.cells)]
    if split:
        lines.append(
            f"  no single node can run all of block(s) {', '.join(split)}: their cells run on several nodes, "
            "and comparisons within them cross hosts"
        )
    return lines


def cluster_json(ca: ClusterAssessment) -> str:
    """`campaign plan --json` with the nodes that can run each <configuration, model>."""
    entries = json.loads(to_json(ca.merged))
    first: dict[tuple[str, str], Any] = {}
    for cell in ca.merged.campaign.matrix():
        first.setdefault((cell.configuration, cell.model), cell)
    for e in entries:
        cell = first[(e["configuration"], e["model"])]
        e["nodes"] = [r.label for r in ca.nodes if r.runnable(cell)]
    return json.dumps(entries, indent=2)
