"""OpenVINO Runtime: the ONNX artifact read directly, or OpenVINO IR from onnx2openvino
(``--option model_format=ir``); read_model, then compile_model as the run's compile step."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov

from harness.engines.base import Engine, EngineError, model_file, option_flag

DEVICES = {"cpu": "CPU"}
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# OpenVINO's CPU plugin computes in bf16 by default on CPUs that have it (AVX512-BF16, AMX), which
# changes the outputs. The benchmark's default is f32 so that engines compare like for like;
# `--option inference_precision=bf16` asks for the plugin's own choice on such CPUs.
PRECISIONS = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}


class OpenVinoEngine(Engine):
    name = "openvino"
    packages = ("openvino", "numpy")

    def load(self) -> None:
        path = model_file(self.spec, "openvino", "an ONNX file or OpenVINO IR")
        # An ONNX file (read by OpenVINO's ONNX frontend) or OpenVINO IR (onnx2openvino's model.xml).
        self._format = "ir" if path.endswith(".xml") else "onnx"
        device = DEVICES.get(self.spec.provider)
        if device is None:
            raise EngineError(f"openvino serves providers {sorted(DEVICES)}, not {self.spec.provider!r}")
        opts = self.spec.options
        hint = str(opts.get("performance_hint", "LATENCY")).upper()
        if hint not in HINTS:
            raise EngineError(f"performance_hint {hint!r} is not one of {', '.join(HINTS)}")
        precision = str(opts.get("inference_precision", "f32")).lower()
        if precision not in PRECISIONS:
            raise EngineError(f"inference_precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
        }
        if opts.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(opts["threads"])
        core = ov.Core()
        if device not in core.available_devices:
            raise EngineError(f"OpenVINO sees no {device} device (available: {core.available_devices})")
        model = core.read_model(path)
        static = option_flag(opts, "static_batch", True)
        if static and self.spec.model_source is not None:
            # Every input fully static (the run's batch and shapes): kernels are picked once, at compile time.
            batch = self.spec.batch_size
            model.reshape({s["name"]: ov.PartialShape([batch, *s["shape"]]) for s in self.spec.model_source["inputs"]})
        elif static:
            # A static batch lets the CPU plugin pick its kernels once, at compile time.
            shape = list(model.input(0).get_partial_shape())
            shape[0] = ov.Dimension(self.spec.batch_size)
            model.reshape({0: ov.PartialShape(shape)})
        self._static = static
        self._core, self._model, self._config, self._device = core, model, config, device
        self.compile_step = f"compile_model ({device} plugin)"

    def compile(self, example: Any) -> None:
        device = self._device
        self.compiled = self._core.compile_model(self._model, device, self._config)
        self.request = self.compiled.create_infer_request()
        self._infer = self.request.infer
        self._devices = [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")]
        if not self._devices or self._devices[0] != device:
            raise EngineError(f"requested OpenVINO device {device} but the model runs on {self._devices}")

    def prepare(self, batch: Any) -> Any:
        # share_inputs=True below reads this memory in place: it must stay contiguous and alive.
        if isinstance(batch, dict):  # a model source's inputs, by name
            return {name: np.ascontiguousarray(array) for name, array in batch.items()}
        return {0: np.ascontiguousarray(batch)}

    def infer(self, prepared: Any) -> Any:
        # Synchronous: returns once the outputs exist; share_outputs=False copies them out of the
        # request's buffers (the next call overwrites those).
        return self._infer(prepared, share_inputs=True, share_outputs=False)

    def to_numpy(self, output: Any) -> Any:
        return np.asarray(output[0])

    def providers_active(self) -> list[str]:
        return list(self._devices)

    def options_used(self) -> dict[str, Any]:
        get = self.compiled.get_property
        return {
            "performance_hint": str(get("PERFORMANCE_HINT")).rsplit(".", 1)[-1],
            "inference_precision": get("INFERENCE_PRECISION_HINT").to_string(),
            "threads": int(get("INFERENCE_NUM_THREADS")),
            "streams": int(get("NUM_STREAMS")),
            "static_batch": self._static,
            "model_format": self._format,
        }


ENGINES = {"openvino": OpenVinoEngine}
