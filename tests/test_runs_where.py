"""Every command agrees on what runs where: `models inspect`, `serve`, `run` and `campaign plan` give the
same verdict on a model and an image, in the same words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.errors import UserError
from controller.requests import RunRequest, ServeSettings
from controller.serving.workload import ServingWorkload
from tests.conftest import REPO, controller

LLM_IMAGES = ("llamacpp-cpu", "ortgenai-cpu", "openvino-genai-cpu")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    np = pytest.importorskip("numpy")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((10, 3 * 8 * 8), np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixel_values"], ["f"]),
            helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("own") / "classifier.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from harness.serving.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-llama", arch="llama")


def serve_plan(image: str, model: Path) -> None:
    ServingWorkload(RunRequest(ServeSettings(image, str(model)))).plan()


def test_inspect_says_the_llm_runtimes_serve_a_language_model_as_serve_does(tiny_llama):
    proc = controller("models", "inspect", str(tiny_llama), "--json")
    assert proc.returncode == 0, proc.stderr
    images = json.loads(proc.stdout)["images"]
    for image in LLM_IMAGES:
        assert images[image]["serves"] and not images[image]["runs"], images[image]
        serve_plan(image, tiny_llama)  # serve takes it too: no refusal before any work
    assert images["llamacpp-cpu"]["engines"]["llamacpp"] == "serve via lm2gguf-f16 (in torch-cpu)"
    assert images["openvino-genai-cpu"]["engines"]["openvino-genai"] == (
        "serve via lm2onnx (in torch-cpu) -> lm2openvino-genai (in openvino-genai-cpu)"
    )
    assert images["onnx-cpu"]["runs"] and images["onnx-cpu"]["serves"]  # batch via torch2onnx, serving via lm2onnx
    text = controller("models", "inspect", str(tiny_llama)).stdout
    assert "engine unknown" not in text


def test_a_file_is_refused_by_serve_in_the_words_inspect_uses(onnx_file):
    found = json.loads(controller("models", "inspect", str(onnx_file), "--json").stdout)["images"]
    why = "no: serves causal language models (transformers folders) only; this is an ONNX file"
    for image in LLM_IMAGES:
        assert not found[image]["runnable"]
        assert why in found[image]["engines"].values()
    proc = controller("serve", "--image", "onnx-cpu", "--model", str(onnx_file))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: engine onnxruntime cannot serve {onnx_file}: it serves causal language models (transformers "
        "folders) only; this is an ONNX file"
    )
    with pytest.raises(UserError, match="this is an ONNX file"):
        serve_plan("llamacpp-cpu", onnx_file)


def test_campaign_plan_says_torch_cannot_run_an_onnx_file_whatever_the_model_size(onnx_file, tmp_path):
    """A newcomer adapts ci-smoke (model_size = "tiny", a torch2onnx and a torch configuration) to their file."""
    text = (REPO / "suite" / "campaigns" / "ci-smoke.toml").read_text()
    campaign = tmp_path / "mine.toml"
    campaign.write_text(text.replace('models = ["resnet50", "mobilenetv2"]', f'models = ["{onnx_file}"]'))
    proc = controller("campaign", "plan", str(campaign), "--results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "4 runs = 2 configurations × 1 model × 1 batch size × 2 repetitions" in out
    assert "--model-size" not in out  # the campaign's model_size chooses among registered models only
    assert "classifier (an ONNX file) cannot run on torch: torch needs a torch module" in out
    assert "it runs on onnxruntime, openvino, tensorrt" in out
    inspected = json.loads(controller("models", "inspect", str(onnx_file), "--json").stdout)
    assert "needs a torch module" in inspected["images"]["torch-cpu"]["engines"]["torch"]


def test_the_campaign_for_your_own_model_plans_each_cpu_runtime_that_takes_it(onnx_file, tmp_path):
    own = ("campaign", "plan", "suite/campaigns/own-model.toml", "--results", str(tmp_path))
    proc = controller(*own, "--set", f'matrix.models=["{onnx_file}"]')
    assert proc.returncode == 0, proc.stderr
    assert "20 runs = 4 configurations × 1 model × 1 batch size × 5 repetitions" in proc.stdout
    cells = json.loads(controller(*own, "--set", f'matrix.models=["{onnx_file}"]', "--json").stdout)
    assert [c["configuration"] for c in cells] == [
        "onnxruntime",
        "openvino",
        "openvino-ir",
        "onnxruntime-openvino-ep",
    ]
    for cell in cells:  # each takes an ONNX file: what may keep one from running is this host, not the model
        assert "classifier" not in (cell["reason"] or "") and "cannot run on" not in (cell["reason"] or ""), cell
    missing = controller(*own)  # as shipped it reads ./model.onnx, which the repository has not
    assert missing.returncode == 2
    assert "models names ./model.onnx, which does not exist" in missing.stderr
    assert "--set 'matrix.models=[\"PATH\"]'" in missing.stderr
