"""ONNX Runtime, with the execution provider the image was built for.

Provider options that change results or speed are set explicitly from the run's options and
recorded as the session reports them back (``get_provider_options``), never left to defaults
that differ between releases. On a GPU the inputs are bound to device memory before the
measured window (IO binding), so the window holds the computation and not the host-to-device
copies, unless the run asks for end-to-end timing (``--option io_binding=false``).
"""

from __future__ import annotations

import os
from typing import Any

import onnxruntime as ort

from harness.engines.base import Engine, EngineError, model_file, option_flag

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
GPU_PROVIDERS = ("cuda", "tensorrt")
CUDNN_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
# Where a TensorRT engine cache lives unless the run names a folder (the controller mounts a
# writable volume there so that engines are built once per GPU and reused across runs).
TRT_CACHE_DIR = "/trt-cache"
GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def provider_options(provider: str, options: dict[str, Any]) -> dict[str, str]:
    """The provider's options for this run, every one that changes results or speed explicit."""
    if provider == "cuda":
        search = str(options.get("cudnn_conv_algo_search", "EXHAUSTIVE")).upper()
        if search not in CUDNN_SEARCH:
            raise EngineError(f"cudnn_conv_algo_search {search!r} is not one of {', '.join(CUDNN_SEARCH)}")
        return {"device_id": str(options.get("device_id", 0)), "cudnn_conv_algo_search": search}
    if provider == "tensorrt":
        cache = str(options.get("trt_cache_dir", TRT_CACHE_DIR))
        cache_on = option_flag(options, "trt_engine_cache", True) and os.access(cache, os.W_OK)
        found = {
            "device_id": str(options.get("device_id", 0)),
            "trt_fp16_enable": "True" if option_flag(options, "trt_fp16", False) else "False",
            "trt_engine_cache_enable": "True" if cache_on else "False",
        }
        if cache_on:
            found["trt_engine_cache_path"] = cache
            found["trt_timing_cache_enable"] = "True"
            found["trt_timing_cache_path"] = cache
        return found
    if provider == "openvino":
        precision = str(options.get("precision", "FP32")).upper()
        if precision not in ("FP32", "FP16", "ACCURACY"):
            raise EngineError(f"OpenVINO EP precision {precision!r} is not one of FP32, FP16, ACCURACY")
        found = {"device_type": str(options.get("device_type", "CPU")).upper(), "precision": precision}
        if options.get("threads"):
            found["num_of_threads"] = str(int(options["threads"]))
        if options.get("num_streams"):
            found["num_streams"] = str(int(options["num_streams"]))
        return found
    return {}


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    packages = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "numpy")

    def load(self) -> None:
        path = model_file(self.spec, "onnxruntime", "an ONNX file")
        wanted = PROVIDERS.get(self.spec.provider)
        if wanted is None:
            raise EngineError(f"unknown provider {self.spec.provider!r}; valid: {sorted(PROVIDERS)}")
        if wanted not in ort.get_available_providers():
            raise EngineError(
                f"{wanted} is not available in this onnxruntime build (available: {ort.get_available_providers()})"
            )
        opts = ort.SessionOptions()
        threads = self.spec.options.get("intra_op_threads")
        if threads:
            opts.intra_op_num_threads = int(threads)
        self._threads = opts.intra_op_num_threads
        # Set explicitly even at ONNX Runtime's default (all), so the record says what was applied.
        self._graph_level = str(self.spec.options.get("graph_optimization_level", "all")).lower()
        if self._graph_level not in GRAPH_LEVELS:
            raise EngineError(f"graph_optimization_level {self._graph_level!r}; valid: {', '.join(GRAPH_LEVELS)}")
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[self._graph_level])
        providers: list[Any] = [(wanted, provider_options(self.spec.provider, self.spec.options))]
        if self.spec.provider == "tensorrt":
            # Nodes TensorRT cannot take run on CUDA (ONNX Runtime's documented pairing), not on CPU.
            providers.append(("CUDAExecutionProvider", provider_options("cuda", self.spec.options)))
        self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        active = self.session.get_providers()
        # ONNX Runtime falls back to CPU silently when a provider fails to initialise.
        if not active or active[0] != wanted:
            raise EngineError(f"requested {wanted} but the session runs on {active}: refusing the fallback")
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._run = self.session.run
        on_gpu = self.spec.provider in GPU_PROVIDERS
        self._device = ("cuda", int(self.spec.options.get("device_id", 0))) if on_gpu else ("cpu", 0)
        self._io_binding = option_flag(self.spec.options, "io_binding", on_gpu)
        if on_gpu and not self._io_binding:
            self.timing_scope = "end-to-end"  # host<->device copies inside every timed call
        if on_gpu:
            # TensorRT builds its engine, CUDA searches cuDNN algorithms, on the first call.
            self.compile_step = f"first call ({self.spec.provider}: engine build / algorithm search)"

    def _named(self, prepared: Any) -> dict[str, Any]:
        # Several named inputs (token ids, attention mask) arrive as a dict named as in the graph.
        return prepared if isinstance(prepared, dict) else {self.input_name: prepared}

    def prepare(self, batch: Any) -> Any:
        if not self._io_binding:
            return self._named(batch)  # the feed dict, built outside the window
        kind, index = self._device
        binding = self.session.io_binding()
        keep = []
        for name, array in self._named(batch).items():
            value = ort.OrtValue.ortvalue_from_numpy(array, kind, index)
            keep.append(value)  # the binding refers to this memory: keep it alive with the binding
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output_name, kind, index)
        return (binding, keep)

    def compile(self, example: Any) -> None:
        self.infer(example)

    def infer(self, prepared: Any) -> Any:
        if self._io_binding:
            binding = prepared[0]
            self.session.run_with_iobinding(binding)  # returns once the provider's stream is synchronised
            return binding.get_outputs()[0]  # stays on the device; copied out after the window
        return self._run(None, prepared)[0]

    def to_numpy(self, output: Any) -> Any:
        return output.numpy() if isinstance(output, ort.OrtValue) else output

    def providers_active(self) -> list[str]:
        return list(self.session.get_providers())

    def options_used(self) -> dict[str, Any]:
        used: dict[str, Any] = {
            "intra_op_threads": self._threads or "default",
            "io_binding": self._io_binding,
            "graph_optimization_level": self._graph_level,
        }
        reported = self.session.get_provider_options()
        wanted = PROVIDERS[self.spec.provider]
        if wanted in reported and self.spec.provider != "cpu":
            names = provider_options(self.spec.provider, self.spec.options)
            used["provider_options"] = {k: reported[wanted].get(k, v) for k, v in names.items()}
        return used


ENGINES = {"onnxruntime": OnnxRuntimeEngine}
