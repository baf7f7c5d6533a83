"""Runtimes that bring their own OpenAI-compatible server (llama.cpp's, vLLM's), served as they deploy.

``python -m harness serve`` starts the runtime's own server as a child process on the spec's port
and a small control server beside it on ``control_port`` (``/health``, ``/ready``, ``/shutdown``:
what our own server answers on its one port). The controller's client sends its requests straight
to the runtime's server, so nothing of ours sits between the two; it reaches the control server
only to learn readiness and to stop. Ready means the runtime answers ``GET /v1/models`` and has
replayed the export's reference prompts (temperature 0). Its server returns text, not token ids, and
text is not a faithful image of tokens (a detokeniser drops or merges bytes that are not UTF-8, which
a small or random model emits), so the share of prompts whose text equals transformers' greedy text
is recorded (``load_parity``, the report's Greedy parity) and not used as a gate: the token-level
gate is the same runtime through its bindings behind our server (engine ``llamacpp`` on the same
GGUF).

What this process cannot see is unavailable, not invented: it does not count the requests (the
runtime's server answers them), and the per-token timings inside the server are the runtime's own.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.engines.base import EngineError
from harness.progress import report
from harness.protocol import Emitter, ServeSpec
from harness.serving.formats import OWN_SERVER_REQUEST
from harness.serving.gguf_export import GGUF_FILE
from harness.serving.lm import REFERENCE_FILE


def _threads(spec: ServeSpec) -> int:
    value = spec.options.get("threads") or spec.options.get("intra_op_threads")
    return int(value) if value else len(os.sched_getaffinity(0))


def _llamacpp_command(spec: ServeSpec, port: int) -> list[str]:
    """llama-cpp-python's server as it is deployed for a benchmark. By default it cuts a stream short
    (``[DONE]`` without a finish reason) as soon as another request waits (``interrupt_requests``):
    under concurrent load every stream but the last would end after a token or two. Off, requests
    wait their turn: its server generates one at a time (a lock around its one ``Llama``)."""
    folder = str(spec.artifact_path)
    with open(os.path.join(folder, "config.json")) as fh:
        config = json.load(fh)
    positions = config.get("n_positions") or config.get("max_position_embeddings") or 4096
    threads = _threads(spec)
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", os.path.join(folder, GGUF_FILE),
        "--model_alias", spec.model,
        "--host", spec.host,
        "--port", str(port),
        "--n_ctx", str(int(spec.options.get("context") or min(positions, 4096))),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--interrupt_requests", "false",
        "--verbose", "false",
    ]  # fmt: skip


def _vllm_command(spec: ServeSpec, port: int) -> list[str]:
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", spec.model_path,
        "--served-model-name", spec.model,
        "--host", spec.host,
        "--port", str(port),
        "--seed", str(spec.seed),
        "--generation-config", "vllm",  # vLLM's own sampling defaults, not the model folder's
    ]  # fmt: skip
    if spec.options.get("max_model_len"):
        argv += ["--max-model-len", str(spec.options["max_model_len"])]
    if spec.options.get("gpu_memory_utilization"):
        argv += ["--gpu-memory-utilization", str(spec.options["gpu_memory_utilization"])]
    return argv


# engine -> (the server's command, its package); the request fields each needs: OWN_SERVER_REQUEST
OWN_SERVERS: dict[str, tuple[Callable[[ServeSpec, int], list[str]], str]] = {
    "llamacpp-server": (_llamacpp_command, "llama_cpp_python"),
    "vllm": (_vllm_command, "vllm"),
}
# engine -> (requests its server generates at once, None: as many as it batches; why)
GENERATION_CONCURRENCY: dict[str, tuple[int | None, str]] = {
    "llamacpp-server": (
        1,
        "llama-cpp-python's server generates one request at a time (a lock around its one Llama); the others "
        "wait (--interrupt_requests false)",
    ),
    "vllm": (None, "vLLM batches the requests in flight (continuous batching)"),
}


def _request(host: str, port: int, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data or b"null")
        except ValueError:
            return resp.status, data.decode("utf-8", "replace")
    finally:
        conn.close()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Control(ThreadingHTTPServer):
    daemon_threads = True
    ready = False
    stop = threading.Event()


def _control_server(host: str, port: int) -> _Control:
    class Handler(BaseHTTPRequestHandler):
        server: _Control

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                self._send(200, {"status": "alive"})
            elif self.path == "/ready":
                self._send(200 if self.server.ready else 503, {"status": "ready" if self.server.ready else "loading"})
            else:
                self._send(404, {"error": "the runtime's own server answers the API on the other port"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path == "/shutdown":
                self._send(200, {"status": "stopping"})
                self.server.stop.set()
            else:
                self._send(404, {"error": "not here"})

        def log_message(self, *args: Any) -> None:
            pass

    control = _Control((host, port), Handler)
    control.stop = threading.Event()
    threading.Thread(target=control.serve_forever, name="joulebench-control", daemon=True).start()
    return control


def _check_parity(spec: ServeSpec, host: str, port: int, greedy: dict[str, Any]) -> dict[str, Any]:
    """The reference prompts, as text, through the runtime's own completions; its text against transformers'
    (both without U+FFFD: what each detokeniser does with bytes that are not UTF-8 differs)."""
    from tokenizers import Tokenizer

    folder = str(spec.artifact_path)  # the export: its tokenizer and transformers' reference tokens
    try:
        tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, REFERENCE_FILE)) as fh:
            cases = json.load(fh)
    except (OSError, ValueError, Exception) as exc:  # noqa: BLE001 - tokenizers raises its own Exception
        raise EngineError(f"{folder} is not a complete export ({exc}): delete it to export again") from None
    agree = 0
    for k, case in enumerate(cases):
        report(f"{spec.engine}'s server: the reference prompts (greedy parity)", k, len(cases), "prompts")
        prompt = tokenizer.decode(case["prompt_ids"], skip_special_tokens=False)
        want = tokenizer.decode(case["reference_tokens"], skip_special_tokens=True)
        body = {"model": spec.model, "prompt": prompt, "max_tokens": len(case["reference_tokens"]), **greedy}
        status, out = _request(host, port, "POST", "/v1/completions", body, 300.0)
        try:
            text = str(out["choices"][0]["text"]) if status == 200 else None
        except (TypeError, KeyError, IndexError):
            text = None
        if text is None:
            raise EngineError(f"{spec.engine}'s server answered {status} to a reference prompt: {str(out)[:200]}")
        agree += text.replace("\ufffd", "") == want.replace("\ufffd", "")
    return {
        "prompts": len(cases),
        "greedy_text_agreement": agree / len(cases) if cases else None,
        "token_agreement": None,  # the runtime's server returns text, not token ids
        "gated": False,
        "checked": "text of the runtime's own /v1/completions (temperature 0) against the text of transformers' "
        "greedy tokens; recorded, not a gate (text hides token differences and byte-level noise)",
    }


def _die_with_parent() -> None:
    """In the runtime's server, before exec: SIGTERM when this harness dies, however it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait_answering(proc: subprocess.Popen[bytes], spec: ServeSpec, port: int) -> None:
    """Until the runtime's server answers GET /v1/models; EngineError when it exits first."""
    while True:
        if proc.poll() is not None:
            raise EngineError(f"{spec.engine}'s server exited with code {proc.returncode} before it was ready")
        try:
            if _request(spec.host, port, "GET", "/v1/models", None, 2.0)[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)  # well inside the controller's 30 s for the whole shutdown
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_own(spec: ServeSpec, emit: Emitter) -> dict[str, Any]:
    command, package = OWN_SERVERS[spec.engine]
    greedy = {"temperature": 0.0, **OWN_SERVER_REQUEST[spec.engine]}
    t_load = emit.event("load", "start")
    port = spec.port or _free_port(spec.host)
    argv = command(spec, port)
    control: _Control | None = None

    def on_term(signum: int, frame: Any) -> None:
        """docker stop, or a SIGTERM to the harness: stop serving and report; before ready, just stop."""
        if control is not None and control.ready:
            control.stop.set()
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    proc = subprocess.Popen(  # stdout carries the protocol: the server's output goes to stderr
        argv, stdin=subprocess.DEVNULL, stdout=2, stderr=2, preexec_fn=_die_with_parent
    )
    try:
        report(f"starting {spec.engine}'s server and loading the model")
        _wait_answering(proc, spec, port)
        parity = _check_parity(spec, spec.host, port, greedy)
        try:
            control = _control_server(spec.host, spec.control_port)
        except OSError as exc:
            raise EngineError(f"the control port {spec.host}:{spec.control_port} cannot be bound: {exc}") from None
        control.ready = True
        load_s = (time.monotonic_ns() - t_load) / 1e9
        emit.event("load", "end", host=spec.host, port=port, control_port=control.server_address[1], load_s=load_s)
        while not control.stop.wait(0.5):
            if proc.poll() is not None:
                raise EngineError(f"{spec.engine}'s server exited with code {proc.returncode} while serving")
    finally:
        _stop(proc)
        if control is not None:
            control.shutdown()
    versions = {}
    for name in (package, "tokenizers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "engine": spec.engine,
        "provider": spec.provider,
        "providers_active": [spec.provider],
        "load_s": load_s,
        "generation": {
            "kv_cache": True,
            "kv_cache_reason": None,
            "decoding": f"the runtime's own sampling with {json.dumps(greedy)} in every request",
            "streaming": "the runtime's own server-sent events",
            "load_parity": parity,
            "quantization": (spec.options.get("quant") or "f16") if spec.engine == "llamacpp-server" else None,
        },
        "server": {
            "framework": f"{spec.engine}'s own OpenAI-compatible server",
            "own": True,
            "command": argv,
            "bound": f"{spec.host}:{port}",
            "requests_served": "unavailable: the runtime's server answers the requests, not this process",
            "generation_concurrency": GENERATION_CONCURRENCY[spec.engine][0],
            "generation_concurrency_basis": GENERATION_CONCURRENCY[spec.engine][1],
            "token_times": "unavailable: the runtime's server does not say when it made each token",
        },
        "versions": versions,
    }
