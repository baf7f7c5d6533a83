"""Causal language models behind one interface, per engine: load, then greedy token streams.

torch runs transformers' own ``generate`` (greedy, KV cache), its tokens handed out one by one
through a streamer. onnxruntime, openvino and torchscript run the export of
:mod:`harness.serving.export`: one forward ``(input_ids, attention_mask, position_ids, past
keys/values) -> (last logits, present keys/values)`` in a greedy loop that feeds the cache back
(``kv_cache``), or, with the engine option ``kv_cache=false``, re-runs the whole sequence every step
with an empty cache (the cache-less loop this project served before, kept for comparison).
OpenVINO keeps the cache inside its infer request (the stateful model optimum-intel builds, made
here with OpenVINO's own MakeStateful transformation at load); ``stateful=false`` passes it in and
out like ONNX Runtime does.

Every exported engine replays the export's reference prompts at load and refuses to serve when its
greedy tokens differ from transformers' (the export's parity check ran on ONNX Runtime; OpenVINO's
stateful rewrite and other providers are checked here).

Frameworks are imported lazily, so an image imports only its own.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.engines.base import EngineError, option_flag, package_versions
from harness.progress import report
from harness.protocol import ServeSpec

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.pt"
CACHE_FILE = "cache.json"  # the export's cache layout and whether its cached loop kept parity
REFERENCE_FILE = "reference.json"  # prompts and transformers' greedy tokens, for the load check
ORTGENAI_CONFIG = "genai_config.json"  # ONNX Runtime GenAI's model folder: its config beside model.onnx
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

# run(ids, past_len, past) -> (greedy next token, present); reset() -> an empty past
StepFn = Callable[[list[int], int, Any], tuple[int, Any]]
OnToken = Callable[[int], None]


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    token_ids: list[int]  # the generated ones only
    tokenize_ms: float
    generate_ms: float
    decode_ms: float
    finish_reason: str = "length"  # "stop" when an end-of-sequence token ended it


def greedy_decode(
    run: StepFn,
    reset: Callable[[], Any],
    prompt_ids: list[int],
    max_new_tokens: int,
    eos_ids: set[int],
    on_token: OnToken | None = None,
    use_cache: bool = True,
) -> list[int]:
    """Greedy tokens of an exported forward; ``on_token`` sees each one as soon as it is chosen.

    With the cache, the prompt is run once and each step feeds one token and the cache back;
    without, each step runs the whole sequence from an empty cache. No forward runs for a token
    that will not be emitted (after the last one or an end-of-sequence token).
    """
    new: list[int] = []
    token, past = run(list(prompt_ids), 0, reset())
    seq = list(prompt_ids)
    while True:
        new.append(token)
        if on_token is not None:
            on_token(token)
        if token in eos_ids or len(new) >= max_new_tokens:
            return new
        if use_cache:
            token, past = run([token], len(seq), past)
            seq.append(new[-1])
        else:
            seq.append(token)
            token, _ = run(seq, 0, reset())


def step_feeds(ids: list[int], past_len: int) -> dict[str, Any]:
    """The export's inputs besides the cache for ``ids`` after ``past_len`` cached positions (batch 1)."""
    import numpy as np

    n = len(ids)
    return {
        "input_ids": np.asarray([ids], dtype=np.int64),
        "attention_mask": np.ones((1, past_len + n), dtype=np.int64),
        "position_ids": np.arange(past_len, past_len + n, dtype=np.int64)[None],
    }


class LanguageModel(ABC):
    """Tokenizer + model of one engine. The server calls ``stream_ids`` from its generation thread."""

    engine = "?"
    packages: tuple[str, ...] = ()

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.eos_ids: set[int] = set()
        self.max_positions: int | None = None
        self.kv_cache = option_flag(spec.options, "kv_cache", True)
        self.kv_cache_reason: str | None = None if self.kv_cache else "engine option kv_cache=false"
        self.load_parity: dict[str, Any] | None = None

    @abstractmethod
    def load_tokenizer(self) -> None:
        """The tokenizer and what the server checks requests against (end of sequence, positions)."""
        raise NotImplementedError

    @abstractmethod
    def load(self) -> None:
        """Everything generation needs: the tokenizer, the model, its checks."""
        raise NotImplementedError

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    @abstractmethod
    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        raise NotImplementedError

    def check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens == 0:
            raise ValueError("the prompt encodes to no tokens")
        if self.max_positions is not None and prompt_tokens + max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                f"{self.max_positions} positions"
            )

    def generate(
        self,
        prompt: str | list[int],
        max_new_tokens: int,
        on_token: OnToken | None = None,
        ignore_eos: bool = False,
    ) -> Generation:
        t0 = time.perf_counter_ns()
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.check_length(len(ids), max_new_tokens)
        t1 = time.perf_counter_ns()
        new = self.stream_ids(ids, max_new_tokens, on_token, ignore_eos)
        t2 = time.perf_counter_ns()
        text = self.decode(new)
        t3 = time.perf_counter_ns()
        stopped = not ignore_eos and bool(new) and new[-1] in self.eos_ids
        return Generation(
            text, len(ids), new, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6, "stop" if stopped else "length"
        )

    def providers_active(self) -> list[str]:
        return [self.spec.provider]

    def describe(self) -> dict[str, Any]:
        """What the record says about how this engine generates."""
        return {
            "kv_cache": self.kv_cache,
            "kv_cache_reason": self.kv_cache_reason,
            "decoding": "greedy",
            "streaming": "one server-sent event per generated token",
            "load_parity": self.load_parity,
        }

    def versions(self) -> dict[str, str]:
        return package_versions(*self.packages, "fastapi", "uvicorn", "numpy")

    def _set_config(self, eos: Any, max_positions: int | None) -> None:
        self.eos_ids = set(eos) if isinstance(eos, list) else ({int(eos)} if eos is not None else set())
        self.max_positions = max_positions


def torch_device(torch: Any, provider: str) -> Any:
    """The torch device of ``provider`` (TorchLM and TorchScriptLM alike): an unknown provider is refused,
    never run on the CPU in its place."""
    if provider == "cuda":
        if not torch.cuda.is_available():
            raise EngineError("provider cuda requested but torch sees no CUDA device")
        return torch.device("cuda")
    if provider == "cpu":
        return torch.device("cpu")
    raise EngineError(f"torch serves providers cpu and cuda, not {provider!r}")


def _threads(spec: ServeSpec) -> int | None:
    value = spec.options.get("threads") or spec.options.get("intra_op_threads") or spec.options.get("torch_threads")
    return int(value) if value else None


class TorchLM(LanguageModel):
    engine = "torch"
    packages = ("torch", "transformers", "tokenizers")

    def load_tokenizer(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.spec.model_path)
        config = AutoConfig.from_pretrained(self.spec.model_path)
        self._set_config(
            config.eos_token_id,
            getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None),
        )

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.load_tokenizer()
        if _threads(self.spec):
            torch.set_num_threads(_threads(self.spec))  # type: ignore[arg-type]
        self.device = torch_device(torch, self.spec.provider)
        model: Any = AutoModelForCausalLM.from_pretrained(self.spec.model_path)
        self.model = model.to(self.device).eval()
        self._pad = min(self.eos_ids) if self.eos_ids else None
        self._torch = torch

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        import copy

        torch = self._torch
        config = copy.deepcopy(self.model.generation_config)
        # All generation settings in the config (mixing it with keyword arguments is deprecated);
        # no end-of-sequence id ([], not None: None is filled in from the model's own config and stops
        # there): generate then runs to max_new_tokens past the end of sequence, as ignore_eos asks.
        config.update(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self._pad,
            eos_token_id=[] if ignore_eos else sorted(self.eos_ids) or None,
            use_cache=self.kv_cache,
        )
        x = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                generation_config=config,
                streamer=_TokenStreamer(on_token) if on_token is not None else None,
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return [int(t) for t in out[0, len(prompt_ids) :].tolist()]

    def options_used(self) -> dict[str, Any]:
        return {"threads": self._torch.get_num_threads()}


class _TokenStreamer:
    """transformers' streamer protocol: ``put`` gets the prompt once, then each new token."""

    def __init__(self, on_token: OnToken) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.on_token(int(token))

    def end(self) -> None:
        pass


class _ExportedLM(LanguageModel):
    """Shared by the engines that run an export: tokenizer, config and cache layout from its folder."""

    artifact_file = ONNX_FILE
    needs_layout = True  # the step exports' cache layout (cache.json); runtimes with their own cache have none
    parity_gated = True  # a quantised artifact records its agreement instead

    def _folder(self) -> str:
        """The artifact's path, after loading the tokenizer and config beside it."""
        self.load_tokenizer()
        return os.path.join(str(self.spec.artifact_path), self.artifact_file)

    def load_tokenizer(self) -> None:
        folder = self.spec.artifact_path
        if not folder or not os.path.isdir(folder):
            raise EngineError(f"{self.engine} needs an exported model folder; {folder!r} is not one")
        needed = [self.artifact_file, REFERENCE_FILE] + ([CACHE_FILE] if self.needs_layout else [])
        missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
        if missing:
            raise EngineError(
                f"{folder} has no {' or '.join(missing)}: an export from an older version "
                "or one that did not finish (delete the folder to re-export)"
            )
        with open(os.path.join(folder, "config.json")) as fh:
            config = json.load(fh)
        self._set_config(config.get("eos_token_id"), config.get("n_positions") or config.get("max_position_embeddings"))
        if self.needs_layout:
            with open(os.path.join(folder, CACHE_FILE)) as fh:
                self.layout = json.load(fh)
            if self.kv_cache and not self.layout["kv_cache"]:
                self.kv_cache, self.kv_cache_reason = False, self.layout["kv_cache_reason"]
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def stream_ids(
        self, prompt_ids: list[int], max_new_tokens: int, on_token: OnToken | None = None, ignore_eos: bool = False
    ) -> list[int]:
        eos = set() if ignore_eos else self.eos_ids
        return greedy_decode(self._run, self._empty_past, prompt_ids, max_new_tokens, eos, on_token, self.kv_cache)

    def _run(self, ids: list[int], past_len: int, past: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def _empty_past(self) -> Any:
        raise NotImplementedError

    def check_reference(self) -> None:
        """Greedy tokens of the export's reference prompts must equal transformers' (recorded at export).

        A quantised artifact (``parity_gated`` false) is not held to it: how many prompts and tokens
        agree is recorded in the run's record and shown in the report, and it serves either way.
        """
        path = os.path.join(str(self.spec.artifact_path), REFERENCE_FILE)
        with open(path) as fh:
            cases = json.load(fh)
        agree, same, total = 0, 0, 0
        for k, case in enumerate(cases):
            report(f"{self.engine}: replaying the reference prompts (greedy parity)", k, len(cases), "prompts")
            ref = case["reference_tokens"]
            got = self.stream_ids(case["prompt_ids"], len(ref), ignore_eos=True)
            agree += got == ref
            prefix = next(
                (i for i, (a, b) in enumerate(zip(got, ref, strict=False)) if a != b), min(len(got), len(ref))
            )
            same, total = same + prefix, total + len(ref)
        self.load_parity = {
            "prompts": len(cases),
            "greedy_token_agreement": agree / len(cases) if cases else None,
            # tokens before each prompt's first difference, over all reference tokens
            "token_agreement": same / total if total else None,
            "gated": self.parity_gated,
        }
        if agree != len(cases) and self.parity_gated:
            raise EngineError(
                f"{self.engine} ({'with' if self.kv_cache else 'without'} KV cache) gives other greedy tokens than "
                f"transformers on {len(cases) - agree} of {len(cases)} reference prompts: refusing to serve"
            )


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
        self._ort = ort
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.check_reference()

    def _empty_past(self) -> Any:
        import numpy as np

        value = self._ort.OrtValue.ortvalue_from_numpy
        return [value(np.zeros([1, *shape], dtype=np.float32)) for shape in self.layout["past_shapes"]]

    def _run(self, ids: list[int], past_len: int, past: Any) -> tuple[int, Any]:
        # OrtValues in and out: the cache stays where the provider put it (on the GPU with CUDA).
        value = self._ort.OrtValue.ortvalue_from_numpy
        feeds = {k: value(v) for k, v in step_feeds(ids, past_len).items()}
        feeds.update(zip(self.layout["past_names"], past, strict=True))
        out = self.session.run_with_ort_values(self._outputs, feeds)
        return int(out[0].numpy()[0].argmax()), out[1:]

    def providers_active(self) -> list[str]:
        return list(self.session.get_providers())

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"cache_io": "OrtValues fed back (no host copy of the cache)"}


class OpenVinoLM(_ExportedLM):
    engine = "openvino"
    packages = ("openvino", "tokenizers")

    def load(self) -> None:
        import openvino as ov

        path = self._folder()
        if self.spec.provider != "cpu":
            raise EngineError(f"openvino serves provider cpu here, not {self.spec.provider!r}")
        self.stateful = option_flag(self.spec.options, "stateful", True)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}  # bf16 on AMX CPUs otherwise
        if _threads(self.spec):
            config["INFERENCE_NUM_THREADS"] = _threads(self.spec)
        core = ov.Core()
        model = core.read_model(path)
        if self.stateful:
            make_stateful(model, self.layout["past_names"], self.layout["present_names"])
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._logits = self.compiled.output(0)
        self._present = (
            [self.compiled.output(name) for name in self.layout["present_names"]] if not self.stateful else []
        )
        self.check_reference()

    def _empty_past(self) -> Any:
        import numpy as np

        if self.stateful:
            self.request.reset_state()
            return None
        return [np.zeros([1, *shape], dtype=np.float32) for shape in self.layout["past_shapes"]]

    def _run(self, ids: list[int], past_len: int, past: Any) -> tuple[int, Any]:
        feeds = step_feeds(ids, past_len)
        if not self.stateful:
            feeds.update(zip(self.layout["past_names"], past, strict=True))
        result = self.request.infer(feeds, share_inputs=True)
        token = int(result[self._logits][0].argmax())
        return token, None if self.stateful else [result[p] for p in self._present]

    def describe(self) -> dict[str, Any]:
        how = "stateful: in the infer request (MakeStateful)" if self.stateful else "numpy arrays in and out"
        return super().describe() | {"cache_io": how}


def make_stateful(model: Any, past_names: list[str], present_names: list[str]) -> None:
    """Keep the cache inside OpenVINO: each past input becomes a variable its present output updates.

    The variables start empty with the batch size of ``input_ids`` (MakeStateful alone would start
    them with batch 0), as optimum-intel's stateful export does.
    """
    import numpy as np
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    apply_make_stateful_transformation(model, dict(zip(past_names, present_names, strict=True)))
    batch = ops.gather(ops.shape_of(model.input("input_ids"), output_type="i64"), ops.constant([0]), ops.constant(0))
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        dims = [batch] + [
            ops.constant(np.array([d.get_length() if d.is_static else 0], dtype=np.int64))
            for d in list(op.get_output_partial_shape(0))[1:]
        ]
        zero = ops.constant(0.0, dtype=op.get_output_element_type(0))
        op.set_arguments([ops.broadcast(zero, ops.concat(dims, 0))])
    model.validate_nodes_and_infer_types()


class TorchScriptLM(_ExportedLM):
    engine = "torchscript"
    packages = ("torch", "tokenizers")
    artifact_file = TORCHSCRIPT_FILE

    def load(self) -> None:
        import torch

        path = self._folder()
        if _threads(self.spec):
            torch.set_num_threads(_threads(self.spec))  # type: ignore[arg-type]
        self.device = torch_device(torch, self.spec.provider)
        self.module = torch.jit.load(path, map_location=self.device).eval()
        self._torch = torch
        self.check_reference()

    def _empty_past(self) -> Any:
        torch = self._torch
        return [torch.zeros((1, *shape), device=self.device) for shape in self.layout["past_shapes"]]

    def _run(self, ids: list[int], past_len: int, past: Any) -> tuple[int, Any]:
        torch = self._torch
        feeds = [torch.from_numpy(v).to(self.device) for v in step_feeds(ids, past_len).values()]
        with torch.inference_mode():
            out = self.module(*feeds, *past)
        return int(out[0][0].argmax()), list(out[1:])

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"cache_io": "torch tensors fed back on the device"}
