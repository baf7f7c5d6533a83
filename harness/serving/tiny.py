"""A tiny causal LM built offline, for tests and quick runs (real loading code paths).

The tokenizer is a byte-level BPE trained on the HumanEval prompts with the ``tokenizers`` library;
the model is a two-layer GPT-2 (``arch="gpt2"``) or Llama (``arch="llama"``: RMSNorm, rotary
positions, gated MLP, the shape every LLM runtime loads) with seeded random weights. Both are saved
with ``save_pretrained``, so every engine loads them exactly as it loads a model from the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"


def build_tiny_lm(
    out_dir: str | Path,
    seed: int = 0,
    vocab_size: int = 512,
    n_positions: int = 256,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    arch: str = "gpt2",
) -> Path:
    """Write a tiny causal LM (config, weights, tokenizer) to ``out_dir`` and return it (benchmarks
    make wider and deeper ones, so that a token costs what it costs in a small real model)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from suite.prompts import humaneval_problems

    if arch not in ("gpt2", "llama"):
        raise ValueError(f"arch must be gpt2 or llama, not {arch!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [p["prompt"] for p in humaneval_problems()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    fast.save_pretrained(out)
    eos_id = tok.token_to_id(EOS)
    # Wide initial weights: logits then depend on the context, so greedy outputs vary from prompt to
    # prompt and a parity check between engines can fail (0.02 repeats one token).
    config: Any
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_positions=n_positions,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            initializer_range=0.5,
        )
    else:
        config = LlamaConfig(
            vocab_size=tok.get_vocab_size(),
            max_position_embeddings=n_positions,
            hidden_size=n_embd,
            # Not the vocabulary's size: ONNX Runtime GenAI 0.18's builder then writes a model that
            # disagrees with transformers (its parity gate refuses it); real models never match the two.
            intermediate_size=3 * n_embd if 3 * n_embd != tok.get_vocab_size() else 4 * n_embd,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_head,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            tie_word_embeddings=False,
            initializer_range=0.5,
        )
    torch.manual_seed(seed)
    model = (GPT2LMHeadModel if arch == "gpt2" else LlamaForCausalLM)(config).eval()
    model.save_pretrained(out)
    return out
