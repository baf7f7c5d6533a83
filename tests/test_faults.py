"""Faults an operator meets (issue 26) and foreign load beside a run (issue 24): signals at any
moment, kill -9 of a controller, orphans of dead controllers, two starts at once, a busy host."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller import quiet
from controller.campaigns import load_campaign_file
from controller.campaigns.lock import locked
from controller.errors import UserError
from controller.report.flags import columns_in_doubt
from controller.runners.local import LABELS_ENV, OWNER_ENV, LocalRunner, local_harnesses
from tests.conftest import REPO, containers_labelled

SMOKE = REPO / "suite" / "campaigns" / "ci-smoke.toml"
LOCAL_RUN = [sys.executable, "-m", "controller", "run", "--image", "onnx-cpu", "--model", "resnet50"]
LOCAL_RUN += ["--model-size", "tiny", "--runner", "local", "--batch-size", "1", "--warmup", "1"]
LOAD, MEASURE = "  load ...", "  measure ..."  # the progress lines of the harness's phases


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until(predicate: Any, limit_s: float) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def harnesses_of(pid: int) -> list[Any]:
    return [h for h in local_harnesses() if h.owner == f"{socket.gethostname()}:{pid}"]


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """stderr up to the first line that holds ``text`` (all of it when the process ends first)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            break
    return "".join(seen)


def fake_harness(owner_pid: int, campaign: str = "elsewhere") -> subprocess.Popen[bytes]:
    """A process marked as a local harness of controller ``owner_pid``, as the local runner marks
    its own (one from before the guard, or one whose guard could not act)."""
    env = {
        **os.environ,
        OWNER_ENV: f"{socket.gethostname()}:{owner_pid}",
        LABELS_ENV: json.dumps({"joulebench.campaign": campaign, "joulebench.run": "r1"}),
    }
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env, start_new_session=True)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- a second signal while the controller stops ------------------------------------------------


@pytest.mark.slow
def test_a_second_signal_never_loses_the_record_nor_exit_130(tmp_path, artifact_cache):
    """Two signals 0.05-0.4 s apart, the first at a different moment each try: at start-up, during
    the load, in the window, and as the window closes (the meters stop, the record is written)."""
    rng = random.Random(26)
    moments = [("running resnet50", 0.0, 0.5), (LOAD, 0.0, 0.3), (MEASURE, 0.0, 0.5), (MEASURE, 1.9, 2.5)]
    pairs = [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT), (signal.SIGHUP, signal.SIGHUP)]
    outcomes = []
    for k in range(8):
        trigger, low, high = moments[k % len(moments)]
        first, second = pairs[k % len(pairs)]
        folder = tmp_path / f"try{k}"
        argv = [*LOCAL_RUN, "--duration", "2", "--results", str(folder), "--campaign", "c"]
        argv += ["--cache", str(artifact_cache)]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            before = read_until(proc, trigger)
            time.sleep(rng.uniform(low, high))
            proc.send_signal(first)
            time.sleep(rng.uniform(0.05, 0.4))
            proc.send_signal(second)
            _, after = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        err = before + after
        assert "Traceback" not in err, err
        recs = records(folder / "c")
        assert len(recs) == 1, f"try {k} ({trigger}): {len(recs)} records\n{err}"
        rec = recs[0]
        if rec["status"] == "ok":  # the signals came as the run ended: its record stands
            assert proc.returncode in (0, 130), err
        else:
            assert proc.returncode == 130, err
            failure = rec["failure"]
            assert failure["code"] == "interrupted" and first.name in failure["reason"], failure
            assert failure["phase"], failure
        assert harnesses_of(proc.pid) == []  # its harness went with it
        outcomes.append(rec["status"])
    assert outcomes.count("failed") >= 4, outcomes  # most tries really were cut short


# --- a local harness and its controller --------------------------------------------------------


def test_a_local_harness_dies_with_its_controller_even_on_kill_9(tmp_path, artifact_cache):
    argv = [*LOCAL_RUN, "--duration", "120", "--results", str(tmp_path), "--cache", str(artifact_cache)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = read_until(proc, MEASURE)
        (harness,) = harnesses_of(proc.pid)
        assert harness.labels["joulebench.campaign"] == "default" and harness.labels["joulebench.run"], seen
    finally:
        proc.kill()  # SIGKILL: the controller cannot clean up
        proc.communicate(timeout=60)
    assert wait_until(lambda: gone(harness.pgid), 10), "the harness outlived its controller"


def test_an_orphaned_local_harness_is_ended_by_the_next_start_and_a_live_ones_is_not():
    orphan = fake_harness(dead_pid())
    owner = subprocess.Popen(["sleep", "300"])
    alive = fake_harness(owner.pid)
    try:
        assert wait_until(lambda: len(harnesses_of(owner.pid)) == 1, 10)
        runner = LocalRunner()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert any(str(orphan.pid) in what for what in runner.reaped), runner.reaped
        assert alive.poll() is None  # its controller lives: waited for, never killed
    finally:
        for p in (orphan, alive, owner):
            p.kill()
            p.wait()


# --- a quiet host before the window ------------------------------------------------------------


@pytest.fixture
def idle_cpus(monkeypatch):
    """/proc/stat of a host whose CPUs only idle (the lowest boundary of the CPU sample)."""
    ticks = itertools.count(step=100)
    monkeypatch.setattr(quiet, "_cpu_ticks", lambda: [0, 0, 0, next(ticks), 0, 0, 0, 0])


def test_the_cpu_sample_reads_busy_and_stolen_shares_from_proc_stat(monkeypatch):
    # user nice system idle iowait irq softirq steal, two reads: 60 busy, 20 idle, 20 stolen ticks.
    reads = iter([[100, 0, 0, 100, 0, 0, 0, 0], [150, 0, 10, 120, 0, 0, 0, 20]])
    monkeypatch.setattr(quiet, "_cpu_ticks", lambda: next(reads))
    busy, steal = quiet.cpu_sample(0.01)
    assert busy == pytest.approx(0.6, abs=0.02) and steal == pytest.approx(0.2)
    seen = quiet.Seen(cpu_busy_share=busy, cpu_steal_share=steal)
    assert any("busy" in r for r in seen.reasons) and any("steals" in r for r in seen.reasons)


def test_a_run_waits_for_another_controllers_harness_and_goes_on_when_it_ends(idle_cpus):
    theirs = f"theirs-{uuid.uuid4().hex[:6]}"
    owner = subprocess.Popen(["sleep", "300"])
    other = fake_harness(owner.pid, campaign=theirs)
    notes: list[str] = []
    # Another controller's harness during the wait (a parallel worker's, another user's) is waited
    # for too: the wait is then theirs to end, not ours.
    others: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            others.update(h.owner for h in local_harnesses() if h.owner != f"{socket.gethostname()}:{owner.pid}")

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert wait_until(lambda: len(harnesses_of(owner.pid)) == 1, 10)
        threading.Timer(1.0, other.kill).start()
        watcher.start()
        state = quiet.quiet_host(LocalRunner(), 30.0, notes.append, sample_s=0.01)
    finally:
        done.set()
        for p in (other, owner):
            p.kill()
            p.wait()
    assert any("waiting up to 30 s for a quiet host" in n and f"campaign {theirs}" in n for n in notes), notes
    assert state["waited_s"] >= 0.9 and all(r.get("campaign") != theirs for r in state["joulebench_runs"])
    watcher.join()
    if not state["joulebench_runs"] and not others:  # nothing of another controller's on this host
        assert state["quiet"] and state["waited_s"] < 15, state
        assert quiet.foreign_load_flags(state) == []


def test_a_run_that_waited_in_vain_is_flagged_and_its_energy_and_time_are_in_doubt(idle_cpus):
    theirs = f"theirs-{uuid.uuid4().hex[:6]}"
    owner = subprocess.Popen(["sleep", "300"])
    other = fake_harness(owner.pid, campaign=theirs)
    notes: list[str] = []
    try:
        assert wait_until(lambda: len(harnesses_of(owner.pid)) == 1, 10)
        state = quiet.quiet_host(LocalRunner(), 1.0, notes.append, sample_s=0.01)
    finally:
        for p in (other, owner):
            p.kill()
            p.wait()
    assert not state["quiet"] and state["waited_s"] >= 1.0
    (run,) = [r for r in state["joulebench_runs"] if r.get("campaign") == theirs]
    assert run["kind"] == "process" and run["owner"].endswith(f":{owner.pid}") and run["run"] == "r1"
    assert any("measuring under foreign load after waiting 1 s" in n for n in notes), notes
    (flag,) = quiet.foreign_load_flags(state)
    assert flag["code"] == "foreign_load" and "another joulebench run" in flag["message"]
    assert {"total_energy", "cpu_energy", "window_s", "throughput_sps", "ttft_ms_median"} <= columns_in_doubt(flag)


def test_a_campaign_waits_a_bounded_time_for_quiet_says_so_and_records_the_run_flagged(tmp_path, artifact_cache):
    file = tmp_path / "q.toml"
    file.write_text(
        """
[campaign]
name = "quiet"
model_size = "tiny"
samples = 2
warmup = 1
runner = "local"

[matrix]
models = ["resnet50"]
batch_sizes = [1]

[[matrix.configurations]]
name = "torch2onnx"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"
"""
    )
    theirs = f"theirs-{uuid.uuid4().hex[:6]}"
    owner = subprocess.Popen(["sleep", "300"])
    other = fake_harness(owner.pid, campaign=theirs)
    try:
        argv = ["campaign", "run", str(file), "--results", str(tmp_path), "--cache", str(artifact_cache)]
        proc = subprocess.run(
            [sys.executable, "-m", "controller", *argv, "--quiet-wait", "2"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
    finally:
        for p in (other, owner):
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a flagged run is a record, not a failure
    assert "waiting up to 2 s for a quiet host" in proc.stderr and f"campaign {theirs}" in proc.stderr
    (rec,) = records(tmp_path / "quiet")
    state = rec["host_state"]
    assert rec["status"] == "ok" and not state["quiet"] and state["waited_s"] >= 2
    assert any(f["code"] == "foreign_load" for f in rec["measurements"]["flags"])


def test_a_campaign_session_waits_out_a_host_busy_for_good_once():
    wait = quiet.SessionWait(60.0)
    assert wait.next_s() == 60.0
    wait.saw({"quiet": False, "waited_s": 60.2})
    assert wait.next_s() == 0.0  # still checked and flagged, not waited for again ...
    wait.saw({"quiet": False, "waited_s": 0.3})
    assert wait.next_s() == 0.0
    wait.saw({"quiet": True, "waited_s": 0.3})
    assert wait.next_s() == 60.0  # ... until the host was quiet once


def test_a_campaign_file_without_quiet_wait_takes_the_environments_wait_and_a_bad_one_is_refused(
    tmp_path, monkeypatch
):
    body = SMOKE.read_text()
    assert "quiet_wait_s" not in body
    monkeypatch.delenv("JOULEBENCH_QUIET_WAIT_S")  # the suite's own 0
    assert load_campaign_file(SMOKE).quiet_wait_s == 60  # what a user gets
    monkeypatch.setenv("JOULEBENCH_QUIET_WAIT_S", "5")
    assert load_campaign_file(SMOKE).quiet_wait_s == 5
    own = tmp_path / "own.toml"
    own.write_text(body.replace("[campaign]\n", "[campaign]\nquiet_wait_s = 7\n", 1))
    assert load_campaign_file(own).quiet_wait_s == 7  # the file's word comes first
    monkeypatch.setenv("JOULEBENCH_QUIET_WAIT_S", "soon")
    with pytest.raises(UserError, match=r"JOULEBENCH_QUIET_WAIT_S: expected a finite number of seconds.*'soon'"):
        load_campaign_file(SMOKE)


def test_quiet_wait_and_shm_size_are_checked_before_any_work(tmp_path):
    campaign = ["campaign", "run", str(SMOKE), "--results", str(tmp_path)]
    run = ["run", "--image", "onnx-cpu", "--model", "resnet50", "--results", str(tmp_path)]
    cases = [(campaign, "--quiet-wait", bad) for bad in ("-1", "1e9", "nan")]
    cases += [(run, "--quiet-wait", "-1"), (run + ["--runner", "docker"], "--shm-size", "big")]
    for argv, option, bad in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "controller", *argv, option, bad],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 2 and option in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not any(tmp_path.iterdir())


# --- the campaign lock -------------------------------------------------------------------------


@pytest.mark.parametrize("left", ["nothing", "an empty file", "a dead controller's lock"])
def test_the_campaign_lock_lets_one_start_through_at_a_time(tmp_path, left):
    campaign = load_campaign_file(SMOKE)
    folder = tmp_path / campaign.name / "campaign"
    folder.mkdir(parents=True)
    if left == "an empty file":
        (folder / "lock").write_text("")
    elif left == "a dead controller's lock":
        (folder / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": "?"}))
    start = threading.Barrier(8)
    inside, most, passed, refused = [0], [0], [0], []
    guard = threading.Lock()

    def start_one() -> None:
        start.wait()
        try:
            with locked(tmp_path, campaign, lambda _: None):
                with guard:
                    inside[0] += 1
                    passed[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.2)
                with guard:
                    inside[0] -= 1
        except UserError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=start_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and passed[0] >= 1 and passed[0] + len(refused) == 8
    assert all("is being run by" in r for r in refused), refused
    assert not (folder / "lock").exists()  # released on the way out


def test_a_lock_held_by_a_live_controller_refuses_and_is_free_once_it_is_killed(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from controller.campaigns import load_campaign_file; "
        "from controller.campaigns.lock import locked\n"
        f"with locked(Path({str(tmp_path)!r}), load_campaign_file({str(SMOKE)!r}), print):\n"
        "    print('held', flush=True); time.sleep(300)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    campaign = load_campaign_file(SMOKE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"being run by process {holder.pid} on "):
            with locked(tmp_path, campaign, print):
                pass
    finally:
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    with locked(tmp_path, campaign, print):
        pass


# --- Docker: orphans on a shared engine, the benchmark's containers -----------------------------


class _Vanishing:
    """The engine's API as another controller on the same engine makes it look: every container
    listed is removed by that other controller before this one acts on it (or while it does)."""

    def __init__(self, api: Any, conflict: bool) -> None:
        self._api = api
        self._conflict = conflict

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def containers(self, **kwargs: Any) -> Any:
        listed = self._api.containers(**kwargs)
        if not self._conflict:
            for c in listed:
                self._api.remove_container(c["Id"], force=True)
        return listed

    def remove_container(self, ident: str, **kwargs: Any) -> None:
        import docker.errors

        self._api.remove_container(ident, force=True)  # the other controller's removal ...
        if self._conflict:  # ... still in progress when ours arrives
            raise docker.errors.APIError("removal of container is already in progress", _Conflict())


class _Conflict:
    status_code = 409
    reason = "Conflict"
    url = ""


@pytest.mark.docker
@pytest.mark.parametrize("conflict", [False, True], ids=["removed-after-listing", "removal-in-progress"])
def test_orphan_removal_tolerates_containers_another_controller_removes(docker_client, conflict):
    from types import SimpleNamespace

    from controller.images import get_manifest
    from controller.runners.docker_runner import LABEL, OWNER_LABEL, reap_orphans

    mine = f"vanish-{uuid.uuid4().hex[:6]}"
    labels = {LABEL: "1", OWNER_LABEL: f"{socket.gethostname()}:{dead_pid()}", "joulebench.t": mine}
    for _ in range(2):
        docker_client.containers.create(get_manifest("onnx-cpu").tag, ["--help"], labels=labels)
    client = SimpleNamespace(api=_Vanishing(docker_client.api, conflict))
    reap_orphans(client)  # no NotFound, no 409 out of it
    assert containers_labelled(docker_client, f"joulebench.t={mine}") == []


@pytest.mark.docker
def test_the_benchmarks_containers_are_a_runs_containers(docker_client, tmp_path):
    """harness_overhead.py starts its containers as runs do: labelled, hardened, removed on Ctrl-C
    (exit 130, no traceback); one a kill -9 leaves is removed by the next start."""
    from controller.images import get_manifest
    from controller.runners.docker_runner import OWNER_LABEL, DockerRunner

    if not docker_client.images.list(name=get_manifest("onnx-openvino").tag):
        pytest.skip("image joulebench/onnx-openvino is not built")
    argv = [sys.executable, "benchmarks/harness_overhead.py", "--engines", "onnxruntime-openvino"]
    argv += ["--model-size", "tiny", "--rounds", "200"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for how in (signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        own = f"{OWNER_LABEL}={socket.gethostname()}:{proc.pid}"
        try:
            assert wait_until(lambda own=own: containers_labelled(docker_client, own), 300), "no container started"
            (container,) = containers_labelled(docker_client, own)
            host = docker_client.api.inspect_container(container.id)["HostConfig"]
            assert container.labels["joulebench.campaign"] == "bench-harness-overhead"
            assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["NetworkMode"] == "none"
            proc.send_signal(how)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if how == signal.SIGINT:
            assert proc.returncode == 130 and "Traceback" not in err, err
            assert containers_labelled(docker_client, own) == []
        else:
            DockerRunner(docker_client)  # the next start
            assert containers_labelled(docker_client, own) == []


@pytest.mark.docker
def test_a_container_of_a_live_controller_is_foreign_load_and_an_orphans_is_removed(docker_client, idle_cpus):
    from controller.images import get_manifest
    from controller.runners.docker_runner import LABEL, OWNER_LABEL, DockerRunner

    mine = f"quiet-{uuid.uuid4().hex[:6]}"
    owner = subprocess.Popen(["sleep", "300"])
    host = socket.gethostname()

    def start(owner_pid: int, campaign: str) -> Any:
        labels = {LABEL: "1", OWNER_LABEL: f"{host}:{owner_pid}", "joulebench.campaign": campaign}
        return docker_client.containers.run(
            get_manifest("onnx-cpu").tag, entrypoint=["sleep", "120"], labels=labels, detach=True, network_mode="none"
        )

    live, orphan = start(owner.pid, mine), start(dead_pid(), f"{mine}-orphan")
    notes: list[str] = []
    try:
        state = quiet.quiet_host(DockerRunner(docker_client), 0.0, notes.append, sample_s=0.01)
    finally:
        live.remove(force=True)
        owner.kill()
        owner.wait()
    (run,) = [r for r in state["joulebench_runs"] if r.get("campaign") == mine]
    assert run["kind"] == "container" and run["name"] == live.name and not state["quiet"]
    assert containers_labelled(docker_client, f"joulebench.campaign={mine}-orphan") == []
    assert any(orphan.name in what for what in state["ended_orphans"]), state["ended_orphans"]
    assert any(f"ended container {orphan.name}" in n for n in notes), notes


@pytest.mark.docker
def test_a_container_removed_from_outside_mid_run_is_a_failed_record(docker_client, tmp_path, artifact_cache):
    campaign = f"rm-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "controller", "run", "--image", "torch-cpu", "--model", "resnet50"]
    argv += ["--model-size", "tiny", "--runner", "docker", "--duration", "120", "--campaign", campaign]
    argv += ["--results", str(tmp_path), "--cache", str(artifact_cache)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    label = f"joulebench.campaign={campaign}"
    try:
        assert wait_until(lambda: containers_labelled(docker_client, label), 120), "no container started"
        time.sleep(2)
        docker_client.api.remove_container(containers_labelled(docker_client, label)[0].id, force=True)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "Traceback" not in err, err
    (rec,) = records(tmp_path / campaign)
    assert rec["failure"]["code"] == "killed" and "from outside the controller" in rec["failure"]["reason"]
