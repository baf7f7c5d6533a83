"""What the local runner needs installed in this Python for a run: the engine's package, the
execution provider's onnxruntime distribution, the framework a conversion starts from, the serving
stack. Looked up, never imported; a campaign's plan and a single run ask the same questions."""

from __future__ import annotations

import importlib.util

# Python package each engine needs when the harness runs locally (the local runner).
ENGINE_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "torchscript": "torch",
    "torch-compile": "torch",
    "openvino": "openvino",
    "tensorflow": "tensorflow",
    "mxnet": "mxnet",
    "tensorrt": "tensorrt",
    "llamacpp": "llama_cpp",
    "ortgenai": "onnxruntime_genai",
    "openvino-genai": "openvino_genai",
    "llamacpp-server": "llama_cpp",
    "vllm": "vllm",
}
SOURCE_PACKAGES = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
CONVERSION_SOURCES = {"torch": "torch", "tf": "tensorflow", "mx": "mxnet"}  # a conversion's prefix


def package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# What the server needs in the local runner's environment, besides the engine's package.
SERVING_PACKAGES = ("fastapi", "uvicorn", "transformers", "tokenizers")


def local_serving_reasons(engine: str, exported: bool) -> list[str]:
    needed = [*SERVING_PACKAGES, ENGINE_PACKAGES.get(engine, engine)]
    if exported:
        needed.append("torch")  # exports are made from the transformers model
    missing = [p for p in dict.fromkeys(needed) if not package(p)]
    if not missing:
        return []
    return [
        f"serving on {engine} with the local runner needs {', '.join(missing)}, not installed here "
        "(pip install -e '.[local]', or use the docker runner)"
    ]


# Execution providers that need another onnxruntime distribution than the plain CPU one.
PROVIDER_DISTRIBUTIONS = {
    "openvino": "onnxruntime-openvino",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu",
}


def distribution(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def local_reasons(engine: str, provider: str, conversion: str | None) -> list[str]:
    """Why the local runner cannot run this here (packages looked up, never imported); ``conversion``
    may be a chain (``torch2onnx+onnx2openvino``)."""
    reasons = []
    pkg = ENGINE_PACKAGES.get(engine, engine)
    if not package(pkg):
        reasons.append(
            f"engine {engine} needs the Python package {pkg} for the local runner and it is not installed "
            "here (pip install -e '.[local]', or use the docker runner)"
        )
    dist = PROVIDER_DISTRIBUTIONS.get(provider) if engine == "onnxruntime" else None
    if dist and not distribution(dist):
        reasons.append(
            f"the {provider} execution provider needs {dist} for the local runner, not installed here "
            "(it cannot share an environment with the plain onnxruntime): use the docker runner"
        )
    for step in filter(None, (conversion or "").split("+")):
        src = CONVERSION_SOURCES.get(step.split("2")[0])
        if src is not None and not package(SOURCE_PACKAGES[src]):
            reasons.append(
                f"conversion {step} needs {src} installed for the local runner and it is not installed here "
                "(install it, or use the docker runner)"
            )
    return reasons
