"""The model server: FastAPI on uvicorn, one model loaded through its engine before it is ready.

Endpoints::

    GET  /health     liveness: {"status": "alive"}
    GET  /ready      200 {"status": "ready", ...} once the model is loaded (503 before)
    POST /generate   {"prompt", "max_new_tokens", "greedy": true} ->
                     {"text", "prompt_tokens", "new_tokens", "token_ids", "timings_ms": {...}}
    POST /shutdown   stop serving; the harness then sends its result and exits 0

Generations run one at a time (a lock; no batching), as a single-model server of the paper does;
concurrent clients queue. The socket is bound before the load phase ends so the ``load`` end event
can carry the real port (port 0 in the spec: an ephemeral one).

Fault injection for tests of the controller's failure paths (recorded in the spec's options):
``fault_exit_after=N`` exits the process abruptly on request N+1; ``fault_hang_after=N`` never
answers request N+1.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation at runtime, and the model class is local to serve() (pydantic is imported lazily).
import os
import socket
import threading
import time
from typing import Any

from harness.protocol import Emitter, ServeSpec
from harness.serving.lm import language_model


def serve(spec: ServeSpec, emit: Emitter) -> dict[str, Any]:
    import uvicorn
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field

    t_load = emit.event("load", "start")
    lm = language_model(spec)
    lm.load()
    sock = socket.socket(socket.AF_INET6 if ":" in spec.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((spec.host, spec.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    load_s = (time.monotonic_ns() - t_load) / 1e9

    class GenerateRequest(BaseModel):
        prompt: str
        max_new_tokens: int = Field(default=32, ge=1)
        greedy: bool = True

    state = {"served": 0, "generate_ms": 0.0, "ready": False}
    lock = threading.Lock()
    exit_after = int(spec.options.get("fault_exit_after", -1))
    hang_after = int(spec.options.get("fault_hang_after", -1))
    app = FastAPI(title="joulebench model server")
    server: uvicorn.Server | None = None

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "alive"}

    @app.get("/ready")
    def ready() -> dict[str, Any]:
        if not state["ready"]:
            raise HTTPException(503, "model not loaded")
        return {"status": "ready", "engine": spec.engine, "provider": spec.provider, "model": spec.model}

    @app.post("/generate")
    def generate(req: GenerateRequest) -> dict[str, Any]:
        if not req.greedy:
            raise HTTPException(422, "only greedy decoding is served (greedy: true)")
        if req.max_new_tokens > spec.max_new_tokens_limit:
            raise HTTPException(422, f"max_new_tokens over this server's limit {spec.max_new_tokens_limit}")
        with lock:
            if state["served"] == exit_after:
                os._exit(70)
            if state["served"] == hang_after:
                threading.Event().wait()
            try:
                gen = lm.generate(req.prompt, req.max_new_tokens)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
            state["served"] += 1
            state["generate_ms"] += gen.generate_ms
        return {
            "text": gen.text,
            "prompt_tokens": gen.prompt_tokens,
            "new_tokens": len(gen.token_ids),
            "token_ids": gen.token_ids,
            "timings_ms": {
                "tokenize": gen.tokenize_ms,
                "generate": gen.generate_ms,
                "decode": gen.decode_ms,
                "total": gen.tokenize_ms + gen.generate_ms + gen.decode_ms,
            },
        }

    @app.post("/shutdown")
    def shutdown() -> dict[str, Any]:
        assert server is not None
        server.should_exit = True
        return {"status": "shutting down"}

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    state["ready"] = True
    emit.event("load", "end", host=spec.host, port=port, load_s=load_s)
    server.run(sockets=[sock])
    return {
        "engine": spec.engine,
        "provider": spec.provider,
        "providers_active": lm.providers_active(),
        "load_s": load_s,
        "requests_served": int(state["served"]),
        "server_generate_ms_total": float(state["generate_ms"]),
        "generation": lm.describe(),
        "server": {
            "framework": "fastapi+uvicorn",
            "workers": 1,
            "generation_concurrency": 1,
            "bound": f"{spec.host}:{port}",
        },
        "versions": lm.versions(),
    }
