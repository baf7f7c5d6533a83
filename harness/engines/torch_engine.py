"""PyTorch eager and TorchScript."""

from __future__ import annotations

import os
from typing import Any

import torch

from harness.engines.base import Engine, EngineError


class TorchEngine(Engine):
    name = "torch"
    packages = ("torch", "torchvision", "numpy")

    def _device(self) -> torch.device:
        if self.spec.provider == "cuda":
            if not torch.cuda.is_available():
                raise EngineError("provider cuda requested but torch sees no CUDA device")
            return torch.device("cuda")
        if self.spec.provider != "cpu":
            raise EngineError(f"torch serves providers cpu and cuda, not {self.spec.provider!r}")
        return torch.device("cpu")

    def _build(self) -> torch.nn.Module:
        from suite.torch_models import WeightsUnavailable, build

        try:
            return build(
                self.spec.model,
                self.spec.model_size,
                self.spec.weights,
                self.spec.weights_path,
                self.spec.seed,
            )
        except WeightsUnavailable as exc:
            raise EngineError(str(exc)) from None

    def load(self) -> None:
        threads = self.spec.options.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = self._device()
        self.model = self._build().to(self.device)
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else None
        self._guard = torch.inference_mode()
        self._guard.__enter__()

    def prepare(self, batch: Any) -> Any:
        if isinstance(batch, dict):  # a model with several named inputs (token ids, attention mask)
            return {name: torch.from_numpy(array).to(self.device) for name, array in batch.items()}
        return torch.from_numpy(batch).to(self.device)

    def infer(self, prepared: Any) -> Any:
        out = self.model(**prepared) if isinstance(prepared, dict) else self.model(prepared)
        if self._sync is not None:
            self._sync()
        return out

    def to_numpy(self, output: Any) -> Any:
        return output.detach().cpu().numpy()

    def options_used(self) -> dict[str, Any]:
        return {"torch_threads": torch.get_num_threads()}


class TorchScriptEngine(TorchEngine):
    name = "torchscript"

    def _build(self) -> torch.nn.Module:
        if not self.spec.artifact or not self.spec.artifact_root:
            raise EngineError("torchscript needs a TorchScript artifact; none was passed")
        path = os.path.join(self.spec.artifact_root, self.spec.artifact)
        return torch.jit.load(path, map_location="cpu").eval()


ENGINES = {"torch": TorchEngine, "torchscript": TorchScriptEngine}
