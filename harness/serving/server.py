"""The model server: FastAPI on uvicorn in front of one model, loaded through its engine before ready.

Endpoints::

    GET  /health           liveness: {"status": "alive"}
    GET  /ready            200 {"status": "ready", ...} once the model is loaded (503 before)
    GET  /v1/models        OpenAI-compatible: the one model served, by its label
    POST /v1/completions   OpenAI-compatible completions, greedy only (temperature 0 or absent);
                           ``stream: true`` sends one server-sent event per generated token, the last
                           token's with its finish_reason, then one without choices (``usage`` when
                           ``stream_options.include_usage``; our ``timings`` and ``engine_token_ns``,
                           when the engine made each token, always), then [DONE].
                           Extensions as vLLM spells them: ``ignore_eos``, ``return_token_ids``.
    POST /generate         {"prompt", "max_new_tokens", "greedy": true} ->
                           {"text", "prompt_tokens", "new_tokens", "token_ids", "timings_ms": {...}}
    POST /shutdown         stop serving; the harness then sends its result and exits 0

Generations run one at a time (no batching), as a single-model server of the paper does, in the
generation process (:mod:`harness.serving.worker`, the engine alone in it); requests queue for it in
arrival order. This process tokenizes prompts, hands jobs over and turns each token the generation
process writes to the pipe into an event for its client (detokenised here), so streaming costs the
generation one clock read and one pipe write per token; this process runs as SCHED_BATCH, so that
a token it is woken for does not stop the engine (:func:`_yield_to_the_engine`). The generation
process says when it made each token (``engine_token_ns``), and the client keeps those times
beside its own. A client that disconnects cancels its generation within a few ms. When the
generation process dies, the server exits with its exit code. The socket is bound
before the load phase ends so the ``load`` end event can carry the real port (port 0 in the spec:
an ephemeral one).
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation at runtime, and the model class is local to build_app() (pydantic is imported lazily).
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.engines.base import EngineError
from harness.progress import report
from harness.protocol import Emitter, ServeSpec
from harness.serving.lm import Generation, LanguageModel
from harness.serving.openai import ApiError, CompletionRequest, Detokenizer, completion_chunk, parse_completion
from harness.serving.registry import language_model


@dataclass
class Job:
    ids: list[int]
    max_tokens: int
    ignore_eos: bool = False
    tokenize_ms: float = 0.0
    on_token: Callable[[int], None] | None = None  # called on the event loop
    on_done: Callable[[Generation | None, BaseException | None], None] = lambda g, e: None
    t_submit_ns: int = field(default_factory=time.monotonic_ns)
    id: int = 0
    times: dict[str, int] = field(default_factory=dict)  # the generation process's start/first/end
    token_ns: list[int] = field(default_factory=list)  # when the engine handed out each token


class GenerationProcess:
    """The generation process, its two pipes, and the jobs it has been given."""

    def __init__(self, spec: ServeSpec, lm: LanguageModel) -> None:
        self.lm = lm
        job_r, self.job_w = os.pipe()
        self.event_r, event_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.serving.worker", "--spec", spec.to_json()]
            + ["--jobs", str(job_r), "--events", str(event_w)],
            pass_fds=(job_r, event_w),
            stdin=subprocess.DEVNULL,
            stdout=2,  # this process's stdout carries the protocol
        )
        os.close(job_r)
        os.close(event_w)
        self.buffer = b""
        self.jobs: dict[int, Job] = {}
        self.count = 0
        self.served = 0
        self.generate_ms = 0.0
        self.free_ns = 0  # when the engine finished its last job (it generates one at a time, in order)
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        """Block until the engine loaded (its description) or could not (EngineError); the progress
        it reports while loading is passed on."""
        while True:
            while b"\n" not in self.buffer:
                data = os.read(self.event_r, 1 << 16)
                if not data:
                    raise EngineError(f"the generation process exited with code {self.proc.wait()} while loading")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\n", 1)
            kind, _, payload = line.decode().partition(" ")
            if kind != "p":
                break
            report(**json.loads(payload))
        if kind != "r":
            raise EngineError(json.loads(payload))
        self.info = json.loads(payload)
        return self.info

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.event_r, self._readable)

    def submit(self, job: Job) -> None:
        self.count += 1
        job.id = self.count
        self.jobs[job.id] = job
        body = {"id": job.id, "ids": job.ids, "max_tokens": job.max_tokens, "ignore_eos": job.ignore_eos}
        os.write(self.job_w, b"j " + json.dumps(body).encode() + b"\n")

    def cancel(self, job: Job) -> None:
        if job.id in self.jobs:
            os.write(self.job_w, b"c %d\n" % job.id)

    def _readable(self) -> None:
        data = os.read(self.event_r, 1 << 16)
        if not data:
            code = self.proc.wait()
            print(f"error: the generation process exited with code {code}", file=sys.stderr, flush=True)
            os._exit(code if code > 0 else 70)
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            self._event(line)

    def _event(self, line: bytes) -> None:
        kind, jid, payload = line.split(b" ", 2)
        job = self.jobs.get(int(jid))
        if job is None:
            return
        if kind == b"t":
            token, t_ns = payload.split(b" ")
            job.token_ns.append(int(t_ns))
            if job.on_token is not None:
                job.on_token(int(token))
            return
        del self.jobs[job.id]
        if kind == b"e":
            self.free_ns = time.monotonic_ns()
            job.on_done(None, RuntimeError(json.loads(payload)))
            return
        done = json.loads(payload)
        job.times = {k: done[k] for k in ("start_ns", "first_ns", "end_ns")} | {"free_ns": self.free_ns}
        self.free_ns = done["end_ns"]
        self.served += 1
        gen = self.generation(job, done["token_ids"])
        self.generate_ms += gen.generate_ms
        job.on_done(gen, None)

    def generation(self, job: Job, new: list[int]) -> Generation:
        stopped = not job.ignore_eos and bool(new) and new[-1] in self.lm.eos_ids
        generate_ms = (job.times["end_ns"] - job.times["start_ns"]) / 1e6
        return Generation("", len(job.ids), new, job.tokenize_ms, generate_ms, 0.0, "stop" if stopped else "length")

    def stop(self) -> None:
        try:
            os.write(self.job_w, b"q\n")
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # a hung generation (fault_hang_after) does not read
            self.proc.kill()
            self.proc.wait()


def timings_ms(job: Job, gen: Generation) -> dict[str, float]:
    """Where a request's time went on the server (ms): queued (waiting for the engine to finish the
    requests ahead), dispatch (the rest of the wait: the hand-over to the generation process),
    tokenize, first token, generate, decode."""
    t = job.times
    waited = (t["start_ns"] - job.t_submit_ns) / 1e6
    queue = min(waited, max(0.0, (t.get("free_ns", 0) - job.t_submit_ns) / 1e6))
    return {
        "queue": queue,
        "dispatch": waited - queue,
        "tokenize": gen.tokenize_ms,
        "first_token": (t["first_ns"] - t["start_ns"]) / 1e6 if t.get("first_ns") else 0.0,
        "generate": gen.generate_ms,
        "decode": gen.decode_ms,
        "total": gen.tokenize_ms + gen.generate_ms + gen.decode_ms,
    }


class Service:
    """What the endpoints do, apart from FastAPI: the tokenizer here, the model in the generation process."""

    def __init__(self, spec: ServeSpec, lm: LanguageModel, generator: GenerationProcess) -> None:
        self.spec, self.lm, self.generator = spec, lm, generator
        self.created = int(time.time())
        self.ready = False
        self.count = 0

    async def run(self, job: Job) -> Generation:
        """Generate without blocking the event loop; the text is decoded here."""
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        job.on_done = lambda gen, exc: _settle(future, gen, exc)
        self.generator.submit(job)
        try:
            gen = await future
        finally:
            self.generator.cancel(job)
        t0 = time.perf_counter_ns()
        gen.text = self.lm.decode(gen.token_ids)
        gen.decode_ms = (time.perf_counter_ns() - t0) / 1e6
        return gen

    def job(self, prompt: str | list[int], max_tokens: int, ignore_eos: bool = False) -> Job:
        """The job of a prompt (ValueError when the model cannot take it)."""
        t0 = time.perf_counter_ns()
        ids = self.lm.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.lm.check_length(len(ids), max_tokens)
        return Job(ids, max_tokens, ignore_eos, (time.perf_counter_ns() - t0) / 1e6)

    def models(self) -> dict[str, Any]:
        entry = {"id": self.spec.model, "object": "model", "created": self.created, "owned_by": "joulebench"}
        return {"object": "list", "data": [entry]}

    async def completion(self, raw: bytes) -> tuple[int, Any]:
        """(status, JSON body) or (200, an async iterator of server-sent events)."""
        try:
            req = parse_completion(raw, self.spec.model, self.spec.max_new_tokens_limit)
            job = self.job(req.prompt, req.max_tokens, req.ignore_eos)
        except ApiError as exc:
            return exc.status, exc.body()
        except ValueError as exc:
            return 400, ApiError(400, str(exc), "prompt").body()
        self.count += 1
        head = {
            "id": f"cmpl-{self.spec.run_id}-{self.count}",
            "object": "text_completion",
            "created": self.created,
            "model": self.spec.model,
        }
        if req.stream:
            return 200, _events(self.lm, self.generator, req, job, head)
        try:
            gen = await self.run(job)
        except Exception as exc:  # noqa: BLE001 - an engine error is this request's, reported as such
            return 500, ApiError(500, str(exc), None, "server_error").body()
        choice: dict[str, Any] = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}
        if req.return_token_ids:
            choice["token_ids"] = gen.token_ids
        return 200, {**head, "choices": [choice], "usage": _usage(gen), "timings": timings_ms(job, gen)}

    async def generate(self, prompt: str, max_new_tokens: int) -> dict[str, Any]:
        """/generate: raises ValueError for a prompt the model cannot take."""
        job = self.job(prompt, max_new_tokens)
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
    lm.load_tokenizer()
    generator = GenerationProcess(spec, lm)
    scheduling = _yield_to_the_engine()
    try:
        info = generator.wait_ready()
    except EngineError:
        generator.proc.wait()
        raise
    sock = socket.socket(socket.AF_INET6 if ":" in spec.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((spec.host, spec.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    load_s = (time.monotonic_ns() - t_load) / 1e9
    service = Service(spec, lm, generator)
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        assert server is not None
        server.should_exit = True

    config = uvicorn.Config(
        build_app(service, shutdown), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        generator.attach(loop)
        service.ready = True
        emit.event("load", "end", host=spec.host, port=port, load_s=load_s)
        await server.serve(sockets=[sock])
        loop.remove_reader(generator.event_r)

    try:
        asyncio.run(run())
    finally:
        generator.stop()
    return {
        "engine": spec.engine,
        "provider": spec.provider,
        "providers_active": info["providers_active"],
        "load_s": load_s,
        "requests_served": generator.served,
        "server_generate_ms_total": generator.generate_ms,
        "generation": info["generation"]
        | {"process": "the engine in a process of its own; tokens reach the HTTP server through a pipe"},
        "server": {
            "framework": "fastapi+uvicorn",
            "workers": 1,
            "generation_concurrency": 1,
            "generation_concurrency_basis": "one generation process generating one request at a time; the others "
            "queue in arrival order (timings.queue)",
            "token_times": "engine_token_ns in each stream's last event: when the generation process made each token",
            "scheduling": scheduling,
            "bound": f"{spec.host}:{port}",
            "api": ["/generate", "/v1/completions (stream: true|false)", "/v1/models"],
        },
        "versions": info["versions"],
    }


def _yield_to_the_engine() -> str:
    """This process (not the generation process, started before) as SCHED_BATCH: woken by a token in
    the pipe, it does not preempt the engine that wrote it, it takes a CPU that is free (or its turn).
    Without it, on a host with no CPU free the generation stopped at each token for this process's
    events (measured on two busy cores: +20 % of the engine's CPU time per token, twice the HTTP time)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError) as exc:
        return f"SCHED_OTHER (SCHED_BATCH refused: {exc})"
    return "SCHED_BATCH: a token does not preempt the generation process to be sent"


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
    lm: LanguageModel, generator: GenerationProcess, req: CompletionRequest, job: Job, head_fields: dict[str, Any]
) -> AsyncIterator[str]:
    """The server-sent events of one streamed completion: one per token, then the summary, [DONE].

    Each token is one event, sent as soon as this process has it. The tokens the pipe brought
    together (the generation ran ahead while this process waited for a CPU) go out in one write,
    still one event each: sending them one write at a time would only make this process later.
    """
    arrived: list[int | None] = []  # None: the generation ended
    ready = asyncio.Event()
    future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()

    def take(token: int | None) -> None:
        arrived.append(token)
        ready.set()

    def done(gen: Generation | None, exc: BaseException | None) -> None:
        _settle(future, gen, exc)
        take(None)

    job.on_token = take
    job.on_done = done
    detok = Detokenizer(lm.decode, job.ids)
    eos = set() if req.ignore_eos else lm.eos_ids
    head = "data: " + json.dumps(head_fields, separators=(",", ":"))[:-1]
    generator.submit(job)
    try:
        n, ended, finished = 0, False, False
        while not ended:
            await ready.wait()
            ready.clear()
            batch, arrived[:] = arrived[:], []
            events = []
            for token in batch:
                if token is None:
                    ended = True
                    break
                n += 1
                last = n == req.max_tokens or token in eos
                text = detok.add(token) + (detok.flush() if last else "")
                finish = ("stop" if token in eos else "length") if last else None
                finished = finish is not None
                events.append(completion_chunk(head, text, finish, token if req.return_token_ids else None))
            if events:
                yield "".join(events)
        if not finished and future.done() and future.exception() is None:
            # the engine stopped before max_tokens on its own: the stream still says how it ended
            yield completion_chunk(head, detok.flush(), "stop" if n < req.max_tokens else "length", None)
        try:
            gen = await future
        except Exception as exc:  # noqa: BLE001 - reported in the stream, as OpenAI-compatible servers do
            error = ApiError(500, str(exc), None, "server_error").body()
            yield "data: " + json.dumps(error) + "\n\n"
            return
        summary: dict[str, Any] = {"choices": [], "timings": timings_ms(job, gen), "engine_token_ns": job.token_ns}
        if req.include_usage:
            summary["usage"] = _usage(gen)
        yield head + "," + json.dumps(summary, separators=(",", ":"))[1:] + "\n\ndata: [DONE]\n\n"
    finally:
        generator.cancel(job)
