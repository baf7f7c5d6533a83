"""Tokenisation of a text dataset for a text model, before the measured window.

Pretrained BERT uses bert-base-uncased's own tokenizer (through transformers); a fine-tuned model
folder (``--weights PATH``) its own; random weights (and a state_dict file) a WordPiece vocabulary
trained here, with the ``tokenizers`` library, on the texts at hand (deterministic for the same
texts), sized to the model's vocabulary.
"""

from __future__ import annotations

import os
from typing import Any

from suite.datasets import DatasetError

PRETRAINED_TOKENIZERS = {"bert-imdb": "bert-base-uncased"}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def encode(
    model: str, texts: list[str], max_length: int, vocab_size: int, weights: str, weights_path: str | None
) -> tuple[dict[str, Any], str]:
    """({input_ids, attention_mask} as N x max_length int64 arrays, how they were tokenised)."""
    vocab = vocabulary_file(weights_path) if weights == "path" and weights_path else None
    if vocab is not None:
        return _from_vocabulary(vocab, texts, max_length), f"WordPiece from {vocab}, max length {max_length}"
    if weights == "pretrained" or (weights == "path" and weights_path and os.path.isdir(weights_path)):
        source = PRETRAINED_TOKENIZERS[model] if weights == "pretrained" else str(weights_path)
        return _transformers(source, texts, max_length), f"transformers AutoTokenizer {source}, max length {max_length}"
    return _trained(texts, max_length, vocab_size), (
        f"WordPiece (vocabulary {vocab_size}) trained on the dataset's texts, max length {max_length}"
    )


# Where a model folder keeps a plain WordPiece vocabulary (one token per line) and no tokenizer.json:
# KerasHub's presets (save_to_preset) and BERT checkpoints outside transformers.
VOCABULARY_FILES = ("assets/tokenizer/vocabulary.txt", "vocab.txt")


def vocabulary_file(folder: str) -> str | None:
    """The folder's plain WordPiece vocabulary, when it has one and no transformers tokenizer."""
    if not os.path.isdir(folder) or os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    for name in VOCABULARY_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _from_vocabulary(path: str, texts: list[str], max_length: int) -> dict[str, Any]:
    """BERT's uncased WordPiece tokenisation with the folder's own vocabulary (ids = line numbers)."""
    from tokenizers import Tokenizer, models

    with open(path, encoding="utf-8") as fh:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(fh) if line.rstrip("\n")}
    missing = [t for t in SPECIAL[:4] if t not in vocab]
    if missing:
        raise DatasetError(f"vocabulary {path} lacks the BERT special tokens {', '.join(missing)}")
    return _encode(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")), texts, max_length)


def _transformers(source: str, texts: list[str], max_length: int) -> dict[str, Any]:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:  # the hub offline, or a folder without tokenizer files
        raise DatasetError(
            f"could not load the tokenizer {source}: {exc}. Without network, save it once on a connected "
            "machine (AutoTokenizer.from_pretrained(...).save_pretrained(DIR)) beside the model, and pass "
            "--weights DIR"
        ) from None
    out = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return {"input_ids": out["input_ids"].astype("int64"), "attention_mask": out["attention_mask"].astype("int64")}


def _trained(texts: list[str], max_length: int, vocab_size: int) -> dict[str, Any]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _encode(tokenizer, texts, max_length)


def _encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, Any]:
    """[CLS] text [SEP], lower-cased BERT pre-tokenisation, truncated and padded to max_length."""
    import numpy as np
    from tokenizers import normalizers, pre_tokenizers, processors

    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
    }
