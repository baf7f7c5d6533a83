"""The CPU engines beyond torch/onnxruntime: OpenVINO, ONNX Runtime's OpenVINO EP, TensorFlow, MXNet.

Real frameworks on tiny models. Local tests need the framework in this Python (skipped without);
docker tests need the engine's image (skipped loudly without; a failure under
JOULEBENCH_REQUIRE_DOCKER=1).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import REQUIRE_DOCKER

TINY = ["--model-size", "tiny", "--samples", "8", "--batch-size", "2", "--warmup", "1"]


def run_ok(cli: Any, *args: str, campaign: str = "default") -> dict[str, Any]:
    proc = cli("run", *args, "--campaign", campaign)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = cli.records(campaign)
    rec = max(records, key=lambda r: r["started_at"])
    assert rec["status"] == "ok", rec.get("failure")
    return rec


def need_image(client: Any, name: str) -> None:
    from controller.images import get_manifest

    tag = get_manifest(name).tag
    if client.images.list(name=tag):
        return
    why = (
        f"image {tag} is not built (python -m controller images build {name} "
        "--base-image joulebench-base:bookworm --pip-config host --network host)"
    )
    if REQUIRE_DOCKER:
        pytest.fail(f"JOULEBENCH_REQUIRE_DOCKER=1 but {why}")
    pytest.skip(f"SKIPPING DOCKER TEST: {why}")


# --- local: the frameworks installed in this Python -------------------------------------------


def test_openvino_runs_the_onnx_artifact_and_agrees_with_onnxruntime(cli):
    pytest.importorskip("openvino")
    local = [*TINY, "--runner", "local"]
    ort_rec = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", *local)
    ov_rec = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *local)
    result = ov_rec["result"]
    assert ov_rec["engine"] == "openvino" and result["providers_active"] == ["CPU"]
    assert result["versions"]["openvino"]
    # Options that change results or speed are recorded as applied; f32 unless asked otherwise.
    assert result["options_used"]["inference_precision"] == "f32"
    assert result["options_used"]["performance_hint"] == "LATENCY"
    # Same torch2onnx artifact (converted once), same inputs: the same predictions.
    assert ov_rec["artifact"]["key"] == ort_rec["artifact"]["key"] and ov_rec["artifact"]["reused"]
    assert result["predictions_digest"] == ort_rec["result"]["predictions_digest"]


def test_openvino_records_the_performance_hint_and_refuses_an_unknown_one(cli):
    pytest.importorskip("openvino")
    local = [*TINY, "--runner", "local"]
    hint = ["--option", "performance_hint=throughput"]
    rec = run_ok(cli, "--image", "openvino-cpu", "--model", "resnet50", *local, *hint)
    assert rec["result"]["options_used"]["performance_hint"] == "THROUGHPUT"
    assert rec["spec"]["options"] == {"performance_hint": "throughput"}
    proc = cli(
        "run",
        "--image",
        "openvino-cpu",
        "--model",
        "resnet50",
        *local,
        "--option",
        "performance_hint=fastest",
        "--campaign",
        "bad",
    )
    assert proc.returncode == 2  # refused before the run starts
    assert "performance_hint='fastest' is not one of LATENCY, THROUGHPUT" in proc.stderr
    assert cli.records("bad") == []


def test_onnxruntime_without_the_openvino_provider_fails_instead_of_falling_back(cli):
    ort = pytest.importorskip("onnxruntime")
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the OpenVINO EP: nothing to refuse")
    proc = cli("run", "--image", "onnx-openvino", "--model", "resnet50", *TINY, "--runner", "local")
    # Refused before any work (never run on ONNX Runtime's CPU provider in its place), naming the way that works.
    assert proc.returncode == 2, proc.stderr
    assert "not installed here" in proc.stderr and "use the docker runner" in proc.stderr
    assert cli.records() == []


@pytest.mark.parametrize("model", ["mobilenetv2", "resnet50"])
def test_tensorflow_native_and_tf2onnx_agree(cli, model):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    local = [*TINY, "--runner", "local"]
    tf_rec = run_ok(cli, "--image", "tf-cpu", "--model", model, *local)
    onnx_rec = run_ok(cli, "--image", "onnx-cpu", "--model", model, "--source", "tensorflow", *local)
    assert tf_rec["result"]["providers_active"] == ["CPU:0"] and tf_rec["artifact"] is None
    assert onnx_rec["artifact"]["conversion"] == "tf2onnx" and onnx_rec["artifact"]["parity"]["ok"]
    assert onnx_rec["artifact"]["input_layout"] == "NCHW"
    assert tf_rec["result"]["predictions_digest"] == onnx_rec["result"]["predictions_digest"]


def test_tensorflow_loads_a_keras_weights_file_and_refuses_other_files(cli, tmp_path):
    pytest.importorskip("tensorflow")
    from suite.tf_models import build

    weights = tmp_path / "mobilenet.weights.h5"
    build("mobilenetv2", "tiny", "random", seed=7).save_weights(str(weights))
    local = [*TINY, "--runner", "local"]
    seeded = run_ok(cli, "--image", "tf-cpu", "--model", "mobilenetv2", *local)
    loaded = run_ok(cli, "--image", "tf-cpu", "--model", "mobilenetv2", "--weights", str(weights), *local)
    assert loaded["weights"] == "path"
    assert loaded["result"]["predictions_digest"] != seeded["result"]["predictions_digest"]
    wrong = tmp_path / "model.pt"
    wrong.write_bytes(b"PK\x03\x04 not keras")  # a zip, as a .pt file is; a file that is not is refused up front
    proc = cli("run", "--image", "tf-cpu", "--model", "mobilenetv2", "--weights", str(wrong), *local, "--campaign", "w")
    assert proc.returncode == 1
    (failed,) = cli.records("w")
    assert "neither a .weights.h5" in failed["failure"]["reason"]


def test_mxnet_native_and_mx2onnx_agree(cli):
    pytest.importorskip("mxnet")
    local = [*TINY, "--runner", "local"]
    mx_rec = run_ok(cli, "--image", "mxnet-cpu", "--model", "mobilenetv2", *local)
    onnx_rec = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", "--source", "mxnet", *local)
    assert mx_rec["result"]["providers_active"] == ["cpu(0)"]
    assert onnx_rec["artifact"]["conversion"] == "mx2onnx" and onnx_rec["artifact"]["parity"]["ok"]
    assert mx_rec["result"]["predictions_digest"] == onnx_rec["result"]["predictions_digest"]


# --- docker: the images ---------------------------------------------------------------------


@pytest.mark.docker
def test_openvino_image_runs_torch2onnx_like_onnx_cpu(cli, docker_client):
    need_image(docker_client, "openvino-cpu")
    campaign = f"ov-{uuid.uuid4().hex[:6]}"
    dock = [*TINY, "--runner", "docker"]
    ort_rec = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", *dock, campaign=campaign)
    ov_rec = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *dock, campaign=campaign)
    assert ov_rec["runner"]["kind"] == "docker" and ov_rec["result"]["providers_active"] == ["CPU"]
    assert ov_rec["artifact"]["conversion"] == "torch2onnx" and ov_rec["artifact"]["parity"]["ok"]
    assert ov_rec["result"]["predictions_digest"] == ort_rec["result"]["predictions_digest"]
    # The ONNX -> OpenVINO IR conversion runs in the OpenVINO image, with its parity check there.
    ir_rec = run_ok(
        cli,
        "--image",
        "openvino-cpu",
        "--model",
        "mobilenetv2",
        *dock,
        "--option",
        "model_format=ir",
        campaign=campaign,
    )
    assert ir_rec["artifact"]["conversion"] == "onnx2openvino" and ir_rec["artifact"]["parity"]["ok"]
    assert ir_rec["artifact"]["converted_by"]["kind"] == "docker"
    assert ir_rec["result"]["options_used"]["model_format"] == "ir"
    assert ir_rec["result"]["predictions_digest"] == ort_rec["result"]["predictions_digest"]
    # The OpenVINO EP's options are explicit and recorded as the session reports them.
    assert ov_rec["result"]["compile_step"] == "compile_model (CPU plugin)"


@pytest.mark.docker
def test_onnx_openvino_image_runs_on_the_openvino_provider(cli, docker_client):
    need_image(docker_client, "onnx-openvino")
    campaign = f"ortov-{uuid.uuid4().hex[:6]}"
    dock = [*TINY, "--runner", "docker"]
    cpu_rec = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", *dock, campaign=campaign)
    ov_rec = run_ok(cli, "--image", "onnx-openvino", "--model", "mobilenetv2", *dock, campaign=campaign)
    result = ov_rec["result"]
    assert ov_rec["provider"] == "openvino"
    assert result["providers_active"][0] == "OpenVINOExecutionProvider"
    assert result["versions"]["onnxruntime-openvino"]
    assert result["predictions_digest"] == cpu_rec["result"]["predictions_digest"]
    # The OpenVINO EP's options are explicit (f32, CPU) and recorded as the session reports them.
    assert result["options_used"]["provider_options"]["precision"] == "FP32"
    assert result["options_used"]["provider_options"]["device_type"] == "CPU"


@pytest.mark.docker
def test_tf_image_native_and_tf2onnx_on_onnxruntime_and_openvino_agree(cli, docker_client):
    for image in ("tf-cpu", "openvino-cpu"):
        need_image(docker_client, image)
    campaign = f"tf-{uuid.uuid4().hex[:6]}"
    dock = [*TINY, "--runner", "docker"]
    tf_rec = run_ok(cli, "--image", "tf-cpu", "--model", "mobilenetv2", *dock, campaign=campaign)
    ort_rec = run_ok(
        cli, "--image", "onnx-cpu", "--model", "mobilenetv2", "--source", "tensorflow", *dock, campaign=campaign
    )
    ov_rec = run_ok(
        cli, "--image", "openvino-cpu", "--model", "mobilenetv2", "--source", "tensorflow", *dock, campaign=campaign
    )
    assert tf_rec["engine"] == "tensorflow" and tf_rec["result"]["providers_active"] == ["CPU:0"]
    assert tf_rec["result"]["versions"]["keras"]
    artifact = ort_rec["artifact"]
    assert artifact["conversion"] == "tf2onnx" and artifact["converted_by"]["kind"] == "docker"
    assert artifact["parity"]["ok"] and artifact["parity"]["argmax_agreement"] == 1.0
    assert artifact["input_layout"] == "NCHW" and artifact["versions"]["tf2onnx"]
    assert ov_rec["artifact"]["key"] == artifact["key"]  # converted once, reused
    digests = {r["image"]: r["result"]["predictions_digest"] for r in (tf_rec, ort_rec, ov_rec)}
    assert len(set(digests.values())) == 1, digests


@pytest.mark.docker
def test_tf_image_pretrained_weights_offline_fail_with_the_reason(cli, docker_client):
    need_image(docker_client, "tf-cpu")
    # Benchmark containers have no network: keras cannot download, and the record says so.
    proc = cli(
        "run",
        "--image",
        "tf-cpu",
        "--model",
        "resnet50",
        "--weights",
        "pretrained",
        "--runner",
        "docker",
        "--samples",
        "2",
        "--warmup",
        "0",
    )
    assert proc.returncode == 1
    (failed,) = cli.records()
    assert failed["status"] == "failed" and failed["weights"] == "pretrained"
    assert "could not download the pretrained weights of resnet50" in failed["failure"]["reason"]


@pytest.mark.docker
def test_mxnet_image_native_and_mx2onnx_on_onnxruntime_and_openvino_agree(cli, docker_client):
    for image in ("mxnet-cpu", "openvino-cpu"):
        need_image(docker_client, image)
    campaign = f"mx-{uuid.uuid4().hex[:6]}"
    dock = [*TINY, "--runner", "docker"]
    mx_rec = run_ok(cli, "--image", "mxnet-cpu", "--model", "mobilenetv2", *dock, campaign=campaign)
    ort_rec = run_ok(
        cli, "--image", "onnx-cpu", "--model", "mobilenetv2", "--source", "mxnet", *dock, campaign=campaign
    )
    ov_rec = run_ok(
        cli, "--image", "openvino-cpu", "--model", "mobilenetv2", "--source", "mxnet", *dock, campaign=campaign
    )
    assert mx_rec["engine"] == "mxnet" and mx_rec["result"]["versions"]["mxnet"] == "1.9.1"
    artifact = ort_rec["artifact"]
    assert artifact["conversion"] == "mx2onnx" and artifact["parity"]["ok"]
    assert artifact["versions"]["onnx"].startswith("1.17")  # mx.onnx needs onnx < 1.18
    digests = {r["image"]: r["result"]["predictions_digest"] for r in (mx_rec, ort_rec, ov_rec)}
    assert len(set(digests.values())) == 1, digests
