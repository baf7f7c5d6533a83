"""MXNet Gluon, hybridized (the network runs as one cached symbolic graph)."""

from __future__ import annotations

from typing import Any

import mxnet as mx

from harness.engines.base import Engine, EngineError, option_flag


class MxNetEngine(Engine):
    name = "mxnet"
    packages = ("mxnet", "gluonnlp", "numpy")

    def load(self) -> None:
        if self.spec.provider == "cpu":
            self.ctx = mx.cpu()
        elif self.spec.provider == "cuda":
            if mx.context.num_gpus() < 1:
                raise EngineError("provider cuda requested but MXNet sees no GPU (is this a CUDA build, with --gpus?)")
            self.ctx = mx.gpu(0)
        else:
            raise EngineError(f"mxnet serves providers cpu and cuda, not {self.spec.provider!r}")
        from suite.mx_models import WeightsUnavailable, build

        try:
            net = build(
                self.spec.model, self.spec.model_size, self.spec.weights, self.spec.weights_path, self.spec.seed
            )
        except WeightsUnavailable as exc:
            raise EngineError(str(exc)) from None
        if self.ctx != mx.cpu():
            net.collect_params().reset_ctx(self.ctx)  # the suite builds on the CPU
        self._static = option_flag(self.spec.options, "static_alloc", True)
        # static_alloc/static_shape: memory planned once for the run's batch shape, as for serving.
        net.hybridize(static_alloc=self._static, static_shape=self._static)
        self.net = net
        self.compile_step = "hybridize: the first call builds the cached graph"

    def compile(self, example: Any) -> None:
        self.net(*example).wait_to_read()

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
