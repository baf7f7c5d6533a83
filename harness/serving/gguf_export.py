"""A transformers causal LM written as GGUF (llama.cpp's file), and GGUF quantised by llama.cpp.

Writing runs in the source image (torch, transformers and the ``gguf`` package, no llama.cpp): the
weights are read from the loaded model, renamed to llama.cpp's tensor names, and written in f32 or
f16 (one-dimensional tensors, norms and biases, stay f32 as llama.cpp's own converter keeps them).
Why not ``convert_hf_to_gguf.py``: it identifies a byte-level BPE tokenizer by hashing its output on
a fixed text and refuses any it does not know, which is every tokenizer trained for a test. Here the
tokenizer.json is read: a byte-level BPE that splits as GPT-2 does (the ByteLevel pre-tokenizer's own
regex, no Split rule of its own) is written as llama.cpp's ``gpt2`` tokenizer with the ``gpt-2``
pre-tokenizer, and whether it adds a BOS token is taken from the tokenizer (it encodes a text with
and without its special tokens); any other split (Llama 3's, say) is refused with that reason.
Architectures: Llama (``LlamaForCausalLM``, also Mistral-shaped configs without sliding windows)
and GPT-2.

Quantisation (``q8_0``, ``q4_k_m``) runs in the llama.cpp image with llama.cpp's own
``llama_model_quantize`` from the f32 file; tensors whose rows do not divide into the type's blocks
get llama.cpp's fallback type, as llama.cpp decides.
"""

from __future__ import annotations

import json
import os
from typing import Any

from harness.engines.base import EngineError

GGUF_FILE = "model.gguf"
GGUF_PRECISIONS = ("f32", "f16")
GGUF_QUANTS = ("q8_0", "q4_k_m")


def gguf_parity_gated(kind: str) -> bool:
    """Whether a GGUF's greedy tokens must equal transformers' (a gate) or are recorded: f32 only is
    exact; f16 weights round (a near-tie between two tokens may flip), quantised ones more so."""
    return kind == "f32"


# llama.cpp's LLAMA_FTYPE values (llama.h) for the quantised types
LLAMA_FTYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}
GGUF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "GPT2LMHeadModel": "gpt2"}


def gguf_architecture(config: dict[str, Any]) -> str:
    """llama.cpp's architecture name for a transformers config, or EngineError saying which are written."""
    archs = config.get("architectures") or []
    for name in archs:
        if name in GGUF_ARCHITECTURES:
            if name == "MistralForCausalLM" and config.get("sliding_window"):
                raise EngineError("GGUF export: Mistral with a sliding window is not written here")
            return GGUF_ARCHITECTURES[name]
    raise EngineError(
        f"GGUF export: architecture {', '.join(archs) or '(none in config.json)'} is not written here; "
        f"written: {', '.join(sorted(GGUF_ARCHITECTURES))}"
    )


def _permute_rope(w: Any, heads: int) -> Any:
    """Rows of a q/k projection from transformers' half-split rotary layout to llama.cpp's interleaved one."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_tensors(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    heads, kv_heads = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    out = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    out["output.weight"] = state.get("lm_head.weight", state["model.embed_tokens.weight"])  # tied embeddings
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out[b + "attn_norm.weight"] = state[p + "input_layernorm.weight"]
        out[b + "attn_q.weight"] = _permute_rope(state[p + "self_attn.q_proj.weight"], heads)
        out[b + "attn_k.weight"] = _permute_rope(state[p + "self_attn.k_proj.weight"], kv_heads)
        out[b + "attn_v.weight"] = state[p + "self_attn.v_proj.weight"]
        out[b + "attn_output.weight"] = state[p + "self_attn.o_proj.weight"]
        out[b + "ffn_norm.weight"] = state[p + "post_attention_layernorm.weight"]
        out[b + "ffn_gate.weight"] = state[p + "mlp.gate_proj.weight"]
        out[b + "ffn_up.weight"] = state[p + "mlp.up_proj.weight"]
        out[b + "ffn_down.weight"] = state[p + "mlp.down_proj.weight"]
    for name in ("q", "k", "v", "o"):
        if any(k.endswith(f"self_attn.{name}_proj.bias") for k in state):
            raise EngineError("GGUF export: attention biases (Qwen2-style) are not written here")
    return out


def _gpt2_tensors(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    # GPT-2's Conv1D stores weights [in, out]; llama.cpp wants [out, in] like nn.Linear.
    pre = "transformer." if "transformer.wte.weight" in state else ""
    out = {
        "token_embd.weight": state[pre + "wte.weight"],
        "position_embd.weight": state[pre + "wpe.weight"],
        "output_norm.weight": state[pre + "ln_f.weight"],
        "output_norm.bias": state[pre + "ln_f.bias"],
        "output.weight": state.get("lm_head.weight", state[pre + "wte.weight"]),
    }
    names = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    for i in range(cfg["n_layer"]):
        for hf, ours in names.items():
            w = state[f"{pre}h.{i}.{hf}.weight"]
            out[f"blk.{i}.{ours}.weight"] = w if hf.startswith("ln_") else w.T
            out[f"blk.{i}.{ours}.bias"] = state[f"{pre}h.{i}.{hf}.bias"]
    return out


def _vocab(folder: str, vocab_size: int) -> tuple[list[str], list[int], list[str], bool]:
    """Tokens (by id, padded to the model's vocab), their types, the merges, and whether the tokenizer
    adds a BOS token, from tokenizer.json."""
    import gguf
    from tokenizers import Tokenizer

    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise EngineError("GGUF export: the model has no tokenizer.json (a fast tokenizer is needed)")
    with open(path) as fh:
        tj = json.load(fh)
    model = tj.get("model", {})
    pre = tj.get("pre_tokenizer") or {}
    parts = [pre, *pre.get("pretokenizers", [])]
    byte_level = [p for p in parts if (p or {}).get("type") == "ByteLevel"]
    if model.get("type") != "BPE" or not byte_level:
        raise EngineError("GGUF export: only byte-level BPE tokenizers are written here")
    if any((p or {}).get("type") == "Split" for p in parts) or byte_level[0].get("use_regex") is False:
        raise EngineError(
            "GGUF export: this byte-level BPE splits text its own way (a Split rule, as Llama 3's); "
            "only GPT-2's split is written here"
        )
    tokenizer = Tokenizer.from_file(path)
    plain, full = tokenizer.encode("a", add_special_tokens=False).ids, tokenizer.encode("a").ids
    add_bos = len(full) > len(plain) and full[len(full) - len(plain) :] == plain  # something before the text
    by_id = {i: t for t, i in model["vocab"].items()}
    special = {a["id"]: a["content"] for a in tj.get("added_tokens", [])}
    by_id.update(special)
    size = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges, add_bos


def write_gguf(model: Any, folder: str, out_file: str, precision: str, name: str) -> dict[str, Any]:
    """Write ``model`` (a loaded transformers causal LM, its tokenizer.json in ``folder``) as GGUF; what was written."""
    import gguf
    import numpy as np

    if precision not in GGUF_PRECISIONS:
        raise EngineError(f"GGUF export writes {', '.join(GGUF_PRECISIONS)}, not {precision!r}")
    cfg = model.config.to_dict()
    arch = gguf_architecture(cfg)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    tensors = _llama_tensors(state, cfg) if arch == "llama" else _gpt2_tensors(state, cfg)
    writer = gguf.GGUFWriter(out_file, arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if precision == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    if arch == "llama":
        heads = cfg["num_attention_heads"]
        writer.add_context_length(cfg["max_position_embeddings"])
        writer.add_embedding_length(cfg["hidden_size"])
        writer.add_feed_forward_length(cfg["intermediate_size"])
        writer.add_block_count(cfg["num_hidden_layers"])
        writer.add_head_count(heads)
        writer.add_head_count_kv(cfg.get("num_key_value_heads") or heads)
        writer.add_rope_dimension_count(cfg.get("head_dim") or cfg["hidden_size"] // heads)
        writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta") or 10000.0
        writer.add_rope_freq_base(float(theta))
        scaling = cfg.get("rope_scaling") or {}
        if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
            raise EngineError(f"GGUF export: rope scaling {scaling} is not written here")
    else:
        writer.add_context_length(cfg["n_positions"])
        writer.add_embedding_length(cfg["n_embd"])
        writer.add_feed_forward_length(cfg.get("n_inner") or 4 * cfg["n_embd"])
        writer.add_block_count(cfg["n_layer"])
        writer.add_head_count(cfg["n_head"])
        writer.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    tokens, types, merges, add_bos = _vocab(folder, cfg["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # byte-level BPE with GPT-2's split (checked in _vocab)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = cfg.get("eos_token_id")
    eos_id = eos[0] if isinstance(eos, list) else eos
    if cfg.get("bos_token_id") is not None:
        writer.add_bos_token_id(int(cfg["bos_token_id"]))
    if eos_id is not None:
        writer.add_eos_token_id(int(eos_id))
    writer.add_add_bos_token(add_bos)  # as the model's own tokenizer does (llama.cpp's server tokenises text)
    for name, value in tensors.items():
        keep32 = precision == "f32" or value.ndim == 1
        writer.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32 if keep32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "architecture": arch,
        "precision": precision,
        "tensors": len(tensors),
        "add_bos": add_bos,
        "gguf": gguf_version(),
    }


def gguf_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("gguf")
    except importlib.metadata.PackageNotFoundError:
        return None


def quantize_gguf(src_file: str, out_file: str, quant: str, threads: int = 0) -> None:
    """llama.cpp's own quantisation of ``src_file`` (f32 GGUF) to ``quant`` (llama-cpp-python)."""
    import llama_cpp

    if quant not in GGUF_QUANTS:
        raise EngineError(f"llama.cpp quantisation here: {', '.join(GGUF_QUANTS)}, not {quant!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPES[quant]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(src_file.encode(), out_file.encode(), params)
    if rc != 0 or not os.path.isfile(out_file):
        raise EngineError(f"llama.cpp could not quantise {os.path.basename(src_file)} to {quant} (code {rc})")
