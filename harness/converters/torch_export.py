"""torch -> ONNX (torch.onnx.export, dynamo) and torch -> TorchScript (trace)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import torch

from harness.converters import Converted, fixed_inputs
from harness.engines.base import EngineError
from harness.protocol import ConvertSpec


def versions(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _source(spec: ConvertSpec) -> tuple[Any, np.ndarray, np.ndarray, str]:
    from suite.torch_models import WeightsUnavailable, build, definition_source

    try:
        model = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = fixed_inputs(spec)
    with torch.inference_mode():
        reference = model(torch.from_numpy(fixed)).numpy()
    return model, fixed, reference, definition_source()


def torch2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    import onnxruntime as ort

    model, fixed, reference, definition = _source(spec)
    torch.onnx.export(
        model,
        (torch.from_numpy(fixed),),
        out_file,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=spec.opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    opsets = {o.domain or "ai.onnx": o.version for o in onnx.load(out_file).opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    candidate = np.asarray(session.run(None, {"input": fixed})[0])
    return Converted(
        reference,
        candidate,
        versions("torch", "torchvision", "transformers", "onnx", "onnxscript", "onnxruntime"),
        {"definition": definition, "opset_imports": opsets},
    )


def torch2torchscript(spec: ConvertSpec, out_file: str) -> Converted:
    model, fixed, reference, definition = _source(spec)
    example = torch.from_numpy(fixed)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(out_file)
    loaded = torch.jit.load(out_file).eval()
    with torch.no_grad():
        candidate = np.asarray(loaded(example).numpy())
    return Converted(
        reference,
        candidate,
        versions("torch", "torchvision", "transformers"),
        {"definition": definition},
    )
