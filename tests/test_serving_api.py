"""Our model server speaks the OpenAI-compatible completions API (so vLLM's bench, AIPerf or any
OpenAI client can drive it): models, streamed and whole completions with the same tokens, OpenAI's
error shape for what greedy serving cannot honour, and a client that walks away mid-stream."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("transformers")

from harness.protocol import ServeSpec  # noqa: E402
from harness.serving.openai import ApiError, Detokenizer, parse_completion  # noqa: E402
from tests.conftest import REPO  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.serving.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="module")
def server(tiny_lm: Path) -> Iterator[int]:
    spec = ServeSpec("api", "torch", "cpu", "tiny", str(tiny_lm), options={"threads": 1}, max_new_tokens_limit=64)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--spec", spec.to_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("phase") == "load" and event.get("edge") == "end":
            port = int(event["port"])
            break
    assert port is not None, f"the server exited with {proc.wait()}"
    yield port
    _call(port, "POST", "/shutdown")
    out = proc.stdout.read()
    assert proc.wait(60) == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kind"] == "result" and result["result"]["requests_served"] >= 3


def _call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def _events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_models_and_completions_streamed_or_whole_give_the_same_tokens(server: int) -> None:
    status, _, raw = _call(server, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(raw)["data"]] == ["tiny"]
    body = {"model": "tiny", "prompt": "def add(a, b):", "max_tokens": 12, "temperature": 0, "return_token_ids": True}
    status, kind, raw = _call(server, "POST", "/v1/completions", body)
    whole = json.loads(raw)
    assert status == 200 and kind.startswith("application/json") and whole["object"] == "text_completion"
    choice = whole["choices"][0]
    assert whole["usage"]["completion_tokens"] == len(choice["token_ids"]) == 12 and choice["finish_reason"] == "length"

    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    status, kind, raw = _call(server, "POST", "/v1/completions", streamed)
    events = _events(raw)
    assert status == 200 and kind.startswith("text/event-stream") and events[-1] == "[DONE]"
    tokens = [e for e in events[:-1] if e["choices"]]
    assert len(tokens) == 12 and all(len(e["choices"][0]["token_ids"]) == 1 for e in tokens)
    assert [e["choices"][0]["token_ids"][0] for e in tokens] == choice["token_ids"]
    assert "".join(e["choices"][0]["text"] for e in tokens) == choice["text"]
    assert [e["choices"][0]["finish_reason"] for e in tokens] == [None] * 11 + ["length"]
    summary = events[-2]
    assert summary["choices"] == [] and summary["usage"] == whole["usage"]
    assert set(summary["timings"]) >= {"queue", "first_token", "generate", "total"}

    # Without include_usage (OpenAI's default) no usage is sent; token ids only when asked for.
    status, _, raw = _call(server, "POST", "/v1/completions", {"prompt": "x = ", "max_tokens": 3, "stream": True})
    events = _events(raw)
    assert "usage" not in events[-2] and "token_ids" not in events[0]["choices"][0]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "x", "temperature": 0.7}, 400, "temperature"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "model"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": 65}, 400, "max_tokens"),
        ({"prompt": "x", "n": 2}, 400, "n"),
        ({"prompt": "x", "stop": ["\n"]}, 400, "stop"),
        ({"prompt": 5}, 400, "prompt"),
        ({"prompt": "word " * 300, "max_tokens": 4}, 400, "prompt"),  # past the model's 256 positions
    ],
)
def test_what_greedy_serving_cannot_honour_is_an_openai_error(
    server: int, body: dict[str, Any], status: int, param: str
) -> None:
    got, _, raw = _call(server, "POST", "/v1/completions", body)
    error = json.loads(raw)["error"]
    assert got == status and error["param"] == param and error["message"]


def test_a_client_that_leaves_mid_stream_does_not_disturb_the_next(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=120)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "import", "max_tokens": 60, "stream": True}))
    resp = conn.getresponse()
    assert resp.readline().startswith(b"data: ")
    conn.close()  # gone after the first token
    status, _, raw = _call(server, "POST", "/v1/completions", {"prompt": "import", "max_tokens": 5})
    assert status == 200 and json.loads(raw)["usage"]["completion_tokens"] == 5
    status, _, raw = _call(server, "POST", "/generate", {"prompt": "import", "max_new_tokens": 5})
    assert status == 200 and json.loads(raw)["new_tokens"] == 5  # the server's own API stays


def test_request_checks() -> None:
    ok = parse_completion(b'{"prompt": ["def f("], "max_tokens": 3, "stream": true, "ignore_eos": true}', "m", 8)
    assert (ok.prompt, ok.max_tokens, ok.stream, ok.ignore_eos, ok.include_usage) == ("def f(", 3, True, True, False)
    assert parse_completion(b'{"prompt": [1, 2, 3]}', "m", 32).prompt == [1, 2, 3]
    assert parse_completion(b'{"prompt": "x"}', "m", 32).max_tokens == 16  # OpenAI's default
    with pytest.raises(ApiError, match="not JSON"):
        parse_completion(b"{", "m", 8)
    with pytest.raises(ApiError, match="stream must be true or false"):
        parse_completion(b'{"prompt": "x", "stream": "yes"}', "m", 32)


def test_text_is_handed_out_as_tokens_complete_their_characters(tiny_lm: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_lm / "tokenizer.json"))
    text = "def ünïcode(): return '→ ✓'"
    ids = tok.encode(text).ids
    assert len(ids) > len(text.split())  # byte-level: the accented characters take several tokens

    def decode(t: list[int]) -> str:
        return str(tok.decode(t))

    detok = Detokenizer(decode, [])
    pieces = [detok.add(t) for t in ids] + [detok.flush()]
    assert "".join(pieces) == decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
