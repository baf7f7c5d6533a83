"""MXNet Gluon, hybridized (the network runs as one cached symbolic graph)."""

from __future__ import annotations

from typing import Any

import mxnet as mx

from harness.engines.base import Engine, EngineError


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


class MxNetEngine(Engine):
    name = "mxnet"
    packages = ("mxnet", "numpy")

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

        shape = (self.spec.batch_size, *get_model(self.spec.model).size(self.spec.model_size).input_shape)
        net(mx.nd.zeros(shape, ctx=self.ctx)).wait_to_read()

    def prepare(self, batch: Any) -> Any:
        return mx.nd.array(batch, ctx=self.ctx, dtype=batch.dtype)

    def infer(self, prepared: Any) -> Any:
        out = self.net(prepared)
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
