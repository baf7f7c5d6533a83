"""Campaigns on real Ray clusters of this machine, driven through the real CLI: a head and three
nodes offering one joulebench_host each (started once per session), and clusters whose nodes the
tests add mid-campaign (one without a working runtime) and kill, or whose head they kill
(``controller.cluster.local.LocalCluster``: own ports and temporary folder, stopped by the test).

Runs are real (local runner, tiny models, ONNX Runtime); nodes and heads are killed for real. Timestamps
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

pytest.importorskip("ray.cluster_utils")

from controller.cluster.local import LocalCluster  # noqa: E402 - after the skip when Ray is missing

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "suite" / "campaigns" / "ci-smoke.toml"
# The nodes' image tags: none exists, so that the docker plan below finds nothing built.
NEVER_BUILT = {"JOULEBENCH_TAG_PREFIX": "joulebench-cluster-test-never-built/"}


def kill(cluster: LocalCluster, id_prefix: str) -> str:
    """Kill the node whose id starts so (raylet, object store, workers), as a lost VM would go."""
    return cluster.kill(next(n for n in cluster.nodes if n.node_id.startswith(id_prefix)))


@pytest.fixture(scope="session")
def ray_head():
    cluster = LocalCluster()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(ray_head: LocalCluster) -> LocalCluster:
    if not ray_head.nodes:
        ray_head.add_nodes(3, env=NEVER_BUILT)
    return ray_head


@pytest.fixture(scope="module")
def spare_head():
    cluster = LocalCluster()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def own_cluster(spare_head: LocalCluster):
    """A cluster of the test's own: a head whose nodes the test adds and kills (they go after it)."""
    yield spare_head
    for node in list(spare_head.nodes):
        spare_head.kill(node)


@pytest.fixture
def doomed_cluster():
    """A cluster whose head the test kills."""
    cluster = LocalCluster()
    yield cluster
    cluster.shutdown()


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
    if ray_head.nodes:
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
    proc = campaign_cli("run", str(SMOKE), "--results", str(tmp_path), "--node-wait", "60", timeout=60)
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "error: --node-wait 60 needs --cluster and a number of seconds >= 0"
    )
    assert not any(tmp_path.iterdir())


class FlakyClientRay:
    """Stands in for ``ray`` at ray.init only: Ray Client's proxy answers "Initialization failure
    from server" when the server process it starts for a driver dies (seen in CI) the first
    ``failures`` times, then connects."""

    def __init__(
        self, failures: int, message: str = "Initialization failure from server:\n", on_init: Any = None
    ) -> None:
        self.failures, self.message, self.calls, self.shutdowns = failures, message, 0, 0
        self.on_init = on_init

    def init(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.on_init is not None:
            self.on_init()
        if self.calls <= self.failures:
            raise ConnectionError(self.message)

    def shutdown(self) -> None:
        self.shutdowns += 1


class Clock:
    """Time that passes only when the code under test sleeps, or Ray takes its time to answer."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_ray_client_server_that_dies_at_start_is_tried_again_with_backoff_and_then_named(capsys):
    from controller.cluster.connect import CLIENT_START_BUDGET_S, init

    clock = Clock()
    ray = FlakyClientRay(failures=2)
    init(ray, "ray://head:10001", "ray://head:10001", sleep=clock.sleep, clock=clock)
    assert ray.calls == 3 and ray.shutdowns == 2
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 2 and all("failed to start for this driver" in line for line in said)
    assert "trying again in 2 s" in said[0] and "trying again in 4 s" in said[1]  # a growing pause, said

    # Under load each try takes its time: it goes on for minutes, not three tries, then names them.
    clock = Clock()
    ray = FlakyClientRay(failures=1000, on_init=lambda: clock.sleep(20))
    with pytest.raises(UserError, match=r"could not connect .* \(tried \d+ times over [45]m\d\ds\): Initialization"):
        init(ray, "ray://head:10001", "ray://head:10001", sleep=clock.sleep, clock=clock)
    assert ray.calls > 3 and clock.now <= CLIENT_START_BUDGET_S + 20

    # Any other refusal, or a driver on the cluster itself (no Ray Client), is not retried.
    not_retried = (("ray://head:10001", "version mismatch"), ("head:6379", "Initialization failure from server"))
    for target, message in not_retried:
        ray = FlakyClientRay(failures=1, message=message)
        with pytest.raises(UserError, match=message):
            init(ray, target, target, sleep=clock.sleep, clock=clock)
        assert ray.calls == 1


def test_a_cluster_that_wants_a_token_is_named_as_such_and_a_refused_token_is_not_retried(capsys, monkeypatch):
    from controller.cluster.connect import init

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    clock = Clock()
    refused = FlakyClientRay(failures=1, message="RPC error: InvalidAuthToken: Authentication token is missing")
    with pytest.raises(UserError, match=r"InvalidAuthToken.*set RAY_AUTH_MODE=token and give this machine"):
        init(refused, "head:6379", "head:6379", sleep=clock.sleep, clock=clock)
    assert refused.calls == 1
    # Through Ray Client a missing token looks like a server that does not answer: the first retry says
    # what it may be, and the tries go on as for any slow start.
    timing_out = FlakyClientRay(failures=2, message="ray client connection timeout")
    init(timing_out, "ray://head:10001", "ray://head:10001", sleep=clock.sleep, clock=clock)
    said = capsys.readouterr().err.splitlines()
    assert "token authentication" in said[0] and "token authentication" not in said[1]
    # Where the driver already sends a token, a timeout is only a timeout.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    slow = FlakyClientRay(failures=1, message="ray client connection timeout")
    init(slow, "ray://h:1", "ray://h:1", sleep=clock.sleep, clock=clock)
    assert "token" not in capsys.readouterr().err


def test_a_head_that_stops_answering_is_said_once_in_one_line_and_a_blip_is_not():
    from controller.cluster.connect import HeadWatch

    answers = [True, False, True] + [False] * 1000  # a blip, then gone
    said: list[str] = []
    watch = HeadWatch(
        "ray://head:10001", "head", 10001, lost_after_s=0.05, interval_s=0.005,
        probe=lambda host, port: answers.pop(0), on_lost=said.append,
    )  # fmt: skip
    watch.resume_hint = "run the same command to resume"
    watch.start()
    watch._thread.join(timeout=30)
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("error: the Ray cluster at ray://head:10001 is gone (its head has not answered")
    assert said[0].endswith("run the same command to resume")

    watch = HeadWatch("h:1", "h", 1, lost_after_s=0.05, interval_s=0.005, probe=lambda h, p: True, on_lost=said.append)
    watch.start()
    watch.stop()
    watch._thread.join(timeout=30)
    assert len(said) == 1


def test_nodes_are_named_unambiguously_and_a_lost_node_is_not_counted_idle():
    from controller.cluster.connect import Node, labels
    from controller.cluster.progress import CHECKING, IDLE, LOST, UNREACHABLE, ClusterProgress

    a, b = Node("aaaaaa11", "10.0.0.1", "gpu-vm"), Node("bbbbbb22", "10.0.0.1", "gpu-vm")
    assert labels([a]) == {"aaaaaa11": "gpu-vm#aaaaaa"}  # the node id even when the hostname is unique
    assert set(labels([a, b]).values()) == {"gpu-vm#aaaaaa", "gpu-vm#bbbbbb"}
    import io

    progress = ClusterProgress(4, 1.0, ["n1", "n2", "n3", "n4"], stream=io.StringIO(), live=False)
    progress.node("n1", "resnet50 ort b1 r1")
    progress.node("n2", UNREACHABLE)  # its block stopped answering: not idle until Ray says more
    progress.node("n3", LOST)
    progress.node("n4", IDLE)
    progress.node("n5", CHECKING)  # joined, being checked
    assert progress.nodes_text() == "nodes 1 busy 1 idle 1 checking 1 unreachable 1 lost"


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


def test_a_cell_lost_with_its_node_is_not_done_yet_and_retry_failed_reruns_genuine_failures_only(tmp_path):
    from controller.campaigns.history import cell_state
    from controller.campaigns.readiness import assess
    from controller.campaigns.session import todo

    campaign = load_campaign_file(write_campaign(tmp_path / "c.toml", "lost", models='["mobilenetv2"]'))
    lost_cell, fault_cell, failed_cell, ok_cell = [c.id for c in campaign.matrix()]
    node = {"node_id": "ab" * 28, "node_ip": "10.0.0.1", "hostname": "vm"}
    lost = {
        "status": "failed",
        "failure": {"code": "node-lost", "reason": "node lost: vm#ababab left"},
        "cluster": node,
    }
    fault = {"status": "failed", "failure": {"code": "harness-error", "reason": "No module named onnxruntime"}}
    fault["cluster"] = node | {"node_fault": "vm#ababab could not run it any more when checked again"}
    failed = {"status": "failed", "failure": {"code": "harness-error", "reason": "ValueError"}, "cluster": node}
    history = {
        lost_cell: [lost],
        fault_cell: [fault],
        failed_cell: [lost, failed],
        ok_cell: [lost, {"status": "ok", "cluster": node}],
    }
    assert [cell_state(history[c]) for c in (lost_cell, fault_cell, failed_cell, ok_cell)] == [
        "interrupted", "interrupted", "failed", "ok"
    ]  # fmt: skip
    assessment = assess(campaign, "local")
    plain = todo(campaign, assessment, history, 11, retry=False)
    assert {c.id for c in plain.run} == {lost_cell, fault_cell}  # a plain rerun: the lost ones, not the failure
    assert [c.id for c in plain.kept_failed] == [failed_cell]
    again = todo(campaign, assessment, history, 11, retry=True)
    assert {c.id for c in again.run} == {lost_cell, fault_cell, failed_cell}


def test_plan_says_the_best_speed_up_the_blocks_allow_and_what_block_by_would_change():
    from controller.campaigns.readiness import assess
    from controller.cluster.plan import bound, cell_seconds, speedup_lines

    campaign = load_campaign_file(REPO / "suite" / "campaigns" / "green-ai-runtimes.toml")
    assessment = assess(campaign, "local")
    cells = campaign.ordered(1)
    lines = speedup_lines(cells, assessment, {}, 3)
    assert "6 block(s), so more than 6 node(s) never help; the longest (45 of 175 runs)" in lines[0]
    assert int(re.search(r"reached with (\d+) node", lines[0]).group(1)) <= 6
    best = float(re.search(r"at best (\d\.\d\d) of one node's", lines[0]).group(1))
    assert 0.2 < best < 0.3  # one block of 45 of 175 runs caps it near a quarter, however many nodes
    alternatives = {re.search(r"block_by = (\[.*?\])", line).group(1): line for line in lines[2:]}
    assert '["model", "batch_size", "repetition"]' in alternatives
    assert (
        "differ only in repetition are then measured on different machines"
        in alternatives['["model", "batch_size", "repetition"]']
    )

    # Equal blocks: 12 of them allow 1/12, reached with 12 nodes; on 3, a third.
    seconds = dict.fromkeys((c.id for c in cells), 1.0)
    by = ("model", "configuration")
    pairs = [b.key for b in blocks([c for c in cells if c.repetition <= 2 and c.batch_size == 1], by)][:12]
    twelve = [c for c in cells if c.repetition <= 2 and c.batch_size == 1 and (c.model, c.configuration) in pairs]
    assert len(twelve) == 24
    b = bound(twelve, by, seconds, 0.0, 3)
    assert (b.blocks, round(b.best, 3), b.nodes_for_best, round(b.on_nodes, 3)) == (12, round(1 / 12, 3), 12, 0.333)
    assert bound(twelve, (), seconds, 0.0, 3).best == 1.0
    assert set(cell_seconds(twelve, assessment, {})) == {c.id for c in twelve}


def test_nodes_with_other_gpu_models_are_named():
    from controller.cluster.connect import Node
    from controller.cluster.readiness import NodeReport, gpu_mix

    def report(i: int, gpus: list[str]) -> NodeReport:
        node = Node(f"{i}" * 8, f"10.0.0.{i}", f"vm{i}")
        return NodeReport(node, node.label, runner="docker", gpus=gpus)

    same = [report(1, ["NVIDIA A10G"]), report(2, ["NVIDIA A10G"])]
    assert gpu_mix(same) is None
    mixed = gpu_mix([*same, report(3, ["Tesla T4"])])
    assert mixed is not None
    assert "NVIDIA A10G on vm1#111111, vm2#222222; Tesla T4 on vm3#333333" in mixed and "mix GPU kinds" in mixed


def test_the_report_flags_a_block_a_node_loss_split_across_machines():
    import polars as pl

    from controller.report.identity import extra_identity, split_blocks

    def row(node: str, block: str, moved: list[str] | None = None) -> dict[str, Any]:
        cluster = {"node_id": node * 10, "hostname": "vm", "block": block} | ({"moved_from": moved} if moved else {})
        return extra_identity({"cluster": cluster})

    rows = [
        row("a", "resnet50 b1"),
        row("c", "resnet50 b1", ["vm#aaaaaa (lost)"]),  # moved after the loss of vm#aaaaaa
        row("b", "mobilenetv2 b1"),
        row("d", "mobilenetv2 b1"),  # on two nodes, but not by a loss (a restart of the cluster's Ray)
        row("e", "bert b1", ["vm#ffffff (lost)"]),  # moved before any of its runs was ok: all on one node
    ]
    frame = pl.DataFrame(rows)
    assert split_blocks(frame) == [
        "block resnet50 b1 was split across machines by a node loss (vm#aaaaaa, vm#cccccc): its comparisons span "
        "2 machines"
    ]
    assert split_blocks(frame.drop("cluster_moved")) == []  # records from before: nothing to say


# --- on three nodes ---------------------------------------------------------------------------


@pytest.mark.slow
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


@pytest.mark.slow
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
    live = {n.node_id for n in ray_cluster.nodes}
    assert all(r["cluster"]["node_id"] in live and r["cluster"]["hostname"] for r in after)
    by_block = defaultdict(set)
    for r in after:
        by_block[(r["model"], r["cell"]["batch_size"])].add(r["cluster"]["node_id"])
    assert len(by_block) == 4 and all(len(nodes) == 1 for nodes in by_block.values()), by_block  # 2 cells each
    assert len(set().union(*by_block.values())) >= 2  # the blocks were spread over nodes
    assert_one_window_at_a_time(after)


@pytest.mark.slow
def test_a_node_lost_mid_run_is_recorded_failed_and_its_run_retried_on_a_live_node(
    ray_cluster, tmp_path, artifact_cache
):
    # One block of two long runs, so that the node can be killed while one is measured.
    extra = "duration_s = 6\nblock_by = []"
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
    time.sleep(2)  # into the run: the model loads, then 6 s are measured
    victim = kill(ray_cluster, started.group(1))
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


# --- nodes that join, leave and get replaced; a lost head (clusters of their own) ----------------


class Controller:
    """``campaign run`` in the background, its progress (stderr) read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "campaign", *args],
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.seen: list[str] = []

    def until(self, pattern: str, count: int = 1) -> re.Match[str]:
        """Read progress until ``pattern`` has matched ``count`` lines; the last match."""
        assert self.proc.stderr is not None
        found = 0
        for line in self.proc.stderr:
            self.seen.append(line)
            match = re.search(pattern, line.rstrip())
            if match:
                found += 1
                if found == count:
                    return match
        raise AssertionError(f"the controller ended before {pattern!r} ({count}):\n{''.join(self.seen)}")

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, "".join(self.seen) + err


# A package that is found but does not import: a node whose Python lacks a working onnxruntime.
NO_RUNTIME = 'raise ImportError("onnxruntime is not installed on this node")\n'
START = r"\] (\S+#([0-9a-f]{6})): .*: start$"


@pytest.mark.slow
def test_last_node_lost_then_a_node_without_the_runtime_gets_no_block_and_a_replacement_finishes_every_cell_once(
    own_cluster, tmp_path, artifact_cache
):
    """One node; it is lost during the block's second run (and retries = 0: the lost run is left
    for the next session). The block waits for capacity; a node without a working runtime joins
    and is refused at its readiness check; a good one joins and takes the block. A plain rerun then
    runs the lost cell alone; the block's records say which node it moved from (the report flags it:
    test_the_report_flags_a_block_a_node_loss_split_across_machines)."""
    extra = "duration_s = 3\nblock_by = []\nretries = 0"
    three = (
        '\n[[matrix.configurations]]\nname = "ort-2threads"\nimage = "onnx-cpu"\nengine = "onnxruntime"\n'
        'source = "torch"\noptions = { intra_op_threads = 2 }\n'
    )
    file = write_campaign(tmp_path / "c.toml", "elastic", extra, models='["mobilenetv2"]', batch_sizes="[1]")
    file.write_text(file.read_text() + three)
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(NO_RUNTIME)
    results = tmp_path / "results"
    args = ["run", str(file), "--results", str(results), "--cache", str(artifact_cache)]
    args += ["--cluster", own_cluster.address, "--node-wait", "300"]

    first = own_cluster.add_nodes(1)[0]
    controller = Controller(*args)
    victim = controller.until(START, count=2).group(2)
    assert first.node_id.startswith(victim)
    time.sleep(1.5)  # into the second run (its harness starts, warms up, measures 3 s)
    own_cluster.kill(first)
    controller.until(r"no live node can run 1 waiting block\(s\) \(1 runs\): they wait up to 5m00s")
    bad = own_cluster.add_nodes(1, env={"PYTHONPATH": str(tmp_path / "shadow")})[0]
    refused = controller.until(r"(\S+) can run nothing of this campaign, so it gets no block: (.*)")
    assert refused.group(1).endswith(f"#{bad.node_id[:6]}")
    assert "onnxruntime" in refused.group(2) and "does not import on this node" in refused.group(2)
    good = own_cluster.add_nodes(1)[0]
    rc, out, err = controller.finish()
    assert rc == 1, out + err  # the lost run is not run again in this session (retries = 0)
    assert f"#{good.node_id[:6]} passed its readiness check" in err
    assert "2 of 3 runs ok, 0 failed, 1 not run" in out and "node lost" in out

    recs = records(results / "elastic")
    assert not any(r["cluster"]["node_id"] == bad.node_id for r in recs)  # no block for the node without a runtime
    lost = [r for r in recs if r["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["failure"]["code"] == "node-lost"
    assert lost[0]["cluster"]["node_id"] == first.node_id
    moved = [r for r in recs if r["status"] == "ok" and r["cluster"]["node_id"] == good.node_id]
    assert len(moved) == 1 and moved[0]["cluster"]["moved_from"] == [
        f"{lost[0]['cluster']['hostname']}#{victim} (lost)"
    ]

    resumed = campaign_cli(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 already ok, 0 failed earlier" in resumed.stderr and "1 to run now" in resumed.stderr
    assert "3 of 3 runs ok" in resumed.stdout
    after = records(results / "elastic")
    ok = [r for r in after if r["status"] == "ok"]
    assert sorted(r["cell"]["id"] for r in ok) == sorted(c.id for c in load_campaign_file(file).matrix())  # once each
    assert lost[0]["cell"]["id"] in {r["cell"]["id"] for r in ok if r["cluster"]["node_id"] == good.node_id}
    assert_one_window_at_a_time(after)


# onnxruntime as it is (the real package) until the flag file exists, then broken.
BREAKS_LATER = """
import os, sys
if os.path.exists({flag!r}):
    raise ImportError("onnxruntime broke on this node")
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["onnxruntime"]
import onnxruntime  # the real one, which the import system then hands out
"""


@pytest.mark.slow
def test_a_node_that_breaks_mid_block_gives_one_node_fault_and_its_block_moves(own_cluster, tmp_path, artifact_cache):
    """A node passes readiness, runs a cell, then its runtime breaks: the next run fails, the node is
    checked again and found unable to run it, so the failure is the node's and the block moves (to a
    node that joins) instead of failing every run left there."""
    file = write_campaign(
        tmp_path / "c.toml", "breaks", "duration_s = 2\nblock_by = []", models='["mobilenetv2"]', batch_sizes="[1]"
    )
    shadow, flag = tmp_path / "shadow" / "onnxruntime", tmp_path / "broken"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(BREAKS_LATER.format(flag=str(flag)))
    results = tmp_path / "results"
    args = ["run", str(file), "--results", str(results), "--cache", str(artifact_cache)]
    fragile = own_cluster.add_nodes(1, env={"PYTHONPATH": str(tmp_path / "shadow")})[0]
    controller = Controller(*args, "--cluster", own_cluster.address, "--node-wait", "300")
    controller.until(r"^\s+ok: ")
    flag.write_text("")
    controller.until(r"can no longer run block campaign's runs \(.*does not import on this node.*\): it moves")
    controller.until(r"no live node can run 1 waiting block\(s\) \(1 runs\)")
    spare = own_cluster.add_nodes(1)[0]
    rc, out, err = controller.finish()
    assert rc == 0, out + err
    assert "2 of 2 runs ok, 0 failed" in out and "it runs again on a live node" in err

    recs = records(results / "breaks")
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["cluster"]["node_id"] == fragile.node_id
    assert "could not run it any more when checked again" in failed[0]["cluster"]["node_fault"]
    ok = [r for r in recs if r["status"] == "ok"]
    assert sorted(r["cell"]["id"] for r in ok) == sorted(c.id for c in load_campaign_file(file).matrix())
    assert {r["cluster"]["node_id"] for r in ok} == {fragile.node_id, spare.node_id}


@pytest.mark.slow
def test_a_lost_head_is_one_line_and_the_same_command_resumes_on_another_cluster(
    doomed_cluster, ray_cluster, tmp_path, artifact_cache
):
    file = write_campaign(
        tmp_path / "c.toml", "headless", "duration_s = 4\nblock_by = []", models='["mobilenetv2"]', batch_sizes="[1]"
    )
    results = tmp_path / "results"
    args = ["run", str(file), "--results", str(results), "--cache", str(artifact_cache)]
    doomed_cluster.add_nodes(1)
    controller = Controller(*args, "--cluster", doomed_cluster.address)
    controller.until(START, count=2)
    doomed_cluster.kill_head()
    rc, out, err = controller.finish(timeout=120)
    assert rc == 3, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: the Ray cluster at {doomed_cluster.address} is gone"), err
    assert "run the same command" in last and str(results / "headless") in last
    assert "Traceback" not in err and "Check failed" not in err and "RpcError" not in err
    before = records(results / "headless")
    assert len(before) == 1 and before[0]["status"] == "ok"  # the run in flight is lost, not recorded

    resumed = campaign_cli(*args, "--cluster", ray_cluster.address)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # The lock is a flock: the controller that ended with the head left none behind to take over.
    assert "1 already ok" in resumed.stdout + resumed.stderr
    after = records(results / "headless")
    assert sorted(r["cell"]["id"] for r in after) == sorted(c.id for c in load_campaign_file(file).matrix())
    assert all(r["status"] == "ok" for r in after)
