"""Real containers through a real Docker engine (skipped loudly without one; CI requires it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

import docker.errors
import pytest

from tests.conftest import REPO, containers_labelled

pytestmark = pytest.mark.docker

TINY = [
    "--model-size",
    "tiny",
    "--runner",
    "docker",
    "--samples",
    "8",
    "--batch-size",
    "2",
    "--warmup",
    "1",
]


def test_docker_run_records_the_image_and_leaves_no_container(cli, docker_client):
    campaign = f"dk-{uuid.uuid4().hex[:6]}"
    proc = cli("run", "--image", "onnx-cpu", "--model", "resnet50", "--campaign", campaign, *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rec,) = cli.records(campaign)
    assert rec["status"] == "ok"
    assert rec["runner"]["kind"] == "docker"
    assert rec["runner"]["image_id"].startswith("sha256:")
    assert rec["runner"]["image_digest"] is None and rec["runner"]["image_digest_reason"]
    # Provenance: the lock file the image was installed from (this checkout's), and its base pinned.
    from controller.image_lock import lock_sha256
    from controller.images import get_manifest

    assert rec["runner"]["lock_sha256"] == lock_sha256(get_manifest("onnx-cpu"))
    assert rec["runner"]["lock_matches_checkout"] is True and rec["runner"]["harness_source_hash"]
    assert rec["runner"]["base_digest"] and rec["runner"]["base_digest_kind"] in ("registry digest", "local image id")
    assert rec["result"]["providers_active"][0] == "CPUExecutionProvider"
    assert rec["artifact"]["converted_by"]["kind"] == "docker"
    assert rec["spec"]["artifact_root"] == "/artifacts"
    # The container's cgroup was measured from the host.
    ram = rec["measurements"]["metrics"]["ram_peak_bytes"]
    assert rec["measurements"]["meters"]["cgroup"]["available"]
    assert ram["available"] and ram["value"] > 10 * 2**20
    assert containers_labelled(docker_client, f"joulebench.campaign={campaign}") == []


def test_docker_and_local_agree_on_predictions(cli, docker_client):
    for runner in ("docker", "local"):
        proc = cli(
            "run",
            "--image",
            "torch-cpu",
            "--model",
            "mobilenetv2",
            *TINY[:-6],
            "--runner",
            runner,
            "--samples",
            "8",
            "--batch-size",
            "2",
            "--warmup",
            "1",
        )
        assert proc.returncode == 0, proc.stderr
    docker_rec, local_rec = sorted(cli.records(), key=lambda r: r["runner"]["kind"])
    assert docker_rec["result"]["predictions_digest"] == local_rec["result"]["predictions_digest"]


def test_container_runs_unprivileged_without_network_on_a_read_only_root(docker_client):
    from controller.runners.base import Invocation
    from controller.runners.docker_runner import DockerRunner

    runner = DockerRunner(docker_client)
    started = runner.start(Invocation(image="onnx-cpu", argv=["run", "--spec", "{}"], timeout_s=60))
    try:
        attrs = docker_client.api.inspect_container(started.workload["container"])
        execution = started.wait()
    finally:
        started.cleanup()
    seen = attrs["HostConfig"]
    assert execution.exit_code == 2  # the harness refused the empty spec, and said why
    assert "run spec" in execution.stdout
    assert attrs["Config"]["User"] and not attrs["Config"]["User"].startswith("0")
    assert seen["NetworkMode"] == "none"
    assert seen["ReadonlyRootfs"] is True
    assert seen["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in seen["SecurityOpt"]
    assert not seen.get("DeviceRequests")
    # Bounded processes, /tmp, /dev/shm and memory (without --memory: 3/4 of the host's RAM, no
    # swap), and all of them on the record.
    assert seen["PidsLimit"] == 4096 and "size=1g" in seen["Tmpfs"]["/tmp"]
    assert seen["ShmSize"] == 64 * 2**20
    limit = int(docker_client.info()["MemTotal"] * 0.75) // 2**20 * 2**20
    assert seen["Memory"] == limit and seen["MemorySwap"] == limit
    assert execution.runner["pids_limit"] == 4096 and execution.runner["tmp_size"] == "1g"
    assert execution.runner["shm_size"] == "64m" and execution.runner["memory_limit"] == f"{limit // 2**20}m"
    assert execution.runner["memory_limit_source"].startswith("default")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(started.name)


def test_reaping_orphans_from_two_controllers_at_once_is_not_an_error(docker_client):
    """A controller that finds another one removing the same orphan (409) or done with it (404) goes on."""
    import threading

    from controller.images import get_manifest
    from controller.runners.docker_runner import LABEL, OWNER_LABEL, reap_orphans

    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{socket.gethostname()}:{dead.pid}"
    tag = get_manifest("onnx-cpu").tag
    mine = f"race-{uuid.uuid4().hex[:6]}"
    made = [
        docker_client.containers.create(tag, ["--help"], labels={LABEL: "1", OWNER_LABEL: owner, "joulebench.t": mine})
        for _ in range(3)
    ]
    errors: list[BaseException] = []

    def reap() -> None:
        try:
            reap_orphans(docker_client)
        except BaseException as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=reap) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert containers_labelled(docker_client, f"joulebench.t={mine}") == []
    assert len(made) == 3


def _wait_for(predicate, limit_s):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def start_long_docker_run(tmp_path, cache, campaign, **popen):
    """A controller running a 2-minute docker run in the background, to be interrupted."""
    argv = [sys.executable, "-m", "controller", "run", "--image", "torch-cpu", "--model", "resnet50"]
    argv += ["--model-size", "tiny", "--runner", "docker", "--duration", "120", "--campaign", campaign]
    argv += ["--results", str(tmp_path), "--cache", str(cache)]
    return subprocess.Popen(argv, cwd=REPO, **popen)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupting_a_docker_run_removes_its_container(tmp_path, artifact_cache, docker_client, sig):
    campaign = f"kill-{uuid.uuid4().hex[:6]}"
    label = f"joulebench.campaign={campaign}"
    proc = start_long_docker_run(
        tmp_path, artifact_cache, campaign, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _wait_for(lambda: containers_labelled(docker_client, label), 120), "no container started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert containers_labelled(docker_client, label) == []
    records = list((tmp_path / campaign).glob("*.json"))
    assert len(records) == 1
    failure = json.loads(records[0].read_text())["failure"]
    assert failure["code"] == "interrupted" and signal.Signals(sig).name in failure["reason"]
    assert failure["reason"].startswith("interrupted by") and failure["phase"]


def test_a_container_killed_from_outside_is_recorded_as_such(tmp_path, artifact_cache, docker_client):
    campaign = f"ext-{uuid.uuid4().hex[:6]}"
    label = f"joulebench.campaign={campaign}"
    proc = start_long_docker_run(
        tmp_path, artifact_cache, campaign, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _wait_for(lambda: containers_labelled(docker_client, label), 120), "no container started"
        time.sleep(3)
        containers_labelled(docker_client, label)[0].kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / campaign).glob("*.json")]
    failure = record["failure"]
    assert failure["code"] == "killed" and "from outside the controller" in failure["reason"]
    assert "out of memory" not in failure["reason"].split("(")[0] and "timed out" not in failure["reason"]
    assert containers_labelled(docker_client, label) == []


def test_a_killed_controller_leaves_an_orphan_that_the_next_start_removes(tmp_path, artifact_cache, docker_client):
    from controller.runners.docker_runner import DockerRunner

    campaign = f"k9-{uuid.uuid4().hex[:6]}"
    label = f"joulebench.campaign={campaign}"
    proc = start_long_docker_run(
        tmp_path, artifact_cache, campaign, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert _wait_for(lambda: containers_labelled(docker_client, label), 120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert containers_labelled(docker_client, label)  # kill -9 cannot clean up ...
    runner = DockerRunner(docker_client)  # ... the next controller start does
    assert containers_labelled(docker_client, label) == []
    assert runner.reaped


def test_docker_timeout_and_out_of_memory_are_failed_records(cli, docker_client):
    campaign = f"fail-{uuid.uuid4().hex[:6]}"
    slow = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "resnet50",
        "--model-size",
        "tiny",
        "--runner",
        "docker",
        "--samples",
        "10000000",  # far more than 15 s of work (a --duration past --timeout is refused before the run)
        "--timeout",
        "15",
        "--campaign",
        campaign,
    )
    starved = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "resnet50",
        "--runner",
        "docker",
        "--batch-size",
        "64",
        "--memory",
        "160m",
        "--campaign",
        campaign,
    )
    assert slow.returncode == 1 and starved.returncode == 1
    reasons = sorted(r["failure"]["reason"] for r in cli.records(campaign))
    assert any(r.startswith("killed: out of memory (limit 160m)") for r in reasons), reasons
    # Each names the phase it died in (before the harness's first phase: "start-up"), never null.
    assert all(r["failure"]["phase"] for r in cli.records(campaign))
    assert any(r.startswith("timed out after 15 s") for r in reasons), reasons
    assert containers_labelled(docker_client, f"joulebench.campaign={campaign}") == []


def test_a_weights_file_only_its_owner_can_read_runs_from_a_readable_copy(cli, docker_client, tmp_path):
    if os.getuid() != 0:
        pytest.skip("only a controller running as root hands containers files it cannot read")
    torch = pytest.importorskip("torch")
    from suite.torch_models import build

    path = tmp_path / "private.pt"  # as transformers 5's save_pretrained writes model.safetensors
    torch.save(build("resnet50", "tiny", "random", seed=3).state_dict(), path)
    path.chmod(0o600)
    env = {"JOULEBENCH_CACHE": str(tmp_path / "cache")}  # where the readable copy is staged
    proc = cli("run", "--image", "torch-cpu", "--model", "resnet50", "--weights", str(path), *TINY, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = cli.records()
    assert rec["status"] == "ok"
    assert "private.pt readable by its owner only: staging a readable copy" in proc.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the user's file is left as it was
