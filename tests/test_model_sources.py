"""Models given as files, folders and hub ids (suite/sources.py): what `models inspect` reads from
them without a framework, every bad input's error, and harness runs of each on the local engines
that can serve it, with the conversions' parity checks.

The models are built here: a small torch model exported to ONNX (with a dynamic non-batch axis),
tiny transformers folders of three tasks made from configs, a TorchScript file, an OpenVINO IR
converted from the ONNX file (needs openvino in this Python), and a .keras archive written by hand
(TensorFlow itself runs in the tf-cpu image: its runs are docker tests).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from harness.protocol import RunSpec, parse_stream
from suite.sources import ModelSource, SourceError, parse_input_shapes, resolve_source
from tests.conftest import controller

torch = pytest.importorskip("torch")


# --- models made here ------------------------------------------------------------------------------


class TwoInputs(torch.nn.Module):  # type: ignore[name-defined]
    """An image and a token sequence of any length: one dynamic axis besides the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.embed = torch.nn.Embedding(50, 4)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, pixels: Any, ids: Any) -> Any:
        image = self.conv(pixels).mean((2, 3))
        text = self.embed(ids).mean(1)
        return self.head(torch.cat([image, text], 1))


def _example() -> tuple[Any, Any]:
    return torch.randn(2, 3, 16, 16), torch.randint(0, 50, (2, 7))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = TwoInputs().eval()
    torch.onnx.export(
        net,
        _example(),
        str(root / "two.onnx"),
        input_names=["pixels", "ids"],
        output_names=["scores"],
        dynamic_axes={"pixels": {0: "batch"}, "ids": {0: "batch", 1: "sequence"}, "scores": {0: "batch"}},
        dynamo=False,
    )
    torch.jit.trace(net, _example()).save(str(root / "two.pt"))
    torch.save(net.state_dict(), root / "state.pt")
    return root


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    text = {"vocab_size": 99, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    made = {
        "image": transformers.ViTForImageClassification(
            transformers.ViTConfig(
                image_size=16,
                patch_size=8,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                num_labels=3,
            )
        ),
        "text": transformers.BertForSequenceClassification(
            transformers.BertConfig(**text, intermediate_size=32, max_position_embeddings=64, num_labels=2)
        ),
        "lm": transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=99, n_embd=16, n_layer=1, n_head=2, n_positions=32)
        ),
    }
    folders = {}
    for name, model in made.items():
        torch.manual_seed(0)
        folders[name] = root / name
        model.save_pretrained(folders[name])
    return folders


def keras_archive(path: Path, layers: list[dict[str, Any]], class_name: str = "Functional") -> Path:
    """A .keras file as Keras 3 writes it: config.json, metadata.json and the weights."""
    config = {
        "module": "keras",
        "class_name": class_name,
        "config": {
            "name": "net",
            "layers": layers,
            "input_layers": [[layers[0]["config"]["name"], 0, 0]],
            "output_layers": [["dense", 0, 0]],
        },
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return path


INPUT_LAYER = {
    "class_name": "InputLayer",
    "config": {"name": "image", "batch_shape": [None, 32, 32, 3], "dtype": "float32"},
}


def harness_run(source: ModelSource, engine: str, batch: int = 2, **fields: Any) -> dict[str, Any]:
    """``python -m harness run`` of a source, as the controller will start it (local runner paths)."""
    base: dict[str, Any] = {"samples": 8, "warmup": 1, "model_source": source.harness_fields(source.location, batch)}
    spec = RunSpec(run_id="t", engine=engine, provider="cpu", model=source.label, batch_size=batch, **(base | fields))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--spec", spec.to_json()], capture_output=True, text=True
    )
    out = parse_stream(proc.stdout)
    assert proc.returncode == 0 and out.result is not None, (out.error, proc.stderr[-3000:])
    return out.result


def convert(source: ModelSource, conversion: str, cache: Path, image: str = "torch-cpu") -> Any:
    from controller.artifacts import Conversion, ensure_artifact
    from controller.runners.local import LocalRunner

    conv = Conversion(conversion, image, source.label, "full", "random", None, 0, None, source)
    return ensure_artifact(LocalRunner(), local_cache(cache), conv, 900, lambda _: None)


def local_cache(root: Path) -> Any:
    from controller.cache import ArtifactCache

    return ArtifactCache(root, False, lambda _: None)


# --- what inspect reads ------------------------------------------------------------------------------


def test_onnx_file_inputs_dynamic_axes_vocabulary_parameters_and_sha256(models):
    source = resolve_source(str(models / "two.onnx"))
    pixels, ids = source.inputs
    assert (pixels.name, pixels.dtype, pixels.dims, pixels.shape) == (
        "pixels",
        "float32",
        ("batch", 3, 16, 16),
        (3, 16, 16),
    )
    assert (ids.dtype, ids.dims, ids.shape) == ("int64", ("batch", "sequence"), None)
    assert ids.fill == "ids" and ids.vocab_size == 50  # the embedding table it indexes
    assert [o.name for o in source.outputs] == ["scores"]
    assert source.parameters == sum(p.numel() for p in TwoInputs().parameters())
    assert source.digest == hashlib.sha256((models / "two.onnx").read_bytes()).hexdigest()
    assert source.engines() == ["onnxruntime", "openvino", "tensorrt"]
    assert "torch module" in source.routes()["torch"].reason
    # The sequence needs a size; given once, it is one sample's shape.
    with pytest.raises(SourceError, match=r"input ids of two has a dynamic axis 1 \(sequence\).*--input-shape ids="):
        source.check_run(2)
    sized = source.with_shapes({"ids": (12,)})
    assert sized.inputs[1].shape == (12,) and sized.harness_fields("/m", 2)["inputs"][1]["vocab_size"] == 50


def test_inspect_prints_the_images_that_can_run_it_and_why_not(models):
    proc = controller("models", "inspect", str(models / "two.onnx"), "--input-shape", "ids=9", "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["kind"] == "onnx" and found["sha256"] and found["missing_shapes"] is None
    assert found["images"]["onnx-cpu"]["runnable"] and found["images"]["openvino-cpu"]["runnable"]
    assert found["images"]["tensorrt"]["needs"] == ["an NVIDIA GPU"]
    assert not found["images"]["torch-cpu"]["runnable"]
    assert "needs a torch module" in found["images"]["torch-cpu"]["engines"]["torch"]
    text = controller("models", "inspect", str(models / "two.onnx")).stdout
    assert "needs --input-shape" in text and "to run it" in text and "ids below 50" in text


def test_models_list_names_the_registry_and_where_each_runs():
    proc = controller("models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"resnet50", "mobilenetv2", "bert-imdb", "digits-cnn"}
    assert "tf-cpu" in rows["resnet50"]["images"] and "tf-cpu" not in rows["digits-cnn"]["images"]
    assert rows["bert-imdb"]["engines"]["onnxruntime"].startswith("via torch2onnx")


def test_transformers_folders_of_three_tasks(hf_folders):
    image, text, lm = (resolve_source(str(hf_folders[k])) for k in ("image", "text", "lm"))
    assert (image.task, image.details["auto_class"]) == ("image-classification", "AutoModelForImageClassification")
    assert image.inputs[0].name == "pixel_values" and image.inputs[0].shape == (3, 16, 16)
    assert (text.task, [s.name for s in text.inputs]) == (
        "text-classification",
        ["input_ids", "attention_mask", "token_type_ids"],
    )
    assert text.inputs[0].vocab_size == 99 and text.inputs[0].shape == (64,)  # capped by its 64 positions
    assert (lm.task, lm.details["auto_class"]) == ("text-generation", "AutoModelForCausalLM")
    assert lm.inputs[0].shape == (32,) and [s.name for s in lm.inputs] == ["input_ids", "attention_mask"]
    # A sequence length binds every input of that axis; a folder's digest covers every file.
    assert {s.shape for s in text.with_shapes({"input_ids": (8,)}).inputs} == {(8,)}
    assert [f[0] for f in image.files] == ["config.json", "model.safetensors"]
    assert image.parameters == sum(
        p.numel()
        for p in __import__("transformers")
        .AutoModelForImageClassification.from_pretrained(hf_folders["image"])
        .parameters()
    )
    assert image.routes()["onnxruntime"].conversions == ("torch2onnx",)
    assert image.routes()["torchscript"].conversions == ("torch2torchscript",)
    assert "Keras file" in image.routes()["tensorflow"].reason


def test_torchscript_file_keras_file_and_hub_cache(models, hf_folders, tmp_path, monkeypatch):
    traced = resolve_source(str(models / "two.pt"))
    assert traced.kind == "torchscript" and traced.engines() == ["torchscript"]
    assert [(s.name, s.dtype, s.shape) for s in traced.inputs] == [
        ("pixels", "float32", (3, 16, 16)),
        ("ids", "int64", (7,)),
    ]
    assert traced.parameters == sum(p.numel() for p in TwoInputs().parameters())

    keras = resolve_source(str(keras_archive(tmp_path / "net.keras", [INPUT_LAYER])))
    assert keras.kind == "keras" and keras.inputs[0].dims == ("batch", 32, 32, 3)
    assert keras.engines() == ["onnxruntime", "openvino", "tensorrt", "tensorflow"]
    assert keras.routes()["onnxruntime"].conversions == ("tf2onnx",)

    # A hub id resolves to its snapshot in the local Hugging Face cache; the whole repository
    # folder is what a container mounts (the snapshot's files link into blobs/).
    repo = tmp_path / "hub" / "models--acme--tiny-vit"
    shutil.copytree(hf_folders["image"], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = resolve_source("hf:acme/tiny-vit")
    assert (hub.kind, hub.hub_id, hub.label) == ("hf", "acme/tiny-vit", "tiny-vit")
    assert hub.identity()["location"] == "hf:acme/tiny-vit"
    assert hub.digest == resolve_source(str(hf_folders["image"])).digest
    assert hub.mounts() == [(str(repo), repo.name)] and hub.entry == f"{repo.name}/snapshots/abc123"


# --- bad input --------------------------------------------------------------------------------------


def _refused(*args: str, env: dict[str, str] | None = None) -> str:
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "controller", "models", "inspect", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def test_every_bad_model_is_one_clear_line_and_exit_2(models, hf_folders, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert "not a model joulebench can read: expected an ONNX file" in _refused(str(notes))
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + bytes(range(40)))
    assert "is not an ONNX model whose graph can be read" in _refused(str(garbage))
    assert "a torch.save checkpoint" in _refused(str(models / "state.pt"))
    assert "neither a registered model" in _refused(str(tmp_path / "missing.onnx"))
    assert "subclassed Keras model" in _refused(
        str(keras_archive(tmp_path / "sub.keras", [INPUT_LAYER], class_name="MyNet"))
    )
    onnx = str(models / "two.onnx")
    assert "has 2 sizes; input ids of two takes 1" in _refused(onnx, "--input-shape", "ids=3x4")
    assert "axis 1 of pixels is fixed at 3" in _refused(onnx, "--input-shape", "pixels=4x16x16")
    assert "names colour, not an input of two; its inputs: pixels, ids" in _refused(onnx, "--input-shape", "colour=3")
    assert "--input-shape takes NAME=DIMS" in _refused(onnx, "--input-shape", "ids")
    seq2seq = tmp_path / "t5"
    shutil.copytree(hf_folders["text"], seq2seq)
    config = json.loads((seq2seq / "config.json").read_text())
    (seq2seq / "config.json").write_text(json.dumps({**config, "architectures": ["T5ForConditionalGeneration"]}))
    assert "has a head no AutoModelFor... class joulebench runs loads" in _refused(str(seq2seq))
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    assert "is not in the Hugging Face cache" in _refused("hf:acme/nothing", env=offline)
    assert "longer than text's 64 positions" in _refused(str(hf_folders["text"]), "--input-shape", "input_ids=100")


def test_a_changed_file_changes_the_conversion_key(hf_folders, tmp_path):
    from controller.artifacts import cache_inputs
    from controller.cache import key_of
    from harness.protocol import ConvertSpec

    def cache_key(spec: ConvertSpec, env: str, weights: None, source: dict | None = None) -> tuple[str, dict]:
        inputs = cache_inputs(spec, env, weights, source)
        return key_of(inputs), inputs

    folder = tmp_path / "copy"
    shutil.copytree(hf_folders["text"], folder)
    probe = ConvertSpec(conversion="torch2onnx", model="copy")
    before = cache_key(probe, "env", None, resolve_source(str(folder)).conversion_key())[0]
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "id2label": {"0": "no", "1": "yes"}}))
    after = cache_key(probe, "env", None, resolve_source(str(folder)).conversion_key())[0]
    shorter = cache_key(probe, "env", None, resolve_source(str(folder), {"input_ids": (8,)}).conversion_key())[0]
    assert len({before, after, shorter}) == 3
    assert cache_key(probe, "env", None)[0] == cache_key(probe, "env", None, None)[0]  # the registry's key as before


# --- runs ------------------------------------------------------------------------------------------


def test_onnx_file_runs_on_onnxruntime_and_openvino_alike(models):
    source = resolve_source(str(models / "two.onnx"), parse_input_shapes(["ids=11"]))
    ort = harness_run(source, "onnxruntime")
    assert ort["providers_active"][0] == "CPUExecutionProvider" and ort["samples"] == 8
    assert len(set(ort["predictions_head"])) > 1
    with pytest.raises(SourceError, match="fixes the batch|dynamic axis"):
        resolve_source(str(models / "two.onnx")).harness_fields("/m", 2)
    pytest.importorskip("openvino")
    ov = harness_run(source, "openvino")
    assert ov["options_used"]["model_format"] == "onnx"
    assert ov["predictions_digest"] == ort["predictions_digest"]


def test_openvino_ir_made_from_the_onnx_file(models, artifact_cache):
    pytest.importorskip("openvino")
    from controller.models import conversion_steps, source_artifact
    from controller.runners.local import LocalRunner

    source = resolve_source(str(models / "two.onnx"), {"ids": (11,)})
    assert conversion_steps(source, "openvino", "openvino-cpu", {}) == []  # read as ONNX, natively
    steps = conversion_steps(source, "openvino", "openvino-cpu", {"model_format": "ir"})
    assert steps == [("onnx2openvino", "openvino-cpu")]
    artifact = source_artifact(LocalRunner(), local_cache(artifact_cache), source, steps, 0, 900, lambda _: None)
    assert artifact is not None and artifact.meta["parity"]["ok"], artifact
    assert artifact.meta["key_inputs"]["model_source"]["sha256"] == source.digest
    ir = resolve_source(str(artifact_cache / artifact.relpath), {"ids": (11,)})
    assert ir.kind == "openvino-ir" and ir.engines() == ["openvino"]
    assert [(s.name, s.dtype) for s in ir.inputs] == [("pixels", "float32"), ("ids", "int64")]
    assert ir.inputs[0].dims == ("batch", 3, 16, 16) and len(ir.files) == 2
    assert ir.inputs[1].vocab_size == 50  # the embedding table its Gather indexes
    from_ir = harness_run(ir, "openvino")
    from_onnx = harness_run(source, "onnxruntime")
    assert from_ir["options_used"]["model_format"] == "ir"
    assert from_ir["predictions_digest"] == from_onnx["predictions_digest"]


def test_torchscript_file_runs_on_the_torchscript_engine(models):
    source = resolve_source(str(models / "two.pt"))
    # A TorchScript file does not say which table its ids index: they are drawn as zeros (always valid).
    assert [s.fill for s in source.inputs] == ["normal", "zeros"]
    result = harness_run(source, "torchscript")
    onnx = resolve_source(str(models / "two.onnx"), {"ids": (7,)})
    fields = onnx.harness_fields(onnx.location, 2)
    fields["inputs"][1]["fill"] = "zeros"
    # Same weights, same seeded inputs of the same shapes: the same predictions.
    assert harness_run(onnx, "onnxruntime", model_source=fields)["predictions_digest"] == result["predictions_digest"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["image", "text", "lm"])
def test_transformers_folder_natively_and_converted_with_parity(hf_folders, artifact_cache, task):
    shapes = {"text": {"input_ids": (16,)}, "lm": {"input_ids": (8,)}}.get(task)
    source = resolve_source(str(hf_folders[task]), shapes)
    native = harness_run(source, "torch")
    assert native["versions"]["torch"]
    onnx = convert(source, "torch2onnx", artifact_cache)
    assert onnx.meta["parity"]["ok"], onnx.meta["parity"]
    assert onnx.meta["key_inputs"]["model_source"]["sha256"] == source.digest
    root = {"artifact": onnx.relpath, "artifact_root": str(artifact_cache)}
    converted = harness_run(source, "onnxruntime", **root)
    assert converted["predictions_digest"] == native["predictions_digest"]
    if task == "image" and __import__("importlib").util.find_spec("openvino"):
        assert harness_run(source, "openvino", **root)["predictions_digest"] == native["predictions_digest"]
        # The chain to OpenVINO IR: torch2onnx (reused from the cache), then onnx2openvino from it.
        from controller.models import conversion_steps, source_artifact
        from controller.runners.local import LocalRunner

        steps = conversion_steps(source, "openvino", "openvino-cpu", {"model_format": "ir"})
        assert steps == [("torch2onnx", "torch-cpu"), ("onnx2openvino", "openvino-cpu")]
        ir = source_artifact(LocalRunner(), local_cache(artifact_cache), source, steps, 0, 900, lambda _: None)
        assert ir is not None and ir.meta["source_artifact"]["key"] == onnx.key and ir.meta["parity"]["ok"]
        from_ir = harness_run(source, "openvino", artifact=ir.relpath, artifact_root=str(artifact_cache))
        assert from_ir["options_used"]["model_format"] == "ir"
        assert from_ir["predictions_digest"] == native["predictions_digest"]
    if task == "text":
        script = convert(source, "torch2torchscript", artifact_cache)
        assert script.meta["parity"]["ok"], script.meta["parity"]
        traced = harness_run(source, "torchscript", artifact=script.relpath, artifact_root=str(artifact_cache))
        assert traced["predictions_digest"] == native["predictions_digest"]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative sizes are ten-byte two's complement, as protobuf writes int64
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def _len(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _tensor_info(name: str, dims: list[int]) -> bytes:
    shape = b"".join(_len(2, _int(1, d)) for d in dims)
    return _len(1, name.encode()) + _int(2, 1) + _len(3, shape)  # dtype 1: DT_FLOAT


def test_saved_model_signature_is_read_from_its_protobuf(tmp_path):
    # saved_model.pb written field by field as TensorFlow lays it out (SavedModel > MetaGraphDef >
    # SignatureDef > TensorInfo), so the reader is checked without TensorFlow.
    signature = (
        _len(1, _len(1, b"x") + _len(2, _tensor_info("serving_default_x:0", [-1, 4])))
        + _len(2, _len(1, b"y") + _len(2, _tensor_info("StatefulPartitionedCall:0", [-1, 3])))
        + _len(3, b"tensorflow/serving/predict")
    )
    meta = _len(1, _len(4, b"serve")) + _len(5, _len(1, b"serving_default") + _len(2, signature))
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(_int(1, 1) + _len(2, meta))
    (folder / "variables" / "variables.index").write_bytes(b"index")
    source = resolve_source(str(folder))
    assert source.kind == "savedmodel" and len(source.files) == 2
    assert [(s.name, s.dtype, s.dims, s.shape) for s in source.inputs] == [("x", "float32", ("batch", 4), (4,))]
    assert [(o.name, o.dims) for o in source.outputs] == [("y", ["?", 3])]
    assert source.engines() == ["onnxruntime", "openvino", "tensorrt", "tensorflow"]
    assert source.harness_fields("/model/saved", 2)["signature"] == "serving_default"


@pytest.mark.slow
def test_labelled_datasets_fit_a_model_file_by_its_inputs(models, hf_folders, tmp_path):
    pytest.importorskip("sklearn")
    digits = tmp_path / "digits.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)).eval()
    torch.onnx.export(
        net,
        (torch.randn(2, 1, 8, 8),),
        str(digits),
        input_names=["image"],
        dynamic_axes={"image": {0: "n"}},
        dynamo=False,
    )
    result = harness_run(resolve_source(str(digits)), "onnxruntime", dataset="digits", limit=20, samples=20)
    assert result["dataset_info"]["preprocessing"] == "pixels / 16, NCHW"
    assert len(result["predictions"]) == len(result["labels"]) == 20
    # Texts, tokenised below the folder's vocabulary (it has no tokenizer: WordPiece trained on them).
    reviews = tmp_path / "reviews.csv"
    reviews.write_text(
        "text,label\n" + "".join(f"review number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(12))
    )
    text = resolve_source(str(hf_folders["text"]), {"input_ids": (16,)})
    result = harness_run(text, "torch", dataset="imdb", dataset_path=str(reviews), samples=12)
    assert len(result["labels"]) == 12 and "WordPiece" in result["dataset_info"]["preprocessing"]
    # A dataset whose samples do not fit the model's inputs is refused with the reason: by the
    # controller before anything runs, and by the harness.
    two = resolve_source(str(models / "two.onnx"), {"ids": (7,)})
    assert two.dataset_refusal("digits") == "dataset digits gives images; two takes pixels 3x16x16, ids 7"
    assert text.dataset_refusal("imdb") is None and resolve_source(str(digits)).dataset_refusal("digits") is None
    assert text.dataset_refusal("digits") == (
        "dataset digits serves image-classification models; text is a text-classification model"
    )
    spec = RunSpec(
        run_id="t",
        engine="onnxruntime",
        provider="cpu",
        model="two",
        samples=2,
        dataset="digits",
        model_source=resolve_source(str(models / "two.onnx"), {"ids": (7,)}).harness_fields(
            str(models / "two.onnx"), 1
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--spec", spec.to_json()], capture_output=True, text=True
    )
    assert proc.returncode == 3
    assert "dataset digits gives images; two takes pixels 3x16x16, ids 7" in parse_stream(proc.stdout).error["message"]


def test_large_files_are_hashed_once_per_version(tmp_path, monkeypatch):
    import os

    from suite import model_formats

    monkeypatch.setenv("JOULEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_formats, "LARGE_FILE", 16)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"a" * 32)
    first = model_formats.file_sha256(weights)
    assert first == hashlib.sha256(b"a" * 32).hexdigest()
    assert len(json.loads((tmp_path / "cache" / "sha256.json").read_text())) == 1
    weights.write_bytes(b"b" * 32)  # same size, new contents: a new version, hashed again
    os.utime(weights, ns=(1, 1))
    assert model_formats.file_sha256(weights) == hashlib.sha256(b"b" * 32).hexdigest()


def test_onnx_weights_in_an_external_data_file_are_hashed_mounted_and_run(models, tmp_path):
    onnx = pytest.importorskip("onnx")
    folder = tmp_path / "external"
    folder.mkdir()
    model = onnx.load(str(models / "two.onnx"))
    onnx.save(model, str(folder / "two.onnx"), save_as_external_data=True, location="two.weights", size_threshold=0)
    source = resolve_source(str(folder / "two.onnx"), {"ids": (5,)})
    assert [f[0] for f in source.files] == ["two.onnx", "two.weights"]
    assert source.mounts() == [(str(folder / "two.onnx"), "two.onnx"), (str(folder / "two.weights"), "two.weights")]
    assert source.parameters == resolve_source(str(models / "two.onnx")).parameters
    inline = harness_run(resolve_source(str(models / "two.onnx"), {"ids": (5,)}), "onnxruntime")
    assert harness_run(source, "onnxruntime")["predictions_digest"] == inline["predictions_digest"]
    (folder / "two.weights").unlink()
    with pytest.raises(SourceError, match="keeps weights in two.weights, which is not a file beside it"):
        resolve_source(str(folder / "two.onnx"))


# --- a user's own model through the command line, locally and in real Docker ---------------------

OWN_RUN = ["--samples", "8", "--batch-size", "2", "--warmup", "1"]


@pytest.mark.parametrize("runner", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_users_onnx_file_runs_from_the_command_line_named_by_its_sha256(models, cli, runner, request):
    """`run --model FILE --input-shape`: ONNX Runtime and OpenVINO run the user's file (read-only in
    the container), give the same predictions, and both records name its path and sha256."""
    if runner == "docker":
        request.getfixturevalue("docker_client")
    else:
        pytest.importorskip("openvino")
    path = models / "two.onnx"
    campaign = f"own-{runner}"
    for image in ("onnx-cpu", "openvino-cpu"):
        proc = cli(
            "run", "--image", image, "--model", str(path), "--input-shape", "ids=11",
            "--runner", runner, "--campaign", campaign, *OWN_RUN,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = cli.records(campaign)
    assert [r["status"] for r in recs] == ["ok", "ok"] and {r["runner"]["kind"] for r in recs} == {runner}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for rec in recs:
        assert rec["model_source"]["location"] == str(path) and rec["model_source"]["sha256"] == digest
        assert rec["model"] == "two" and rec["metrics"]["samples"] == 8
    assert len({r["result"]["predictions_digest"] for r in recs}) == 1  # the same numbers on both engines
    # The report names the model by its path and content.
    report = controller("report", str(cli.results / campaign))
    assert report.returncode == 0, report.stdout + report.stderr


def test_a_campaign_names_a_users_file_and_its_input_shapes(models, tmp_path):
    """A campaign's matrix takes a model path and [input_shapes]; its runs record the file's sha256."""
    pytest.importorskip("onnxruntime")
    path = models / "two.onnx"
    toml = tmp_path / "own.toml"
    toml.write_text(
        '[campaign]\nname = "own-campaign"\nrepetitions = 1\nsamples = 8\nwarmup = 1\n'
        f'[matrix]\nmodels = ["{path}"]\nbatch_sizes = [2]\n[[matrix.configurations]]\nimage = "onnx-cpu"\n'
        f'[input_shapes]\n"{path}" = ["ids=11"]\n'
    )
    results = tmp_path / "results"
    proc = controller("campaign", "run", str(toml), "--results", str(results), "--runner", "local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rec,) = [json.loads(p.read_text()) for p in (results / "own-campaign").glob("*.json")]
    assert rec["status"] == "ok" and rec["model_source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
