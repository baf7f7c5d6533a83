"""Compile steps timed apart from load, torch.compile, and ONNX Runtime's provider options and
IO binding. Real frameworks on tiny models; the GPU providers' options are checked as the
options ONNX Runtime would be given (their sessions need a GPU, see the `gpu` tests)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from harness.engines.base import EngineError
from harness.protocol import RunSpec, parse_stream
from tests.test_engines_cpu import TINY, run_ok


def spec_for(engine: str, **fields: Any) -> RunSpec:
    base: dict[str, Any] = {
        "run_id": "t",
        "engine": engine,
        "provider": "cpu",
        "model": "mobilenetv2",
        "model_size": "tiny",
        "weights": "random",
        "batch_size": 2,
        "samples": 8,
        "warmup": 1,
        "seed": 7,
    }
    return RunSpec(**(base | fields))


def harness(spec: RunSpec) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``python -m harness run`` on the spec: the process and its parsed output."""
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--spec", spec.to_json()], capture_output=True, text=True
    )
    return proc, parse_stream(proc.stdout)


def harness_run(engine: str, **options: Any) -> dict[str, Any]:
    proc, out = harness(spec_for(engine, options=options))
    assert proc.returncode == 0 and out.result is not None, (out.error, proc.stderr[-3000:])
    phases = [(e["phase"], e["edge"]) for e in out.events]
    return {"result": out.result, "phases": phases}


@pytest.mark.slow
def test_torch_compile_is_timed_as_its_own_phase_and_predicts_like_eager():
    pytest.importorskip("torch")
    eager = harness_run("torch")
    compiled = harness_run("torch-compile")
    result = compiled["result"]
    # The compilation (first call) is its own phase between load and warm-up, never in the window.
    assert compiled["phases"] == [
        ("load", "start"),
        ("load", "end"),
        ("compile", "start"),
        ("compile", "end"),
        ("warmup", "start"),
        ("warmup", "end"),
        ("measure", "start"),
        ("measure", "end"),
    ]
    assert isinstance(result["compile_s"], float) and result["compile_s"] > 0
    assert result["compile_step"].startswith("torch.compile (backend inductor, mode default)")
    assert result["options_used"]["compile_mode"] == "default"
    assert result["predictions_digest"] == eager["result"]["predictions_digest"]
    # Eager torch has no compile step: recorded as absent, not as 0 seconds.
    assert eager["result"]["compile_s"] is None and eager["result"]["compile_step"] is None
    assert ("compile", "start") not in eager["phases"]


def test_torch_compile_rejects_an_unknown_mode():
    pytest.importorskip("torch")
    proc, out = harness(spec_for("torch-compile", batch_size=1, samples=1, options={"compile_mode": "fastest"}))
    assert proc.returncode != 0 and out.error is not None
    assert "compile_mode 'fastest' is not one of default, reduce-overhead" in out.error["message"]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_onnxruntime_io_binding_gives_the_same_predictions_and_is_recorded(cli):
    pytest.importorskip("onnxruntime")
    local = [*TINY, "--runner", "local"]
    plain = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", *local)
    bound = run_ok(cli, "--image", "onnx-cpu", "--model", "mobilenetv2", *local, "--option", "io_binding=true")
    assert plain["result"]["options_used"]["io_binding"] is False
    assert bound["result"]["options_used"]["io_binding"] is True
    assert bound["result"]["timing_scope"] == "compute"
    assert bound["result"]["predictions_digest"] == plain["result"]["predictions_digest"]


def test_openvino_compilation_is_recorded_apart_from_load(cli):
    pytest.importorskip("openvino")
    rec = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *TINY, "--runner", "local")
    assert rec["result"]["compile_step"] == "compile_model (CPU plugin)"
    assert rec["result"]["compile_s"] > 0 and rec["result"]["load_s"] > 0
    proc = cli("run", "--image", "openvino-cpu", "--model", "mobilenetv2", *TINY, "--runner", "local")
    assert "compile" in proc.stdout and "(outside the window)" in proc.stdout


def test_gpu_provider_options_are_explicit(tmp_path):
    pytest.importorskip("onnxruntime")
    from harness.engines.onnxruntime_engine import provider_options

    # cuDNN's algorithm search changes speed (and can change results): always set, default as ORT's.
    assert provider_options("cuda", {}) == {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert provider_options("cuda", {"cudnn_conv_algo_search": "heuristic"})["cudnn_conv_algo_search"] == "HEURISTIC"
    with pytest.raises(EngineError, match="cudnn_conv_algo_search 'FAST' is not one of"):
        provider_options("cuda", {"cudnn_conv_algo_search": "fast"})
    # TensorRT: fp16 off unless asked; the engine cache only where the folder is writable.
    cached = provider_options("tensorrt", {"trt_cache_dir": str(tmp_path), "trt_fp16": "true"})
    assert cached["trt_fp16_enable"] == "True" and cached["trt_engine_cache_enable"] == "True"
    assert cached["trt_engine_cache_path"] == str(tmp_path)
    nowhere = provider_options("tensorrt", {"trt_cache_dir": str(tmp_path / "missing")})
    assert nowhere["trt_engine_cache_enable"] == "False" and "trt_engine_cache_path" not in nowhere
    assert nowhere["trt_fp16_enable"] == "False"
    # OpenVINO EP: device and precision always explicit (f32 unless asked), threads when given.
    assert provider_options("openvino", {"threads": "2"}) == {
        "device_type": "CPU",
        "precision": "FP32",
        "num_of_threads": "2",
    }
    with pytest.raises(EngineError, match="precision 'INT4'"):
        provider_options("openvino", {"precision": "int4"})


def test_openvino_ir_is_a_cached_second_conversion_that_predicts_like_the_onnx_file(cli):
    pytest.importorskip("openvino")
    local = [*TINY, "--runner", "local"]
    onnx_rec = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *local)
    ir_rec = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *local, "--option", "model_format=ir")
    art = ir_rec["artifact"]
    assert art["conversion"] == "onnx2openvino" and art["artifact_file"] == "model.xml"
    # The chain is on the record: the IR was made from the run's torch2onnx artifact.
    assert art["source_artifact"] == {"key": onnx_rec["artifact"]["key"], "conversion": "torch2onnx"}
    assert art["parity"]["ok"] and art["compress_to_fp16"] is False
    assert ir_rec["result"]["options_used"]["model_format"] == "ir"
    assert onnx_rec["result"]["options_used"]["model_format"] == "onnx"
    assert ir_rec["result"]["predictions_digest"] == onnx_rec["result"]["predictions_digest"]
    again = run_ok(cli, "--image", "openvino-cpu", "--model", "mobilenetv2", *local, "--option", "model_format=ir")
    assert again["artifact"]["reused"] and again["artifact"]["key"] == art["key"]


def test_model_format_is_refused_where_it_means_nothing(cli):
    proc = cli("run", "--image", "onnx-cpu", "--model", "mobilenetv2", *TINY, "--option", "model_format=ir")
    assert proc.returncode == 2
    assert "unknown option 'model_format' for engine onnxruntime" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = cli("run", "--image", "openvino-cpu", "--model", "mobilenetv2", *TINY, "--option", "model_format=xml")
    assert bad.returncode == 2 and "is not one of onnx, ir" in bad.stderr


def test_a_torch_build_without_kernels_for_the_gpu_is_recognised():
    pytest.importorskip("torch")
    from harness.engines.torch_engine import has_kernels_for

    # PyPI's old CUDA 11 wheels (and MXNet's) stop before Hopper: refused on an H100 (sm_90).
    assert not has_kernels_for(["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"], 9, 0)
    assert has_kernels_for(["sm_80", "sm_86", "sm_90", "sm_100"], 9, 0)
    assert has_kernels_for(["sm_80", "compute_80"], 9, 0)  # PTX, compiled by the driver
    assert has_kernels_for(["sm_80"], 8, 6)  # same major, binary compatible
    assert not has_kernels_for(["sm_90a"], 10, 0)  # arch-specific kernels run on that arch only


def test_yes_no_options_mean_the_same_on_every_engine_and_nonsense_is_refused(cli):
    from harness.engines.base import option_flag

    for value in ("1", "true", "Yes", "on"):
        assert option_flag({"io_binding": value}, "io_binding", False) is True
    for value in ("0", "false", "No", "off"):
        assert option_flag({"io_binding": value}, "io_binding", True) is False
    assert option_flag({}, "io_binding", True) is True
    proc = cli(
        "run",
        "--image",
        "onnx-cpu",
        "--model",
        "mobilenetv2",
        *TINY,
        "--runner",
        "local",
        "--option",
        "io_binding=maybe",
        "--campaign",
        "flag",
    )
    # Refused before anything starts, with the values that are valid; nothing recorded.
    assert proc.returncode == 2
    assert "option io_binding='maybe' is not a yes/no value" in proc.stderr
    assert cli.records("flag") == []
