"""TensorFlow/Keras -> ONNX with tf2onnx (``tf2onnx.convert.from_keras``)."""

from __future__ import annotations

import os

# Before TensorFlow loads: keep its C++ info lines out of the logs' last lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import numpy as np  # noqa: E402

from harness.converters import Converted, fixed_inputs  # noqa: E402
from harness.engines.base import EngineError
from harness.engines.base import package_versions as _versions  # noqa: E402
from harness.protocol import ConvertSpec  # noqa: E402


def tf2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx as t2o

    from suite.tf_models import WeightsUnavailable, build, definition_source, nhwc_shape

    try:
        model = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = fixed_inputs(spec)  # NCHW, as every engine is fed
    reference = model(fixed.transpose(0, 2, 3, 1), training=False).numpy()
    signature = (tf.TensorSpec((None, *nhwc_shape(spec.model, spec.model_size)), tf.float32, name="input"),)
    # inputs_as_nchw: the ONNX model takes NCHW like the torch2onnx one. tf2onnx's optimiser then
    # cancels that transpose against the ones it puts around every NHWC convolution anyway.
    t2o.convert.from_keras(
        model, input_signature=signature, opset=spec.opset, inputs_as_nchw=["input"], output_path=out_file
    )
    graph = onnx.load(out_file)
    opsets = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    candidate = np.asarray(session.run(None, {inp.name: fixed})[0])
    return Converted(
        reference,
        candidate,
        _versions("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime"),
        {
            "definition": definition_source(),
            "opset_imports": opsets,
            "input_layout": "NCHW",
            "source_input_layout": "NHWC",
        },
    )
