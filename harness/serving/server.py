"""The model server: FastAPI on uvicorn, one model loaded through its engine before it is ready.

Endpoints::

    GET  /health           liveness: {"status": "alive"}
    GET  /ready            200 {"status": "ready", ...} once the model is loaded (503 before)
    GET  /v1/models        OpenAI-compatible: the one model served, by its label
    POST /v1/completions   OpenAI-compatible completions, greedy only (temperature 0 or absent);
                           ``stream: true`` sends one server-sent event per generated token, the last
                           token's with its finish_reason, then one without choices (``usage`` when
                           ``stream_options.include_usage``; our ``timings`` always), then [DONE].
                           Extensions as vLLM spells them: ``ignore_eos``, ``return_token_ids``.
    POST /generate         {"prompt", "max_new_tokens", "greedy": true} ->
                           {"text", "prompt_tokens", "new_tokens", "token_ids", "timings_ms": {...}}
    POST /shutdown         stop serving; the harness then sends its result and exits 0

Generations run one at a time (no batching), as a single-model server of the paper does, on one
generation thread; requests queue for it in arrival order. The generation thread only hands each
token to the event loop (``call_soon_threadsafe``); detokenising, formatting and writing events
happen on the event loop, so streaming costs the generation nothing but that hand-off. A client that
disconnects cancels its generation at the next token. The socket is bound before the load phase ends
so the ``load`` end event can carry the real port (port 0 in the spec: an ephemeral one).

Fault injection for tests of the controller's failure paths (recorded in the spec's options):
``fault_exit_after=N`` exits the process abruptly when generation N+1 starts; ``fault_hang_after=N``
never finishes generation N+1.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation at runtime, and the model class is local to serve() (pydantic is imported lazily).
import asyncio
import json
import os
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.protocol import Emitter, ServeSpec
from harness.serving.lm import Generation, LanguageModel, language_model
from harness.serving.openai import ApiError, CompletionRequest, Detokenizer, completion_chunk, parse_completion


class Cancelled(Exception):
    """The client went away: stop generating for it."""


@dataclass
class Job:
    prompt: str | list[int]
    max_tokens: int
    ignore_eos: bool = False
    on_token: Callable[[int], None] | None = None
    on_done: Callable[[Generation | None, BaseException | None], None] = lambda g, e: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    t_submit_ns: int = field(default_factory=time.perf_counter_ns)
    t_start_ns: int = 0
    t_first_ns: int = 0


class GenerationThread:
    """Runs jobs one at a time, in submission order, on its own thread."""

    def __init__(self, lm: LanguageModel, options: dict[str, Any]) -> None:
        self.lm = lm
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.served = 0
        self.generate_ms = 0.0
        self.exit_after = int(options.get("fault_exit_after", -1))
        self.hang_after = int(options.get("fault_hang_after", -1))
        self.thread = threading.Thread(target=self._loop, name="joulebench-generation", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def stop(self) -> None:
        self.jobs.put(None)

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancelled.is_set():
                continue
            if self.served == self.exit_after:
                os._exit(70)
            if self.served == self.hang_after:
                threading.Event().wait()
            self._run(job)

    def _run(self, job: Job) -> None:
        def on_token(token: int) -> None:
            if job.cancelled.is_set():
                raise Cancelled
            if not job.t_first_ns:
                job.t_first_ns = time.perf_counter_ns()
            if job.on_token is not None:
                job.on_token(token)

        job.t_start_ns = time.perf_counter_ns()
        try:
            gen = self.lm.generate(job.prompt, job.max_tokens, on_token, job.ignore_eos)
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - the request fails, the server goes on
            job.on_done(None, exc)
            return
        self.served += 1
        self.generate_ms += gen.generate_ms
        job.on_done(gen, None)


def timings_ms(job: Job, gen: Generation, tokenize_ms: float = 0.0) -> dict[str, float]:
    """Where a request's time went on the server (ms): queued, tokenize, first token, generate, decode."""
    return {
        "queue": (job.t_start_ns - job.t_submit_ns) / 1e6,
        "tokenize": gen.tokenize_ms + tokenize_ms,
        "first_token": (job.t_first_ns - job.t_start_ns) / 1e6 if job.t_first_ns else 0.0,
        "generate": gen.generate_ms,
        "decode": gen.decode_ms,
        "total": gen.tokenize_ms + tokenize_ms + gen.generate_ms + gen.decode_ms,
    }


class Service:
    """What the endpoints do, apart from FastAPI: one model, its generation thread, response bodies."""

    def __init__(self, spec: ServeSpec, lm: LanguageModel) -> None:
        self.spec, self.lm = spec, lm
        self.worker = GenerationThread(lm, spec.options)
        self.created = int(time.time())
        self.ready = False
        self.count = 0

    async def run(self, job: Job) -> Generation:
        """Generate on the generation thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Generation] = loop.create_future()

        def done(gen: Generation | None, exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, gen, exc)

        job.on_done = done
        self.worker.submit(job)
        try:
            return await future
        finally:
            job.cancelled.set()

    def models(self) -> dict[str, Any]:
        entry = {"id": self.spec.model, "object": "model", "created": self.created, "owned_by": "joulebench"}
        return {"object": "list", "data": [entry]}

    async def completion(self, raw: bytes) -> tuple[int, Any]:
        """(status, JSON body) or (200, an async iterator of server-sent events)."""
        try:
            req = parse_completion(raw, self.spec.model, self.spec.max_new_tokens_limit)
            t0 = time.perf_counter_ns()
            ids = self.lm.encode(req.prompt) if isinstance(req.prompt, str) else req.prompt
            self.lm.check_length(len(ids), req.max_tokens)
        except ApiError as exc:
            return exc.status, exc.body()
        except ValueError as exc:
            return 400, ApiError(400, str(exc), "prompt").body()
        tokenize_ms = (time.perf_counter_ns() - t0) / 1e6
        self.count += 1
        head = {
            "id": f"cmpl-{self.spec.run_id}-{self.count}",
            "object": "text_completion",
            "created": self.created,
            "model": self.spec.model,
        }
        if req.stream:
            return 200, _events(self.lm, self.worker, req, ids, head, tokenize_ms)
        job = Job(ids, req.max_tokens, req.ignore_eos)
        try:
            gen = await self.run(job)
        except Exception as exc:  # noqa: BLE001 - an engine error is this request's, reported as such
            return 500, ApiError(500, f"{type(exc).__name__}: {exc}", None, "server_error").body()
        choice: dict[str, Any] = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}
        if req.return_token_ids:
            choice["token_ids"] = gen.token_ids
        return 200, {**head, "choices": [choice], "usage": _usage(gen), "timings": timings_ms(job, gen, tokenize_ms)}

    async def generate(self, prompt: str, max_new_tokens: int) -> dict[str, Any]:
        """/generate: raises ValueError for a prompt the model cannot take."""
        job = Job(prompt, max_new_tokens)
        gen = await self.run(job)
        return {
            "text": gen.text,
            "prompt_tokens": gen.prompt_tokens,
            "new_tokens": len(gen.token_ids),
            "token_ids": gen.token_ids,
            "timings_ms": timings_ms(job, gen),
        }


def build_app(service: Service, shutdown: Callable[[], None]) -> Any:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, Field

    spec = service.spec
    app = FastAPI(title="joulebench model server")

    class GenerateRequest(BaseModel):
        prompt: str
        max_new_tokens: int = Field(default=32, ge=1)
        greedy: bool = True

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "alive"}

    @app.get("/ready")
    def ready() -> dict[str, Any]:
        if not service.ready:
            raise HTTPException(503, "model not loaded")
        return {"status": "ready", "engine": spec.engine, "provider": spec.provider, "model": spec.model}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return service.models()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        status, body = await service.completion(await request.body())
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status)
        return StreamingResponse(body, media_type="text/event-stream")

    @app.post("/generate")
    async def generate(req: GenerateRequest) -> dict[str, Any]:
        if not req.greedy:
            raise HTTPException(422, "only greedy decoding is served (greedy: true)")
        if req.max_new_tokens > spec.max_new_tokens_limit:
            raise HTTPException(422, f"max_new_tokens over this server's limit {spec.max_new_tokens_limit}")
        try:
            return await service.generate(req.prompt, req.max_new_tokens)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/shutdown")
    def stop() -> dict[str, Any]:
        shutdown()
        return {"status": "shutting down"}

    return app


def serve(spec: ServeSpec, emit: Emitter) -> dict[str, Any]:
    import uvicorn

    t_load = emit.event("load", "start")
    lm = language_model(spec)
    lm.load()
    sock = socket.socket(socket.AF_INET6 if ":" in spec.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((spec.host, spec.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    load_s = (time.monotonic_ns() - t_load) / 1e9
    service = Service(spec, lm)
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        assert server is not None
        server.should_exit = True

    app = build_app(service, shutdown)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    service.ready = True
    emit.event("load", "end", host=spec.host, port=port, load_s=load_s)
    server.run(sockets=[sock])
    service.worker.stop()
    return {
        "engine": spec.engine,
        "provider": spec.provider,
        "providers_active": lm.providers_active(),
        "load_s": load_s,
        "requests_served": service.worker.served,
        "server_generate_ms_total": service.worker.generate_ms,
        "generation": lm.describe(),
        "server": {
            "framework": "fastapi+uvicorn",
            "workers": 1,
            "generation_concurrency": 1,
            "bound": f"{spec.host}:{port}",
            "api": ["/generate", "/v1/completions (stream: true|false)", "/v1/models"],
        },
        "versions": lm.versions(),
    }


def _settle(future: "asyncio.Future[Generation]", gen: Generation | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert gen is not None
        future.set_result(gen)


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": len(gen.token_ids),
        "total_tokens": gen.prompt_tokens + len(gen.token_ids),
    }


async def _events(
    lm: LanguageModel,
    worker: GenerationThread,
    req: CompletionRequest,
    ids: list[int],
    head_fields: dict[str, Any],
    tokenize_ms: float,
) -> AsyncIterator[str]:
    """The server-sent events of one streamed completion: one per token, then the summary, [DONE]."""
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[int | None] = asyncio.Queue()  # None: the generation ended
    future: asyncio.Future[Generation] = loop.create_future()

    def done(gen: Generation | None, exc: BaseException | None) -> None:
        _settle(future, gen, exc)
        tokens.put_nowait(None)

    def on_token(token: int) -> None:
        loop.call_soon_threadsafe(tokens.put_nowait, token)

    def on_done(gen: Generation | None, exc: BaseException | None) -> None:
        loop.call_soon_threadsafe(done, gen, exc)

    job = Job(ids, req.max_tokens, req.ignore_eos, on_token, on_done)
    detok = Detokenizer(lm.decode, ids)
    eos = set() if req.ignore_eos else lm.eos_ids
    head = "data: " + json.dumps(head_fields, separators=(",", ":"))[:-1]
    worker.submit(job)
    try:
        n = 0
        while (token := await tokens.get()) is not None:
            n += 1
            last = n == req.max_tokens or token in eos
            text = detok.add(token) + (detok.flush() if last else "")
            finish = ("stop" if token in eos else "length") if last else None
            yield completion_chunk(head, text, finish, token if req.return_token_ids else None)
        try:
            gen = await future
        except Exception as exc:  # noqa: BLE001 - reported in the stream, as OpenAI-compatible servers do
            error = ApiError(500, f"{type(exc).__name__}: {exc}", None, "server_error").body()
            yield "data: " + json.dumps(error) + "\n\n"
            return
        summary: dict[str, Any] = {"choices": [], "timings": timings_ms(job, gen, tokenize_ms)}
        if req.include_usage:
            summary["usage"] = _usage(gen)
        yield head + "," + json.dumps(summary, separators=(",", ":"))[1:] + "\n\n"
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()
