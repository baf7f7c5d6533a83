"""MXNet Gluon, hybridized (the network runs as one cached symbolic graph)."""

from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np

from harness.engines.base import Engine, EngineError


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


class MxNetEngine(Engine):
    name = "mxnet"
    packages = ("mxnet", "gluonnlp", "numpy")

    def load(self) -> None:
        if self.spec.provider != "cpu":
            raise EngineError(f"this mxnet image serves provider cpu, not {self.spec.provider!r}")
        from suite.mx_models import WeightsUnavailable, build

        self.ctx = mx.cpu()
        try:
            net = build(
                self.spec.model, self.spec.model_size, self.spec.weights, self.spec.weights_path, self.spec.seed
            )
        except WeightsUnavailable as exc:
            raise EngineError(str(exc)) from None
        self._static = _flag(self.spec.options.get("static_alloc", "true"))
        # static_alloc/static_shape: memory planned once for the run's batch shape, as for serving.
        net.hybridize(static_alloc=self._static, static_shape=self._static)
        self.net = net
        # The first call builds the cached graph: do it here, in the load phase.
        from suite.models import get_model

        size = get_model(self.spec.model).size(self.spec.model_size)
        self._text = bool(size.input_names)
        if self._text:  # GluonNLP's BERT: (inputs, token_types, valid_length), full-length probe
            from harness.inputs import max_length

            shape = (self.spec.batch_size, max_length(self.spec))
            probe = self.prepare({"input_ids": np.zeros(shape, np.int64), "attention_mask": np.ones(shape, np.int64)})
        else:
            probe = (mx.nd.zeros((self.spec.batch_size, *size.input_shape), ctx=self.ctx),)
        net(*probe).wait_to_read()

    def prepare(self, batch: Any) -> Any:
        """The network's positional inputs, as MXNet arrays (outside the window)."""
        if isinstance(batch, dict):  # token ids and mask -> GluonNLP's inputs, token_types, valid_length
            from suite.mx_models import model_inputs

            try:
                arrays = model_inputs(batch)
            except ValueError as exc:
                raise EngineError(str(exc)) from None
            return tuple(mx.nd.array(a, ctx=self.ctx, dtype=a.dtype) for a in arrays)
        return (mx.nd.array(batch, ctx=self.ctx, dtype=batch.dtype),)

    def infer(self, prepared: Any) -> Any:
        out = self.net(*prepared)
        # MXNet's engine is asynchronous: wait until the output exists.
        out.wait_to_read()
        return out

    def to_numpy(self, output: Any) -> Any:
        return output.asnumpy()

    def providers_active(self) -> list[str]:
        return [str(self.ctx)]

    def options_used(self) -> dict[str, Any]:
        import os

        return {
            "hybridize": True,
            "static_alloc": self._static,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "mkldnn": bool(mx.runtime.Features().is_enabled("MKLDNN")),
        }


ENGINES = {"mxnet": MxNetEngine}
