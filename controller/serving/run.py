"""Serving mode: start a model server (harness ``serve``), drive it over HTTP, measure the window.

One serving run, end to end::

    validate -> prompts -> runner -> [export for onnxruntime/openvino/torchscript, cached]
      -> meters start -> server start (runner.execute in a thread) -> wait for /ready (bounded)
      -> warm-up wait -> workload.drive: warm-up requests, then per load point a measure window
         (client's monotonic_ns) of streamed /v1/completions -> cool-down wait
      -> POST /shutdown (kill when it does not exit) -> one run record per load point

The client is stdlib only (http.client); every request is bounded by a timeout. A server that
dies, hangs or fails every request gives a failed record with the reason, and the server's process
or container is always gone when :func:`execute` returns. ``--endpoint`` drives a server someone
else started instead (controller.serving.external).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller import hostinfo
from controller.errors import UserError
from controller.images import get_manifest
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.record import SCHEMA_VERSION, new_run_id, record_path, write_atomic
from controller.runners.base import Invocation, Mount
from controller.serving.client import Endpoint, http_json
from controller.serving.export import ensure_export
from controller.serving.load import LoadPoint
from controller.serving.metrics import metric_lines
from controller.serving.server import ServerHandle, wait_ready
from controller.serving.settings import (
    CONTAINER_PORT,
    EXPORT_FORMATS,
    EXPORT_IMAGE,
    EXPORT_MOUNT,
    MODEL_MOUNT,
    PARITY_PROMPTS,
    ServeRequest,
    ServingFailed,
)
from controller.serving.workload import Driven, drive, point_records, request_dicts, work_items
from harness.protocol import (
    PROTOCOL_VERSION,
    SERVE_RESULT_FIELDS,
    ProtocolError,
    ServeSpec,
    parse_stream,
)
from suite.prompts import Prompt, PromptError, load_prompts
from suite.slm_models import ResolvedModel, resolve_model


def validate(req: ServeRequest) -> tuple[Any, str, ResolvedModel, list[Prompt], dict[str, Any]]:
    manifest = get_manifest(req.image)
    engine = req.engine or manifest.engines[0]
    if engine not in manifest.engines:
        raise UserError(
            f"image {req.image} does not serve engine {engine!r}; valid engines for it: {', '.join(manifest.engines)}"
        )
    if engine not in EXPORT_FORMATS:
        raise UserError(f"engine {engine} cannot serve language models; serving engines: {', '.join(EXPORT_FORMATS)}")
    if manifest.unsupported:
        raise UserError(f"image {req.image} cannot run here: {manifest.unsupported}")
    for name, value, low in (
        ("--max-new-tokens", req.max_new_tokens, 1),
        ("--concurrency", req.concurrency, 1),
        ("--warmup-requests", req.warmup_requests, 0),
    ):
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    for name, fvalue in (("--warmup-s", req.warmup_s), ("--cooldown-s", req.cooldown_s)):
        if fvalue < 0:
            raise UserError(f"{name} must be 0 or more, got {fvalue}")
    for name, fvalue in (("--request-timeout", req.request_timeout_s), ("--ready-timeout", req.ready_timeout_s)):
        if fvalue <= 0:
            raise UserError(f"{name} must be positive, got {fvalue}")
    try:
        model = resolve_model(req.model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    prompts, info = prompts_of(req)
    return manifest, engine, model, prompts, info


def prompts_of(req: ServeRequest) -> tuple[list[Prompt], dict[str, Any]]:
    try:
        return load_prompts(req.prompts, req.seed, req.limit, req.synthetic)
    except PromptError as exc:
        raise UserError(str(exc)) from None


def points_of(req: ServeRequest) -> list[LoadPoint]:
    return req.load or [LoadPoint(concurrency=req.concurrency)]


def execute(req: ServeRequest, say: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Serve, drive, measure, write the record; returns (record, path) of the first load point."""
    return execute_all(req, say)[0]


def execute_all(req: ServeRequest, say: Callable[[str], None] = print) -> list[tuple[dict[str, Any], Path]]:
    """Serve, drive, measure, write one record per load point. Failed runs are records too."""
    if req.endpoint is not None:
        from controller.serving.external import execute_endpoint

        return execute_endpoint(req, say)
    from controller.artifacts import default_cache
    from controller.runs import choose_runner, warn_stale

    manifest, engine, model, prompts, prompt_info = validate(req)
    ignore_eos = req.ignore_eos if req.ignore_eos is not None else req.synthetic is not None
    items = work_items(prompts, req.max_new_tokens, ignore_eos)
    fmt = EXPORT_FORMATS[engine]
    images = [req.image] + ([EXPORT_IMAGE] if fmt else [])
    runner = choose_runner(req.runner, images, say)
    warn_stale(runner, images, say)
    cache = req.cache or default_cache()
    run_id = new_run_id()
    fingerprint = host_fingerprint()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "run_id": run_id,
        "campaign": req.campaign,
        "cell": req.cell,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "mode": "serving",
        "image": req.image,
        "engine": engine,
        "provider": manifest.provider,
        "model": model.label,
        "model_size": f"category-{model.size_category}" if model.size_category else "n/a",
        "conversion": f"lm2{fmt}" if fmt else None,
        "weights": "pretrained" if model.source == "hub" else "path",
        "weights_label": None,
        "host": hostinfo.host(fingerprint),
        "gpus": hostinfo.gpus(fingerprint),
    }
    path = record_path(req.results, req.campaign, run_id)
    serving: dict[str, Any] = {
        "model": asdict(model) | {"registry": asdict(model.registry) if model.registry else None},
        "prompts": prompt_info,
        "max_new_tokens": req.max_new_tokens,
        "concurrency": req.concurrency,
        "ignore_eos": ignore_eos,
        "slo_ms": req.slo,
        "api": "OpenAI-compatible POST /v1/completions, stream: true (one server-sent event per token)",
        "warmup_requests": req.warmup_requests,
        "warmup_s": req.warmup_s,
        "cooldown_s": req.cooldown_s,
        "request_timeout_s": req.request_timeout_s,
        "ready_timeout_s": req.ready_timeout_s,
        "window": "client-side: time.monotonic_ns() on the host, from the first send to the last answer",
        "requests": [],
    }
    record["serving"] = serving

    def fail(phase: str | None, reason: str, tail: list[str] | None = None) -> list[tuple[dict[str, Any], Path]]:
        record.setdefault("runner", runner.describe(req.image))
        record.update(
            status="failed", failure={"phase": phase, "reason": reason, "exit_code": None, "log_tail": tail or []}
        )
        write_atomic(path, record)
        return [(record, path)]

    export_dir: Path | None = None
    record["artifact"] = None
    if fmt is not None:
        try:
            export_dir, meta = ensure_export(
                runner, cache, fmt, model, [p.text for p in prompts[:PARITY_PROMPTS]], req.timeout_s, say
            )
        except ServingFailed as exc:
            return fail(exc.phase, exc.reason)
        record["artifact"] = {"path": str(export_dir), **meta}

    docker = runner.kind == "docker"
    # With a bridge network the container's port is published on the host's loopback; an engine
    # without one (--bridge=none) runs the server on the host's network, bound to loopback only.
    bridged = docker and runner.has_bridge()
    mounts: list[Mount] = []
    model_path = model.location
    if model.source == "folder" and fmt is None:
        mm = Mount(model.location, f"{MODEL_MOUNT}/{Path(model.location).name}")
        mounts.append(mm)
        model_path = runner.path_for(mm)
    artifact_path = None
    if export_dir is not None:
        em = Mount(str(export_dir), f"{EXPORT_MOUNT}/{export_dir.name}")
        mounts.append(em)
        artifact_path = runner.path_for(em)
    spec = ServeSpec(
        run_id=run_id,
        engine=engine,
        provider=manifest.provider,
        model=model.label,
        model_path=model_path,
        artifact_path=artifact_path,
        host="0.0.0.0" if bridged else "127.0.0.1",
        port=CONTAINER_PORT if bridged else 0,
        max_new_tokens_limit=max(*(i.max_tokens for i in items), 1024),
        seed=req.seed,
        options=req.options,
    )
    record["spec"] = asdict(spec)
    baseline = load_baseline(req.baseline, fingerprint=fingerprint, max_age_s=req.baseline_max_age_s)
    meters = MeterSession(
        req.interval_s,
        gpu_uuids=None if manifest.gpu else [],
        wall_url=req.wall_url,
        wall_output=req.wall_output,
        baseline=baseline,
        keep_trace=req.keep_trace,
    )
    if not baseline.usable:
        say(f"idle baseline {baseline.status}: {baseline.reason} (energies are gross only)")
    inv = Invocation(
        image=req.image,
        argv=["serve", "--spec", spec.to_json()],
        timeout_s=req.timeout_s,
        mounts=mounts,
        env={"HF_HUB_OFFLINE": "1"} if model.source == "folder" else {},
        network=(True if bridged else "host") if docker else False,
        gpu=manifest.gpu,
        memory=req.memory,
        labels={"joulebench.campaign": req.campaign, "joulebench.run": run_id, "joulebench.mode": "serving"},
        ports={CONTAINER_PORT: "127.0.0.1"} if bridged else {},
    )
    server = ServerHandle(runner, inv, meters, say)
    driven = Driven()
    failure: ServingFailed | None = None
    say(f"serving {model.label} on {req.image}/{engine} ({runner.kind}) ...")
    t_start = time.monotonic()
    meters.start()
    try:
        server.start()
        host, port_of = _address(runner, server, bridged)
        port = wait_ready(server, host, port_of, req.ready_timeout_s)
        serving["address"] = f"{host}:{port}"
        say(f"  ready on {host}:{port}; warm-up ...")
        if req.warmup_s:
            _sleep_while_alive(server, req.warmup_s)
        driven = drive(
            Endpoint("http", host, port, "/v1", spec.model),
            items,
            points_of(req),
            warmup_requests=req.warmup_requests,
            timeout_s=req.request_timeout_s,
            say=say,
            stop=lambda: None if server.alive() else "the server exited",
            exit_note=server.exit_note,
            extra={"return_token_ids": True},  # our server's tokens, for parity across engines
        )
        if driven.failure is not None and (not driven.runs or not server.alive()):
            raise driven.failure  # a failed warm-up, or the server is gone: no result to record
        if req.cooldown_s:
            _sleep_while_alive(server, req.cooldown_s)
        try:
            http_json(host, port, "POST", "/shutdown", None, 10.0)
        except (OSError, http.client.HTTPException):
            pass
        if not server.wait(30.0):
            server.kill()
            raise ServingFailed("shutdown", "the server did not exit within 30 s of POST /shutdown; killed")
    except ServingFailed as exc:
        failure = exc
    except KeyboardInterrupt:
        server.kill()
        server.wait(30.0)
        meters.stop()
        fail(None, "interrupted by the user", server.log_tail())
        raise
    finally:
        if server.alive():
            server.kill()
            server.wait(60.0)
        meters.stop()
    record["elapsed_s"] = time.monotonic() - t_start
    record["runner"] = server.execution.runner if server.execution else runner.describe(req.image)
    if "pid" in server.started:
        record["runner"]["pid"] = server.started["pid"]
    record["events"] = server.output.events
    if failure is not None:
        fail(failure.phase, failure.reason, server.log_tail())
        record["failure"]["exit_code"] = server.execution.exit_code if server.execution else None
        if not driven.runs:
            serving["warmup"] = request_dicts(driven.warmup)
            write_atomic(path, record)
            return [(record, path)]
        return point_records(record, path, driven, meters, req.slo)
    assert server.execution is not None and driven.runs
    try:
        out = parse_stream(server.execution.stdout, SERVE_RESULT_FIELDS)
    except ProtocolError as exc:
        return fail("shutdown", f"protocol: {exc}", server.log_tail())
    if out.result is None or server.execution.exit_code != 0:
        return fail("shutdown", f"the server ended without a result{server.exit_note()}", server.log_tail())
    record["status"] = "ok"
    record["result"] = out.result
    if req.keep_trace:
        trace = path.with_suffix(".trace.parquet")
        meters.write_trace(trace)
        record["trace_path"] = trace.name
    return point_records(record, path, driven, meters, req.slo)


def _sleep_while_alive(server: ServerHandle, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServingFailed("warmup", f"the server exited while idle{server.exit_note()}")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _address(runner: Any, server: ServerHandle, bridged: bool) -> tuple[str, Callable[[], int | None]]:
    """Where the client reaches the server: loopback and the port the server reported (local, or
    a container on the host's network), or the host port Docker published on 127.0.0.1."""
    if not bridged:
        return "127.0.0.1", server.bound_port

    def published() -> int | None:
        cid = server.started.get("container")
        if cid is None or server.bound_port() is None:
            return None
        try:
            attrs = runner.client.containers.get(cid).attrs
        except Exception:  # noqa: BLE001 - not there yet or gone; wait_ready notices
            return None
        bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{CONTAINER_PORT}/tcp") or []
        for b in bindings:
            if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                return int(b["HostPort"])
        return None

    return "127.0.0.1", published


def _load_text(s: dict[str, Any]) -> str:
    load = s.get("load") or {"kind": "closed-loop", "concurrency": s.get("concurrency")}
    sweep = s.get("sweep") or {}
    shown = ", ".join(f"{k} {v}" for k, v in load.items() if v is not None)
    if len(sweep.get("values") or []) > 1:
        shown += f"   (point {sweep['index'] + 1} of {len(sweep['values'])} of a {sweep['variable']} sweep)"
    return shown


def summary(record: dict[str, Any], path: Path) -> str:
    """The one-screen summary printed after a serving run."""
    from controller.runs import energy_lines

    s = record.get("serving", {})
    lines = [
        f"run        {record['run_id']}  [{record.get('status', '?').upper()}]  serving",
        f"image      {record['image']}   engine {record['engine']}   provider {record['provider']}",
        f"model      {record['model']}   runner {record.get('runner', {}).get('kind', '?')}",
        f"prompts    {s.get('prompts', {}).get('count')} ({s.get('prompts', {}).get('source')})   "
        f"max new tokens {s.get('max_new_tokens')}   load {_load_text(s)}",
    ]
    art = record.get("artifact")
    if art:
        parity = art.get("parity", {})
        lines.append(
            f"artifact   {record['conversion']} {'(cached)' if art.get('reused') else '(new)'}  "
            f"greedy-token parity {parity.get('greedy_token_agreement', 0):.0%} of {parity.get('prompts_checked')}"
        )
    if record.get("status") == "ok":
        if "load_s" in record.get("result", {}):
            lines.append(f"load       {record['result']['load_s']:.2f} s (outside the window)")
        lines += metric_lines(record["metrics"])
        lines += energy_lines(record.get("measurements"))
    else:
        failure = record.get("failure", {})
        lines.append(f"failed     [{failure.get('phase')}] {failure.get('reason')}")
        for line in failure.get("log_tail", [])[-8:]:
            lines.append(f"  | {line}")
    lines.append(f"record     {path}")
    return "\n".join(lines)
