"""ONNX -> OpenVINO IR (ov.convert_model + ov.save_model), checked against ONNX Runtime.

The source is an ONNX artifact already in the cache (torch2onnx, tf2onnx or mx2onnx): this is
the second step of a chain, run in the OpenVINO image. Weights are kept in f32 (``save_model``
would compress them to f16 by default, which changes the outputs); the parity reference is the
ONNX file run by ONNX Runtime's CPU provider on the same fixed inputs, so the check compares two
runtimes, not OpenVINO with itself.
"""

from __future__ import annotations

import os

import numpy as np

from harness.converters import Converted, fixed_model_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as versions
from harness.progress import report
from harness.protocol import ConvertSpec


def onnx2openvino(spec: ConvertSpec, out_file: str) -> Converted:
    import onnxruntime as ort
    import openvino as ov

    source = spec.source_artifact
    if not source or not os.path.isfile(source):
        raise EngineError(f"onnx2openvino needs the ONNX artifact it converts; {source!r} is not a file")
    report("running the ONNX file on ONNX Runtime (the parity reference)")
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    fixed = fixed_model_inputs(spec)
    named = fixed if isinstance(fixed, dict) else {session.get_inputs()[0].name: fixed}
    reference = np.asarray(session.run(None, named)[0])

    report("converting to OpenVINO IR (convert_model, save_model)")
    model = ov.convert_model(source)
    ov.save_model(model, out_file, compress_to_fp16=False)
    report("checking parity: the IR on OpenVINO against ONNX Runtime")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(out_file), "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32})
    candidate = np.asarray(compiled(named)[compiled.output(0)])
    return Converted(
        reference,
        candidate,
        versions("openvino", "onnxruntime", "numpy"),
        {"source_format": "onnx", "compress_to_fp16": False, "ir_files": ["model.xml", "model.bin"]},
    )
