"""Causal language models behind one interface, per engine: load, then greedy ``generate``.

torch runs transformers' own ``generate`` (greedy, KV cache). onnxruntime, openvino and
torchscript run an exported forward (token ids + attention mask -> logits, no KV cache) in a real
autoregressive loop: each step feeds the whole sequence and appends the argmax of the last
position's logits, stopping at max_new_tokens or the end-of-sequence token. The export is done once
by :mod:`harness.serving.export` in the torch environment.

Frameworks are imported lazily, so an image imports only its own.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.engines.base import EngineError
from harness.protocol import ServeSpec

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.pt"
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    token_ids: list[int]  # the generated ones only
    tokenize_ms: float
    generate_ms: float
    decode_ms: float


def greedy_loop(
    forward: Callable[[Any, Any], Any], prompt_ids: list[int], max_new_tokens: int, eos_id: int | None
) -> list[int]:
    """Greedy decoding over a forward without cache: (ids, mask) int64 [1, n] -> logits [1, n, V]."""
    import numpy as np

    ids = list(prompt_ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        x = np.asarray([ids], dtype=np.int64)
        logits = forward(x, np.ones_like(x))
        token = int(np.asarray(logits)[0, -1].argmax())
        new.append(token)
        if eos_id is not None and token == eos_id:
            break
        ids.append(token)
    return new


class LanguageModel:
    """Tokenizer + model of one engine. ``generate`` is what the server times and calls."""

    engine = "?"
    packages: tuple[str, ...] = ()
    kv_cache = False

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.eos_id: int | None = None
        self.max_positions: int | None = None

    def load(self) -> None:
        raise NotImplementedError

    # Subclasses set these three.
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        raise NotImplementedError

    def generate(self, prompt: str, max_new_tokens: int) -> Generation:
        t0 = time.perf_counter_ns()
        ids = self.encode(prompt)
        if not ids:
            raise ValueError("the prompt encodes to no tokens")
        if self.max_positions is not None and len(ids) + max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                f"{self.max_positions} positions"
            )
        t1 = time.perf_counter_ns()
        new = self.generate_ids(ids, max_new_tokens)
        t2 = time.perf_counter_ns()
        text = self.decode(new)
        t3 = time.perf_counter_ns()
        return Generation(text, len(ids), new, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6)

    def providers_active(self) -> list[str]:
        return [self.spec.provider]

    def describe(self) -> dict[str, Any]:
        """What the record says about how this engine generates."""
        return {"kv_cache": self.kv_cache, "decoding": "greedy"}

    def versions(self) -> dict[str, str]:
        found = {}
        for name in (*self.packages, "fastapi", "uvicorn", "numpy"):
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return found

    def _read_config(self, folder: str) -> None:
        path = os.path.join(folder, "config.json")
        if os.path.isfile(path):
            with open(path) as fh:
                config = json.load(fh)
            eos = config.get("eos_token_id")
            self.eos_id = eos[0] if isinstance(eos, list) else eos
            self.max_positions = config.get("n_positions") or config.get("max_position_embeddings")


def _threads(spec: ServeSpec) -> int | None:
    value = spec.options.get("threads") or spec.options.get("intra_op_threads") or spec.options.get("torch_threads")
    return int(value) if value else None


class TorchLM(LanguageModel):
    engine = "torch"
    packages = ("torch", "transformers", "tokenizers")
    kv_cache = True

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if _threads(self.spec):
            torch.set_num_threads(_threads(self.spec))  # type: ignore[arg-type]
        if self.spec.provider == "cuda":
            if not torch.cuda.is_available():
                raise EngineError("provider cuda requested but torch sees no CUDA device")
            self.device = torch.device("cuda")
        elif self.spec.provider == "cpu":
            self.device = torch.device("cpu")
        else:
            raise EngineError(f"torch serves providers cpu and cuda, not {self.spec.provider!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(self.spec.model_path)
        model: Any = AutoModelForCausalLM.from_pretrained(self.spec.model_path)
        self.model = model.to(self.device).eval()
        self.eos_id = self.model.config.eos_token_id
        if isinstance(self.eos_id, list):
            self.eos_id = self.eos_id[0]
        self.max_positions = getattr(self.model.config, "n_positions", None) or getattr(
            self.model.config, "max_position_embeddings", None
        )
        self._torch = torch

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        torch = self._torch
        x = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.eos_id,
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return [int(t) for t in out[0, len(prompt_ids) :].tolist()]

    def options_used(self) -> dict[str, Any]:
        return {"threads": self._torch.get_num_threads()}


class _ExportedLM(LanguageModel):
    """Shared by the engines that run an exported forward: tokenizer from the artifact folder."""

    artifact_file = ONNX_FILE

    def _folder(self) -> str:
        folder = self.spec.artifact_path
        if not folder or not os.path.isdir(folder):
            raise EngineError(f"{self.engine} needs an exported model folder; {folder!r} is not one")
        path = os.path.join(folder, self.artifact_file)
        if not os.path.isfile(path):
            raise EngineError(f"{path} not found: the export did not finish (delete the folder to re-export)")
        self._read_config(folder)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        return path

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        return greedy_loop(self._forward, prompt_ids, max_new_tokens, self.eos_id)

    def _forward(self, ids: Any, mask: Any) -> Any:
        raise NotImplementedError


class OnnxRuntimeLM(_ExportedLM):
    engine = "onnxruntime"
    packages = ("onnxruntime", "onnxruntime-gpu", "tokenizers")

    def load(self) -> None:
        import onnxruntime as ort

        path = self._folder()
        wanted = ORT_PROVIDERS.get(self.spec.provider)
        if wanted is None:
            raise EngineError(f"onnxruntime serves providers {sorted(ORT_PROVIDERS)}, not {self.spec.provider!r}")
        if wanted not in ort.get_available_providers():
            raise EngineError(f"{wanted} is not in this onnxruntime build ({ort.get_available_providers()})")
        opts = ort.SessionOptions()
        if _threads(self.spec):
            opts.intra_op_num_threads = _threads(self.spec)  # type: ignore[assignment]
        self.session = ort.InferenceSession(path, sess_options=opts, providers=[wanted])
        active = self.session.get_providers()
        if not active or active[0] != wanted:  # ONNX Runtime falls back to CPU silently
            raise EngineError(f"requested {wanted} but the session runs on {active}: refusing the fallback")
        self._run = self.session.run

    def _forward(self, ids: Any, mask: Any) -> Any:
        return self._run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def providers_active(self) -> list[str]:
        return list(self.session.get_providers())


class OpenVinoLM(_ExportedLM):
    engine = "openvino"
    packages = ("openvino", "tokenizers")

    def load(self) -> None:
        import openvino as ov

        path = self._folder()
        if self.spec.provider != "cpu":
            raise EngineError(f"openvino serves provider cpu here, not {self.spec.provider!r}")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}  # bf16 on AMX CPUs otherwise
        if _threads(self.spec):
            config["INFERENCE_NUM_THREADS"] = _threads(self.spec)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def _forward(self, ids: Any, mask: Any) -> Any:
        result = self.request.infer({"input_ids": ids, "attention_mask": mask})
        return result[self.compiled.output(0)]


class TorchScriptLM(_ExportedLM):
    engine = "torchscript"
    packages = ("torch", "tokenizers")
    artifact_file = TORCHSCRIPT_FILE

    def load(self) -> None:
        import torch

        path = self._folder()
        if _threads(self.spec):
            torch.set_num_threads(_threads(self.spec))  # type: ignore[arg-type]
        if self.spec.provider == "cuda":
            if not torch.cuda.is_available():
                raise EngineError("provider cuda requested but torch sees no CUDA device")
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.module = torch.jit.load(path, map_location=self.device).eval()
        self._torch = torch

    def _forward(self, ids: Any, mask: Any) -> Any:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device))
        return out.cpu().numpy()


LANGUAGE_MODELS: dict[str, type[LanguageModel]] = {
    "torch": TorchLM,
    "onnxruntime": OnnxRuntimeLM,
    "openvino": OpenVinoLM,
    "torchscript": TorchScriptLM,
}
# engine -> artifact the export writes for it (None: loads the model folder itself)
EXPORT_FORMATS: dict[str, str | None] = {
    "torch": None,
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "torchscript": "torchscript",
}


def language_model(spec: ServeSpec) -> LanguageModel:
    if spec.engine not in LANGUAGE_MODELS:
        raise EngineError(f"engine {spec.engine!r} cannot serve; valid: {', '.join(LANGUAGE_MODELS)}")
    return LANGUAGE_MODELS[spec.engine](spec)
