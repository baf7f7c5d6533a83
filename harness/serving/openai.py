"""The OpenAI-compatible completions API of the model server: request checks, events, detokenising.

Only what greedy serving of one model can honour is accepted; anything else is a 400 in OpenAI's
error shape, never silently ignored (``temperature`` above 0, ``n`` above 1, ``stop``, ``echo``,
``logprobs``, ``best_of``). Unknown fields are ignored, as vLLM and llama.cpp do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OPENAI_DEFAULT_MAX_TOKENS = 16


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str | list[int]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    return_token_ids: bool = False


# field -> (accepted when, what to say otherwise)
_UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: v is None or v == 0, "only greedy decoding is served: temperature must be 0"),
    "n": (lambda v: v in (None, 1), "one completion per request: n must be 1"),
    "best_of": (lambda v: v in (None, 1), "best_of must be 1"),
    "echo": (lambda v: not v, "echo is not supported"),
    "logprobs": (lambda v: v is None, "logprobs are not supported"),
    "stop": (lambda v: not v, "stop sequences are not supported (generation stops at max_tokens or end of sequence)"),
    "suffix": (lambda v: not v, "suffix is not supported"),
}


def _prompt(value: Any) -> str | list[int]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]  # a batch of one
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return value
    raise ApiError(400, "prompt must be a string, or a list of token ids (one prompt per request)", "prompt")


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false", name)
    return value


def parse_completion(raw: bytes, model: str, max_tokens_limit: int) -> CompletionRequest:
    """The request, or ApiError (400, or 404 for another model's name)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not JSON", None) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", None)
    if body.get("model") not in (None, model):
        raise ApiError(
            404, f"the model `{body['model']}` does not exist; this server serves `{model}`", "model", "NotFoundError"
        )
    for name, (ok, why) in _UNSUPPORTED.items():
        if not ok(body.get(name)):
            raise ApiError(400, why, name)
    max_tokens = body.get("max_tokens", OPENAI_DEFAULT_MAX_TOKENS)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= max_tokens_limit:
        raise ApiError(400, f"max_tokens must be an integer from 1 to {max_tokens_limit}", "max_tokens")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", "stream_options")
    return CompletionRequest(
        prompt=_prompt(body.get("prompt")),
        max_tokens=max_tokens,
        stream=_flag(body, "stream"),
        include_usage=bool(options.get("include_usage", False)),
        ignore_eos=_flag(body, "ignore_eos"),
        return_token_ids=_flag(body, "return_token_ids"),
    )


def completion_chunk(head: str, text: str, finish: str | None, token_id: int | None) -> str:
    """One event: ``head`` is ``data: {"id": ..., "model": ...`` without its closing brace."""
    extra = f',"token_ids":[{token_id}]' if token_id is not None else ""
    return (
        f'{head},"choices":[{{"index":0,"text":{json.dumps(text)},"logprobs":null,'
        f'"finish_reason":{json.dumps(finish)}{extra}}}]}}\n\n'
    )


class Detokenizer:
    """Text of each new token as it comes, holding back bytes of a character not yet complete.

    Decodes a short window (a few prompt tokens of context, then the tokens since the last text)
    and hands out what grew, as vLLM's incremental detokeniser does: tokenizers that drop a
    leading space at the start of a decode see the same start in both decodes.
    """

    CONTEXT = 4

    def __init__(self, decode: Callable[[list[int]], str], prompt_ids: list[int]) -> None:
        self.decode = decode
        self.ids = list(prompt_ids[-self.CONTEXT :])
        self.prefix = 0
        self.read = len(self.ids)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self.decode(self.ids[self.prefix : self.read])
        now = self.decode(self.ids[self.prefix :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(before) :]
        return ""

    def flush(self) -> str:
        """What is still held back (an incomplete character at the very end)."""
        before = self.decode(self.ids[self.prefix : self.read])
        now = self.decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return now[len(before) :]
