"""Export a transformers causal LM for serving: ONNX (torch.onnx, dynamo) or TorchScript (trace).

optimum's ORTModelForCausalLM exporter (optimum-onnx) requires transformers < 4.58, and
optimum-intel pulls another torch and transformers; neither installs beside transformers 5.x, so we
export ourselves: the forward ``(input_ids, attention_mask) -> logits`` without KV cache, with
dynamic batch and sequence axes, served by a greedy loop (harness.serving.lm.greedy_loop). The
parity check generates greedily with transformers (KV cache) and with the export's loop on the
given prompts and compares the tokens.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import time
from typing import Any

from harness.engines.base import EngineError
from harness.protocol import Emitter, LmExportSpec
from harness.serving.lm import ONNX_FILE, TORCHSCRIPT_FILE, greedy_loop

EXPORTER = "joulebench torch.onnx/torch.jit export of the no-cache forward (optimum-onnx needs transformers<4.58)"


def _logits_module(model: Any) -> Any:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    return Logits(model).eval()


def export_lm(spec: LmExportSpec, emit: Emitter) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.format not in ("onnx", "torchscript"):
        raise EngineError(f"unknown export format {spec.format!r}; valid: onnx, torchscript")
    t0 = emit.event("load", "start", export=spec.format)
    tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
    if not getattr(tokenizer, "is_fast", False):
        raise EngineError(f"{spec.model_path}: exported serving needs a fast tokenizer (tokenizer.json)")
    model = AutoModelForCausalLM.from_pretrained(spec.model_path).eval()
    wrapper = _logits_module(model)
    os.makedirs(spec.out_dir, exist_ok=True)
    tokenizer.save_pretrained(spec.out_dir)
    model.config.save_pretrained(spec.out_dir)
    example = torch.randint(0, model.config.vocab_size, (1, 16))
    mask = torch.ones_like(example)
    out_file = os.path.join(spec.out_dir, ONNX_FILE if spec.format == "onnx" else TORCHSCRIPT_FILE)
    with torch.inference_mode(False), torch.no_grad():
        if spec.format == "onnx":
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                wrapper,
                (example, mask),
                out_file,
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                dynamo=True,
                opset_version=spec.opset,
            )

            import onnxruntime as ort

            session = ort.InferenceSession(out_file, providers=["CPUExecutionProvider"])

            def forward(ids: Any, m: Any) -> Any:
                return session.run(None, {"input_ids": ids, "attention_mask": m})[0]
        else:
            traced = torch.jit.trace(wrapper, (example, mask), check_trace=False)
            traced.save(out_file)
            loaded = torch.jit.load(out_file).eval()

            def forward(ids: Any, m: Any) -> Any:
                return loaded(torch.from_numpy(ids), torch.from_numpy(m)).numpy()

        eos = model.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        prompts = []
        agree = 0
        max_abs = 0.0
        for text in spec.parity_prompts:
            ids = list(tokenizer(text)["input_ids"])
            x = torch.tensor([ids])
            ref = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=spec.parity_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=eos,
            )[0, len(ids) :].tolist()
            got = greedy_loop(forward, ids, spec.parity_new_tokens, eos)
            arr = np.asarray([ids], dtype=np.int64)
            diff = np.abs(forward(arr, np.ones_like(arr)) - wrapper(x, torch.ones_like(x)).numpy()).max()
            max_abs = max(max_abs, float(diff))
            agree += ref == got
            prompts.append({"prompt": text, "reference_tokens": ref, "export_tokens": got})
    export_s = (emit.event("load", "end") - t0) / 1e9
    for leftover in ("__pycache__",):
        shutil.rmtree(os.path.join(spec.out_dir, leftover), ignore_errors=True)
    versions = {}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "format": spec.format,
        "artifact_file": os.path.basename(out_file),
        "exporter": EXPORTER,
        "opset": spec.opset if spec.format == "onnx" else None,
        "kv_cache": False,
        "export_s": export_s,
        "exported_at": time.time(),
        "parity": {
            "ok": agree == len(spec.parity_prompts),
            "greedy_token_agreement": agree / len(spec.parity_prompts) if spec.parity_prompts else None,
            "prompts_checked": len(spec.parity_prompts),
            "new_tokens": spec.parity_new_tokens,
            "logits_max_abs_diff": max_abs,
            "details": prompts,
        },
        "versions": versions,
    }
