"""Campaigns through the real CLI: plan, run, kill -9 halfway, resume, failures, changed files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.campaigns import load_campaign_file
from controller.campaigns.cooldown import CoolDown
from controller.campaigns.spec import Cooldown
from controller.errors import UserError

REPO = Path(__file__).resolve().parent.parent
CAMPAIGNS = REPO / "suite" / "campaigns"
SMOKE = CAMPAIGNS / "ci-smoke.toml"


def campaign_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "campaign", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.mark.slow
def test_ci_smoke_killed_halfway_resumes_and_records_every_cell_exactly_once(tmp_path, artifact_cache):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "controller", "campaign", "run", str(SMOKE), "--results", str(results)]
    cmd += ["--cache", str(artifact_cache)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "done 4 " in line:  # the fifth run is in flight: half the campaign
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    progress = "".join(seen)
    assert "ETA" in progress and "left" in progress and "resnet50" in progress
    folder = results / "ci-smoke"
    before = records(folder)
    assert 4 <= len(before) < 8, progress
    assert all(r["status"] == "ok" for r in before)

    resumed = campaign_cli("run", str(SMOKE), "--results", str(results), "--cache", str(artifact_cache))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(before)} already ok" in resumed.stderr
    assert "8 of 8 runs ok" in resumed.stdout

    after = records(folder)
    cells = [r["cell"]["id"] for r in after]
    expected = {c.id for c in load_campaign_file(SMOKE).matrix()}
    assert len(after) == 8 and sorted(cells) == sorted(expected), cells  # each cell exactly once
    assert all(r["status"] == "ok" for r in after)
    # Runs done before the kill are untouched, and both sessions shuffled with the recorded seed.
    assert {r["run_id"] for r in before} <= {r["run_id"] for r in after}
    sessions = [json.loads(x) for x in (folder / "campaign" / "sessions.jsonl").read_text().splitlines()]
    assert [s["seed"] for s in sessions] == [20240601, 20240601]
    positions = sorted(r["cell"]["order"]["position"] for r in after)
    assert positions == list(range(8))

    again = campaign_cli("run", str(SMOKE), "--results", str(results), "--cache", str(artifact_cache))
    assert again.returncode == 0 and "0 to run now" in again.stderr
    assert len(records(folder)) == 8


def write_campaign(path: Path, name: str, samples: int = 4, timeout: float = 300) -> Path:
    path.write_text(
        f"""
[campaign]
name = "{name}"
repetitions = 1
model_size = "tiny"
samples = {samples}
warmup = 1
runner = "local"
order = "grouped"

[matrix]
models = ["resnet50"]
batch_sizes = [1]

[[matrix.configurations]]
name = "torch2onnx"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"

# Valid options, a run that fails once started (a fault injected in the harness).
[[matrix.configurations]]
name = "bad-option"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"
options = {{ fault_raise = "load" }}
"""
    )
    return path


def test_a_second_run_of_the_same_campaign_is_refused_while_the_first_runs(tmp_path, artifact_cache):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "controller", "campaign", "run", str(SMOKE), "--results", str(results)]
    cmd += ["--cache", str(artifact_cache)]
    first = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stderr is not None
    try:
        for line in first.stderr:
            if "to run now" in line:
                break
        second = campaign_cli("run", str(SMOKE), "--results", str(results), "--cache", str(artifact_cache))
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"being run by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    recs = records(results / "ci-smoke")
    cells = [r["cell"]["id"] for r in recs]
    assert len(cells) == len(set(cells)), "a cell was recorded twice"
    assert not (results / "ci-smoke" / "campaign" / "lock").exists()  # released on the way out


def test_a_failed_run_is_recorded_the_campaign_goes_on_and_retry_is_asked_for(tmp_path, artifact_cache):
    results = tmp_path / "results"
    file = write_campaign(tmp_path / "c.toml", "with-failure")
    first = campaign_cli("run", str(file), "--results", str(results), "--cache", str(artifact_cache))
    assert first.returncode == 1, first.stdout + first.stderr
    recs = records(results / "with-failure")
    by_cell = {r["cell"]["configuration"]: r for r in recs}
    assert by_cell["torch2onnx"]["status"] == "ok"  # the campaign went on
    failed = by_cell["bad-option"]
    assert failed["status"] == "failed" and failed["failure"]["reason"]
    assert "failed in this session" in first.stdout and "resnet50.tiny.bad-option.b1.r1" in first.stdout
    assert failed["failure"]["reason"][:40] in first.stdout

    kept = campaign_cli("run", str(file), "--results", str(results), "--cache", str(artifact_cache))
    assert kept.returncode == 1
    assert "not retried" in kept.stdout and "--retry-failed" in kept.stderr
    assert len(records(results / "with-failure")) == 2

    retried = campaign_cli(
        "run", str(file), "--results", str(results), "--cache", str(artifact_cache), "--retry-failed"
    )
    assert "1 to run now" in retried.stderr
    assert len(records(results / "with-failure")) == 3  # the failed run is kept as data

    # The same folder with other settings is a different campaign: refused, with what to do.
    write_campaign(file, "with-failure", samples=8)
    changed = campaign_cli("run", str(file), "--results", str(results), "--cache", str(artifact_cache))
    assert changed.returncode == 2
    assert "other settings" in changed.stderr and "samples" in changed.stderr
    assert "Traceback" not in changed.stderr


def test_plan_of_the_gpu_paper_campaign_says_what_is_missing_and_runs_nothing(tmp_path):
    proc = campaign_cli("plan", str(CAMPAIGNS / "green-ai-runtimes.toml"), "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bert-imdb" in out
    assert "image onnx-trt needs an NVIDIA GPU" in out and "image onnx-cuda needs an NVIDIA GPU" in out
    assert "resnet50 on torch2onnx-trt" in out
    assert "images needed:" in out and "estimated duration" in out
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
    as_json = json.loads(
        campaign_cli("plan", str(CAMPAIGNS / "green-ai-runtimes.toml"), "--json", "--results", str(tmp_path)).stdout
    )
    assert as_json and not any(entry["runnable"] for entry in as_json)
    bert = [e for e in as_json if e["model"] == "bert-imdb"]
    assert bert and all("needs an NVIDIA GPU" in e["reason"] for e in bert)


def test_plan_of_the_cpu_campaign_lists_the_matrix_and_an_estimate(tmp_path):
    proc = campaign_cli(
        "plan", str(CAMPAIGNS / "green-ai-runtimes-cpu.toml"), "--results", str(tmp_path), "--runner", "local"
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  torch")]
    torch2onnx = [r for r in rows if r[0] == "torch2onnx"]
    assert torch2onnx and all(r[-1] == "yes" for r in torch2onnx)
    assert "140 runs = 7 configurations × 2 models × 2 batch sizes × 5 repetitions" in proc.stdout
    assert "estimated duration of the" in proc.stdout


def test_campaign_file_errors_name_the_key_and_what_is_valid(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[campaign]\nname = "x"\nrepetitons = 3\n[matrix]\nmodels = ["resnet50"]\n')
    with pytest.raises(UserError, match="repetitons.*valid keys"):
        load_campaign_file(bad)
    proc = campaign_cli("plan", str(bad))
    assert proc.returncode == 2 and "repetitons" in proc.stderr and "Traceback" not in proc.stderr
    matrix = '[matrix]\nmodels = ["resnet50"]\n[[matrix.configurations]]\nimage = "onnx-cpu"\n'
    bad.write_text('[campaign]\norder = "random"\n' + matrix)
    with pytest.raises(UserError, match="interleaved, grouped"):
        load_campaign_file(bad)


def test_interleaved_order_is_rounds_of_every_cell_reproducible_from_the_seed():
    campaign = load_campaign_file(CAMPAIGNS / "green-ai-runtimes-cpu.toml")
    order = campaign.ordered(seed=3)
    assert order == campaign.ordered(seed=3) and order != campaign.ordered(seed=4)
    per_round = len(order) // campaign.repetitions
    for k in range(campaign.repetitions):
        round_ = order[k * per_round : (k + 1) * per_round]
        assert {c.repetition for c in round_} == {k + 1}
        assert len({(c.configuration, c.model, c.batch_size) for c in round_}) == per_round
    assert len({c.id for c in order}) == len(order)
    assert campaign.matrix()[0].id == "resnet50.full.torch.b1.r1"  # deterministic, readable


def test_gpu_temperature_cooldown_without_nvml_falls_back_to_the_cap_and_says_so():
    said, slept = [], []
    cool = CoolDown(Cooldown(mode="gpu-temperature", max_s=42), said.append, sleep=slept.append)
    if cool.idle_c is not None:
        pytest.skip("this host has NVML: the fallback path is not taken")
    assert "GPU temperature unavailable" in said[0] and "42" in said[0]
    cool()
    assert slept == [42]


class FakeNvml:
    """The NVML library's surface the meter uses; the GPU cools by 3 °C per read."""

    NVMLError = RuntimeError

    def __init__(self, temps):
        self.temps = list(temps)

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "550.0"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "h0"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-fake"

    def nvmlDeviceGetName(self, h):
        return "Fake GPU"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return 1000

    def nvmlDeviceGetFieldValues(self, h, ids):
        raise RuntimeError("not supported")

    def nvmlDeviceGetPowerUsage(self, h):
        return 50000

    def nvmlDeviceGetUtilizationRates(self, h):
        return type("U", (), {"gpu": 0, "memory": 0})()

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("M", (), {"used": 0})()

    def nvmlDeviceGetClockInfo(self, h, c):
        return 1000

    def nvmlDeviceGetTemperature(self, h, s):
        return self.temps.pop(0) if len(self.temps) > 1 else self.temps[0]


def test_gpu_temperature_cooldown_waits_until_near_idle():
    nvml = FakeNvml([40, 60, 55, 50, 45, 41])
    said, slept = [], []
    clock = iter(range(1000))
    cool = CoolDown(
        Cooldown(mode="gpu-temperature", max_s=100, tolerance_c=2, poll_s=1),
        said.append,
        nvml=nvml,
        sleep=slept.append,
        clock=lambda: float(next(clock)),
    )
    assert cool.idle_c == [40]
    done = cool()
    assert done["reached"] is True and slept == [1, 1, 1, 1]  # 60, 55, 50, 45 are too warm; 41 is near 40
