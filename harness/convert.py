"""Conversions, run in the source framework's environment: export, check parity, write meta."""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

import numpy as np

from harness.engines.base import EngineError
from harness.protocol import ConvertSpec, Emitter
from suite.models import get_model

ARTIFACT_FILES = {"torch2onnx": "model.onnx", "torch2torchscript": "model.pt"}


def _versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def parity(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Max abs/rel difference and agreement of predicted classes between two outputs."""
    diff = np.abs(reference - candidate)
    scale = np.maximum(np.abs(reference), 1e-6)
    return {
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff / scale).max()),
        "argmax_agreement": float(
            (reference.argmax(axis=-1) == candidate.argmax(axis=-1)).mean()
        ),
        "atol": atol,
        "rtol": rtol,
        "ok": bool(np.allclose(candidate, reference, atol=atol, rtol=rtol)),
    }


def convert(spec: ConvertSpec, emit: Emitter) -> dict[str, Any]:
    if spec.conversion not in ARTIFACT_FILES:
        raise EngineError(
            f"unknown conversion {spec.conversion!r}; valid: {', '.join(ARTIFACT_FILES)}"
        )
    import torch

    from suite.torch_models import WeightsUnavailable, build

    shape = get_model(spec.model).size(spec.model_size).input_shape
    try:
        model = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    rng = np.random.default_rng(1234)
    fixed = rng.standard_normal((spec.batch_size, *shape), dtype=np.float32)
    with torch.inference_mode():
        reference = model(torch.from_numpy(fixed)).numpy()

    out_file = os.path.join(spec.out_dir, ARTIFACT_FILES[spec.conversion])
    emit.event("load", "start", conversion=spec.conversion)
    if spec.conversion == "torch2onnx":
        candidate = _to_onnx(model, fixed, out_file, spec.opset)
        versions = _versions("torch", "torchvision", "onnx", "onnxscript", "onnxruntime")
    else:
        candidate = _to_torchscript(model, fixed, out_file)
        versions = _versions("torch", "torchvision")
    emit.event("load", "end")

    meta = {
        "conversion": spec.conversion,
        "artifact_file": os.path.basename(out_file),
        "model": spec.model,
        "model_size": spec.model_size,
        "weights": spec.weights,
        "opset": spec.opset if spec.conversion == "torch2onnx" else None,
        "parity": parity(reference, candidate, spec.atol, spec.rtol),
        "versions": versions,
    }
    with open(os.path.join(spec.out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    return meta


def _to_onnx(model: Any, fixed: np.ndarray, out_file: str, opset: int) -> np.ndarray:
    import onnxruntime as ort
    import torch

    example = torch.from_numpy(fixed)
    torch.onnx.export(
        model,
        (example,),
        out_file,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": fixed})[0])


def _to_torchscript(model: Any, fixed: np.ndarray, out_file: str) -> np.ndarray:
    import torch

    example = torch.from_numpy(fixed)
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(out_file)
    loaded = torch.jit.load(out_file).eval()
    with torch.no_grad():
        return np.asarray(loaded(example).numpy())
