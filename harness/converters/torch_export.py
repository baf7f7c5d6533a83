"""torch -> ONNX (torch.onnx.export, dynamo) and torch -> TorchScript (trace)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.converters import Converted, fixed_model_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as versions
from harness.progress import TORCH_ONNX_STAGE, relayed_prints, report
from harness.protocol import ConvertSpec

_fixed = fixed_model_inputs


def _args(fixed: Any) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in (fixed.values() if isinstance(fixed, dict) else [fixed]))


def _model_source(spec: ConvertSpec) -> tuple[Any, Any, np.ndarray, str]:
    """A transformers folder, wrapped to take its inputs positionally (graph inputs named as the
    source's) and give its first output."""
    import transformers

    from suite.torch_models import WeightsUnavailable
    from suite.torch_sources import PositionalFirst, load_source

    assert spec.model_source is not None
    report(f"loading {spec.model_source.get('label', spec.model)} with transformers")
    try:
        inner = load_source(spec.model_source, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = _fixed(spec)
    model = PositionalFirst(inner, list(fixed)).eval()
    report("running the source model on the check inputs")
    with torch.inference_mode():
        reference = model(*_args(fixed)).numpy()
    return model, fixed, reference, f"transformers=={transformers.__version__} {spec.model_source.get('auto_class')}"


def _source(spec: ConvertSpec) -> tuple[Any, Any, np.ndarray, str]:
    from suite.torch_models import WeightsUnavailable, build, definition_source

    if spec.model_source is not None:
        return _model_source(spec)
    report(f"building {spec.model} ({spec.model_size}, {spec.weights} weights) from {definition_source()}")
    try:
        model = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = _fixed(spec)
    report("running the source model on the check inputs")
    with torch.inference_mode():
        reference = model(*_args(fixed)).numpy()
    return model, fixed, reference, definition_source()


def torch2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    import onnxruntime as ort

    model, fixed, reference, definition = _source(spec)
    names = list(fixed) if isinstance(fixed, dict) else ["input"]
    dims: dict[int, Any] = {0: torch.export.Dim("batch")}
    dynamic: Any
    if spec.model_source is not None:
        # Only the batch varies: the other axes are the source's concrete shapes (part of the cache key).
        dynamic = (tuple(dims for _ in names),)  # PositionalFirst takes *args: one tuple of them
    else:
        if isinstance(fixed, dict):  # token inputs: the sequence length varies too (--option max_length)
            dims[1] = torch.export.Dim("sequence", min=2, max=512)
        dynamic = tuple(dims for _ in names)
    report("exporting to ONNX with torch.onnx")
    # verbose=None: the exporter prints its stages ("[torch.onnx] Run decompositions..."), which are
    # passed on as progress; the text goes to the log as before.
    with relayed_prints(TORCH_ONNX_STAGE, "exporting to ONNX with torch.onnx"):
        torch.onnx.export(
            model,
            _args(fixed),
            out_file,
            input_names=names,
            output_names=["logits"] if spec.model_source is None else ["output"],
            dynamic_shapes=dynamic,
            opset_version=spec.opset,
            dynamo=True,
            external_data=False,
            verbose=None,
        )
    report("checking parity: the ONNX file on ONNX Runtime against the source model")
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
    report("tracing with torch.jit.trace")
    with torch.no_grad():
        if spec.model_source is not None:
            # Traced on the transformers model itself, by keyword: the module's forward takes the
            # source's input names, as the torchscript engine feeds them.
            model.inner.config.return_dict = False
            kwargs = {k: torch.from_numpy(v) for k, v in fixed.items()}
            traced = torch.jit.trace(model.inner, example_kwarg_inputs=kwargs)
        else:
            traced = torch.jit.trace(model, example)
    traced.save(out_file)
    report("checking parity: the traced module against the source model")
    loaded = torch.jit.load(out_file).eval()
    with torch.no_grad():
        out = loaded(*example)
        candidate = np.asarray((out[0] if isinstance(out, (tuple, list)) else out).numpy())
    return Converted(
        reference,
        candidate,
        versions("torch", "torchvision", "transformers"),
        {"definition": definition},
    )
