"""PyTorch eager and TorchScript."""

from __future__ import annotations

from typing import Any

import torch

from harness.engines.base import Engine, EngineError, first_output, model_file


def has_kernels_for(arches: list[str], major: int, minor: int) -> bool:
    """Whether a build for ``arches`` (torch.cuda.get_arch_list()) runs on compute capability
    major.minor: binary kernels of the same major and a lower or equal minor, or PTX of an equal
    or older architecture that the driver compiles just in time."""
    for arch in arches:
        kind, _, number = arch.partition("_")
        digits = "".join(ch for ch in number if ch.isdigit())
        if len(digits) < 2:
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor and not number.endswith("a"):
            return True
        if kind == "sm" and number == f"{major}{minor}a":
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


class TorchEngine(Engine):
    name = "torch"
    packages = ("torch", "torchvision", "numpy")

    def _device(self) -> torch.device:
        if self.spec.provider == "cuda":
            if not torch.cuda.is_available():
                raise EngineError("provider cuda requested but torch sees no CUDA device")
            major, minor = torch.cuda.get_device_capability(0)
            arches = torch.cuda.get_arch_list()
            # A build without kernels for this GPU fails at the first kernel launch with "no kernel
            # image is available"; say so before loading anything.
            if arches and not has_kernels_for(arches, major, minor):
                raise EngineError(
                    f"this torch build has no kernels for {torch.cuda.get_device_name(0)} (sm_{major}{minor}); "
                    f"it was built for {', '.join(arches)}: use an image built for this GPU (torch-cuda)"
                )
            return torch.device("cuda")
        if self.spec.provider != "cpu":
            raise EngineError(f"torch serves providers cpu and cuda, not {self.spec.provider!r}")
        return torch.device("cpu")

    def _build(self) -> torch.nn.Module:
        from suite.torch_models import WeightsUnavailable, build

        try:
            if self.spec.model_source is not None:
                from suite.torch_sources import load_source

                return load_source(self.spec.model_source, self.spec.seed)
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
        if not isinstance(output, torch.Tensor):  # a model source's tuple, dict or ModelOutput
            output = first_output(output)
        return output.detach().float().cpu().numpy() if output.is_floating_point() else output.detach().cpu().numpy()

    def options_used(self) -> dict[str, Any]:
        return {"torch_threads": torch.get_num_threads()}


class TorchScriptEngine(TorchEngine):
    name = "torchscript"

    def _build(self) -> torch.nn.Module:
        # The torch2torchscript artifact, or a TorchScript file given as the model.
        path = model_file(self.spec, "torchscript", "a TorchScript file")
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"torch.jit.load cannot load {path}: {first[:300]}") from None


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TorchCompileEngine(TorchEngine):
    """torch.compile over the eager model; compiled on the first call, timed as the compile step.

    The backend (inductor) generates C++ on CPU and Triton kernels on CUDA, so the image needs a
    C++ compiler (CPU) or Triton (CUDA); without them the compile step fails with the reason.
    """

    name = "torch-compile"

    def load(self) -> None:
        super().load()
        mode = str(self.spec.options.get("compile_mode", "default"))
        if mode not in COMPILE_MODES:
            raise EngineError(f"compile_mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
        backend = str(self.spec.options.get("compile_backend", "inductor"))
        self._compile_options = {"compile_mode": mode, "compile_backend": backend, "dynamic": False}
        # dynamic=False: every batch has the run's batch size, so one specialised graph serves all.
        self.model = torch.compile(self.model, mode=mode, backend=backend, dynamic=False)  # type: ignore[assignment]
        self.compile_step = f"torch.compile (backend {backend}, mode {mode}), first call"

    def compile(self, example: Any) -> None:
        try:
            self.infer(example)
        except Exception as exc:  # inductor raises many types; the user needs the reason, not the type
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"torch.compile failed on the first call: {first[:400]}") from None

    def options_used(self) -> dict[str, Any]:
        return {**super().options_used(), **self._compile_options}


ENGINES = {"torch": TorchEngine, "torchscript": TorchScriptEngine, "torch-compile": TorchCompileEngine}
