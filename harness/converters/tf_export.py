"""TensorFlow/Keras -> ONNX with tf2onnx (``tf2onnx.convert.from_keras``; KerasHub's BERT through
``from_function``)."""

from __future__ import annotations

import os
from typing import Any

# Before TensorFlow loads: keep its C++ info lines out of the logs' last lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import numpy as np  # noqa: E402

from harness.converters import Converted, fixed_inputs, fixed_model_inputs  # noqa: E402
from harness.engines.base import EngineError  # noqa: E402
from harness.engines.base import package_versions as _versions  # noqa: E402
from harness.progress import report  # noqa: E402
from harness.protocol import ConvertSpec  # noqa: E402

VERSIONS = ("tensorflow", "tensorflow-cpu", "keras", "keras-hub", "tf2onnx", "onnx", "onnxruntime")


def _load(spec: ConvertSpec) -> Any:
    from suite.tf_models import WeightsUnavailable, build

    try:
        return build(spec.model, spec.model_size, spec.weights, spec.weights_path, spec.seed)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None


def _text_model(spec: ConvertSpec, out_file: str) -> Converted:
    """KerasHub's BERT -> ONNX taking the harness's inputs (int64 input_ids, attention_mask).

    The graph maps them onto KerasHub's (int32 token_ids, padding_mask; segment_ids all 0) itself,
    so the artifact is fed like torch2onnx's; batch and sequence length are dynamic.
    """
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx as t2o

    from suite.tf_models import definition_source, model_inputs

    model = _load(spec)
    fixed = fixed_model_inputs(spec)
    reference = model({k: tf.constant(v) for k, v in model_inputs(fixed).items()}, training=False).numpy()
    signature = [tf.TensorSpec((None, None), tf.int64, name=name) for name in fixed]

    @tf.function(input_signature=signature)
    def logits(input_ids: Any, attention_mask: Any) -> Any:
        ids = tf.cast(input_ids, tf.int32)
        mask = tf.cast(attention_mask, tf.int32)
        return model({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}, training=False)

    t2o.convert.from_function(logits, input_signature=signature, opset=spec.opset, output_path=out_file)
    graph = onnx.load(out_file)
    names = [i.name for i in graph.graph.input]
    if sorted(names) != sorted(fixed):
        raise EngineError(f"tf2onnx named the graph's inputs {names}, expected {list(fixed)}")
    opsets = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    candidate = np.asarray(session.run(None, fixed)[0])
    return Converted(
        reference,
        candidate,
        _versions(*VERSIONS),
        {
            "definition": definition_source(spec.model),
            "opset_imports": opsets,
            "input_mapping": "input_ids -> token_ids, attention_mask -> padding_mask, segment_ids = 0 (in the graph)",
        },
    )


def _source_model(spec: ConvertSpec, out_file: str) -> Converted:
    """A Keras file or SavedModel -> ONNX with the source's input names, dtypes and layout (no
    transposition); only the batch axis is dynamic."""
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx as t2o

    from suite.tf_models import WeightsUnavailable
    from suite.tf_sources import feed, input_specs, load_source

    source = spec.model_source
    assert source is not None
    try:
        loaded, call = load_source(source)
    except WeightsUnavailable as exc:
        raise EngineError(str(exc)) from None
    fixed = fixed_model_inputs(spec)
    names = list(fixed)
    reference = np.asarray(call(feed(source, {k: tf.constant(v) for k, v in fixed.items()})))
    signature = input_specs(source, None)
    if source["kind"] == "keras":
        t2o.convert.from_keras(loaded, input_signature=signature, opset=spec.opset, output_path=out_file)
    else:

        @tf.function(input_signature=signature)
        def positional(*args: Any) -> Any:
            return call(dict(zip(names, args, strict=True)))

        t2o.convert.from_function(positional, input_signature=signature, opset=spec.opset, output_path=out_file)
    graph = onnx.load(out_file)
    opsets = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    graph_names = [i.name for i in session.get_inputs()]
    # tf2onnx keeps the TensorSpec names (maybe with a ":0" suffix); by position otherwise.
    by_name = {g: fixed[g.split(":")[0]] for g in graph_names if g.split(":")[0] in fixed}
    feed_dict = by_name if len(by_name) == len(names) else dict(zip(graph_names, fixed.values(), strict=True))
    candidate = np.asarray(session.run(None, feed_dict)[0])
    return Converted(
        reference,
        candidate,
        _versions(*VERSIONS),
        {"definition": f"{source['kind']} {source['label']}", "opset_imports": opsets, "input_layout": "as declared"},
    )


def tf2onnx(spec: ConvertSpec, out_file: str) -> Converted:
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx as t2o

    from suite.models import get_model
    from suite.tf_models import definition_source, nhwc_shape

    if spec.model_source is not None:
        return _source_model(spec, out_file)
    if get_model(spec.model).size(spec.model_size).input_names:
        return _text_model(spec, out_file)
    report(f"building {spec.model} ({spec.model_size}, {spec.weights} weights)")
    model = _load(spec)
    fixed = fixed_inputs(spec)  # NCHW, as every engine is fed
    reference = model(fixed.transpose(0, 2, 3, 1), training=False).numpy()
    signature = (tf.TensorSpec((None, *nhwc_shape(spec.model, spec.model_size)), tf.float32, name="input"),)
    # inputs_as_nchw: the ONNX model takes NCHW like the torch2onnx one. tf2onnx's optimiser then
    # cancels that transpose against the ones it puts around every NHWC convolution anyway.
    report("exporting to ONNX with tf2onnx")
    t2o.convert.from_keras(
        model, input_signature=signature, opset=spec.opset, inputs_as_nchw=["input"], output_path=out_file
    )
    graph = onnx.load(out_file)
    opsets = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    report("checking parity: the ONNX file on ONNX Runtime against the source model")
    session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    candidate = np.asarray(session.run(None, {inp.name: fixed})[0])
    return Converted(
        reference,
        candidate,
        _versions(*VERSIONS),
        {
            "definition": definition_source(),
            "opset_imports": opsets,
            "input_layout": "NCHW",
            "source_input_layout": "NHWC",
        },
    )
