"""The HTTP client: one bounded request to the model server, and the replay of a prompt set."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


@dataclass
class RequestResult:
    index: int
    prompt_id: str
    ok: bool
    latency_ns: int
    t_start_ns: int
    status: int | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    token_ids: list[int] | None = None
    text: str | None = None
    server_ms: dict[str, float] | None = None
    error: str | None = None


def send_prompt(
    host: str, port: int, index: int, prompt: Prompt, max_new_tokens: int, timeout_s: float
) -> RequestResult:
    """POST /generate once; never raises for what the server or network does."""
    t0 = time.monotonic_ns()
    try:
        status, data = http_json(
            host,
            port,
            "POST",
            "/generate",
            {"prompt": prompt.text, "max_new_tokens": max_new_tokens, "greedy": True},
            timeout_s,
        )
    except TimeoutError:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"no answer within {timeout_s:g} s"
        )
    except OSError as exc:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"{type(exc).__name__}: {exc}"
        )
    except http.client.HTTPException as exc:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"{type(exc).__name__}: {exc}"
        )
    latency = time.monotonic_ns() - t0
    if status != 200 or not isinstance(data, dict):
        detail = data.get("detail") if isinstance(data, dict) else data
        return RequestResult(index, prompt.id, False, latency, t0, status=status, error=f"HTTP {status}: {detail}")
    return RequestResult(
        index,
        prompt.id,
        True,
        latency,
        t0,
        status=status,
        prompt_tokens=data.get("prompt_tokens"),
        new_tokens=data.get("new_tokens"),
        token_ids=data.get("token_ids"),
        text=data.get("text"),
        server_ms=data.get("timings_ms"),
    )


def replay(
    host: str,
    port: int,
    prompts: list[Prompt],
    max_new_tokens: int,
    concurrency: int,
    timeout_s: float,
) -> list[RequestResult]:
    """Send every prompt (``concurrency`` in flight at most); stops sending after the first failure."""
    if concurrency <= 1:
        results = []
        for i, p in enumerate(prompts):
            results.append(send_prompt(host, port, i, p, max_new_tokens, timeout_s))
            if not results[-1].ok:
                break
        return results
    failed = threading.Event()

    def one(i: int, p: Prompt) -> RequestResult | None:
        if failed.is_set():
            return None
        r = send_prompt(host, port, i, p, max_new_tokens, timeout_s)
        if not r.ok:
            failed.set()
        return r

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="joulebench-client") as pool:
        done = list(pool.map(lambda ip: one(*ip), enumerate(prompts)))
    return [r for r in done if r is not None]
