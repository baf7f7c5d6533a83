"""Export a transformers causal LM for serving, with its KV cache: ONNX (torch.onnx, dynamo) or TorchScript.

The exported forward is one decoding step with the cache as inputs and outputs, named as
optimum's ONNX exports name them::

    input_ids [b, s], attention_mask [b, past + s], position_ids [b, s],
    past_key_values.{i}.key / .value [b, heads, past, head_dim]
      -> logits [b, vocab] (the last position only: greedy decoding needs nothing else),
         present.{i}.key / .value [b, heads, past + s, head_dim]

A prompt runs with an empty cache (past = 0), each later token with the cache the step before
returned (harness.serving.lm.greedy_decode). Why not optimum: optimum-onnx's exporter needs
transformers < 4.58 and optimum ~2.1, optimum-intel needs transformers < 5.6 and optimum ~2.3 (so the
two cannot share an environment, nor either one ours, transformers 5.x); exporting here keeps one
transformers for the torch engine, the export and the parity reference. OpenVINO reads this ONNX and
makes the cache stateful itself at load, the transformation optimum-intel's export applies.

The parity check generates greedily with transformers (``generate``) and with the export, cached
and cache-less, on the given prompts plus a one-token prompt. The export serves with its cache when
the cached tokens agree on every prompt; when only the cache-less loop agrees (a trace that
specialised on a shape, say) it serves without, ``kv_cache: false`` with the reason; when neither
does the export fails. Written beside the artifact: ``cache.json`` (layout, kv_cache) and
``reference.json`` (prompt ids and transformers' tokens, which every engine replays at load).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from harness.engines.base import EngineError
from harness.progress import TORCH_ONNX_STAGE, relayed_prints, report
from harness.protocol import Emitter, LmExportSpec
from harness.serving.formats import EXPORTER_PACKAGES
from harness.serving.gguf_export import (
    GGUF_FILE,
    GGUF_PRECISIONS,
    GGUF_QUANTS,
    gguf_parity_gated,
    quantize_gguf,
    write_gguf,
)
from harness.serving.lm import (
    CACHE_FILE,
    ONNX_FILE,
    ORTGENAI_CONFIG,
    REFERENCE_FILE,
    TORCHSCRIPT_FILE,
    greedy_decode,
    step_feeds,
)

EXPORTER = "joulebench torch.onnx (dynamo) / torch.jit.trace of one decoding step with the KV cache as inputs/outputs"
EXAMPLE_PAST, EXAMPLE_SEQ = 3, 5  # traced shapes: neither 0 nor 1, so no dimension is specialised away


def _cache_layers(present: Any) -> list[tuple[Any, Any]]:
    """(key, value) per layer of a transformers cache object."""
    if hasattr(present, "layers"):
        return [(layer.keys, layer.values) for layer in present.layers]
    return [(k, v) for k, v in present.to_legacy_cache()]


def _present(out: Any) -> Any:
    """The cache a forward returned (``cache`` from transformers 5.24, ``past_key_values`` before)."""
    present = getattr(out, "cache", None)
    return present if present is not None else out.past_key_values


def _step_module(model: Any, layers: int) -> Any:
    """The model as one decoding step over flat cache tensors (key0, value0, key1, ...)."""
    import torch
    from transformers import DynamicCache

    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.24
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    config = model.config

    class Step(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)], config=config)
            out = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_kw: cache},
                **keep,
            )
            present = _present(out)
            return (out.logits[:, -1, :], *(t for kv in _cache_layers(present) for t in kv))

    return Step(model).eval()


def _layout(model: Any) -> dict[str, Any]:
    """Names and per-sequence shapes of the cache tensors, read from one real forward."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.zeros((1, 2), dtype=torch.long), use_cache=True)
    layers = _cache_layers(_present(out))
    shapes = []
    for k, v in layers:
        shapes += [[k.shape[1], 0, *k.shape[3:]], [v.shape[1], 0, *v.shape[3:]]]
    return {
        "inputs": ["input_ids", "attention_mask", "position_ids"],
        "past_names": [f"past_key_values.{i}.{kv}" for i in range(len(layers)) for kv in ("key", "value")],
        "present_names": [f"present.{i}.{kv}" for i in range(len(layers)) for kv in ("key", "value")],
        "past_shapes": shapes,  # without the batch; the sequence axis (2 with batch) starts at 0
        "dtype": "float32",
        "layers": len(layers),
    }


def _export(spec: LmExportSpec, step: Any, layout: dict[str, Any], out_file: str) -> Callable[..., Any]:
    """Write the artifact; return run(ids, past_len, past) -> (next token, present, last logits)."""
    import torch

    ids = torch.randint(0, 100, (1, EXAMPLE_SEQ))
    mask = torch.ones((1, EXAMPLE_PAST + EXAMPLE_SEQ), dtype=torch.long)
    pos = torch.arange(EXAMPLE_PAST, EXAMPLE_PAST + EXAMPLE_SEQ)[None]
    past = [torch.randn(1, s[0], EXAMPLE_PAST, *s[2:]) for s in layout["past_shapes"]]
    if spec.format == "onnx":
        batch, seq, total = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("total_sequence")
        past_seq = torch.export.Dim("past_sequence")
        torch.onnx.export(
            step,
            (ids, mask, pos, *past),
            out_file,
            input_names=layout["inputs"] + layout["past_names"],
            output_names=["logits"] + layout["present_names"],
            dynamic_shapes=(
                {0: batch, 1: seq},
                {0: batch, 1: total},
                {0: batch, 1: seq},
                tuple({0: batch, 2: past_seq} for _ in past),
            ),
            dynamo=True,
            opset_version=spec.opset,
        )
        import onnxruntime as ort

        session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])

        def run_onnx(ids: list[int], past_len: int, past: Any) -> tuple[int, Any, Any]:
            out = session.run(None, {**step_feeds(ids, past_len), **dict(zip(layout["past_names"], past, strict=True))})
            return int(out[0][0].argmax()), out[1:], out[0]

        return run_onnx
    traced = torch.jit.trace(step, (ids, mask, pos, *past), check_trace=False)
    traced.save(out_file)
    loaded = torch.jit.load(out_file).eval()

    def run_jit(ids: list[int], past_len: int, past: Any) -> tuple[int, Any, Any]:
        with torch.inference_mode():
            out = loaded(*(torch.from_numpy(v) for v in step_feeds(ids, past_len).values()), *past)
        return int(out[0][0].argmax()), list(out[1:]), out[0].numpy()

    return run_jit


def _empty(layout: dict[str, Any], onnx: bool) -> Callable[[], list[Any]]:
    import numpy as np
    import torch

    if onnx:
        return lambda: [np.zeros([1, *s], dtype=np.float32) for s in layout["past_shapes"]]
    return lambda: [torch.zeros((1, *s)) for s in layout["past_shapes"]]


def export_lm(spec: LmExportSpec, emit: Emitter) -> dict[str, Any]:
    if spec.format.startswith("gguf-") and spec.format[5:] in GGUF_QUANTS:
        return _quantize(spec, emit)  # in the llama.cpp image, from the f32 export: no torch there
    if spec.format == "openvino-genai":
        return _ov_genai(spec, emit)  # in the OpenVINO GenAI image, from the ONNX export
    report("importing torch and transformers")  # seconds, before anything can be said
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.format not in EXPORT_WRITERS:
        raise EngineError(
            f"unknown export format {spec.format!r}; valid: {', '.join(EXPORT_WRITERS)}, "
            + ", ".join(f"gguf-{q}" for q in GGUF_QUANTS)
        )
    t0 = emit.event("load", "start", export=spec.format)
    report("loading the tokenizer and the model with transformers")
    tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
    if not getattr(tokenizer, "is_fast", False):
        raise EngineError(f"{spec.model_path}: exported serving needs a fast tokenizer (tokenizer.json)")
    model = AutoModelForCausalLM.from_pretrained(spec.model_path).eval()
    os.makedirs(spec.out_dir, exist_ok=True)
    tokenizer.save_pretrained(spec.out_dir)
    model.config.save_pretrained(spec.out_dir)
    with torch.inference_mode(False), torch.no_grad():
        cases = _reference(spec, model, tokenizer)
        written = EXPORT_WRITERS[spec.format](spec, model, cases)
    with open(os.path.join(spec.out_dir, REFERENCE_FILE), "w") as fh:
        json.dump([{k: d[k] for k in ("prompt_ids", "reference_tokens")} for d in cases], fh)
    export_s = (emit.event("load", "end") - t0) / 1e9
    shutil.rmtree(os.path.join(spec.out_dir, "__pycache__"), ignore_errors=True)
    return {
        "format": spec.format,
        "opset": None,
        **written,
        "export_s": export_s,
        "exported_at": time.time(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    versions = {}
    for name in EXPORTER_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _write_step(spec: LmExportSpec, model: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """ONNX or TorchScript of one decoding step, its parity checked here (cached and cache-less)."""
    out_file = os.path.join(spec.out_dir, ONNX_FILE if spec.format == "onnx" else TORCHSCRIPT_FILE)
    layout = _layout(model)
    step = _step_module(model, layout["layers"])
    onnx = spec.format == "onnx"
    what = "exporting one decoding step to ONNX with torch.onnx" if onnx else "tracing one decoding step"
    report(what)
    with relayed_prints(TORCH_ONNX_STAGE, what):
        run = _export(spec, step, layout, out_file)
    parity = _parity(spec, model, cases, step, run, _empty(layout, spec.format == "onnx"))
    layout["kv_cache"] = parity.pop("kv_cache")
    layout["kv_cache_reason"] = parity.pop("kv_cache_reason")
    with open(os.path.join(spec.out_dir, CACHE_FILE), "w") as fh:
        json.dump(layout, fh, indent=1)
    return {
        "artifact_file": os.path.basename(out_file),
        "exporter": EXPORTER,
        "opset": spec.opset if spec.format == "onnx" else None,
        "kv_cache": layout["kv_cache"],
        "kv_cache_reason": layout["kv_cache_reason"],
        "cache_layout": {k: layout[k] for k in ("layers", "past_shapes", "dtype")},
        "parity": parity,
    }


def _deferred_parity(cases: list[dict[str, Any]], engine: str, gated: bool) -> dict[str, Any]:
    """The parity of an artifact whose engine is not in the exporting image: checked when it loads."""
    return {
        "ok": True,
        "checked": f"at load, by {engine} in its own image, against these transformers tokens",
        "gated": gated,  # quantised: the agreement rate is recorded and shown, never a gate
        "prompts_checked": len(cases),
        "new_tokens": max((len(c["reference_tokens"]) for c in cases), default=0),
        "details": cases,
    }


def _write_gguf(spec: LmExportSpec, model: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    precision = spec.format.removeprefix("gguf-")
    # the tokenizer as saved beside the export (model_path may be a hub id)
    name = os.path.basename(os.path.normpath(spec.model_path))
    report(f"writing the GGUF file ({precision} weights)")
    meta = write_gguf(model, spec.out_dir, os.path.join(spec.out_dir, GGUF_FILE), precision, name)
    return {
        "artifact_file": GGUF_FILE,
        "exporter": f"joulebench GGUF writer (gguf {meta.pop('gguf')}), weights {precision}",
        "gguf": meta,
        "kv_cache": True,
        "kv_cache_reason": None,
        "parity": _deferred_parity(cases, "llama.cpp", gated=gguf_parity_gated(precision)),
    }


def _write_ortgenai(spec: LmExportSpec, model: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """ONNX Runtime GenAI's own model builder, run on the transformers folder."""
    import tempfile

    precision = spec.format.removeprefix("ortgenai-")
    archs = model.config.architectures or []
    # The builder reads a local folder (-i); a hub model is saved into one beside the export first,
    # on the cache volume (the container's /tmp is a small tmpfs).
    with tempfile.TemporaryDirectory(dir=spec.out_dir, prefix=".builder-") as scratch:
        source = spec.model_path
        if not os.path.isdir(source):
            source = os.path.join(scratch, "model")
            model.save_pretrained(source)
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.isfile(os.path.join(spec.out_dir, name)):
                    shutil.copy(os.path.join(spec.out_dir, name), source)
        name = os.path.basename(os.path.normpath(spec.model_path))
        argv = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", source, "-m", name,
                "-o", spec.out_dir, "-p", precision, "-e", "cpu", "-c", os.path.join(scratch, "cache")]  # fmt: skip
        report(f"ONNX Runtime GenAI's model builder ({precision})")
        returncode, lines = _builder(argv, getattr(model.config, "num_hidden_layers", None))
    if returncode != 0:
        reason = next((ln for ln in reversed(lines) if "Error" in ln or "not currently supported" in ln), None)
        raise EngineError(
            f"ONNX Runtime GenAI's model builder failed on {', '.join(archs) or 'this model'}: "
            f"{reason or ' | '.join(lines[-3:])}"
        )
    return {
        "artifact_file": ORTGENAI_CONFIG,
        "exporter": f"onnxruntime_genai.models.builder -p {precision} -e cpu",
        "kv_cache": True,
        "kv_cache_reason": None,
        "parity": _deferred_parity(cases, "ONNX Runtime GenAI", gated=precision == "fp32"),
    }


def _builder(argv: list[str], layers: int | None) -> tuple[int, list[str]]:
    """Run ONNX Runtime GenAI's builder: its exit code and its non-empty lines; its stages reported as
    they come (the layers it has read, then the saving)."""
    import subprocess

    lines = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.strip()
            if text:
                lines.append(text)
            layer = re.match(r"Reading layer (\d+)", text)
            if text.startswith("Reading "):
                done = int(layer[1]) + 1 if layer else None
                report("ONNX Runtime GenAI's model builder: reading the weights", done, layers, "layers")
            elif text.startswith("Saving ONNX model"):
                report("ONNX Runtime GenAI's model builder: saving the ONNX model")
    return proc.returncode, lines


def _write_reference(spec: LmExportSpec, model: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """No artifact: a runtime that loads the model folder itself (vLLM) gets the tokenizer and
    transformers' reference tokens, which it replays when it is ready."""
    return {
        "artifact_file": REFERENCE_FILE,
        "exporter": "transformers' greedy tokens on the reference prompts (the runtime loads the model folder)",
        "kv_cache": True,
        "kv_cache_reason": None,
        "parity": _deferred_parity(cases, "the runtime's own server", gated=False),  # its text: recorded
    }


def _derived(
    spec: LmExportSpec, emit: Emitter, make: Callable[[], dict[str, Any]], engine: str, gated: bool
) -> dict[str, Any]:
    """An export made from another one (in ``model_path``) by ``make``, which writes ``out_dir`` and
    says what it wrote; its parity is the source's reference tokens, replayed by ``engine`` at load."""
    t0 = emit.event("load", "start", export=spec.format)
    os.makedirs(spec.out_dir, exist_ok=True)
    written = make()
    with open(os.path.join(spec.out_dir, REFERENCE_FILE)) as fh:
        cases = json.load(fh)
    export_s = (emit.event("load", "end") - t0) / 1e9
    return {
        "format": spec.format,
        "opset": None,
        **written,
        "kv_cache": True,
        "kv_cache_reason": None,
        "parity": _deferred_parity(cases, engine, gated=gated),
        "export_s": export_s,
        "exported_at": time.time(),
        "versions": _versions(),
    }


def _quantize(spec: LmExportSpec, emit: Emitter) -> dict[str, Any]:
    """llama.cpp's quantisation of the f32 GGUF export in ``model_path``; the rest of its folder copied."""
    quant = spec.format.removeprefix("gguf-")

    def make() -> dict[str, Any]:
        for name in os.listdir(spec.model_path):
            if name != GGUF_FILE and os.path.isfile(os.path.join(spec.model_path, name)):
                shutil.copy(os.path.join(spec.model_path, name), os.path.join(spec.out_dir, name))
        report(f"quantising the f32 GGUF to {quant} with llama.cpp")
        quantize_gguf(os.path.join(spec.model_path, GGUF_FILE), os.path.join(spec.out_dir, GGUF_FILE), quant)
        return {
            "artifact_file": GGUF_FILE,
            "exporter": f"llama.cpp llama_model_quantize to {quant}, from the f32 GGUF export",
        }

    return _derived(spec, emit, make, "llama.cpp", gated=False)


def _ov_genai(spec: LmExportSpec, emit: Emitter) -> dict[str, Any]:
    """OpenVINO GenAI's folder from the ONNX export in ``model_path`` (harness.serving.ov_genai)."""
    from harness.serving.ov_genai import OV_GENAI_FILE, write_ov_genai

    def make() -> dict[str, Any]:
        report("making the ONNX export stateful with OpenVINO")
        return {
            "artifact_file": OV_GENAI_FILE,
            "exporter": "OpenVINO MakeStateful + beam_idx reorder on the ONNX export (optimum-intel's layout)",
            "ov_genai": write_ov_genai(spec.model_path, spec.out_dir),
        }

    return _derived(spec, emit, make, "OpenVINO GenAI", gated=True)


def _reference(spec: LmExportSpec, model: Any, tokenizer: Any) -> list[dict[str, Any]]:
    """transformers' greedy tokens on the parity prompts plus a one-token prompt (every engine replays them)."""
    import torch

    eos_ids = _eos_ids(model)
    cases = [list(tokenizer(text)["input_ids"]) for text in spec.parity_prompts]
    if cases and cases[0]:
        cases.append(cases[0][:1])  # a one-token prompt: prefill with s = 1 and past = 0
    out = []
    for k, ids in enumerate(cases):
        report("transformers' greedy tokens on the reference prompts", k, len(cases), "prompts")
        x = torch.tensor([ids])
        ref = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=spec.parity_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=min(eos_ids) if eos_ids else None,
        )[0, len(ids) :].tolist()
        out.append({"prompt": tokenizer.decode(ids), "prompt_ids": ids, "reference_tokens": ref})
    return out


def _eos_ids(model: Any) -> set[int]:
    eos = model.config.eos_token_id
    return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())


def _parity(
    spec: LmExportSpec,
    model: Any,
    cases: list[dict[str, Any]],
    step: Any,
    run: Callable[..., Any],
    empty: Callable[[], Any],
) -> dict[str, Any]:
    """Greedy tokens of transformers vs the export, cached and cache-less; which of the two to serve."""
    import numpy as np
    import torch

    eos_ids = _eos_ids(model)
    n = spec.parity_new_tokens
    details, cached_ok, uncached_ok, max_abs = [], 0, 0, 0.0
    tokens_only = lambda ids, past_len, past: run(ids, past_len, past)[:2]  # noqa: E731
    for k, case in enumerate(cases):
        report("greedy parity of the export, with and without its KV cache", k, len(cases), "prompts")
        ids, ref = case["prompt_ids"], case["reference_tokens"]
        cached = greedy_decode(tokens_only, empty, ids, n, eos_ids, use_cache=True)
        uncached = greedy_decode(tokens_only, empty, ids, n, eos_ids, use_cache=False)
        torch_logits = step(*(torch.from_numpy(v) for v in step_feeds(ids, 0).values()), *_empty_torch(empty))[0]
        max_abs = max(max_abs, float(np.abs(np.asarray(run(ids, 0, empty())[2]) - torch_logits.numpy()).max()))
        cached_ok += cached == ref
        uncached_ok += uncached == ref
        details.append({**case, "export_tokens": cached, "export_tokens_without_cache": uncached})
    total = len(cases)
    kv_cache = cached_ok == total
    return {
        "ok": kv_cache or uncached_ok == total,
        "greedy_token_agreement": (cached_ok if kv_cache else uncached_ok) / total if total else None,
        "greedy_token_agreement_cached": cached_ok / total if total else None,
        "greedy_token_agreement_without_cache": uncached_ok / total if total else None,
        "prompts_checked": total,
        "new_tokens": n,
        "logits_max_abs_diff": max_abs,
        "details": details,
        "kv_cache": kv_cache,
        "kv_cache_reason": None
        if kv_cache
        else f"with its cache the export's greedy tokens differ from transformers' on {total - cached_ok} of {total} "
        "prompts; it serves without the cache",
    }


def _empty_torch(empty: Callable[[], Any]) -> list[Any]:
    import torch

    return [v if isinstance(v, torch.Tensor) else torch.from_numpy(v) for v in empty()]


EXPORT_WRITERS: dict[str, Callable[[LmExportSpec, Any, list[dict[str, Any]]], dict[str, Any]]] = {
    "onnx": _write_step,
    "torchscript": _write_step,
    **{f"gguf-{p}": _write_gguf for p in GGUF_PRECISIONS},
    "ortgenai-fp32": _write_ortgenai,
    "ortgenai-int4": _write_ortgenai,
    "reference": _write_reference,
}
