"""What `campaign plan --cluster` prints: the campaign's plan over the whole cluster, then per node
what it can and cannot run and why, then the blocks, the wall time they should take, and the
speed-up they allow at best (a block runs on one node: the longest one bounds the wall time)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.campaigns.estimate import GUESS_CONVERSION_S, _settings, estimate
from controller.campaigns.history import cell_state, recorded
from controller.campaigns.plan import render_plan, to_json
from controller.campaigns.readiness import Assessment
from controller.campaigns.spec import BLOCK_KEYS, Campaign, Cell
from controller.cluster.blocks import blocks, makespan
from controller.cluster.readiness import ClusterAssessment, NodeReport, gpu_mix
from controller.progress import fmt_duration


def render_cluster_plan(ca: ClusterAssessment, results: Path, seed: int, address: str) -> str:
    lines = [render_plan(ca.merged, results, seed, here="on any node"), ""]
    lines.append(f"cluster {address}: {len(ca.nodes)} nodes offer joulebench_host")
    lines += node_lines(ca)
    mix = gpu_mix(ca.nodes)
    if mix:
        lines.append(f"  warning: {mix}")
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
        gpus = f"; GPUs {', '.join(r.gpus)}" if r.gpus else ""
        out.append(f"  {r.label} ({r.node.ip}): {details}{gpus}")
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
    return lines + speedup_lines(todo, ca.merged, history, usable)


History = dict[str, list[dict[str, Any]]]


def cell_seconds(cells: list[Cell], assessment: Assessment, history: History) -> dict[str, float]:
    """Cell id -> its estimated run time alone (no cool-down, no conversion), estimated once per kind of cell."""
    by_kind: dict[str, float] = {}
    out = {}
    for cell in cells:
        kind = _settings(cell.identity())
        if kind not in by_kind:
            e = estimate([cell], assessment, history)
            by_kind[kind] = e.seconds - GUESS_CONVERSION_S * e.conversions
        out[cell.id] = by_kind[kind]
    return out


@dataclass
class Bound:
    """What a grouping into blocks allows: the wall time relative to one node's, at best and on N nodes."""

    blocks: int
    longest_runs: int
    runs: int
    best: float  # the longest block's share of the work: no number of nodes goes below it
    nodes_for_best: int  # the fewest nodes that reach it (more gain nothing)
    on_nodes: float  # on this cluster's nodes


def bound(cells: list[Cell], block_by: tuple[str, ...], seconds: dict[str, float], pause_s: float, nodes: int) -> Bound:
    groups = blocks(cells, block_by)
    durations = [sum(seconds[c.id] for c in b.cells) + pause_s * (len(b.cells) - 1) for b in groups]
    total = sum(durations) or 1.0
    longest = max(range(len(groups)), key=lambda i: durations[i])
    need = next(n for n in range(1, len(groups) + 1) if makespan(durations, n) <= durations[longest] * (1 + 1e-9))
    return Bound(
        len(groups),
        len(groups[longest].cells),
        len(cells),
        durations[longest] / total,
        need,
        makespan(durations, max(1, nodes)) / total,
    )


def _toml(block_by: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{k}"' for k in block_by) + "]"


def speedup_lines(cells: list[Cell], assessment: Assessment, history: History, nodes: int) -> list[str]:
    """The best speed-up the blocks allow (and with how many nodes), and how other ``block_by`` would change it."""
    campaign = assessment.campaign
    cool = campaign.cooldown
    pause = {"none": 0.0, "fixed": cool.seconds, "gpu-temperature": cool.max_s}[cool.mode]
    seconds = cell_seconds(cells, assessment, history)
    b = bound(cells, campaign.block_by, seconds, pause, nodes)
    lines = [
        f"  speed-up: {b.blocks} block(s), so more than {b.blocks} node(s) never help; the longest ({b.longest_runs} "
        f"of {b.runs} runs) is {b.best:.2f} of the work: the wall time is at best {b.best:.2f} of one node's "
        f"({1 / b.best:.1f}x faster), reached with {b.nodes_for_best} node(s); on the {nodes} node(s) here: "
        f"{b.on_nodes:.2f}"
    ]
    options: dict[tuple[int, float], tuple[tuple[str, ...], str]] = {}
    for key in BLOCK_KEYS:
        if key in campaign.block_by:
            by = tuple(k for k in campaign.block_by if k != key)
            cost = f"cells that differ in {key} are then compared on one machine"
        else:
            by = (*campaign.block_by, key)
            cost = f"cells that differ only in {key} are then measured on different machines"
        alt = bound(cells, by, seconds, pause, nodes)
        if alt.blocks != b.blocks:
            options.setdefault((alt.blocks, round(alt.best, 4)), (by, cost))
    if options:
        lines.append("  other block_by in [campaign] would change that:")
    for (n, best), (by, cost) in sorted(options.items(), key=lambda kv: kv[0][1])[:5]:
        alt = bound(cells, by, seconds, pause, nodes)
        lines.append(
            f"    block_by = {_toml(by)}: {n} block(s), at best {best:.2f} (with {alt.nodes_for_best} node(s)), "
            f"{alt.on_nodes:.2f} on {nodes}; {cost}"
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
