"""torch -> ONNX (torch.onnx.export, dynamo) and torch -> TorchScript (trace)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.converters import Converted, fixed_model_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as versions
from harness.protocol import ConvertSpec

_fixed = fixed_model_inputs


def _args(fixed: Any) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in (fixed.values() if isinstance(fixed, dict) else [fixed]))


def _source(spec: ConvertSpec) -> tuple[Any, Any, np.ndarray, str]:
    from suite.torch_models import WeightsUnavailable, build, definition_source

    try:
        model = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = _fixed(spec)
    with torch.inference_mode():
        reference = model(*_args(fixed)).numpy()
    return model, fixed, reference, definition_source()


def torch2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    import onnxruntime as ort

    model, fixed, reference, definition = _source(spec)
    names = list(fixed) if isinstance(fixed, dict) else ["input"]
    dims: dict[int, Any] = {0: torch.export.Dim("batch")}
    if isinstance(fixed, dict):  # token inputs: the sequence length varies too (--option max_length)
        dims[1] = torch.export.Dim("sequence", min=2, max=512)
    torch.onnx.export(
        model,
        _args(fixed),
        out_file,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes=tuple(dims for _ in names),
        opset_version=spec.opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    opsets = {o.domain or "ai.onnx": o.version for o in onnx.load(out_file).opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    candidate = np.asarray(session.run(None, fixed if isinstance(fixed, dict) else {"input": fixed})[0])
    return Converted(
        reference,
        candidate,
        versions("torch", "torchvision", "transformers", "onnx", "onnxscript", "onnxruntime"),
        {"definition": definition, "opset_imports": opsets},
    )


def torch2torchscript(spec: ConvertSpec, out_file: str) -> Converted:
    model, fixed, reference, definition = _source(spec)
    example = _args(fixed)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(out_file)
    loaded = torch.jit.load(out_file).eval()
    with torch.no_grad():
        candidate = np.asarray(loaded(*example).numpy())
    return Converted(
        reference,
        candidate,
        versions("torch", "torchvision", "transformers"),
        {"definition": definition},
    )
