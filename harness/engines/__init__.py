"""Engine adapters: one module per runtime engine, imported only when its engine is asked for."""

from __future__ import annotations

import importlib

from harness.engines.base import Engine

# engine name -> module under harness.engines that defines `ENGINE` (an Engine subclass)
ADAPTERS = {
    "onnxruntime": "onnxruntime_engine",
    "torch": "torch_engine",
    "torchscript": "torch_engine",
    "torch-compile": "torch_engine",
    "openvino": "openvino_engine",
    "tensorflow": "tensorflow_engine",
    "mxnet": "mxnet_engine",
    "tensorrt": "tensorrt_engine",
}


def load_engine_class(name: str) -> type[Engine]:
    if name not in ADAPTERS:
        raise KeyError(f"unknown engine {name!r}; valid engines: {', '.join(sorted(ADAPTERS))}")
    module = importlib.import_module(f"harness.engines.{ADAPTERS[name]}")
    cls: type[Engine] = module.ENGINES[name]
    return cls
