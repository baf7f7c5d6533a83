"""An OpenAI-compatible completions server that is not ours (stdlib http.server), for the client's
tests: it streams server-sent events with known pauses, or misbehaves in the ways real servers do.

The model named in a request picks the behaviour:

- ``steady``: a first token after ``TTFT_S``, then one every ``GAP_S``, ``TOKENS`` in all (fewer
  when max_tokens says so), the usage, [DONE];
- ``llamacpp``: the same, ending as llama.cpp's server does: an empty event with the finish_reason,
  no usage;
- ``cut``: every ``CUT_EVERY``-th request sends two tokens and closes the connection;
- ``error``: an error event after two tokens (a probe of two tokens passes);
- ``json``: answers ``stream: true`` with one JSON body (a server that does not stream).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTFT_S = 0.05
GAP_S = 0.02
TOKENS = 4
CUT_EVERY = 3
MODELS = ("steady", "llamacpp", "cut", "error", "json")


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
        model = body.get("model")
        tokens = min(TOKENS, int(body.get("max_tokens", 16)))
        if model == "json":
            self._json({"choices": [{"text": "abcd", "finish_reason": "length"}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(TTFT_S)
        for i in range(tokens):
            if i:
                time.sleep(GAP_S)
            if model == "cut" and n % CUT_EVERY == 0 and i == 2:
                return  # the connection closes mid-stream
            if model == "error" and i == 2:
                self._event({"error": {"message": "out of KV-cache blocks", "type": "server_error"}})
                return
            last = i == tokens - 1 and model != "llamacpp"
            self._event({"choices": [{"index": 0, "text": f"t{i}", "finish_reason": "length" if last else None}]})
        if model == "llamacpp":
            self._event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
        else:
            self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": tokens}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
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
        self.bodies: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
