"""Campaigns on a real Ray cluster of this machine: a head and three nodes offering one joulebench_host
each (``ray.cluster_utils.Cluster``, started once per session), driven through the real CLI.

Runs are real (local runner, tiny models, ONNX Runtime); a node is killed for real. Timestamps
come from the records alone: the measure-window events are ``time.monotonic_ns()``, one clock on
one machine, so windows of runs on the same node can be compared.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from controller.campaigns import load_campaign_file
from controller.cluster.blocks import blocks, makespan
from controller.errors import UserError

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "suite" / "campaigns" / "ci-smoke.toml"
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "resources": {"joulebench_host": 1}}
HEAD = {"num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 * 2**20}
NEVER_BUILT = "joulebench-cluster-test-never-built/"  # the nodes' image tags: none exists


class LocalCluster:
    def __init__(self) -> None:
        # The nodes' processes inherit this environment: their Docker images are never built.
        saved = os.environ.get("JOULEBENCH_TAG_PREFIX")
        os.environ["JOULEBENCH_TAG_PREFIX"] = NEVER_BUILT
        try:
            self.cluster = ray_cluster_utils.Cluster(initialize_head=True, head_node_args=HEAD)
        finally:
            if saved is None:
                del os.environ["JOULEBENCH_TAG_PREFIX"]
            else:
                os.environ["JOULEBENCH_TAG_PREFIX"] = saved
        self.hosts: list[Any] = []

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_hosts(self, n: int) -> None:
        saved = os.environ.get("JOULEBENCH_TAG_PREFIX")
        os.environ["JOULEBENCH_TAG_PREFIX"] = NEVER_BUILT
        try:
            self.hosts += [self.cluster.add_node(wait=False, **NODE) for _ in range(n)]
            self.cluster.wait_for_nodes()
        finally:
            if saved is None:
                del os.environ["JOULEBENCH_TAG_PREFIX"]
            else:
                os.environ["JOULEBENCH_TAG_PREFIX"] = saved

    def kill(self, id_prefix: str) -> str:
        """Kill the node whose id starts so (raylet, object store, workers), as a lost VM would go."""
        node = next(n for n in self.hosts if n.node_id.startswith(id_prefix))
        self.cluster.remove_node(node, allow_graceful=False)
        self.hosts.remove(node)
        return str(node.node_id)


@pytest.fixture(scope="session")
def ray_head():
    cluster = LocalCluster()
    yield cluster
    cluster.cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(ray_head: LocalCluster) -> LocalCluster:
    if not ray_head.hosts:
        ray_head.add_hosts(3)
    return ray_head


def campaign_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "campaign", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def write_campaign(
    path: Path,
    name: str,
    extra: str = "",
    models: str = '["resnet50", "mobilenetv2"]',
    batch_sizes: str = "[1, 2]",
    repetitions: int = 1,
) -> Path:
    """Two ONNX Runtime configurations of the same export (one export per model, cached)."""
    path.write_text(
        f"""
[campaign]
name = "{name}"
repetitions = {repetitions}
model_size = "tiny"
warmup = 1
runner = "local"
order = "interleaved"
seed = 11
timeout_s = 300
{extra}

[cooldown]
mode = "fixed"
seconds = 1

[matrix]
models = {models}
batch_sizes = {batch_sizes}

[[matrix.configurations]]
name = "ort"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"

[[matrix.configurations]]
name = "ort-1thread"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"
options = {{ intra_op_threads = 1 }}
"""
    )
    return path


def measure_windows(recs: list[dict[str, Any]]) -> dict[str, list[tuple[int, int, str]]]:
    """Node id -> (start, end, cell) of every measured window, from the records' own events."""
    out: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for r in recs:
        edges = {e["edge"]: e["t_ns"] for e in r.get("events", []) if e["phase"] == "measure"}
        if "start" in edges and "end" in edges:
            out[r["cluster"]["node_id"]].append((edges["start"], edges["end"], r["cell"]["id"]))
    return out


def assert_one_window_at_a_time(recs: list[dict[str, Any]]) -> None:
    for node, windows in measure_windows(recs).items():
        windows.sort()
        for (_, end, a), (start, _, b) in zip(windows, windows[1:], strict=False):
            assert start >= end, f"on node {node[:8]}, {b} was measured while {a} was"


# --- bad input, before anything runs ---------------------------------------------------------


def test_a_cluster_without_a_joulebench_host_is_refused_at_plan_time(ray_head, tmp_path):
    if ray_head.hosts:
        pytest.skip("the session's nodes are up already (this test runs first in file order)")
    for action in ("plan", "run"):
        proc = campaign_cli(action, str(SMOKE), "--results", str(tmp_path), "--cluster", ray_head.address)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "none offers the joulebench_host resource" in proc.stderr and "ray start" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not any(tmp_path.iterdir())


def test_an_unreachable_or_malformed_address_is_refused_in_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        proc = campaign_cli("run", str(SMOKE), "--results", str(tmp_path), "--cluster", address, timeout=60)
        assert proc.returncode == 2 and "no Ray cluster answers at" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = campaign_cli("plan", str(SMOKE), "--cluster", "http://head:6379/x", timeout=60)
    assert proc.returncode == 2 and "is not a Ray address" in proc.stderr
    assert not any(tmp_path.iterdir())


class FlakyClientRay:
    """Stands in for ``ray`` at ray.init only: Ray Client's proxy answers "Initialization failure
    from server" when the server process it starts for a driver dies (seen in CI) the first
    ``failures`` times, then connects."""

    def __init__(self, failures: int, message: str = "Initialization failure from server:\n") -> None:
        self.failures, self.message, self.calls, self.shutdowns = failures, message, 0, 0

    def init(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(self.message)

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_ray_client_server_that_dies_at_start_is_tried_again_and_then_named(capsys):
    from controller.cluster.connect import init

    ray = FlakyClientRay(failures=1)
    init(ray, "ray://head:10001", "ray://head:10001", sleep=lambda s: None)
    assert ray.calls == 2 and ray.shutdowns == 1
    assert "failed to start for this driver" in capsys.readouterr().err

    ray = FlakyClientRay(failures=5)
    with pytest.raises(UserError, match=r"could not connect .* \(tried 3 times\): Initialization failure"):
        init(ray, "ray://head:10001", "ray://head:10001", sleep=lambda s: None)
    assert ray.calls == 3

    # Any other refusal, or a driver on the cluster itself (no Ray Client), is not retried.
    not_retried = (("ray://head:10001", "version mismatch"), ("head:6379", "Initialization failure from server"))
    for target, message in not_retried:
        ray = FlakyClientRay(failures=1, message=message)
        with pytest.raises(UserError, match=message):
            init(ray, target, target, sleep=lambda s: None)
        assert ray.calls == 1


def test_block_by_is_checked_and_blocks_keep_the_campaign_order(tmp_path):
    file = write_campaign(tmp_path / "c.toml", "blocks", extra='block_by = ["model", "colour"]', repetitions=2)
    with pytest.raises(UserError, match="block_by.*colour.*must be a list of cell fields"):
        load_campaign_file(file)
    campaign = load_campaign_file(write_campaign(tmp_path / "c.toml", "blocks", repetitions=2))
    assert campaign.block_by == ("model", "batch_size") and campaign.retries == 1
    order = campaign.ordered(11)
    groups = blocks(order, campaign.block_by)
    assert [b.label for b in groups] and len(groups) == 4 and all(len(b.cells) == 4 for b in groups)
    for b in groups:
        assert len({(c.model, c.batch_size) for c in b.cells}) == 1
        assert [order.index(c) for c in b.cells] == sorted(order.index(c) for c in b.cells)
    assert len(blocks(order, ())) == 1
    assert makespan([5, 4, 3, 3], 2) == 8 and makespan([5, 4, 3, 3], 1) == 15


# --- on three nodes ---------------------------------------------------------------------------


def test_plan_shows_per_node_what_it_can_run_and_why_not(ray_cluster, tmp_path):
    proc = campaign_cli("plan", str(SMOKE), "--results", str(tmp_path), "--cluster", ray_cluster.address)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "3 nodes offer joulebench_host" in out
    assert out.count("can run 8 of 8 runs") == 3 and "every run is runnable on any node" in out
    assert "blocks: 2 (cells alike in model, batch_size)" in out

    docker = campaign_cli(
        "plan", str(SMOKE), "--results", str(tmp_path), "--cluster", ray_cluster.address, "--runner", "docker"
    )
    assert docker.returncode == 0, docker.stderr
    nodes = re.split(r"\n  (?=\S)", docker.stdout.split("nodes offer joulebench_host", 1)[1])[1:]
    assert len(nodes) == 3
    for section in nodes:  # without an engine, "no Docker"; with one, this test's image tags are not built
        assert "can run 0 of 8 runs" in section
        assert "is not built" in section or "Docker" in section, section
    assert "not runnable on any node" in docker.stdout
    assert not any(tmp_path.iterdir())


def test_killed_controller_resumes_every_cell_once_blocks_on_one_node_one_window_at_a_time(
    ray_cluster, tmp_path, artifact_cache
):
    file = write_campaign(tmp_path / "c.toml", "on-cluster")
    results = tmp_path / "results"
    args = ["run", str(file), "--results", str(results), "--cache", str(artifact_cache)]
    args += ["--cluster", ray_cluster.address]
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "campaign", *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if sum(x.lstrip().startswith("ok:") for x in seen) == 3:  # about half the campaign
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    progress = "".join(seen)
    assert "3 nodes offer joulebench_host" in progress and "4 blocks" in progress
    assert re.search(r"nodes [1-3] busy", progress), progress
    folder = results / "on-cluster"
    before = records(folder)
    assert 3 <= len(before) < 8 and all(r["status"] == "ok" for r in before), progress

    resumed = campaign_cli(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(before)} already ok" in resumed.stderr and "8 of 8 runs ok" in resumed.stdout

    after = records(folder)
    expected = {c.id for c in load_campaign_file(file).matrix()}
    assert sorted(r["cell"]["id"] for r in after) == sorted(expected)  # each cell exactly once
    assert {r["run_id"] for r in before} <= {r["run_id"] for r in after}
    live = {n.node_id for n in ray_cluster.hosts}
    assert all(r["cluster"]["node_id"] in live and r["cluster"]["hostname"] for r in after)
    by_block = defaultdict(set)
    for r in after:
        by_block[(r["model"], r["cell"]["batch_size"])].add(r["cluster"]["node_id"])
    assert len(by_block) == 4 and all(len(nodes) == 1 for nodes in by_block.values()), by_block  # 2 cells each
    assert len(set().union(*by_block.values())) >= 2  # the blocks were spread over nodes
    assert_one_window_at_a_time(after)


def test_a_node_lost_mid_run_is_recorded_failed_and_its_run_retried_on_a_live_node(
    ray_cluster, tmp_path, artifact_cache
):
    # One block of two long runs, so that the node can be killed while one is measured.
    extra = "duration_s = 12\nblock_by = []"
    file = write_campaign(tmp_path / "c.toml", "node-lost", extra, models='["mobilenetv2"]', batch_sizes="[1]")
    results = tmp_path / "results"
    args = ["run", str(file), "--results", str(results), "--cache", str(artifact_cache)]
    args += ["--cluster", ray_cluster.address]
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "campaign", *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        started = re.search(r"\] \S+#([0-9a-f]{6}): .*: start$", line.rstrip())
        if started:
            break
    assert started, "".join(seen)
    time.sleep(4)  # into the run: the model loads, then 12 s are measured
    victim = ray_cluster.kill(started.group(1))
    out, err = proc.communicate(timeout=600)
    stderr = "".join(seen) + err
    assert proc.returncode == 0, out + stderr
    assert "node lost" in stderr and "runs again on a live node" in stderr
    assert "2 of 2 runs ok" in out

    recs = records(results / "node-lost")
    lost = [r for r in recs if r["status"] == "failed"]
    assert len(lost) == 1, [r.get("failure") for r in recs]
    assert lost[0]["failure"]["code"] == "node-lost" and "node lost" in lost[0]["failure"]["reason"]
    assert lost[0]["cluster"]["node_id"] == victim
    ok = [r for r in recs if r["status"] == "ok"]
    assert sorted(r["cell"]["id"] for r in ok) == sorted(c.id for c in load_campaign_file(file).matrix())
    assert lost[0]["cell"]["id"] in {r["cell"]["id"] for r in ok}  # retried ...
    assert len({r["cluster"]["node_id"] for r in ok}) == 1 and ok[0]["cluster"]["node_id"] != victim  # ... elsewhere
    assert_one_window_at_a_time(recs)
