"""MXNet Gluon -> ONNX with MXNet's own exporter (``mx.onnx``'s graph builder; needs onnx < 1.18)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from harness.converters import Converted, fixed_inputs, fixed_model_inputs
from harness.engines.base import EngineError
from harness.engines.base import package_versions as _versions
from harness.protocol import ConvertSpec


def _load(spec: ConvertSpec) -> Any:
    from suite.mx_models import WeightsUnavailable, build

    try:
        return build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None


# The newest opset MXNet 1.9's ONNX translations are written for (its registry holds opsets 12
# and 13). mx.onnx.export_model stamps onnx's newest opset (22 with onnx 1.17) over them, which is
# wrong for ops whose signature changed since: ReduceMean takes its axes as an input from opset 18,
# so GluonNLP's LayerNorm would not load. The exporter's own graph builder is called with 13.
MX2ONNX_OPSET = 13


def _export(
    net: Any, out_file: str, examples: list[np.ndarray], dynamic: list[tuple[Any, ...]], names: list[str]
) -> Any:
    """Export a hybridized, already-called network (inputs like ``examples``, dimensions ``dynamic``
    where None); the ONNX model with its data inputs named ``names``, and how many weights it
    listed as inputs."""
    import mxnet as mx
    import onnx
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    with tempfile.TemporaryDirectory() as tmp:
        # The symbol and parameters files that HybridBlock.export writes, as export_model reads them.
        prefix = os.path.join(tmp, "model")
        net.export(prefix, epoch=0)
        sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    # The graph builder ends with onnx.checker.check_graph against onnx's newest opset, whatever
    # opset it built for: skipped here, and the whole model checked at its own opset below.
    check_graph = onnx.checker.check_graph
    onnx.checker.check_graph = lambda *args, **kwargs: None
    try:
        graph = MXNetGraph().create_onnx_graph_proto(
            sym,
            {**arg_params, **aux_params},
            [a.shape for a in examples],
            [onnx.helper.np_dtype_to_tensor_dtype(a.dtype) for a in examples],
            opset_version=MX2ONNX_OPSET,
            dynamic=True,
            dynamic_input_shapes=dynamic,
        )
    finally:
        onnx.checker.check_graph = check_graph
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", MX2ONNX_OPSET)])
    # MXNet's exporter lists every weight as a graph input too: runtimes then treat weights as
    # overridable inputs (ONNX Runtime skips constant folding, OpenVINO would expect them fed).
    weights = {init.name for init in model.graph.initializer}
    data_inputs = [i for i in model.graph.input if i.name not in weights]
    moved = len(model.graph.input) - len(data_inputs)
    # HybridBlock.export names a block's inputs data (one) or data0, data1, ...: rename them.
    renames = {i.name: new for i, new in zip(data_inputs, names, strict=True) if i.name != new}
    for value in data_inputs:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    del model.graph.input[:]
    model.graph.input.extend(data_inputs)
    # The exporter also leaves constants no node reads (LayerNorm's axes...): ONNX Runtime would warn
    # about each of them at every load.
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, out_file)
    return model, moved


def _token_inputs(inner: Any) -> Any:
    """A HybridBlock over GluonNLP's BERTClassifier taking the harness's int64 input_ids and attention_mask,
    so the artifact is fed like torch2onnx's: token_types (all 0) and valid_length (the mask's row
    sums) are computed in the graph."""
    from mxnet.gluon import HybridBlock

    class TokenInputs(HybridBlock):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(prefix="tokeninputs_")
            self.inner = inner

        def hybrid_forward(self, F: Any, input_ids: Any, attention_mask: Any) -> Any:  # noqa: N803 - Gluon's name
            ids = F.cast(input_ids, dtype="float32")
            length = F.sum(F.cast(attention_mask, dtype="float32"), axis=1)
            return self.inner(ids, F.zeros_like(ids), length)

    return TokenInputs()


def _text_model(spec: ConvertSpec, out_file: str) -> tuple[np.ndarray, np.ndarray, Any, int]:
    import mxnet as mx
    import onnxruntime as ort

    from suite.mx_models import model_inputs

    net = _load(spec)
    fixed = fixed_model_inputs(spec)
    reference = net(*(mx.nd.array(a, dtype=a.dtype) for a in model_inputs(fixed))).asnumpy()
    wrapped = _token_inputs(net)
    wrapped.hybridize()
    wrapped(*(mx.nd.array(a, dtype=a.dtype) for a in fixed.values()))
    names = list(fixed)
    model, moved = _export(wrapped, out_file, list(fixed.values()), [(None, None)] * len(names), names)
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    candidate = np.asarray(session.run(None, fixed)[0])
    return reference, candidate, model, moved


def mx2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import mxnet as mx
    import onnxruntime as ort

    from suite.models import get_model
    from suite.mx_models import definition_source

    text = bool(get_model(spec.model).size(spec.model_size).input_names)
    details: dict[str, Any] = {"definition": definition_source(spec.model)}
    if text:
        reference, candidate, model, moved = _text_model(spec, out_file)
        details["input_mapping"] = (
            "input_ids -> inputs, attention_mask -> valid_length (row sums), token_types = 0 (in the graph)"
        )
    else:
        net = _load(spec)
        net.hybridize()
        fixed = fixed_inputs(spec)
        reference = net(mx.nd.array(fixed)).asnumpy()
        shape = (None, *fixed.shape[1:])
        model, moved = _export(net, out_file, [fixed], [shape], ["data"])
        session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        candidate = np.asarray(session.run(None, {inp.name: fixed})[0])
        details["input_layout"] = "NCHW"
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return Converted(
        reference,
        candidate,
        _versions("mxnet", "gluonnlp", "onnx", "onnxruntime"),
        {**details, "opset": opsets.get("ai.onnx"), "opset_imports": opsets, "weights_removed_from_inputs": moved},
    )
