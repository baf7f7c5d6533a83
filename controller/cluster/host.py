"""What runs on a node: its readiness report, image builds, and the :class:`Host` actor.

A Host actor asks for the node's one ``joulebench_host``, so while it lives nothing else is
measured there. It holds the node for one block: before the block's first run it makes sure a run
of a controller that died is over and applies the idle-baseline policy (once per campaign session
and node); between runs it keeps the campaign's cool-down, counted from the node's last run, also
across blocks. Each run goes through the one pipeline into a temporary folder; the record (and its
trace) goes back to the controller, which alone writes into the campaign's folder.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError
from controller.hostinfo import pid_alive
from controller.progress import Quiet
from controller.record import load_record, write_atomic


def identity() -> dict[str, str]:
    """Where this process runs, as records carry it (``cluster``)."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname()}


class Notes(Quiet):
    """The pipeline's notes on a node, sent back with the record; phases stay on the node."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.lines:
            self.lines.append(text)


# --- readiness ------------------------------------------------------------------------------------


def readiness(campaign: Campaign, runner_kind: str | None) -> dict[str, Any]:
    """What this node can run of the campaign, and why not the rest: the campaign's own readiness
    checks, plus its meters, its idle baseline and the joulebench sources it has."""
    from controller.campaigns.readiness import assess
    from controller.images import package_sources_hash
    from controller.meters import check_system, load_baseline

    assessment = assess(campaign, runner_kind)
    baseline = load_baseline(max_age_s=campaign.idle.max_age_days * 86400)
    problems = list(assessment.problems)
    broken = _unimportable(assessment)
    if campaign.idle.policy == "require" and not baseline.usable:
        problems.append(
            f"the idle policy is 'require' and this node's idle baseline is {baseline.status}: measure one "
            f"there (python -m controller idle --duration {campaign.idle.duration_s:g})"
        )
    return {
        "node": identity(),
        "runner": assessment.runner,
        "runner_note": assessment.runner_note,
        "problems": problems,
        "combos": [
            {
                "configuration": c.configuration.name,
                "model": c.model,
                "engine": c.engine,
                "conversion": c.conversion,
                "images": c.images,
                "reasons": c.reasons + _import_reasons(c, broken),
            }
            for c in assessment.combos
        ],
        "unbuilt": _unbuilt(assessment),
        "meters": [c.to_dict() for c in check_system()],
        "baseline": {"status": baseline.status, "usable": baseline.usable, "reason": baseline.reason},
        "sources": package_sources_hash(),
        "controller_sources": controller_sources_hash(),
        "gpus": _gpu_names(),
    }


@functools.cache
def controller_sources_hash() -> str:
    """Hash of this joulebench's controller code: a node's Host actor runs the node's own copy of it, so
    a node with another checkout would run other code than the controller expects (and fail every run)."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


IMPORT_TIMEOUT_S = 180.0
_IMPORTS = """
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
print(json.dumps(failed))
"""


def _engine_package(combo: Any) -> str | None:
    from controller.local_needs import ENGINE_PACKAGES

    return ENGINE_PACKAGES.get(combo.engine, combo.engine) if combo.engine else None


def _unimportable(assessment: Any) -> dict[str, str]:
    """Engine packages the local runner's harness would import that do not import here: package -> why.

    The campaign's readiness only looks packages up (a plan must stay quick); a node that joins a
    cluster is checked once, so it imports them, in a child Python as the harness would, and a
    broken or shadowed install is found before the node gets a block, not by failing its runs."""
    import subprocess
    import sys

    if assessment.runner != "local":
        return {}
    names = sorted({p for c in assessment.combos if c.runnable and (p := _engine_package(c))})
    if not names:
        return {}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _IMPORTS, *names],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        return {str(k): str(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    except subprocess.TimeoutExpired:
        return dict.fromkeys(names, f"importing did not finish within {IMPORT_TIMEOUT_S:g} s")
    except (ValueError, IndexError, OSError) as exc:
        return dict.fromkeys(names, f"the import check could not run ({type(exc).__name__})")


def _import_reasons(combo: Any, broken: dict[str, str]) -> list[str]:
    package = _engine_package(combo) if combo.runnable else None
    if package is None or package not in broken:
        return []
    return [
        f"engine {combo.engine}: its package {package} is installed but does not import on this node "
        f"({broken[package]}); repair this node's Python (tools/cluster/setup-node.sh)"
    ]


def _gpu_names() -> list[str]:
    """The models of this node's GPUs as NVML names them (none without NVML)."""
    from controller.meters.nvml import NvmlMeter

    meter = NvmlMeter()
    available = meter.open().available
    try:
        return [str(g.name) for g in meter.gpus] if available else []
    finally:
        meter.close()


def _unbuilt(assessment: Any) -> list[str]:
    """Images the campaign needs that this node's Docker engine does not have."""
    if assessment.runner != "docker" or assessment.docker_client is None:
        return []
    from controller.images import image_status, load_manifests

    manifests = load_manifests()
    return [
        image
        for image in assessment.images
        if image in manifests and not image_status(assessment.docker_client, manifests[image])["built"]
    ]


def build_images(names: list[str]) -> dict[str, str | None]:
    """Build the named images on this node with its own pip settings: name -> None, or why it failed."""
    import docker.errors

    from controller.images import build_image, get_manifest, host_pip_config
    from controller.runners.docker_runner import connect

    client = connect()
    out: dict[str, str | None] = {}
    for name in names:
        try:
            build_image(client, get_manifest(name), pip_config=host_pip_config(), say=lambda _: None)
            out[name] = None
        except (UserError, docker.errors.DockerException) as exc:
            out[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return out


def request_nodes(count: int, resource: str) -> None:
    """Ask Ray's autoscaler (where the cluster has one) for room for ``count`` measuring nodes at
    once; 0 withdraws the request. Called by a driver on the cluster, or run as a task on it (Ray Client)."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[{resource: 1}] * count)


# --- what a node remembers between blocks ---------------------------------------------------------


class NodeState:
    """A small file per Ray node in its temporary folder: when its last run ended
    (``time.monotonic_ns``, one clock per machine), its idle GPU temperature, the last session
    whose idle policy it applied, and the process running a measurement now. Only the actor that
    holds the node's joulebench_host writes it."""

    def __init__(self, node_id: str) -> None:
        self.path = Path(tempfile.gettempdir()) / "joulebench-cluster" / f"{node_id}.json"

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, **changes: Any) -> None:
        write_atomic(self.path, self.load() | changes)


class Host:
    """Holds one node for one block (as a Ray actor asking for its joulebench_host)."""

    def __init__(self, campaign: Campaign, session: str, runner_kind: str | None, cache: str | None) -> None:
        from controller.campaigns.readiness import choose_runner

        self.campaign = campaign
        self.session = session
        self.node = identity()
        self.state = NodeState(self.node["node_id"])
        self.runner = choose_runner(runner_kind or campaign.runner)[0]
        self.cache = Path(cache) if cache else None

    def hello(self) -> dict[str, Any]:
        """Before the block's first run: the node is free, its idle baseline is as the policy asks."""
        from controller.campaigns.session import apply_idle_policy

        notes: list[str] = []
        self._wait_for_predecessor(notes)
        state = self.state.load()
        if state.get("idle_session") != self.session:
            apply_idle_policy(self.campaign, notes.append)
            self.state.update(idle_session=self.session)
        if self.campaign.cooldown.mode == "gpu-temperature" and "idle_c" not in state:
            from controller.campaigns.cooldown import gpu_temperatures

            self.state.update(idle_c=gpu_temperatures()[0])  # before the node's first run: idle
        return {"node": self.node, "notes": notes}

    def _wait_for_predecessor(self, notes: list[str]) -> None:
        """A measurement of a controller that was killed ends (Ray stops its actor) before this block starts."""
        running = self.state.load().get("running") or {}
        pid = running.get("pid")
        if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid):
            return
        notes.append(f"waiting for the run of an earlier controller (process {pid}) to end on this node")
        deadline = time.monotonic() + self.campaign.timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)

    def cool_down(self) -> dict[str, Any]:
        """The campaign's pause before a run, counted from the end of this node's last run."""
        from controller.campaigns.cooldown import CoolDown

        policy = self.campaign.cooldown
        state = self.state.load()
        last = state.get("last_end_ns")
        if policy.mode == "none" or not isinstance(last, int):
            return {"waited_s": 0.0, "notes": []}
        notes: list[str] = []
        if policy.mode == "fixed":
            wait = policy.seconds - (time.monotonic_ns() - last) / 1e9
            if wait > 0:
                time.sleep(wait)
            return {"waited_s": max(0.0, wait), "notes": notes}
        cool = CoolDown(policy, notes.append)
        if state.get("idle_c") is not None:
            cool.idle_c = state["idle_c"]
        return cool() | {"notes": notes}

    def run(self, cell: Cell, record_cell: dict[str, Any], placement: dict[str, Any]) -> dict[str, Any]:
        """One run through the pipeline: {record, trace (bytes or None), notes}. ``placement`` (its block,
        the nodes the block left) goes into the record's ``cluster`` beside this node."""
        from controller import pipeline
        from controller.campaigns.session import run_settings, setup_failed

        notes = Notes()
        with tempfile.TemporaryDirectory(prefix="joulebench-run-") as tmp:
            where, meters = run_settings(self.campaign, self.runner, Path(tmp), self.cache)
            self.state.update(running={"pid": os.getpid(), "cell": cell.id})
            try:
                record, path = pipeline.run(cell.request(where, meters, record_cell), notes)
                data = record.to_dict()
            except UserError as exc:
                path = setup_failed(cell, where, record_cell, str(exc))
                data = load_record(path)
            finally:
                self.state.update(running=None, last_end_ns=time.monotonic_ns())
            trace = (path.parent / data["trace_path"]).read_bytes() if data.get("trace_path") else None
        return {"record": data | {"cluster": self.node | placement}, "trace": trace, "notes": notes.lines}
