"""ONNX Runtime, with the execution provider the image was built for."""

from __future__ import annotations

import os
from typing import Any

import onnxruntime as ort

from harness.engines.base import Engine, EngineError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    packages = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "numpy")

    def load(self) -> None:
        if not self.spec.artifact or not self.spec.artifact_root:
            raise EngineError("onnxruntime needs an ONNX artifact; the controller did not pass one")
        path = os.path.join(self.spec.artifact_root, self.spec.artifact)
        if not os.path.isfile(path):
            raise EngineError(f"ONNX artifact {path} not found (is the artifact cache mounted?)")
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
        self.session = ort.InferenceSession(path, sess_options=opts, providers=[wanted])
        active = self.session.get_providers()
        # ONNX Runtime falls back to CPU silently when a provider fails to initialise.
        if not active or active[0] != wanted:
            raise EngineError(f"requested {wanted} but the session runs on {active}: refusing the fallback")
        self.input_name = self.session.get_inputs()[0].name
        self._run = self.session.run

    def infer(self, prepared: Any) -> Any:
        # Several named inputs (token ids, attention mask) arrive as a dict named as in the graph.
        return self._run(None, prepared if isinstance(prepared, dict) else {self.input_name: prepared})[0]

    def providers_active(self) -> list[str]:
        return list(self.session.get_providers())

    def options_used(self) -> dict[str, Any]:
        return {"intra_op_threads": self._threads or "default"}


ENGINES = {"onnxruntime": OnnxRuntimeEngine}
