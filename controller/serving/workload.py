"""The serving workload: a model server (harness ``serve``) driven over HTTP, its window measured.

Its steps in the pipeline (``controller/pipeline.py``)::

    plan: validate, load the prompts -> resolve: export for onnxruntime/openvino/torchscript, cached
      -> drive: server start -> wait for /ready (bounded) -> idle + warm-up requests
         -> measure window (the client's monotonic_ns) around the replay of the prompts
         -> idle -> POST /shutdown (killed when it does not exit)

The client is stdlib only; every request is bounded by a timeout. A server that dies, hangs or
answers an error gives a failed record with the reason, and its process or container is always
gone when :meth:`ServingWorkload.drive` returns.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.artifacts import ConversionFailed
from controller.cache import ArtifactCache, Entry
from controller.errors import UserError
from controller.images import get_manifest
from controller.meters import MeterSession
from controller.progress import Progress
from controller.record import Failure, RunRecord
from controller.requests import RunRequest, ServeSettings, positive
from controller.runners.base import Invocation, Mount, Runner
from controller.serving.client import RequestResult, http_json, replay, send_prompt
from controller.serving.export import ensure_export
from controller.serving.metrics import serving_metrics
from controller.serving.server import ServerHandle, wait_ready
from controller.serving.settings import (
    CONTAINER_PORT,
    EXPORT_FORMATS,
    EXPORT_IMAGE,
    EXPORT_MOUNT,
    MODEL_MOUNT,
    PARITY_PROMPTS,
    ServingFailed,
)
from controller.workload import Outcome, Plan, attach_meters
from harness.options import OptionError, check_options
from harness.protocol import SERVE_RESULT_FIELDS, ProtocolError, ServeSpec, parse_stream
from suite.prompts import Prompt, PromptError, load_prompts
from suite.slm_models import ResolvedModel, resolve_model


class ServingWorkload:
    mode = "serving"

    def __init__(self, request: RunRequest) -> None:
        assert isinstance(request.what, ServeSettings)
        self.request = request
        self.what: ServeSettings = request.what
        self.last_phase: str | None = None
        self.engine = ""
        self.fmt: str | None = None
        self.model: ResolvedModel | None = None
        self.prompts: list[Prompt] = []
        self.prompt_info: dict[str, Any] = {}
        self.export: Entry | None = None
        self.results: list[RequestResult] = []

    # -- validate ----------------------------------------------------------------------------

    def plan(self, check_data: bool = True) -> Plan:
        w, s = self.what, self.what.serving
        manifest = get_manifest(w.image)
        self.engine = engine = w.engine or manifest.engines[0]
        if engine not in manifest.engines:
            raise UserError(
                f"image {w.image} does not serve engine {engine!r}; valid engines for it: {', '.join(manifest.engines)}"
            )
        if engine not in EXPORT_FORMATS:
            raise UserError(
                f"engine {engine} cannot serve language models; serving engines: {', '.join(EXPORT_FORMATS)}"
            )
        if manifest.unsupported:
            raise UserError(f"image {w.image} cannot run here: {manifest.unsupported}")
        check_settings(s)
        try:
            check_options(engine, w.options, serving=True)
        except OptionError as exc:
            raise UserError(str(exc)) from None
        try:
            self.model = model = resolve_model(w.model)
            prompts_file = None if s.prompts == "humaneval" else Path(s.prompts)
            self.prompts, self.prompt_info = load_prompts(prompts_file, s.seed, s.limit)
        except (ValueError, PromptError) as exc:
            raise UserError(str(exc)) from None
        self.fmt = EXPORT_FORMATS[engine]
        identity = {
            "model": model.label,
            "model_size": f"category-{model.size_category}" if model.size_category else "n/a",
            "conversion": f"lm2{self.fmt}" if self.fmt else None,
            "weights": "pretrained" if model.source == "hub" else "path",
            "weights_label": None,
        }
        return Plan(manifest, engine, [w.image] + ([EXPORT_IMAGE] if self.fmt else []), identity)

    # -- resolve artifacts -------------------------------------------------------------------

    def resolve(self, runner: Runner, cache: ArtifactCache, record: RunRecord, progress: Progress) -> None:
        assert self.model is not None
        record.serving = self._serving_block()
        if self.fmt is None:
            return
        parity = [p.text for p in self.prompts[:PARITY_PROMPTS]]
        try:
            with progress.step(f"export of {self.model.label} to {self.fmt}"):
                self.export = ensure_export(
                    runner,
                    cache.sub("serving"),
                    self.fmt,
                    self.model,
                    parity,
                    self.request.where.timeout_s,
                    progress.note,
                )
        except ServingFailed as exc:
            raise ConversionFailed(exc.reason) from None
        record.artifact = {"path": str(self.export.folder), **self.export.meta, "reused": self.export.reused}

    def _serving_block(self) -> dict[str, Any]:
        assert self.model is not None
        model = self.model
        return {
            "model": asdict(model) | {"registry": asdict(model.registry) if model.registry else None},
            "prompts": self.prompt_info,
            **{k: v for k, v in asdict(self.what.serving).items() if k not in ("prompts", "limit", "seed")},
            "window": "client-side: time.monotonic_ns() on the host around the replay of the prompt set",
            "requests": [],
        }

    # -- drive -------------------------------------------------------------------------------

    def drive(self, runner: Runner, meters: MeterSession, record: RunRecord, progress: Progress) -> Outcome:
        bind, published = runner.server_address()
        spec, mounts = self._spec(runner, record.run_id, bind, published)
        record.spec = asdict(spec)
        where = self.request.where
        inv = Invocation(
            image=self.what.image,
            argv=["serve", "--spec", spec.to_json()],
            timeout_s=where.timeout_s,
            mounts=mounts,
            env={"HF_HUB_OFFLINE": "1"} if self.model and self.model.source == "folder" else {},
            network=(True if published else "host") if runner.kind == "docker" else False,
            gpu=get_manifest(self.what.image).gpu,
            memory=where.memory,
            pids_limit=where.pids_limit,
            tmp_size=where.tmp_size,
            labels={
                "joulebench.campaign": where.campaign,
                "joulebench.run": record.run_id,
                "joulebench.mode": "serving",
            },
            ports={CONTAINER_PORT: "127.0.0.1"} if published else {},
        )
        server = ServerHandle(runner, inv, lambda w: attach_meters(meters, w), meters.stop, progress)
        progress.note(f"serving {self.what.model} on {self.what.image}/{self.engine} ({runner.kind}) ...")
        client_events: list[dict[str, Any]] = []
        window: tuple[int, int] | None = None
        failure: ServingFailed | None = None
        t0 = time.monotonic()
        try:
            server.start()
            window = self._serve(server, published, client_events, record, progress)
        except ServingFailed as exc:
            failure = exc
        finally:
            server.cleanup()
            assert record.serving is not None
            record.serving["requests"] = [asdict(r) for r in self.results]
        record.elapsed_s = time.monotonic() - t0
        return self._outcome(server, window, failure, client_events)

    def _serve(
        self,
        server: ServerHandle,
        published: bool,
        events: list[dict[str, Any]],
        record: RunRecord,
        progress: Progress,
    ) -> tuple[int, int]:
        """Ready, warm up, measure, cool down, shut down: the measure window."""
        s = self.what.serving
        host = "127.0.0.1"
        self.last_phase = "load"
        port = wait_ready(server, host, published, s.ready_timeout_s)
        assert record.serving is not None
        record.serving["address"] = f"{host}:{port}"
        self.last_phase = "warmup"
        progress.phase("warmup")
        if s.warmup_s:
            _sleep_while_alive(server, s.warmup_s)
        events.append(_event("warmup", "start", requests=s.warmup_requests))
        for i in range(s.warmup_requests):
            r = send_prompt(host, port, i, self.prompts[i % len(self.prompts)], s.max_new_tokens, s.request_timeout_s)
            if not r.ok:
                raise ServingFailed("warmup", f"warm-up request {i} ({r.prompt_id}): {r.error}{server.exit_note()}")
        events.append(_event("warmup", "end"))
        self.last_phase = "measure"
        progress.phase(f"measure: {len(self.prompts)} prompts, concurrency {s.concurrency}")
        start = _event("measure", "start")
        events.append(start)
        self.results = replay(host, port, self.prompts, s.max_new_tokens, s.concurrency, s.request_timeout_s)
        end = _event("measure", "end")
        events.append(end)
        bad = next((r for r in self.results if not r.ok), None)
        if bad is not None:
            time.sleep(0.2)  # let a dying server's exit be seen, for the reason
            raise ServingFailed(
                "measure", f"request {bad.index} ({bad.prompt_id}) failed: {bad.error}{server.exit_note()}"
            )
        self.last_phase = "shutdown"
        if s.cooldown_s:
            _sleep_while_alive(server, s.cooldown_s)
        try:
            http_json(host, port, "POST", "/shutdown", None, 10.0)
        except (OSError, http.client.HTTPException):
            pass
        if not server.wait(30.0):
            server.kill()
            raise ServingFailed("shutdown", "the server did not exit within 30 s of POST /shutdown; killed")
        return start["t_ns"], end["t_ns"]

    def _spec(self, runner: Runner, run_id: str, bind: str, published: bool) -> tuple[ServeSpec, list[Mount]]:
        assert self.model is not None
        model = self.model
        mounts: list[Mount] = []
        model_path = model.location
        if model.source == "folder" and self.fmt is None:
            mounts.append(Mount(model.location, f"{MODEL_MOUNT}/{Path(model.location).name}"))
            model_path = runner.path_for(mounts[-1])
        artifact_path = None
        if self.export is not None:
            mounts.append(Mount(str(self.export.folder), f"{EXPORT_MOUNT}/{self.export.folder.name}"))
            artifact_path = runner.path_for(mounts[-1])
        spec = ServeSpec(
            run_id=run_id,
            engine=self.engine,
            provider=get_manifest(self.what.image).provider,
            model=model.label,
            model_path=model_path,
            artifact_path=artifact_path,
            host=bind,
            port=CONTAINER_PORT if published else 0,
            max_new_tokens_limit=max(self.what.serving.max_new_tokens, 1024),
            seed=self.what.serving.seed,
            options=self.what.options,
        )
        return spec, mounts

    def _outcome(
        self,
        server: ServerHandle,
        window: tuple[int, int] | None,
        failure: ServingFailed | None,
        client_events: list[dict[str, Any]],
    ) -> Outcome:
        ex = server.execution
        runner_info = dict(ex.runner) if ex is not None else {}
        outcome = Outcome(runner=runner_info, events=server.output.events + client_events, window=window)
        exit_code = ex.exit_code if ex is not None else None
        if failure is not None:
            code = Failure.REQUEST if failure.phase in ("warmup", "measure") else Failure.SERVER
            outcome.failure = _failure(code, failure.reason, failure.phase, exit_code, server.log_tail())
            return outcome
        assert ex is not None
        try:
            out = parse_stream(ex.stdout, SERVE_RESULT_FIELDS)
        except ProtocolError as exc:
            outcome.failure = _failure(Failure.PROTOCOL, f"protocol: {exc}", "shutdown", exit_code, server.log_tail())
            return outcome
        if out.result is None or ex.exit_code != 0:
            reason = f"the server ended without a result{server.exit_note()}"
            outcome.failure = _failure(Failure.SERVER, reason, "shutdown", exit_code, server.log_tail())
            return outcome
        outcome.result = out.result
        return outcome

    def metrics(self, outcome: Outcome, measurements: dict[str, Any] | None) -> dict[str, Any]:
        assert outcome.window is not None
        return serving_metrics(self.results, outcome.window, measurements)


def check_settings(s: Any) -> None:
    """The serving settings' ranges, before anything starts."""
    for name, value, low in (
        ("--max-new-tokens", s.max_new_tokens, 1),
        ("--concurrency", s.concurrency, 1),
        ("--warmup-requests", s.warmup_requests, 0),
        ("--limit", s.limit, 1),
    ):
        if value is not None and value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    positive("--warmup-s", s.warmup_s, allow_zero=True)
    positive("--cooldown-s", s.cooldown_s, allow_zero=True)
    positive("--request-timeout", s.request_timeout_s)
    positive("--ready-timeout", s.ready_timeout_s)


def _failure(code: str, reason: str, phase: str | None, exit_code: int | None, tail: list[str]) -> dict[str, Any]:
    return {"code": code, "reason": reason, "phase": phase, "exit_code": exit_code, "log_tail": tail}


def _event(phase: str, edge: str, **info: Any) -> dict[str, Any]:
    return {"kind": "event", "phase": phase, "edge": edge, "t_ns": time.monotonic_ns(), "source": "client", **info}


def _sleep_while_alive(server: ServerHandle, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServingFailed("warmup", f"the server exited while idle{server.exit_note()}")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
