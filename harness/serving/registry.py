"""Which language-model class serves each engine, and the artifact each one loads."""

from __future__ import annotations

from harness.engines.base import EngineError
from harness.protocol import ServeSpec
from harness.serving.lm import LanguageModel, OnnxRuntimeLM, OpenVinoLM, TorchLM, TorchScriptLM
from harness.serving.runtimes import LlamaCppLM, OpenVinoGenAiLM, OrtGenAiLM

LANGUAGE_MODELS: dict[str, type[LanguageModel]] = {
    "torch": TorchLM,
    "onnxruntime": OnnxRuntimeLM,
    "openvino": OpenVinoLM,
    "torchscript": TorchScriptLM,
    "llamacpp": LlamaCppLM,
    "ortgenai": OrtGenAiLM,
    "openvino-genai": OpenVinoGenAiLM,
}


def language_model(spec: ServeSpec) -> LanguageModel:
    if spec.engine not in LANGUAGE_MODELS:
        raise EngineError(f"engine {spec.engine!r} cannot serve; valid: {', '.join(LANGUAGE_MODELS)}")
    return LANGUAGE_MODELS[spec.engine](spec)
