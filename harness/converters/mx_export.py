"""MXNet Gluon -> ONNX with MXNet's own exporter (``mx.onnx.export_model``; needs onnx < 1.18)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from harness.converters import Converted, fixed_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as _versions
from harness.protocol import ConvertSpec


def mx2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import mxnet as mx
    import onnx
    import onnxruntime as ort

    from suite.mx_models import WeightsUnavailable, build, definition_source

    try:
        net = build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    net.hybridize()
    fixed = fixed_inputs(spec)
    reference = net(mx.nd.array(fixed)).asnumpy()
    with tempfile.TemporaryDirectory() as tmp:
        # export_model reads the symbol and parameters files that HybridBlock.export writes.
        prefix = os.path.join(tmp, "model")
        net.export(prefix, epoch=0)
        mx.onnx.export_model(
            f"{prefix}-symbol.json",
            f"{prefix}-0000.params",
            in_shapes=[(spec.batch_size, *fixed.shape[1:])],
            in_types=[np.float32],
            onnx_file_path=out_file,
            dynamic=True,
            dynamic_input_shapes=[(None, *fixed.shape[1:])],
        )
    model = onnx.load(out_file)
    # MXNet's exporter lists every weight as a graph input too: runtimes then treat weights as
    # overridable inputs (ONNX Runtime skips constant folding, OpenVINO would expect them fed).
    weights = {init.name for init in model.graph.initializer}
    data_inputs = [i for i in model.graph.input if i.name not in weights]
    moved = len(model.graph.input) - len(data_inputs)
    del model.graph.input[:]
    model.graph.input.extend(data_inputs)
    onnx.checker.check_model(model)
    onnx.save(model, out_file)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    candidate = np.asarray(session.run(None, {inp.name: fixed})[0])
    return Converted(
        reference,
        candidate,
        _versions("mxnet", "onnx", "onnxruntime"),
        # The exporter picks its own opset (it has no opset argument): record the one it wrote.
        {
            "definition": definition_source(),
            "opset": opsets.get("ai.onnx"),
            "opset_imports": opsets,
            "input_layout": "NCHW",
            "weights_removed_from_inputs": moved,
        },
    )
