"""The second paper's twelve code SLMs (its Table 1): Hugging Face ids and size categories.

Data only. Size categories: 1 up to ~560 M parameters, 2 about 1-1.4 B, 3 about 2-3 B. Serving runs
also accept a local model folder (a transformers ``save_pretrained`` folder with config.json) or any
other hub id; those have no category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeSlm:
    name: str  # the paper's short name
    hf_id: str
    size_category: int
    params: str  # as the paper gives it
    affiliation: str
    humaneval_pass1: float  # percent, as reported in the paper
    architecture: str = ""  # config.json's: which engines can convert it is known before any download
    tokenizer: str = "byte-level BPE"  # or "SentencePiece" (its vocabulary as llama.cpp's converters see it)


CODE_SLMS: dict[str, CodeSlm] = {
    m.name: m
    for m in (
        CodeSlm("codeparrot-small", "codeparrot/codeparrot-small", 1, "110M", "HuggingFace", 3.80, "GPT2LMHeadModel"),
        CodeSlm("tiny-starcoder", "bigcode/tiny_starcoder_py", 1, "164M", "BigCode", 7.84, "GPTBigCodeForCausalLM"),
        CodeSlm("pythia-410m", "EleutherAI/pythia-410m", 1, "410M", "EleutherAI", 1.20, "GPTNeoXForCausalLM"),
        CodeSlm("bloomz-560m", "bigscience/bloom-560m", 1, "560M", "BigScience", 2.18, "BloomForCausalLM"),
        CodeSlm("starcoderbase-1b", "bigcode/starcoderbase-1b", 2, "1B", "BigCode", 15.17, "GPTBigCodeForCausalLM"),
        CodeSlm("bloomz-1b1", "bigscience/bloomz-1b1", 2, "1.1B", "BigScience", 2.63, "BloomForCausalLM"),
        CodeSlm(
            "tinyllama",
            "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            2,
            "1.1B",
            "StatNLP Research Group",
            9.15,
            "LlamaForCausalLM",
            "SentencePiece",
        ),
        CodeSlm("pythia1-4b", "EleutherAI/pythia-1.4b", 2, "1.4B", "EleutherAI", 4.30, "GPTNeoXForCausalLM"),
        CodeSlm("codegemma-2b", "google/codegemma-2b", 3, "2B", "Google", 31.10, "GemmaForCausalLM", "SentencePiece"),
        CodeSlm("phi2", "microsoft/phi-2", 3, "2.7B", "Microsoft", 48.00, "PhiForCausalLM"),
        CodeSlm(
            "stablecode-3b",
            "stabilityai/stablecode-instruct-alpha-3b",
            3,
            "3B",
            "Stability AI",
            26.89,
            "GPTNeoXForCausalLM",
        ),
        CodeSlm(
            "stablecode-3b-completion",
            "stabilityai/stablecode-completion-alpha-3b-4k",
            3,
            "3B",
            "Stability AI",
            17.68,
            "GPTNeoXForCausalLM",
        ),
    )
}
BY_HF_ID = {m.hf_id: m for m in CODE_SLMS.values()}


@dataclass(frozen=True)
class ResolvedModel:
    label: str  # what records and tables call it
    source: str  # "folder" | "hub"
    location: str  # absolute folder path, or hub id
    size_category: int | None
    registry: CodeSlm | None


def resolve_model(text: str) -> ResolvedModel:
    """A folder with config.json, a registry name, or a hub id (owner/name); ValueError otherwise."""
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model folder {path} has no config.json; save the model with save_pretrained")
        _check_config(path / "config.json")
        return ResolvedModel(path.resolve().name, "folder", str(path.resolve()), None, None)
    if text in CODE_SLMS:
        m = CODE_SLMS[text]
        return ResolvedModel(m.name, "hub", m.hf_id, m.size_category, m)
    if text in BY_HF_ID:
        m = BY_HF_ID[text]
        return ResolvedModel(m.name, "hub", m.hf_id, m.size_category, m)
    if text.count("/") == 1 and not text.startswith((".", "/")):
        return ResolvedModel(text, "hub", text, None, None)
    raise ValueError(
        f"model {text!r} is neither a folder nor a hub id (owner/name) nor one of the paper's: {', '.join(CODE_SLMS)}"
    )


def _check_config(path: Path) -> None:
    """A folder as transformers loads it: a config.json of the right kinds, and torch weights beside it."""
    from suite.hf_config import check_config
    from suite.source_spec import SourceError

    try:
        check_config(json.loads(path.read_text()))
    except SourceError as exc:
        raise ValueError(f"model folder {path.parent}: {exc}; save the model with save_pretrained") from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path} cannot be read as JSON ({exc}); save the model with save_pretrained") from None
    folder = path.parent
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        raise ValueError(
            f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin); save the model "
            "with save_pretrained"
        )


def model_architectures(model: ResolvedModel) -> list[str]:
    """config.json's architectures of a folder, the registry's of a paper model; [] when unknown."""
    if model.source == "folder":
        try:
            config = json.loads((Path(model.location) / "config.json").read_text())
        except (OSError, ValueError):
            return []
        found = config.get("architectures") if isinstance(config, dict) else None
        return [str(a) for a in found] if isinstance(found, list) else []
    if model.registry is not None and model.registry.architecture:
        return [model.registry.architecture]
    return []


def model_tokenizer(model: ResolvedModel) -> str | None:
    """"byte-level BPE" or "SentencePiece" (a folder's tokenizer.json, the registry's); None when unknown."""
    if model.source != "folder":
        return model.registry.tokenizer if model.registry is not None else None
    try:
        tj = json.loads((Path(model.location) / "tokenizer.json").read_text())
        pre = tj.get("pre_tokenizer") or {}
        parts = [pre, *pre.get("pretokenizers", [])]
        if (tj.get("model") or {}).get("type") == "BPE" and any((p or {}).get("type") == "ByteLevel" for p in parts):
            return "byte-level BPE"
        return "SentencePiece" if any((p or {}).get("type") == "Metaspace" for p in parts) else "other"
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # a tokenizer.json of another shape: unknown, as a missing one
