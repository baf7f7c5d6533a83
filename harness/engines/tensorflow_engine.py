"""TensorFlow (Keras models: keras.applications, KerasHub's BERT), run as a traced tf.function."""

from __future__ import annotations

import os
from typing import Any

# Before TensorFlow loads: keep its C++ info lines out of the logs' last lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.engines.base import Engine, EngineError, option_flag  # noqa: E402

DEVICES = {"cpu": "CPU", "cuda": "GPU"}


class TensorFlowEngine(Engine):
    name = "tensorflow"
    packages = ("tensorflow", "tensorflow-cpu", "keras", "keras-hub", "h5py", "numpy")

    def load(self) -> None:
        device = DEVICES.get(self.spec.provider)
        if device is None:
            raise EngineError(f"tensorflow serves providers {sorted(DEVICES)}, not {self.spec.provider!r}")
        opts = self.spec.options
        # Thread pools can only be sized before TensorFlow's runtime starts: first thing here.
        if opts.get("intra_op_threads"):
            tf.config.threading.set_intra_op_parallelism_threads(int(opts["intra_op_threads"]))
        if opts.get("inter_op_threads"):
            tf.config.threading.set_inter_op_parallelism_threads(int(opts["inter_op_threads"]))
        if not tf.config.list_logical_devices(device):
            raise EngineError(f"TensorFlow sees no {device} device")
        self._device = f"/{device}:0"
        self._jit = option_flag(opts, "jit_compile", False)
        source = self.spec.model_source
        self._text = source is None and bool(self._size().input_names)
        with tf.device(self._device):
            # Graph mode, traced for the run's batch shape (as a SavedModel signature serves it);
            # tracing and, with jit_compile, XLA compilation happen on the first call: the compile step.
            model, call, signature = self._source_call(source) if source is not None else self._registry_call()
            self._fn = tf.function(call, input_signature=signature, jit_compile=self._jit)
        self.model = model
        self._wanted = device
        self.compile_step = "tf.function trace" + (" and XLA compilation" if self._jit else "") + ", first call"
        # On a GPU, ops are queued asynchronously: wait for them before the clock is read.
        self._sync = None
        if device == "GPU":
            self._sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
            if self._sync is None:
                raise EngineError(f"TensorFlow {tf.__version__} lacks tf.test.experimental.sync_devices (2.13+)")

    def _registry_call(self) -> tuple[Any, Any, list[Any]]:
        model = self._build()
        signature: list[Any]
        if self._text:  # KerasHub's BERT: a dict of int32 token_ids, segment_ids, padding_mask
            from harness.inputs import max_length
            from suite.tf_models import model_inputs

            shape = (self.spec.batch_size, max_length(self.spec))
            zeros = {"input_ids": np.zeros(shape, np.int64), "attention_mask": np.ones(shape, np.int64)}
            probe_in = {k: tf.constant(v) for k, v in model_inputs(zeros).items()}
            signature = [{k: tf.TensorSpec(v.shape, v.dtype, name=k) for k, v in probe_in.items()}]
        else:
            c, h, w = self._size().input_shape
            signature = [tf.TensorSpec((self.spec.batch_size, h, w, c), tf.float32, name="input")]
        return model, lambda x: model(x, training=False), signature

    def _source_call(self, source: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
        """A Keras file or SavedModel, fed in the layout it declares (no transposition)."""
        from suite.tf_models import WeightsUnavailable
        from suite.tf_sources import feed, input_specs, load_source

        try:
            loaded, call = load_source(source)
        except WeightsUnavailable as exc:
            raise EngineError(str(exc)) from None
        specs = input_specs(source, self.spec.batch_size)
        probe = feed(source, {s.name: s for s in specs})
        return loaded, call, [probe]

    def compile(self, example: Any) -> None:
        with tf.device(self._device):
            probe = self._fn(example)
        self._devices = [probe.device.rsplit("device:", 1)[-1]]
        if not self._devices[0].startswith(self._wanted):
            raise EngineError(f"requested {self._wanted} but TensorFlow placed the model's output on {self._devices}")

    def _size(self) -> Any:
        from suite.models import get_model

        return get_model(self.spec.model).size(self.spec.model_size)

    def _build(self) -> Any:
        from suite.tf_models import WeightsUnavailable, build

        try:
            return build(
                self.spec.model, self.spec.model_size, self.spec.weights, self.spec.weights_path, self.spec.seed
            )
        except WeightsUnavailable as exc:
            raise EngineError(str(exc)) from None

    def prepare(self, batch: Any) -> Any:
        with tf.device(self._device):
            if self.spec.model_source is not None:
                from suite.tf_sources import feed

                return feed(self.spec.model_source, {k: tf.constant(v) for k, v in batch.items()})
            if self._text:  # harness names and int64 -> KerasHub's names and int32, outside the window
                from suite.tf_models import model_inputs

                return {k: tf.constant(v) for k, v in model_inputs(batch).items()}
            # The harness makes NCHW batches; Keras takes NHWC. Transposed here, outside the window.
            return tf.constant(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)))

    def infer(self, prepared: Any) -> Any:
        # Synchronous on CPU: the call returns once the output exists; on a GPU, synchronised.
        out = self._fn(prepared)
        if self._sync is not None:
            self._sync()
        return out

    def to_numpy(self, output: Any) -> Any:
        return output.numpy()

    def providers_active(self) -> list[str]:
        return list(self._devices)

    def options_used(self) -> dict[str, Any]:
        return {
            "mode": "tf.function",
            "jit_compile": self._jit,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        }


ENGINES = {"tensorflow": TensorFlowEngine}
