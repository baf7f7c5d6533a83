"""``serve --endpoint URL --model NAME``: measure an OpenAI-compatible server someone else started.

Nothing is started or stopped: the server (vLLM's, llama.cpp's, ours started by hand, a user's)
runs already, on this host, so the host's meters (RAPL, NVML, a wall meter) measure it with the
rest of the host. The same workload as for our servers: probe (reachable, serves NAME, streams),
warm-up, one measure window per load point, one record each. The server's process is not ours:
its CPU time and RAM are measured only when ``--endpoint-pid`` names it; otherwise they are
unavailable with that reason. The record says ``serving.endpoint.ours: false``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller import hostinfo
from controller.errors import UserError
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.record import SCHEMA_VERSION, new_run_id, record_path, write_atomic
from controller.serving.client import Endpoint, EndpointError, probe
from controller.serving.settings import ServeRequest
from controller.serving.workload import drive, point_records, request_dicts, work_items
from harness.protocol import PROTOCOL_VERSION

NOT_OURS = (
    "the server at the endpoint is not a process this run started; pass --endpoint-pid PID to measure its CPU and RAM"
)
WORKLOAD_METRICS = ("cpu_time_s", "cpu_percent", "ram_peak_bytes", "ram_mean_bytes")


def is_local(host: str) -> bool:
    """Whether ``host`` is this machine (loopback or one of its addresses), where the meters measure."""

    def addresses(name: str) -> set[str]:
        try:
            return {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            return set()

    found = addresses(host)
    own = addresses(socket.gethostname())
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in own for a in found)


def check(req: ServeRequest) -> Endpoint:
    """The endpoint, probed; UserError (before any load) when it cannot be measured."""
    if req.image:
        raise UserError("--endpoint measures a server already running: --image and --engine do not apply to it")
    try:
        ep = Endpoint.parse(str(req.endpoint), req.model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if req.endpoint_pid is not None:
        import psutil

        if not psutil.pid_exists(req.endpoint_pid):
            raise UserError(f"--endpoint-pid {req.endpoint_pid}: no such process on this host")
    return ep


class _NotOursMeters:
    """The session's summaries, with the workload figures' reason saying the server is not ours."""

    def __init__(self, meters: MeterSession) -> None:
        self.meters = meters

    def summarize(self, t0_ns: int, t1_ns: int) -> dict[str, Any]:
        out = self.meters.summarize(t0_ns, t1_ns)
        for name in WORKLOAD_METRICS:
            if name in out["metrics"] and not out["metrics"][name]["available"]:
                out["metrics"][name]["reason"] = NOT_OURS
        if "workload" in out["meters"]:
            out["meters"]["workload"]["reason"] = NOT_OURS
        return out


def execute_endpoint(req: ServeRequest, say: Callable[[str], None] = print) -> list[tuple[dict[str, Any], Path]]:
    """Probe, warm up, measure every load point of ``req`` against its endpoint; one record each."""
    from controller.serving.run import points_of, prompts_of

    ep = check(req)
    points = points_of(req)
    prompts, prompt_info = prompts_of(req)
    try:
        found = probe(ep, prompts[0].text, min(req.request_timeout_s, 60.0))
    except EndpointError as exc:
        raise UserError(str(exc)) from None
    ignore_eos = req.ignore_eos if req.ignore_eos is not None else req.synthetic is not None
    items = work_items(prompts, req.max_new_tokens, ignore_eos)
    fingerprint = host_fingerprint()
    run_id = new_run_id()
    path = record_path(req.results, req.campaign, run_id)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "run_id": run_id,
        "campaign": req.campaign,
        "cell": req.cell,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "mode": "serving",
        "image": None,
        "engine": "external",
        "provider": "unknown",
        "model": req.model,
        "model_size": "n/a",
        "conversion": None,
        "weights": "external",
        "weights_label": None,
        "host": hostinfo.host(fingerprint),
        "gpus": hostinfo.gpus(fingerprint),
        "artifact": None,
        "runner": {"kind": "external", "pid": req.endpoint_pid},
        "spec": {"mode": "serving", "engine": "external", "endpoint": ep.url, "model": ep.model},
    }
    local = is_local(ep.host)
    if not local:
        say(f"warning: {ep.host} does not resolve to this host; the meters measure this host, not that server")
    record["serving"] = {
        "endpoint": {
            "url": ep.url,
            "model": ep.model,
            "ours": False,
            "local": local,
            "pid": req.endpoint_pid,
            "measured": "this host's meters (RAPL, NVML, wall) over each window; the server's own CPU and RAM "
            + ("through --endpoint-pid" if req.endpoint_pid else "unavailable (no --endpoint-pid)"),
            **found,
        },
        "address": f"{ep.host}:{ep.port}",
        "prompts": prompt_info,
        "max_new_tokens": req.max_new_tokens,
        "concurrency": req.concurrency,
        "ignore_eos": ignore_eos,
        "slo_ms": req.slo,
        "api": "OpenAI-compatible POST /v1/completions, stream: true",
        "warmup_requests": req.warmup_requests,
        "warmup_s": req.warmup_s,
        "cooldown_s": req.cooldown_s,
        "request_timeout_s": req.request_timeout_s,
        "window": "client-side: time.monotonic_ns() on the host, from the first send to the last answer",
        "requests": [],
    }
    baseline = load_baseline(req.baseline, fingerprint=fingerprint, max_age_s=req.baseline_max_age_s)
    meters = MeterSession(
        req.interval_s,
        wall_url=req.wall_url,
        wall_output=req.wall_output,
        baseline=baseline,
        keep_trace=req.keep_trace,
    )
    if not baseline.usable:
        say(f"idle baseline {baseline.status}: {baseline.reason} (energies are gross only)")
    say(f"measuring {ep.model} at {ep.url} (not started by joulebench) ...")
    t_start = time.monotonic()
    meters.start()
    try:
        if req.endpoint_pid is not None:
            meters.attach_process(req.endpoint_pid)
        if req.warmup_s:
            time.sleep(req.warmup_s)
        driven = drive(ep, items, points, warmup_requests=req.warmup_requests, timeout_s=req.request_timeout_s, say=say)
        if req.cooldown_s and driven.failure is None:
            time.sleep(req.cooldown_s)
    finally:
        meters.stop()
    record["elapsed_s"] = time.monotonic() - t_start
    record["events"] = []
    record["result"] = {"external": True, "endpoint": ep.url, "models": found.get("models")}
    if not driven.runs:
        assert driven.failure is not None
        failure = driven.failure
        record["serving"]["warmup"] = request_dicts(driven.warmup)
        record.update(
            status="failed",
            failure={"phase": failure.phase, "reason": failure.reason, "exit_code": None, "log_tail": []},
        )
        record["events"] = driven.warmup_events
        write_atomic(path, record)
        return [(record, path)]
    record["status"] = "ok"
    if req.keep_trace:
        trace = path.with_suffix(".trace.parquet")
        meters.write_trace(trace)
        record["trace_path"] = trace.name
    summarizer = meters if req.endpoint_pid is not None else _NotOursMeters(meters)
    return point_records(record, path, driven, summarizer, req.slo)
