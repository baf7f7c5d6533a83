"""The settings that change energy per engine: its thread option, its own knobs and their levels, and
the precisions it offers (with the options that select each), from ``harness/options.py``'s names.

Levels are the ones worth measuring by default; ``--vary KEY=V1,V2`` replaces a knob's levels and
``--fix KEY=VALUE`` holds it. A precision below the engine's full one is *reduced*: advise applies
its quality constraint to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FULL_PRECISIONS = ("fp32", "f32")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32, int8, bf16, fp16, f16, q8_0, q4_k_m, int4
    options: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # why this host cannot run it (None: it can)

    @property
    def reduced(self) -> bool:
        return self.name not in FULL_PRECISIONS


def thread_option(engine: str, provider: str, serving: bool) -> str | None:
    """The option that sets an engine's intra-op threads on a CPU provider (None: none settable)."""
    if provider not in ("cpu", "openvino"):
        return None  # the GPU does the work: host threads are not what changes its energy
    if serving:
        return None if engine in ("vllm", "external") else "threads"
    if engine == "onnxruntime":
        return "intra_op_threads" if provider == "cpu" else "threads"  # the OpenVINO EP's own
    return {
        "openvino": "threads",
        "torch": "torch_threads",
        "torchscript": "torch_threads",
        "torch-compile": "torch_threads",
        "tensorflow": "intra_op_threads",
    }.get(engine)


def engine_knobs(engine: str, provider: str, serving: bool) -> dict[str, tuple[str, ...]]:
    """An engine's own knobs on this provider, each with the levels measured by default."""
    if serving:
        return {}
    gpu = provider in ("cuda", "tensorrt")
    if engine == "onnxruntime" and provider == "cpu":
        return {"graph_optimization_level": ("basic", "all")}
    if engine == "openvino":
        return {"performance_hint": ("LATENCY", "THROUGHPUT")}
    if engine == "torch-compile":
        return {"compile_mode": ("default", "reduce-overhead") if gpu else ("default", "max-autotune-no-cudagraphs")}
    if engine == "tensorflow":
        return {"jit_compile": ("false", "true")}
    return {}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_needs(flags: set[str], wanted: tuple[str, ...], what: str) -> str | None:
    if flags & set(wanted):
        return None
    return f"{what} needs a CPU with {' or '.join(wanted)}; this one has none of them"


def precisions(engine: str, provider: str, serving: bool, flags: set[str]) -> list[Precision]:
    """The precisions an engine offers here, full precision first; those this host lacks carry why."""
    if serving:
        if engine in ("llamacpp", "llamacpp-server"):
            return [Precision(q, {"quant": q}) for q in ("f32", "f16", "q8_0", "q4_k_m")]
        if engine == "ortgenai":
            return [Precision("fp32", {"precision": "fp32"}), Precision("int4", {"precision": "int4"})]
        return [Precision("fp32")]
    if engine == "onnxruntime" and provider == "cpu":
        return [Precision("fp32"), Precision("int8", {"quantization": "int8"})]
    if engine == "onnxruntime" and provider == "openvino":
        return [Precision("fp32", {"precision": "FP32"}), Precision("fp16", {"precision": "FP16"})]
    if (engine == "onnxruntime" and provider == "tensorrt") or engine == "tensorrt":
        return [Precision("fp32", {"trt_fp16": "false"}), Precision("fp16", {"trt_fp16": "true"})]
    if engine == "openvino":
        return [
            Precision("f32", {"inference_precision": "f32"}),
            Precision(
                "bf16",
                {"inference_precision": "bf16"},
                _cpu_needs(flags, ("avx512_bf16", "amx_bf16"), "OpenVINO's bf16 inference precision"),
            ),
            Precision(
                "f16",
                {"inference_precision": "f16"},
                _cpu_needs(flags, ("avx512_fp16", "amx_fp16"), "OpenVINO's f16 inference precision on a CPU"),
            ),
        ]
    return [Precision("fp32")]


# Precisions the issue names that joulebench cannot select yet, and why (shown by `advise --plan`).
_TORCH_FP16 = "FP16 (half weights or autocast) is no option of joulebench's torch engines yet"
NOT_OFFERED = {
    ("onnxruntime", "cuda"): "FP16 on ONNX Runtime's CUDA provider needs an FP16 copy of the model, a conversion "
    "joulebench does not make yet (TensorRT's FP16 is offered on onnx-trt and tensorrt)",
    ("torch", "cuda"): _TORCH_FP16,
    ("torchscript", "cuda"): _TORCH_FP16,
    ("torch-compile", "cuda"): _TORCH_FP16,
}
