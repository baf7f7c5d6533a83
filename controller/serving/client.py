"""HTTP clients (stdlib http.client, every request bounded): OpenAI-compatible streaming completions
against any server (ours, vLLM's, llama.cpp's, a user's), and our server's own /generate.

Times are ``time.monotonic_ns()`` on the host, the clock the meters and the harness use. One
streamed request records when it was due (its arrival in the load), sent, each token event
received, and done; its finish reason; what the server said it generated (``usage``) when it says
so, else its token ids, else (a stream that ended at ``max_tokens``, finish_reason "length") the
tokens it was asked for, else the count of token events, and says which; and, from our own server,
when the engine made each token (``engine_token_ns``), beside when the client received it.

A request that fails, before or mid-stream, is a failed result with the reason and a code
(:data:`ERROR_CODES`): a stream that ends without a finish reason was cut by the server (``[DONE]``
or not), so it is ``truncated``, never a success. Nothing here raises for what a server or the
network does.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from suite.prompts import Prompt


def http_json(
    host: str, port: int, method: str, path: str, body: dict[str, Any] | None, timeout_s: float
) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; raises OSError on connection trouble or timeout."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode("utf-8", "replace")[:500]


# RequestResult.error_code: why a request failed, in one word
ERROR_CODES = {
    "http_status": "the server answered an error status",
    "not_streamed": "the server did not answer with server-sent events",
    "timeout": "no answer, or no end of the stream, within the request timeout",
    "connection": "the connection failed or closed before the stream ended",
    "server_error": "the server sent an error event mid-stream",
    "malformed": "an event that is not JSON",
    "no_tokens": "the stream ended without a token",
    "truncated": "the stream ended without a finish_reason: the server cut it",
}


@dataclass
class RequestResult:
    index: int
    prompt_id: str
    ok: bool
    latency_ns: int  # sent -> response complete (the E2EL)
    t_start_ns: int  # sent
    status: int | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    token_ids: list[int] | None = None
    text: str | None = None
    server_ms: dict[str, float] | None = None
    error: str | None = None
    # streamed requests
    t_scheduled_ns: int | None = None  # when the load wanted it sent (its arrival)
    t_first_token_ns: int | None = None
    t_last_token_ns: int | None = None
    token_times_us: list[int] = field(default_factory=list)  # each token event, µs after t_start_ns
    max_tokens: int | None = None
    finish_reason: str | None = None
    output_tokens_source: str | None = None  # usage | token_ids | finish_reason | events
    error_code: str | None = None  # one of ERROR_CODES when the request failed
    ignore_eos: bool = False  # asked to generate max_tokens whatever the model says
    # when the engine made each token, µs after t_start_ns (our own server says it; None: not said)
    engine_token_times_us: list[int] | None = None
    flags: list[str] = field(default_factory=list)  # what the output check found (controller/serving/checks.py)

    @property
    def ttft_ns(self) -> int | None:
        return self.t_first_token_ns - self.t_start_ns if self.t_first_token_ns is not None else None

    @property
    def tpot_ns(self) -> float | None:
        """(last token - first token) / (tokens - 1): the time per output token after the first."""
        if self.t_first_token_ns is None or self.t_last_token_ns is None or (self.new_tokens or 0) < 2:
            return None
        return (self.t_last_token_ns - self.t_first_token_ns) / (self.new_tokens - 1)  # type: ignore[operator]

    def itls_ns(self) -> list[int]:
        """Gaps between successive token events (µs resolution)."""
        t = self.token_times_us
        return [(b - a) * 1000 for a, b in zip(t, t[1:], strict=False)]

    def token_times_ns(self) -> list[int]:
        return [self.t_start_ns + us * 1000 for us in self.token_times_us]


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible API root, e.g. ``http://127.0.0.1:8000/v1``, and the model asked of it."""

    scheme: str
    host: str
    port: int
    base: str  # path prefix, "/v1"
    model: str

    @classmethod
    def parse(cls, url: str, model: str) -> Endpoint:
        """Raises ValueError with what is wrong in ``url``."""
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--endpoint {url!r} is not an http(s) URL like http://127.0.0.1:8000/v1")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"--endpoint {url!r} has an invalid port") from None
        base = parts.path.rstrip("/")
        for tail in ("/completions", "/models"):
            base = base.removesuffix(tail)
        return cls(parts.scheme, parts.hostname, port, base, model)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.base}"

    def connection(self, timeout_s: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout_s)


@dataclass(frozen=True)
class WorkItem:
    """One request of the load: which prompt, how many tokens at most, whether to run past the end."""

    index: int
    prompt: Prompt
    max_tokens: int
    ignore_eos: bool = False


def _detail(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message", err))
        return str(err or data.get("detail") or data)[:300]
    return str(data)[:300]


def completion_body(
    model: str, prompt: Any, max_tokens: Any, ignore_eos: bool, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """Every request's body: greedy (temperature 0), streamed with usage, ``extra`` fields last."""
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **({"ignore_eos": True} if ignore_eos else {}),
        **(extra or {}),
    }


def stream_completion(
    ep: Endpoint,
    item: WorkItem,
    timeout_s: float,
    t_scheduled_ns: int | None = None,
    extra: dict[str, Any] | None = None,
) -> RequestResult:
    """POST {base}/completions with ``stream: true``, reading every event as it arrives."""
    body = completion_body(ep.model, item.prompt.text, item.max_tokens, item.ignore_eos, extra)
    r = RequestResult(
        item.index,
        item.prompt.id,
        False,
        0,
        0,
        t_scheduled_ns=t_scheduled_ns,
        max_tokens=item.max_tokens,
        ignore_eos=item.ignore_eos,
    )
    conn = ep.connection(timeout_s)
    r.t_start_ns = time.monotonic_ns()
    try:
        conn.request(
            "POST",
            ep.base + "/completions",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        r.status = resp.status
        kind = resp.getheader("Content-Type", "")
        if resp.status != 200:
            _fail(r, "http_status", f"HTTP {resp.status}: {_detail(resp.read())}")
        elif "text/event-stream" not in kind:
            _fail(
                r,
                "not_streamed",
                f"the server answered {kind or 'without a content type'} to stream: true, not server-sent events",
            )
        else:
            _read_events(resp, r, r.t_start_ns + int(timeout_s * 1e9))
    except TimeoutError:
        _fail(r, "timeout", f"no answer within {timeout_s:g} s" + _after(r))
    except (OSError, http.client.HTTPException) as exc:
        _fail(r, "connection", f"{type(exc).__name__}: {exc}" + _after(r))
    finally:
        conn.close()
        r.latency_ns = time.monotonic_ns() - r.t_start_ns
    r.ok = r.error is None
    return r


def _fail(r: RequestResult, code: str, error: str) -> None:
    r.error_code, r.error = code, error


def _after(r: RequestResult) -> str:
    return f" (mid-stream, after {len(r.token_times_us)} token events)" if r.token_times_us else ""


def _read_events(resp: http.client.HTTPResponse, r: RequestResult, deadline_ns: int) -> None:
    """Fill ``r`` from the event stream; sets ``r.error`` when the stream is cut, malformed or late."""
    text: list[str] = []
    ids: list[int] = []
    usage: dict[str, Any] | None = None
    done = False
    while line := resp.readline():
        now = time.monotonic_ns()
        if not line.startswith(b"data:"):
            continue  # blank separators, comments (keep-alives), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            event = json.loads(data)
        except ValueError:
            _fail(r, "malformed", f"a malformed event: {data[:120]!r}" + _after(r))
            return
        if not isinstance(event, dict) or "error" in event:
            err = event.get("error") if isinstance(event, dict) else event
            detail = _detail(json.dumps(err).encode())
            _fail(r, "server_error", f"the server reported an error mid-stream: {detail}" + _after(r))
            return
        _take(event, now, r, text, ids)
        usage = event.get("usage") or usage
        if event.get("timings"):
            r.server_ms = event["timings"]
        if isinstance(event.get("engine_token_ns"), list):
            r.engine_token_times_us = [(int(t) - r.t_start_ns) // 1000 for t in event["engine_token_ns"]]
        if now > deadline_ns:
            _fail(r, "timeout", "the stream did not finish within the request timeout" + _after(r))
            return
    if not r.token_times_us:
        _fail(r, "no_tokens", "the stream ended without a token")
    elif r.finish_reason is None:
        end = "with [DONE]" if done else "without [DONE] (the connection closed)"
        code = "truncated" if done else "connection"
        _fail(r, code, f"the stream ended {end} and without a finish_reason" + _after(r))
    _settle(r, text, ids, usage)


def _take(event: dict[str, Any], now: int, r: RequestResult, text: list[str], ids: list[int]) -> None:
    """One event's choice: a token event unless it only closes the stream (empty, with a finish_reason)."""
    choices = event.get("choices") or []
    if not choices:
        return
    choice = choices[0]
    piece = choice.get("text") or ""
    token_ids = choice.get("token_ids") or []
    finish = choice.get("finish_reason")
    if finish is not None:
        r.finish_reason = finish
    if not piece and not token_ids and finish is not None:
        return
    if r.t_first_token_ns is None:
        r.t_first_token_ns = now
    r.t_last_token_ns = now
    r.token_times_us.append((now - r.t_start_ns) // 1000)
    text.append(piece)
    ids.extend(token_ids)


def _settle(r: RequestResult, text: list[str], ids: list[int], usage: dict[str, Any] | None) -> None:
    """The output token count: what the server said, else what its stream shows, and from where.

    A server that sends neither usage nor token ids does not send one event per token (llama-cpp-
    python's holds back the bytes of a character not yet complete, and sends the last tokens again
    one by one: fewer or more events than tokens); when it ended the stream at ``max_tokens``
    (finish_reason "length"), it generated ``max_tokens``, whatever its events number.
    """
    r.text = "".join(text)
    r.token_ids = ids or None
    events = len(r.token_times_us)
    if usage and isinstance(usage.get("completion_tokens"), int):
        r.new_tokens, r.output_tokens_source = usage["completion_tokens"], "usage"
        r.prompt_tokens = usage.get("prompt_tokens")
    elif ids:
        r.new_tokens, r.output_tokens_source = len(ids), "token_ids"
    elif r.finish_reason == "length" and r.max_tokens is not None:
        r.new_tokens, r.output_tokens_source = r.max_tokens, "finish_reason"
    else:
        r.new_tokens, r.output_tokens_source = events, "events"


class EndpointError(Exception):
    """An endpoint that cannot be measured: unreachable, without the model, or not streaming."""


def probe(ep: Endpoint, prompt: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Check, before any load, that ``ep`` answers, serves ``ep.model`` and streams; what it said."""
    try:
        status, data = _get(ep, "/models", timeout_s)
    except (OSError, http.client.HTTPException) as exc:
        raise EndpointError(
            f"cannot reach {ep.url}/models: {type(exc).__name__}: {exc}; is the server running?"
        ) from None
    if status != 200 or not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise EndpointError(f"{ep.url}/models answered HTTP {status}, not an OpenAI-compatible model list")
    served = [str(m.get("id")) for m in data["data"] if isinstance(m, dict)]
    if ep.model not in served:
        raise EndpointError(
            f"{ep.url} serves {', '.join(served) or 'no model'}, not {ep.model!r}: pass one of them with --model"
        )
    r = stream_completion(ep, WorkItem(0, Prompt("probe", prompt), 2), timeout_s)
    if not r.ok:
        raise EndpointError(f"{ep.url}/completions does not stream a completion: {r.error}")
    return {
        "models": served,
        "probe": {"token_events": len(r.token_times_us), "usage": r.output_tokens_source == "usage"},
    }


def _get(ep: Endpoint, path: str, timeout_s: float) -> tuple[int, Any]:
    conn = ep.connection(timeout_s)
    try:
        conn.request("GET", ep.base + path)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None
