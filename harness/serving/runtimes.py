"""The LLM runtimes people deploy, behind the same server: llama.cpp, ONNX Runtime GenAI, OpenVINO GenAI.

Each loads the artifact its conversion wrote (:mod:`harness.serving.export`) and generates greedily
with its own KV cache, one token at a time, so that our server streams every token as it comes, as
it does for every other engine; prompts are tokenised by the model's own tokenizer (tokenizer.json)
in the server, the same ids for every engine. Stopping at the end-of-sequence token is the server's
rule here too (``ignore_eos`` generates on), not the runtime's.

- llama.cpp (llama-cpp-python bindings): the GGUF is evaluated with ``Llama.eval`` (llama_decode)
  and the next token is the argmax of its last logits; the context starts empty for every request
  (no prompt-prefix reuse between requests, which no other engine here does either).
- ONNX Runtime GenAI: ``og.Generator`` with greedy search over the model builder's folder; its own
  end-of-sequence stop is switched off with a config overlay.
- OpenVINO GenAI: ``LLMPipeline.generate`` on token ids (``TokenizedInputs``), greedy, ``ignore_eos``,
  a streamer that takes each token and says stop at the server's end-of-sequence rule.

Both replay the reference prompts at load (:meth:`_ExportedLM.check_reference`): GGUF f32 and the
builder's fp32 must give transformers' greedy tokens; f16 weights (which round, so a near-tie may
flip) and quantised artifacts record their agreement.
"""

from __future__ import annotations

import json
import os
from typing import Any

from harness.engines.base import EngineError
from harness.serving.gguf_export import GGUF_FILE, gguf_parity_gated
from harness.serving.lm import ORTGENAI_CONFIG, OnToken, _ExportedLM, _threads

__all__ = ["LlamaCppLM", "OpenVinoGenAiLM", "OrtGenAiLM"]


def _cores() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0))


class _RuntimeLM(_ExportedLM):
    needs_layout = False

    def load_tokenizer(self) -> None:
        super().load_tokenizer()
        if not self.kv_cache:
            raise EngineError(f"{self.engine} always generates with its KV cache: kv_cache=false is not offered")


class LlamaCppLM(_RuntimeLM):
    engine = "llamacpp"
    packages = ("llama_cpp_python", "tokenizers")
    artifact_file = GGUF_FILE

    def load(self) -> None:
        import llama_cpp
        import numpy as np

        path = self._folder()
        if self.spec.provider != "cpu":
            raise EngineError(f"llama.cpp serves provider cpu in this image, not {self.spec.provider!r}")
        self.quant = str(self.spec.options.get("quant") or "f16")
        self.parity_gated = gguf_parity_gated(self.quant)
        self.threads = _threads(self.spec) or _cores()
        self.n_ctx = int(self.spec.options.get("context") or min(self.max_positions or 4096, 4096))
        self.max_positions = self.n_ctx  # longer requests are refused by the server, not cut by llama.cpp
        self.llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=self.n_ctx,
            n_batch=min(512, self.n_ctx),
            n_threads=self.threads,
            n_threads_batch=self.threads,
            logits_all=False,
            verbose=False,
        )
        n_vocab, ctx = self.llm.n_vocab(), self.llm.ctx
        # the last evaluated token's logits, read in place (llama_get_logits_ith(ctx, -1))
        self._logits = lambda: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        self.check_reference()

    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        llm, logits = self.llm, self._logits
        eos = set() if ignore_eos else self.eos_ids
        llm.reset()  # n_tokens = 0: eval clears the cache from there, so no prefix is reused
        llm.eval(prompt_ids)
        new: list[int] = []
        while True:
            token = int(logits().argmax())
            new.append(token)
            if on_token is not None:
                on_token(token)
            if token in eos or len(new) >= max_new_tokens:
                return new
            llm.eval([token])

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "cache_io": "llama.cpp's own KV cache (llama_decode), emptied per request",
            "decoding": "greedy: argmax of llama.cpp's last logits",
            "quantization": self.quant,
            "threads": self.threads,
            "context": self.n_ctx,
        }


class OrtGenAiLM(_RuntimeLM):
    engine = "ortgenai"
    packages = ("onnxruntime-genai", "onnxruntime", "tokenizers")
    artifact_file = ORTGENAI_CONFIG

    def load(self) -> None:
        import onnxruntime_genai as og

        folder = os.path.dirname(self._folder())
        if self.spec.provider != "cpu":
            raise EngineError(f"ONNX Runtime GenAI serves provider cpu in this image, not {self.spec.provider!r}")
        with open(os.path.join(folder, ORTGENAI_CONFIG)) as fh:
            self.precision = "int4" if "int4" in json.dumps(json.load(fh)).lower() else "fp32"
        self.parity_gated = str(self.spec.options.get("precision") or "fp32") == "fp32"
        config = og.Config(folder)
        config.clear_providers()  # the CPU
        overlay: dict[str, Any] = {"model": {"eos_token_id": []}}  # the server stops at EOS, not the runtime
        if _threads(self.spec):
            overlay["model"]["decoder"] = {"session_options": {"intra_op_num_threads": _threads(self.spec)}}
        config.overlay(json.dumps(overlay))
        self._og = og
        self.model = og.Model(config)
        self.check_reference()

    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        og = self._og
        eos = set() if ignore_eos else self.eos_ids
        params = og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=len(prompt_ids) + max_new_tokens)
        generator = og.Generator(self.model, params)
        generator.append_tokens([prompt_ids])
        new: list[int] = []
        while True:
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            new.append(token)
            if on_token is not None:
                on_token(token)
            if token in eos or len(new) >= max_new_tokens:
                return new

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "cache_io": "ONNX Runtime GenAI's own KV cache (past/present buffer shared, sized per request)",
            "decoding": "greedy search (og.Generator)",
            "precision": self.spec.options.get("precision") or "fp32",
        }


class OpenVinoGenAiLM(_RuntimeLM):
    engine = "openvino-genai"
    packages = ("openvino-genai", "openvino", "tokenizers")
    artifact_file = "openvino_model.xml"

    def load(self) -> None:
        import numpy as np
        import openvino as ov
        import openvino_genai as genai

        folder = os.path.dirname(self._folder())
        if self.spec.provider != "cpu":
            raise EngineError(f"OpenVINO GenAI serves provider cpu in this image, not {self.spec.provider!r}")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}  # bf16 on AMX CPUs otherwise
        if _threads(self.spec):
            config["INFERENCE_NUM_THREADS"] = _threads(self.spec)
        self.pipe = genai.LLMPipeline(folder, "CPU", **config)
        self._genai, self._ov, self._np = genai, ov, np
        self.check_reference()

    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        genai, ov, np = self._genai, self._ov, self._np
        eos = set() if ignore_eos else self.eos_ids
        new: list[int] = []
        raised: list[BaseException] = []  # raised in on_token (a cancelled request): re-raised after generate

        class Streamer(genai.StreamerBase):  # type: ignore[misc,name-defined]
            def write(self, token: Any) -> Any:
                for t in token if isinstance(token, list) else [token]:
                    new.append(int(t))
                    try:
                        if on_token is not None:
                            on_token(int(t))
                    except BaseException as exc:  # noqa: BLE001 - not through OpenVINO's C++ frames
                        raised.append(exc)
                        return genai.StreamingStatus.CANCEL
                    if int(t) in eos or len(new) >= max_new_tokens:
                        return genai.StreamingStatus.STOP
                return genai.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        config = genai.GenerationConfig()
        config.max_new_tokens = max_new_tokens
        config.do_sample = False
        config.ignore_eos = True  # stopping is the server's rule (above), as for every engine
        ids = np.asarray([prompt_ids], dtype=np.int64)
        inputs = genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        self.pipe.generate(inputs, config, Streamer())
        if raised:
            raise raised[0]
        return new

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "cache_io": "OpenVINO GenAI's stateful model (KV cache in the infer request)",
            "decoding": "greedy (LLMPipeline, GenerationConfig do_sample=false)",
        }
