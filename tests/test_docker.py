"""Real containers through a real Docker engine (skipped loudly without one; CI requires it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

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
    seen = {}

    def inspect(started):
        attrs = docker_client.api.inspect_container(started["container"])
        seen.update(attrs["HostConfig"], User=attrs["Config"]["User"])

    execution = runner.execute(
        Invocation(image="onnx-cpu", argv=["run", "--spec", "{}"], timeout_s=60, on_start=inspect)
    )
    assert execution.exit_code == 2  # the harness refused the empty spec, and said why
    assert "run spec" in execution.stdout
    assert seen["User"] and not seen["User"].startswith("0")
    assert seen["NetworkMode"] == "none"
    assert seen["ReadonlyRootfs"] is True
    assert seen["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in seen["SecurityOpt"]
    assert not seen.get("DeviceRequests")


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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
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
    assert len(records) == 1 and "interrupted" in records[0].read_text()


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
        "--duration",
        "120",
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
    assert any(r.startswith("timed out after 15 s") for r in reasons), reasons
    assert containers_labelled(docker_client, f"joulebench.campaign={campaign}") == []


def test_a_weights_file_the_container_cannot_read_is_a_clear_failure(cli, docker_client, tmp_path):
    if os.getuid() != 0:
        pytest.skip("only a controller running as root hands containers files it cannot read")
    torch = pytest.importorskip("torch")
    from suite.torch_models import build

    path = tmp_path / "private.pt"
    torch.save(build("resnet50", "tiny", "random", seed=3).state_dict(), path)
    path.chmod(0o600)
    proc = cli("run", "--image", "torch-cpu", "--model", "resnet50", "--weights", str(path), *TINY)
    assert proc.returncode == 1
    (rec,) = cli.records()
    assert "cannot read" in rec["failure"]["reason"] and "chmod" in rec["failure"]["reason"]
