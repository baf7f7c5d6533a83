"""The artifact each serving engine loads, by engine and options (stdlib: the controller reads it too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# engine -> the export it serves with default options (None: loads the transformers folder itself)
EXPORT_FORMATS: dict[str, str | None] = {
    "torch": None,
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "torchscript": "torchscript",
    "llamacpp": "gguf-f16",
    "ortgenai": "ortgenai-fp32",
    "openvino-genai": "openvino-genai",  # made from the ONNX export
    "llamacpp-server": "gguf-f16",  # llama.cpp's own server (llama-cpp-python's), on the same GGUF
    "vllm": "reference",  # loads the model folder itself; the export holds transformers' reference tokens
}
# The packages an export is made with: recorded in its meta, and (local runner) part of its cache key.
EXPORTER_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-genai",
    "gguf",
    "llama_cpp_python",
    "openvino",
    "openvino-genai",
)
# Runtimes served by their own OpenAI-compatible server (harness.serving.own_server), and the request
# fields that make their sampling plain greedy, sent with every request (the client sends temperature 0).
OWN_SERVER_REQUEST: dict[str, dict[str, float]] = {
    "llamacpp-server": {"repeat_penalty": 1.0},  # llama-cpp-python's server defaults to 1.1
    "vllm": {},
}
# Engines that load the transformers folder themselves (mounted into their container).
LOADS_MODEL_FOLDER = ("torch", "vllm")
GGUF_QUANT_CHOICES = ("f32", "f16", "q8_0", "q4_k_m")  # llama.cpp's `quant` option
ORTGENAI_PRECISIONS = ("fp32", "int4")  # ONNX Runtime GenAI's `precision` option (its builder's -p)
# Architectures (config.json "architectures") each conversion writes; an engine absent here takes any
# that transformers' own export takes. A model outside its engine's list is refused before any work.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "llamacpp": ("GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM"),
    "llamacpp-server": ("GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM"),
    "ortgenai": (
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "GraniteForCausalLM",
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "NemotronForCausalLM",
        "OlmoForCausalLM",
        "PhiForCausalLM",
        "Phi3ForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "SmolLM3ForCausalLM",
    ),
}
WHY_UNSUPPORTED = {
    "llamacpp": "joulebench's GGUF writer writes Llama-, Mistral- and GPT-2-shaped models",  # and tokenizers
    "llamacpp-server": "joulebench's GGUF writer writes Llama-, Mistral- and GPT-2-shaped models",
    "ortgenai": "ONNX Runtime GenAI's model builder (0.18) does not build it",
}


def export_format(engine: str, options: Mapping[str, Any]) -> str | None:
    """The export an engine serves with these options (KeyError for an engine that cannot serve)."""
    fmt = EXPORT_FORMATS[engine]
    if engine in ("llamacpp", "llamacpp-server"):
        return f"gguf-{options.get('quant') or 'f16'}"
    if engine == "ortgenai":
        return f"ortgenai-{options.get('precision') or 'fp32'}"
    return fmt


# Tokenizers each conversion writes (None: any).
TOKENIZERS: dict[str, tuple[str, ...]] = {"llamacpp": ("byte-level BPE",), "llamacpp-server": ("byte-level BPE",)}


def unsupported_architecture(engine: str, architectures: list[str], tokenizer: str | None = None) -> str | None:
    """Why ``engine`` cannot serve a model of these architectures and tokenizer (None: it can, or
    nobody knows before converting it)."""
    known = ARCHITECTURES.get(engine)
    if known is not None and architectures and not any(a in known for a in architectures):
        return f"{', '.join(architectures)}: {WHY_UNSUPPORTED[engine]} (it does: {', '.join(known)})"
    tokenizers = TOKENIZERS.get(engine)
    if tokenizers is not None and tokenizer is not None and tokenizer not in tokenizers:
        return f"a {tokenizer} tokenizer: {WHY_UNSUPPORTED[engine]} with a {' or '.join(tokenizers)} tokenizer"
    return None
