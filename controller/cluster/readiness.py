"""Readiness across the cluster: each node's own readiness report (a Ray task pinned to it), merged.

A cell is runnable when some node can run it; the merged :class:`Assessment` says so in the shape
the campaign's plan and session already read, and each :class:`NodeReport` says what its node
can and cannot run, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.campaigns.readiness import Assessment, Combo, _HostChecks
from controller.campaigns.spec import Campaign, Cell
from controller.cluster.connect import RESOURCE, Cluster, Node
from controller.errors import UserError
from controller.images import package_sources_hash

READINESS_TIMEOUT_S = 300.0


@dataclass
class NodeReport:
    node: Node
    label: str
    runner: str | None = None
    runner_note: str = ""
    problems: list[str] = field(default_factory=list)  # nothing runs on this node, for these reasons
    reasons: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (configuration, model) -> why not
    combos: list[dict[str, Any]] = field(default_factory=list)
    unbuilt: list[str] = field(default_factory=list)
    meters: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    gpus: list[str] = field(default_factory=list)  # the models of its GPUs, as NVML names them

    def why_not(self, cell: Cell) -> list[str]:
        return self.problems + self.reasons.get((cell.configuration, cell.model), [])

    def runnable(self, cell: Cell) -> bool:
        return not self.why_not(cell)


@dataclass
class ClusterAssessment:
    merged: Assessment
    nodes: list[NodeReport]

    def eligible(self, cells: list[Cell]) -> list[NodeReport]:
        """Nodes that can run every one of ``cells``."""
        return [r for r in self.nodes if all(r.runnable(c) for c in cells)]


def _pinned(ray: Any, node_id: str, **options: Any) -> dict[str, Any]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {
        "num_cpus": 0,
        "max_retries": 0,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
        **options,
    }


def _error_line(exc: BaseException) -> str:
    """The last line of a task's error: the exception raised on the node, without Ray's traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def start_check(cluster: Cluster, campaign: Campaign, runner_kind: str | None, node: Node) -> Any:
    """A node's readiness report, checked on the node itself: the Ray reference to it."""
    from controller.cluster.host import readiness

    ray = cluster.ray
    try:
        return ray.remote(readiness).options(**_pinned(ray, node.node_id)).remote(campaign, runner_kind)
    except Exception as exc:  # through Ray Client, the head unpickles the task: it needs joulebench too
        raise UserError(
            f"the Ray cluster at {cluster.address} cannot take joulebench's tasks ({_error_line(exc)}): install "
            "the same joulebench checkout on every node, the head included (tools/cluster/setup-node.sh)"
        ) from None


def report_from(node: Node, answer: dict[str, Any] | BaseException | None, timeout_s: float) -> NodeReport:
    """The node's report from its check's answer: the data, the error it raised, or None (no answer in time)."""
    report = NodeReport(node, node.label)
    if answer is None:
        report.problems.append(f"its readiness check did not answer within {timeout_s:g} s")
    elif isinstance(answer, BaseException):
        report.problems.append(
            f"its readiness check failed ({_error_line(answer)}); is joulebench installed there? "
            "(tools/cluster/setup-node.sh)"
        )
    else:
        _fill(report, answer, package_sources_hash())
    return report


def node_reports(
    cluster: Cluster, campaign: Campaign, runner_kind: str | None, hosts: list[Node], timeout_s: float
) -> list[NodeReport]:
    """Every host's readiness report, checked on the host itself, at once."""
    ray = cluster.ray
    refs = {start_check(cluster, campaign, runner_kind, h): h for h in hosts}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    reports = []
    for ref, host in refs.items():
        answer: dict[str, Any] | BaseException | None = None
        if ref not in ready:
            ray.cancel(ref, force=True)
        else:
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayError as exc:
                answer = exc
        reports.append(report_from(host, answer, timeout_s))
    return reports


def _fill(report: NodeReport, data: dict[str, Any], sources: str) -> None:
    report.runner, report.runner_note = data["runner"], data["runner_note"]
    report.problems += data["problems"]
    from controller.cluster.host import controller_sources_hash

    if data["sources"] != sources or data.get("controller_sources") != controller_sources_hash():
        which = "harness/suite" if data["sources"] != sources else "controller"
        report.problems.append(
            f"its joulebench has other {which} sources than this controller's: install the same "
            "checkout on every node (tools/cluster/setup-node.sh)"
        )
    report.combos = data["combos"]
    report.reasons = {(c["configuration"], c["model"]): c["reasons"] for c in data["combos"] if c["reasons"]}
    report.unbuilt, report.meters, report.baseline = data["unbuilt"], data["meters"], data["baseline"]
    report.gpus = list(data.get("gpus") or [])


def gpu_mix(reports: list[NodeReport]) -> str | None:
    """When the nodes do not all have the same GPU models: which node has which (None when they do).
    Blocks compare within a node, but a campaign's tables would then mix GPU kinds."""
    kinds: dict[str, list[str]] = {}
    for r in reports:
        if r.runner is not None:  # a node that answered its check
            kinds.setdefault(" + ".join(sorted(r.gpus)) or "no GPU", []).append(r.label)
    if len(kinds) < 2:
        return None
    shown = "; ".join(f"{kind} on {', '.join(names)}" for kind, names in sorted(kinds.items()))
    return (
        f"the nodes do not have the same GPU model ({shown}): blocks compare within a node, but the campaign's "
        "tables then mix GPU kinds (report each kind apart, or give the campaign one kind of node)"
    )


def unfit_reason(report: NodeReport, cells: list[Cell]) -> str | None:
    """Why a node can run none of ``cells`` (its own problems, else the first distinct reasons), or None."""
    if report.problems:
        return "; ".join(report.problems)
    if any(report.runnable(c) for c in cells):
        return None
    reasons = list(dict.fromkeys(w for c in cells for w in report.why_not(c)))
    return "; ".join(reasons[:2]) + (f" (and {len(reasons) - 2} more)" if len(reasons) > 2 else "")


def merge(campaign: Campaign, reports: list[NodeReport]) -> Assessment:
    """One assessment of the whole cluster: a <configuration, model> is runnable when a node can run
    it; when none can, its reasons are the nodes' (named by node where they differ)."""
    first: dict[tuple[str, str], Cell] = {}
    for cell in campaign.matrix():
        first.setdefault((cell.configuration, cell.model), cell)
    seen = {(c["configuration"], c["model"]): c for r in reversed(reports) for c in r.combos}
    combos = []
    for conf in campaign.configurations:
        for model in conf.models or campaign.models:
            why = {r.label: r.why_not(first[(conf.name, model)]) for r in reports}
            known = seen.get((conf.name, model), {})
            reasons = [] if any(not w for w in why.values()) else _joined(why)
            engine, images = known.get("engine", conf.engine), known.get("images", [conf.image])
            combos.append(Combo(conf, model, engine, known.get("conversion"), images, reasons))
    runners = Counter(r.runner for r in reports if r.runner)
    runner = runners.most_common(1)[0][0] if runners else "local"
    note = "per node: " + (", ".join(f"{k} on {n}" for k, n in runners.most_common()) or "none answered")
    return Assessment(campaign, runner, note, combos, None, [], _HostChecks())


def _joined(why: dict[str, list[str]]) -> list[str]:
    distinct = {tuple(w) for w in why.values()}
    if len(distinct) == 1:
        return list(next(iter(distinct)))
    return [f"on {name}: {'; '.join(w)}" for name, w in why.items()]


def assess_cluster(
    cluster: Cluster,
    campaign: Campaign,
    runner_kind: str | None,
    hosts: list[Node],
    timeout_s: float = READINESS_TIMEOUT_S,
) -> ClusterAssessment:
    reports = node_reports(cluster, campaign, runner_kind, hosts, timeout_s)
    return ClusterAssessment(merge(campaign, reports), reports)


def start_build(cluster: Cluster, node: Node, images: list[str]) -> Any:
    """The node builds ``images`` while holding its joulebench_host (so nothing is measured there meanwhile)."""
    from controller.cluster.host import build_images

    ray = cluster.ray
    return ray.remote(build_images).options(**_pinned(ray, node.node_id, resources={RESOURCE: 1})).remote(images)


def build_lines(name: str, answer: dict[str, str | None] | BaseException) -> list[str]:
    if isinstance(answer, BaseException):
        return [f"{name}: image builds failed ({_error_line(answer)})"]
    return [
        f"{name}: {'built ' + image if why is None else f'could not build {image}: {why}'}"
        for image, why in answer.items()
    ]


def build_missing(
    cluster: Cluster,
    campaign: Campaign,
    runner_kind: str | None,
    assessment: ClusterAssessment,
    say: Callable[[str], None],
) -> ClusterAssessment:
    """Nodes build the images they lack (each holding its joulebench_host, so nothing is measured
    meanwhile), then every node is checked again."""
    ray = cluster.ray
    todo = {r.label: r for r in assessment.nodes if r.unbuilt}
    if not todo:
        return assessment
    refs = {}
    for name, r in todo.items():
        say(f"{name}: building {', '.join(r.unbuilt)} (minutes per image) ...")
        refs[start_build(cluster, r.node, r.unbuilt)] = name
    for ref, name in refs.items():
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as exc:
            answer = exc
        for line in build_lines(name, answer):
            say(line)
    return assess_cluster(cluster, campaign, runner_kind, [r.node for r in assessment.nodes])
