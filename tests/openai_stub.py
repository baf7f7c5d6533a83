"""An OpenAI-compatible completions server that is not ours (stdlib http.server), for the client's
tests: it streams server-sent events with known pauses, or misbehaves in the ways real servers do.

A stream has ``TOKENS`` tokens (its end of sequence), ``max_tokens`` when fewer are asked or when
``ignore_eos`` is sent; its finish_reason is "length" when it stopped at ``max_tokens``, "stop"
otherwise. The model named in a request picks the behaviour:

- ``steady``: a first token after ``TTFT_S``, then one every ``GAP_S``, the usage, [DONE];
- ``llamacpp``: the same, ending as llama.cpp's server does: an empty event with the finish_reason,
  no usage;
- ``timed``: ``steady`` with what our own server adds to its last event: ``timings`` (``QUEUE_MS``
  of queueing) and ``engine_token_ns``, when each token was made;
- ``bursty``: ``timed``, but the tokens made every ``GAP_S`` are sent in bursts of ``BURST``, as a
  starved HTTP server sends them (its ``engine_token_ns`` still says when each was made);
- ``truncate``: llama-cpp-python's server with ``interrupt_requests`` on: while another request is
  in flight, it ends a stream after its first token with [DONE] and no finish_reason;
- ``nofinish``: every stream's events carry no finish_reason (then usage and [DONE]);
- ``noeos``: drops ``ignore_eos``: stops at its end of sequence (``TOKENS``) with "stop";
- ``overlong``: sends two tokens more than ``max_tokens`` (its usage says so), with "length";
- ``cut``: every ``CUT_EVERY``-th request sends two tokens and closes the connection;
- ``error``: an error event after two tokens (a probe of two tokens passes);
- ``json``: answers ``stream: true`` with one JSON body (a server that does not stream).

While it streams, each request is in a phase: ``prefill`` from the request read to its first token
made, ``decode`` from there to its last token made. ``StubServer.in_phase`` counts the requests in
each; ``StubServer.on_phase`` (if set) is called at every change, under the server's lock, so that a
fake meter can draw power by phase.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTFT_S = 0.05
GAP_S = 0.02
TOKENS = 4
CUT_EVERY = 3
BURST = 4
QUEUE_MS = 7.0
MODELS = ("steady", "llamacpp", "timed", "bursty", "truncate", "nofinish", "noeos", "overlong", "cut", "error", "json")


class _Handler(BaseHTTPRequestHandler):
    server: StubServer  # type: ignore[assignment]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.completions += 1
            self.server.bodies.append(body)
            n = self.server.completions
            self.server.in_flight += 1
        try:
            self._complete(body, n)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _complete(self, body: dict[str, Any], n: int) -> None:
        model = body.get("model")
        asked = int(body.get("max_tokens", 16))
        honours_eos = body.get("ignore_eos") and model != "noeos"
        tokens = asked + 2 if model == "overlong" else (asked if honours_eos else min(TOKENS, asked))
        finish = "length" if tokens >= asked else "stop"
        if model == "json":
            self._json({"choices": [{"text": "abcd", "finish_reason": finish}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        t_received = time.monotonic_ns()
        self.server.move(None, "prefill")
        try:
            self._stream(model, tokens, finish, n, t_received)
        finally:
            self.server.move(self.phase, None)

    phase: str | None = None

    def _stream(self, model: Any, tokens: int, finish: str, n: int, t_received: int) -> None:
        self.phase = "prefill"
        time.sleep(TTFT_S)
        made: list[int] = []
        held: list[bytes] = []
        for i in range(tokens):
            if i:
                time.sleep(GAP_S)
            made.append(time.monotonic_ns())
            if i == 0:
                self.phase = self.server.move("prefill", "decode")
            if i == tokens - 1:
                self.phase = self.server.move("decode", None)
            if model == "cut" and n % CUT_EVERY == 0 and i == 2:
                return  # the connection closes mid-stream
            if model == "error" and i == 2:
                self._event({"error": {"message": "out of KV-cache blocks", "type": "server_error"}})
                return
            last = i == tokens - 1 and model not in ("llamacpp", "nofinish")
            choice = {"index": 0, "text": f"t{i}", "finish_reason": finish if last else None}
            held.append(self._data({"choices": [choice]}))
            if model != "bursty" or len(held) == BURST or last:
                self._send(held)
            if model == "truncate" and self.server.in_flight > 1:
                self.wfile.write(b"data: [DONE]\n\n")  # cut: another request waits
                return
        self._send(held)
        if model == "llamacpp":
            self._event({"choices": [{"index": 0, "text": "", "finish_reason": finish}]})
        else:
            closing: dict[str, Any] = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": tokens}}
            if model in ("timed", "bursty"):
                work = (time.monotonic_ns() - t_received) / 1e6
                closing["timings"] = {"queue": QUEUE_MS, "total": work, "generate": work}
                closing["engine_token_ns"] = made
            self._event(closing)
        self.wfile.write(b"data: [DONE]\n\n")

    @staticmethod
    def _data(data: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def _send(self, held: list[bytes]) -> None:
        if held:
            self.wfile.write(b"".join(held))
            self.wfile.flush()
            held.clear()

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(self._data(data))
        self.wfile.flush()

    def _json(self, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.completions = 0
        self.in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.in_phase = {"prefill": 0, "decode": 0}
        self.on_phase: Callable[[dict[str, int]], None] | None = None
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def move(self, old: str | None, new: str | None) -> str | None:
        """A request leaves phase ``old`` for ``new`` (None: none); returns ``new``."""
        with self.lock:
            if old is not None:
                self.in_phase[old] -= 1
            if new is not None:
                self.in_phase[new] += 1
            if self.on_phase is not None and old != new:
                self.on_phase(dict(self.in_phase))
        return new

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
