"""ONNX FP32 -> ONNX INT8 by ONNX Runtime's dynamic quantisation (``quantize_dynamic``).

Weights are quantised once, activations at run time per batch; no calibration data is needed, so
the artifact depends on the model alone. ONNX Runtime's CPU kernels for quantised convolutions
(ConvInteger) take unsigned 8-bit weights only, so a graph with convolutions gets QUInt8 weights
and one without (transformers: MatMulInteger) QInt8, as ONNX Runtime's documentation advises.

Quantisation changes the outputs by design, so the parity check is no gate here: the agreement of
the top-1 predictions with the FP32 model (run by ONNX Runtime on the same fixed inputs) is
recorded over :data:`AGREEMENT_SAMPLES` samples, and whoever uses the artifact (``advise``'s quality
constraint) decides what agreement is enough.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from harness.converters import Converted, fixed_model_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as versions
from harness.protocol import ConvertSpec

AGREEMENT_SAMPLES = 32


def _run(path: str, fixed: Any) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    named = fixed if isinstance(fixed, dict) else {session.get_inputs()[0].name: fixed}
    return np.asarray(session.run(None, named)[0])


def onnx2int8(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = spec.source_artifact
    if not source or not os.path.isfile(source):
        raise EngineError(f"onnx2int8 needs the ONNX model it quantises; {source!r} is not a file")
    graph = onnx.load(source, load_external_data=False).graph
    has_conv = any(node.op_type == "Conv" for node in graph.node)
    weight_type = QuantType.QUInt8 if has_conv else QuantType.QInt8
    quantize_dynamic(source, out_file, weight_type=weight_type)
    fixed = fixed_model_inputs(dataclasses.replace(spec, batch_size=AGREEMENT_SAMPLES))
    reference, candidate = _run(source, fixed), _run(out_file, fixed)
    return Converted(
        reference,
        candidate,
        versions("onnxruntime", "onnx", "numpy"),
        {
            "source_format": "onnx",
            "quantization": {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "weights": "uint8" if has_conv else "int8",
                "activations": "uint8, quantised per batch at run time",
                "why_weights": "the graph has convolutions: ConvInteger takes uint8 weights on the CPU"
                if has_conv
                else "no convolutions: int8 weights (MatMulInteger), as ONNX Runtime advises",
            },
        },
        gated=False,
    )
