"""The serving workload: a model server (harness ``serve``) driven over HTTP, its window measured.

Its steps in the pipeline (``controller/pipeline.py``)::

    plan: validate, load the prompts -> resolve: export for onnxruntime/openvino/torchscript, cached
      -> drive: server start -> wait for /ready (bounded) -> idle + warm-up requests
         -> per load point, a measure window (the client's monotonic_ns) of streamed
            /v1/completions (controller/serving/drive.py) -> idle
         -> POST /shutdown (killed when it does not exit)
      -> one outcome, so one run record, per load point

The client is stdlib only; every request is bounded by a timeout. A server that dies, hangs or
fails every request gives a failed record with the reason, and its process or container is always
gone when :meth:`ServingWorkload.drive` returns. ``serve --endpoint`` drives a server someone else
started instead (``controller/serving/external.py``).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.artifacts import ConversionFailed
from controller.cache import ArtifactCache, Entry
from controller.errors import UserError
from controller.images import get_manifest
from controller.meters import MeterSession
from controller.progress import Progress
from controller.record import Failure, FailureInfo
from controller.requests import RunRequest, ServeSettings
from controller.resolve import resolve
from controller.runners.base import Invocation, Mount, Runner
from controller.serving.client import Endpoint, WorkItem, completion_body, http_json
from controller.serving.definitions import definitions
from controller.serving.drive import Driven, drive, max_tokens_asked, request_dicts, work_items
from controller.serving.export import ensure_export
from controller.serving.load import PointRun
from controller.serving.metrics import serving_metrics, steady_window
from controller.serving.phase_figures import phase_figures
from controller.serving.server import ServerHandle, wait_ready
from controller.serving.settings import (
    CONTAINER_PORT,
    CONTROL_PORT,
    EXPORT_MOUNT,
    LOADS_MODEL_FOLDER,
    MODEL_MOUNT,
    OWN_SERVER_REQUEST,
    PARITY_PROMPTS,
    ServingFailed,
    ServingSettings,
    export_format,
    export_images,
)
from controller.workload import Identity, Outcome, Plan, RunParts, Summarize, attach_meters
from harness.options import OptionError, check_options
from harness.protocol import SERVE_RESULT_FIELDS, ProtocolError, ServeSpec, parse_stream
from harness.serving.formats import unsupported_architecture
from suite.prompts import Prompt, PromptError, load_prompts
from suite.slm_models import ResolvedModel, model_architectures, model_tokenizer, resolve_model


class ServingWorkload:
    mode = "serving"

    def __init__(self, request: RunRequest) -> None:
        assert isinstance(request.what, ServeSettings)
        self.request = request
        self.what: ServeSettings = request.what
        self.last_phase: str | None = None
        self.parts = RunParts()
        self.engine = ""
        self.fmt: str | None = None
        self.model: ResolvedModel | None = None
        self.prompts: list[Prompt] = []
        self.prompt_info: dict[str, Any] = {}
        self.export: Entry | None = None
        self.items: list[WorkItem] = []
        self.driven = Driven()  # what the load did so far
        self.meters: MeterSession | None = None  # its traces split each point's energy by phase

    # -- validate ----------------------------------------------------------------------------

    def plan(self, check_data: bool = True) -> Plan:
        w, s = self.what, self.what.serving
        manifest, engine = resolve(w)
        self.engine = engine
        try:
            options = check_options(engine, w.options, serving=True)
        except OptionError as exc:
            raise UserError(str(exc)) from None
        from controller.models import serving_refusal

        refusal = serving_refusal(w.model)  # as models inspect says it
        if refusal is not None:
            raise UserError(f"engine {engine} cannot serve {w.model}: it {refusal}")
        try:
            self.model = model = resolve_model(w.model)
            why = unsupported_architecture(engine, model_architectures(model), model_tokenizer(model))
            if why is not None:
                raise UserError(f"engine {engine} cannot serve {model.label}: {why}")
            prompts_file = None if s.prompts == "humaneval" else Path(s.prompts)
            self.prompts, self.prompt_info = load_prompts(prompts_file, s.seed, s.limit, s.synthetic)
        except (ValueError, PromptError) as exc:
            raise UserError(str(exc)) from None
        self.items = work_items(self.prompts, s.max_new_tokens, s.ignores_eos())
        if engine == "llamacpp-server" and s.ignores_eos():
            raise UserError(
                "llama-cpp-python's server has no ignore_eos (it drops the field): synthetic prompts and "
                "--ignore-eos need engine llamacpp (llama.cpp behind our server)"
            )
        self.fmt = export_format(engine, options)
        identity = Identity(
            model=model.label,
            model_size=f"category-{model.size_category}" if model.size_category else "n/a",
            weights="pretrained" if model.source == "hub" else "path",
            conversion=f"lm2{self.fmt}" if self.fmt else None,
        )
        images = list(dict.fromkeys([w.image, *export_images(self.fmt)]))
        return Plan(manifest, engine, images, identity)

    # -- resolve artifacts -------------------------------------------------------------------

    def resolve(self, runner: Runner, cache: ArtifactCache, progress: Progress) -> None:
        assert self.model is not None
        self.parts.serving = self._serving_block()
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
                    progress.detail,
                )
        except ServingFailed as exc:
            raise ConversionFailed(exc.reason) from None
        self.parts.artifact = {"path": str(self.export.folder), **self.export.meta, "reused": self.export.reused}

    def _serving_block(self) -> dict[str, Any]:
        assert self.model is not None
        model = self.model
        return {
            "model": asdict(model) | {"registry": asdict(model.registry) if model.registry else None},
            "prompts": self.prompt_info,
            **serving_settings_block(self.what.serving, self.items, self.request_extra()),
            "requests": [],
        }

    def request_extra(self) -> dict[str, Any]:
        """The fields every request carries besides OpenAI's: our server's token ids (for parity across
        engines), or what makes a runtime's own server greedy; then the user's --extra-input."""
        own = dict(OWN_SERVER_REQUEST[self.engine]) if self.engine in OWN_SERVER_REQUEST else {"return_token_ids": True}
        return own | (self.what.serving.extra_inputs or {})

    # -- drive -------------------------------------------------------------------------------

    def drive(self, runner: Runner, meters: MeterSession, run_id: str, progress: Progress) -> list[Outcome]:
        self.meters = meters
        bind, published = runner.server_address()
        spec, mounts = self._spec(runner, run_id, bind, published)
        own = self.engine in OWN_SERVER_REQUEST  # the runtime's own server, our control port beside it
        self.parts.spec = asdict(spec)
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
            shm_size=where.shm_size,
            labels={
                "joulebench.campaign": where.campaign,
                "joulebench.run": run_id,
                "joulebench.mode": "serving",
            },
            ports=({CONTAINER_PORT: "127.0.0.1"} | ({CONTROL_PORT: "127.0.0.1"} if own else {})) if published else {},
        )
        server = ServerHandle(runner, inv, lambda w: attach_meters(meters, w), meters.stop, progress)
        progress.note(f"serving {self.what.model} on {self.what.image}/{self.engine} ({runner.kind}) ...")
        failure: ServingFailed | None = None
        t0 = time.monotonic()
        try:
            server.start()
            self.driven = self._serve(server, published, progress)
        except ServingFailed as exc:
            failure = exc
        finally:
            server.cleanup()
        self.parts.elapsed_s = time.monotonic() - t0
        return self._outcomes(server, self.driven, failure, run_id)

    def _serve(self, server: ServerHandle, published: bool, progress: Progress) -> Driven:
        """Ready, warm up, measure each load point, cool down, shut down."""
        s = self.what.serving
        host = "127.0.0.1"
        self.last_phase = "load"
        port = wait_ready(server, host, published, s.ready_timeout_s)
        assert self.parts.serving is not None
        self.parts.serving["address"] = f"{host}:{port}"
        self.last_phase = "warmup"
        progress.phase("warmup")
        if s.warmup_s:
            _sleep_while_alive(server, s.warmup_s, "warmup")
        self.last_phase = "measure"
        driven = drive(
            Endpoint("http", host, port, "/v1", self.model.label if self.model else self.what.model),
            self.items,
            s.points(),
            warmup_requests=s.warmup_requests,
            timeout_s=s.request_timeout_s,
            say=progress.phase,
            stop=lambda: None if server.alive() else "the server exited",
            exit_note=server.exit_note,
            extra=self.request_extra(),
        )
        self.driven = driven  # kept whatever happens next: the requests are in the records
        if driven.failure is not None and (not driven.runs or not server.alive()):
            # A failed warm-up, or the server went away: it gave no result, so every point's record fails.
            raise driven.failure
        self.last_phase = "cooldown"
        if s.cooldown_s:
            progress.phase("cooldown")
            _sleep_while_alive(server, s.cooldown_s, "cooldown")
        self.last_phase = "shutdown"
        try:
            http_json(host, server.control_port(published) or port, "POST", "/shutdown", None, 10.0)
        except (OSError, http.client.HTTPException):
            pass
        if not server.wait(30.0):
            server.kill()
            raise ServingFailed("shutdown", "the server did not exit within 30 s of POST /shutdown; killed")
        return driven

    def _spec(self, runner: Runner, run_id: str, bind: str, published: bool) -> tuple[ServeSpec, list[Mount]]:
        assert self.model is not None
        model = self.model
        mounts: list[Mount] = []
        model_path = model.location
        if model.source == "folder" and (self.fmt is None or self.engine in LOADS_MODEL_FOLDER):
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
            control_port=CONTROL_PORT if published else 0,
            max_new_tokens_limit=max(*(i.max_tokens for i in self.items), 1024),
            seed=self.what.serving.seed,
            options=self.what.options,
        )
        return spec, mounts

    def _outcomes(
        self, server: ServerHandle, driven: Driven, failure: ServingFailed | None, group: str
    ) -> list[Outcome]:
        """One outcome per load point that ran (one, failed, when none did)."""
        ex = server.execution
        runner_info = dict(ex.runner) if ex is not None else {}
        exit_code = ex.exit_code if ex is not None else None
        result: dict[str, Any] | None = None
        overall = failure
        if overall is None:
            result, overall = self._server_result(server, exit_code)
        return point_outcomes(
            driven,
            server.output.events,
            runner_info,
            result,
            lambda f: failure_info(f, exit_code, server.log_tail()),
            overall,
            group,
        )

    def _server_result(
        self, server: ServerHandle, exit_code: int | None
    ) -> tuple[dict[str, Any] | None, ServingFailed | None]:
        """The server's result from its own output, read once; or why the run failed."""
        ex = server.execution
        assert ex is not None
        try:
            out = parse_stream(ex.stdout, SERVE_RESULT_FIELDS)
        except ProtocolError as exc:
            return None, ServingFailed("shutdown", f"protocol: {exc}", Failure.PROTOCOL)
        if out.result is None or exit_code != 0:
            return None, ServingFailed("shutdown", f"the server ended without a result{server.exit_note()}")
        return out.result, None

    def metrics(self, outcome: Outcome, measurements: dict[str, Any] | None, summarize: Summarize) -> dict[str, Any]:
        engines = engine_concurrency(outcome.result)
        return point_metrics(outcome, measurements, summarize, self.what.serving.slo, engines, self.meters)


def serving_settings_block(s: ServingSettings, items: list[WorkItem], extra: dict[str, Any]) -> dict[str, Any]:
    """What the record's ``serving`` block says of the settings (each record names its own load point):
    what every request asked, the warm-up's prompts, and the definition of every figure."""
    shown = {k: v for k, v in asdict(s).items() if k not in ("prompts", "limit", "seed", "load", "slo", "ignore_eos")}
    return shown | {
        "ignore_eos": s.ignores_eos(),
        "max_tokens_asked": max_tokens_asked(items),
        "request_body": completion_body("<model>", "<prompt>", "<max_tokens of the prompt>", s.ignores_eos(), extra),
        "warmup_prompts": "not measured: the measured prompts' pieces turned around (suite.prompts.warmup_prompts)",
        "slo_ms": s.slo,
        "api": "OpenAI-compatible POST /v1/completions, stream: true (one server-sent event per token)",
        "window": "client-side: time.monotonic_ns() on the host, from the first send to the last answer",
        "definitions": definitions(),
    }


def point_outcomes(
    driven: Driven,
    events: list[dict[str, Any]],
    runner_info: dict[str, Any],
    result: dict[str, Any] | None,
    failure_of: Callable[[ServingFailed], FailureInfo],
    overall: ServingFailed | None,
    group: str,
) -> list[Outcome]:
    """One outcome per point that ran: its requests, its events, its window; a point that failed
    (the last one run) fails its record; ``overall`` (the server or the warm-up failed) fails them all."""
    if not driven.runs:
        assert overall is not None or driven.failure is not None
        failed = overall or driven.failure
        assert failed is not None
        serving = {"warmup": request_dicts(driven.warmup)}
        return [Outcome(runner_info, events + driven.warmup_events, failure=failure_of(failed), serving=serving)]
    values = [run.point.value for run in driven.runs]
    outcomes = []
    for k, run in enumerate(driven.runs):
        own = driven.failure if k == len(driven.runs) - 1 else None
        failed = overall or own
        outcome = Outcome(
            runner_info,
            events + (driven.warmup_events if k == 0 else []) + driven.events[k],
            window=run.window_ns,
            failure=failure_of(failed) if failed is not None else None,
            result=result if failed is None else None,
            serving={
                "load": run.point.describe(),
                "concurrency": run.point.concurrency,
                "request_rate": run.point.describe()["request_rate"],
                "sweep": {
                    "variable": run.point.variable,
                    "value": run.point.value,
                    "values": values,
                    "index": k,
                    "group": group,
                },
                "warmup": request_dicts(driven.warmup) if k == 0 else [],
                "requests": request_dicts(run.results),
            },
            detail=run,
        )
        outcomes.append(outcome)
    return outcomes


def engine_concurrency(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """How many requests the server's engine generates at once, as the server's result says (None: not said)."""
    server = (result or {}).get("server") or {}
    if "generation_concurrency" not in server:
        return None
    n = server["generation_concurrency"]  # None: as many as it batches (vLLM)
    return {
        "requests": n if isinstance(n, int) else None,
        "basis": server.get("generation_concurrency_basis") or "the server's result",
    }


def point_metrics(
    outcome: Outcome,
    measurements: dict[str, Any] | None,
    summarize: Summarize,
    slo: dict[str, float] | None,
    engines: dict[str, Any] | None = None,
    meters: MeterSession | None = None,
) -> dict[str, Any]:
    """A load point's figures over its window, and over its steady window (kept in ``serving``);
    ``engines``: how many requests the engine serves at once (:func:`engine_concurrency`); ``meters``: the
    session whose traces split the window's energy by phase and request (``controller/serving/phase_figures.py``)."""
    run = outcome.detail
    assert isinstance(run, PointRun) and outcome.window is not None
    steady = steady_window(run.results, run.point)
    steady_m = summarize(steady["t0_ns"], steady["t1_ns"]) if steady["available"] else None
    if steady_m is not None:
        outcome.serving["measurements_steady"] = steady_m
    out = serving_metrics(
        run.results,
        outcome.window,
        measurements,
        point=run.point,
        slo=slo,
        steady=steady,
        steady_measurements=steady_m,
        engine_concurrency=engines,
    )
    rows = outcome.serving["requests"]
    out.update(
        phase_figures(run.results, outcome.window, measurements, steady_m, summarize, meters, run.point, engines, rows)
    )
    return out


def failure_info(f: ServingFailed, exit_code: int | None = None, tail: list[str] | None = None) -> FailureInfo:
    """A serving failure as the record keeps it: a request's in warm-up or a window, else the server's."""
    code = f.code or (Failure.REQUEST if f.phase in ("warmup", "measure") else Failure.SERVER)
    return FailureInfo(code, f.reason, f.phase, exit_code, list(tail or []))


def _sleep_while_alive(server: ServerHandle, seconds: float, phase: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServingFailed(phase, f"the server exited while idle ({phase}){server.exit_note()}")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
