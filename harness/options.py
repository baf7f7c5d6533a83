"""The engine options a run may set (``--option KEY=VALUE``): names, types and allowed values.

Stdlib only: the controller checks a run's options against this table before anything starts, and
the harness's engines read their options through the same table, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.serving.formats import GGUF_QUANT_CHOICES, ORTGENAI_PRECISIONS

FLAG_TRUE = ("1", "true", "yes", "on")
# ONNX Runtime's GraphOptimizationLevel, by the names its documentation uses.
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
QUANTIZATIONS = ("none", "int8")
FLAG_FALSE = ("0", "false", "no", "off")


class OptionError(ValueError):
    """An option a run cannot use: unknown for its engine, or a value of the wrong kind."""


@dataclass(frozen=True)
class Option:
    kind: str  # "flag", "int", "choice", "text"
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int = 2**20  # every number has a ceiling: a run must not try to start 10**11 threads
    internal: bool = False  # set by the controller itself (e.g. a cache folder), not by users

    def parse(self, key: str, value: Any) -> Any:
        text = str(value).strip()
        if self.kind == "flag":
            if text.lower() in FLAG_TRUE:
                return True
            if text.lower() in FLAG_FALSE:
                return False
            raise OptionError(
                f"option {key}={value!r} is not a yes/no value (one of {', '.join(FLAG_TRUE + FLAG_FALSE)})"
            )
        if self.kind == "int":
            try:
                number = int(text)
            except ValueError:
                raise OptionError(f"option {key}={value!r} is not a whole number") from None
            if self.minimum is not None and number < self.minimum:
                raise OptionError(f"option {key}={value!r} must be at least {self.minimum}")
            if number > self.maximum:
                raise OptionError(f"option {key}={value!r} must be at most {self.maximum}")
            return number
        if self.kind == "choice":
            match = next((c for c in self.choices if c.lower() == text.lower()), None)
            if match is None:
                raise OptionError(f"option {key}={value!r} is not one of {', '.join(self.choices)}")
            return match
        if not text:
            raise OptionError(f"option {key} needs a value")
        return text


MAX_THREADS = 1024
_THREADS = Option("int", "threads of the engine's intra-op pool", minimum=1, maximum=MAX_THREADS)
_MAX_LENGTH = Option("int", "sequence length of a text model's inputs (tokens)", minimum=1)
_TRT_FP16 = Option("flag", "let TensorRT use FP16 kernels")
_TRT_CACHE = Option("text", "TensorRT engine and timing cache folder", internal=True)
_DEVICE_ID = Option("int", "GPU index", minimum=0, maximum=255)
_FAULTS = {  # tests of the controller's failure paths (serving)
    "fault_exit_after": Option("int", "server exits abruptly after N requests (tests)", minimum=-1),
    "fault_hang_after": Option("int", "server hangs after N requests (tests)", minimum=-1),
}

# Every batch engine takes these.
_COMMON = {
    "fault_raise": Option("choice", "fail in this phase (tests of failure handling)", ("load", "measure")),
}

ENGINE_OPTIONS: dict[str, dict[str, Option]] = {
    "onnxruntime": {
        "intra_op_threads": _THREADS,
        "max_length": _MAX_LENGTH,
        "io_binding": Option("flag", "bind inputs to device memory before the window (GPU providers)"),
        "cudnn_conv_algo_search": Option(
            "choice", "CUDA EP convolution algorithm search", ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
        ),
        "device_id": _DEVICE_ID,
        "trt_fp16": _TRT_FP16,
        "trt_engine_cache": Option("flag", "keep TensorRT engines on the cache volume"),
        "trt_cache_dir": _TRT_CACHE,
        "device_type": Option("choice", "OpenVINO EP device", ("CPU", "GPU", "NPU")),
        "precision": Option("choice", "OpenVINO EP precision", ("FP32", "FP16", "ACCURACY")),
        "threads": Option("int", "OpenVINO EP threads", minimum=1, maximum=MAX_THREADS),
        "num_streams": Option("int", "OpenVINO EP streams", minimum=1, maximum=MAX_THREADS),
        "graph_optimization_level": Option(
            "choice", "ONNX Runtime graph optimisations (default all)", GRAPH_OPTIMIZATION_LEVELS
        ),
        "quantization": Option(
            "choice",
            "none (default), or int8: the ONNX model quantised by ONNX Runtime's dynamic INT8 quantisation "
            "(onnx2int8, a cached conversion whose top-1 agreement with the source is recorded; CPU provider)",
            QUANTIZATIONS,
        ),
    },
    "openvino": {
        "max_length": _MAX_LENGTH,
        "performance_hint": Option(
            "choice", "OpenVINO performance hint", ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
        ),
        "inference_precision": Option("choice", "OpenVINO inference precision", ("f32", "bf16", "f16")),
        "threads": _THREADS,
        "static_batch": Option("flag", "compile for the run's batch size only"),
        "model_format": Option("choice", "read the ONNX artifact, or convert it to OpenVINO IR", ("onnx", "ir")),
    },
    "torch": {"torch_threads": _THREADS, "max_length": _MAX_LENGTH},
    "torchscript": {"torch_threads": _THREADS, "max_length": _MAX_LENGTH},
    "torch-compile": {
        "torch_threads": _THREADS,
        "max_length": _MAX_LENGTH,
        "compile_mode": Option(
            "choice",
            "torch.compile mode",
            ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        ),
        "compile_backend": Option("text", "torch.compile backend (default inductor)"),
    },
    "tensorflow": {
        "intra_op_threads": _THREADS,
        "inter_op_threads": Option("int", "threads of TensorFlow's inter-op pool", minimum=1, maximum=MAX_THREADS),
        "jit_compile": Option("flag", "compile the model with XLA"),
        "max_length": _MAX_LENGTH,
    },
    "mxnet": {"static_alloc": Option("flag", "hybridize with static memory allocation"), "max_length": _MAX_LENGTH},
    "tensorrt": {
        "trt_fp16": _TRT_FP16,
        "trt_cache_dir": _TRT_CACHE,
        "device_id": _DEVICE_ID,
        "max_length": _MAX_LENGTH,
    },
}

# Serving engines read their thread count under any of these names, and take the fault hooks.
SERVING_OPTIONS: dict[str, Option] = {
    "threads": _THREADS,
    "intra_op_threads": _THREADS,
    "torch_threads": _THREADS,
    **_FAULTS,
}


# What the LLM runtimes take besides: the artifact they serve is converted for these (a conversion each).
SERVING_ENGINE_OPTIONS: dict[str, dict[str, Option]] = {
    "llamacpp": {
        "quant": Option("choice", "GGUF weights: f32, f16 (default), or quantised by llama.cpp", GGUF_QUANT_CHOICES),
        "context": Option(
            "int", "llama.cpp context (KV cache) length in tokens (default: the model's, at most 4096)", minimum=16
        ),
    },
    "ortgenai": {
        "precision": Option(
            "choice", "model builder precision: fp32 (default) or int4 (quantised)", ORTGENAI_PRECISIONS
        ),
    },
    "vllm": {
        "max_model_len": Option("int", "vLLM --max-model-len (default: the model's)", minimum=16),
        "gpu_memory_utilization": Option("text", "vLLM --gpu-memory-utilization, 0-1 (default vLLM's 0.9)"),
    },
}
SERVING_ENGINE_OPTIONS["llamacpp-server"] = SERVING_ENGINE_OPTIONS["llamacpp"]


def check_options(engine: str, options: Mapping[str, Any], serving: bool = False) -> dict[str, Any]:
    """The options parsed to their types, or OptionError naming the bad one and the valid ones."""
    if serving:
        known = {**SERVING_OPTIONS, **SERVING_ENGINE_OPTIONS.get(engine, {})}
    else:
        known = {**ENGINE_OPTIONS.get(engine, {}), **_COMMON}
    parsed: dict[str, Any] = {}
    for key, value in options.items():
        option = known.get(key)
        if option is None or option.internal:
            valid = ", ".join(sorted(k for k, o in known.items() if not o.internal)) or "none"
            what = f"serving engine {engine}" if serving else f"engine {engine}"
            raise OptionError(f"unknown option {key!r} for {what}; valid options: {valid}")
        parsed[key] = option.parse(key, value)
    return parsed


def flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    """A yes/no option's value (its default when unset)."""
    value = options.get(key)
    if value is None:
        return default
    return bool(Option("flag", "").parse(key, value))
