"""Serving mode: start a model server (harness ``serve``), drive it over HTTP, measure the window.

One serving run, end to end::

    validate -> prompts -> runner -> [export for onnxruntime/openvino/torchscript, cached]
      -> meters start -> server start (runner.execute in a thread) -> wait for /ready (bounded)
      -> warm-up wait + warm-up requests -> measure window (client's monotonic_ns) -> replay prompts
      -> cool-down wait -> POST /shutdown (kill when it does not exit) -> one run record

The client is stdlib only (http.client); every request is bounded by a timeout. A server that
dies, hangs or answers an error gives a failed record with the reason, and the server's process or
container is always gone when :func:`execute` returns.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller import hostinfo
from controller.artifacts import new_staging
from controller.errors import UserError
from controller.images import get_manifest
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.record import SCHEMA_VERSION, _percentile, new_run_id, record_path, write_atomic
from controller.runners.base import Execution, Invocation, Mount
from harness.protocol import (
    LM_EXPORT_FIELDS,
    PROTOCOL_VERSION,
    SERVE_RESULT_FIELDS,
    HarnessOutput,
    LmExportSpec,
    ProtocolError,
    ServeSpec,
    parse_line,
    parse_stream,
)
from suite.prompts import Prompt, PromptError, load_prompts
from suite.slm_models import ResolvedModel, resolve_model

# engine -> exported format it serves (None: loads the transformers folder itself)
EXPORT_FORMATS: dict[str, str | None] = {
    "torch": None,
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "torchscript": "torchscript",
}
EXPORT_IMAGE = "torch-cpu"  # where transformers models are exported
CONTAINER_PORT = 8000
MODEL_MOUNT = "/models"
EXPORT_MOUNT = "/exports"
PARITY_PROMPTS = 3
EXPORT_CODE_VERSION = 1  # bump when harness/serving/export.py changes what it writes


@dataclass
class ServeRequest:
    image: str
    model: str
    engine: str | None = None
    prompts: Path | None = None
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 32
    concurrency: int = 1
    warmup_requests: int = 2
    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    request_timeout_s: float = 120.0
    ready_timeout_s: float = 600.0
    timeout_s: float = 7200.0  # the whole server's life, export excluded
    options: dict[str, Any] = field(default_factory=dict)
    runner: str = "auto"
    results: Path = Path("results")
    campaign: str = "default"
    memory: str | None = None
    cache: Path | None = None
    interval_s: float = 0.01
    keep_trace: bool = False
    wall_url: str | None = None
    wall_output: int | None = None
    baseline: Path | None = None
    baseline_max_age_s: float = 7 * 86400
    cell: dict[str, Any] | None = None


class ServingFailed(Exception):
    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason


# --- the HTTP client --------------------------------------------------------------------------


def http_json(
    host: str, port: int, method: str, path: str, body: dict[str, Any] | None, timeout_s: float
) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; raises OSError on connection trouble or timeout."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode("utf-8", "replace")[:500]


@dataclass
class RequestResult:
    index: int
    prompt_id: str
    ok: bool
    latency_ns: int
    t_start_ns: int
    status: int | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    token_ids: list[int] | None = None
    text: str | None = None
    server_ms: dict[str, float] | None = None
    error: str | None = None


def send_prompt(
    host: str, port: int, index: int, prompt: Prompt, max_new_tokens: int, timeout_s: float
) -> RequestResult:
    """POST /generate once; never raises for what the server or network does."""
    t0 = time.monotonic_ns()
    try:
        status, data = http_json(
            host,
            port,
            "POST",
            "/generate",
            {"prompt": prompt.text, "max_new_tokens": max_new_tokens, "greedy": True},
            timeout_s,
        )
    except TimeoutError:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"no answer within {timeout_s:g} s"
        )
    except OSError as exc:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"{type(exc).__name__}: {exc}"
        )
    except http.client.HTTPException as exc:
        return RequestResult(
            index, prompt.id, False, time.monotonic_ns() - t0, t0, error=f"{type(exc).__name__}: {exc}"
        )
    latency = time.monotonic_ns() - t0
    if status != 200 or not isinstance(data, dict):
        detail = data.get("detail") if isinstance(data, dict) else data
        return RequestResult(index, prompt.id, False, latency, t0, status=status, error=f"HTTP {status}: {detail}")
    return RequestResult(
        index,
        prompt.id,
        True,
        latency,
        t0,
        status=status,
        prompt_tokens=data.get("prompt_tokens"),
        new_tokens=data.get("new_tokens"),
        token_ids=data.get("token_ids"),
        text=data.get("text"),
        server_ms=data.get("timings_ms"),
    )


def replay(
    host: str,
    port: int,
    prompts: list[Prompt],
    max_new_tokens: int,
    concurrency: int,
    timeout_s: float,
) -> list[RequestResult]:
    """Send every prompt (``concurrency`` in flight at most); stops sending after the first failure."""
    if concurrency <= 1:
        results = []
        for i, p in enumerate(prompts):
            results.append(send_prompt(host, port, i, p, max_new_tokens, timeout_s))
            if not results[-1].ok:
                break
        return results
    failed = threading.Event()

    def one(i: int, p: Prompt) -> RequestResult | None:
        if failed.is_set():
            return None
        r = send_prompt(host, port, i, p, max_new_tokens, timeout_s)
        if not r.ok:
            failed.set()
        return r

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="joulebench-client") as pool:
        done = list(pool.map(lambda ip: one(*ip), enumerate(prompts)))
    return [r for r in done if r is not None]


# --- the server process ------------------------------------------------------------------------


class ServerHandle:
    """The harness ``serve`` started through a runner, in a background thread."""

    def __init__(self, runner: Any, inv: Invocation, meters: MeterSession, say: Callable[[str], None]) -> None:
        self.runner = runner
        self.output = HarnessOutput()
        self.protocol_error: str | None = None
        self.started: dict[str, Any] = {}
        self.execution: Execution | None = None
        self.error: BaseException | None = None
        self._meters = meters
        self._say = say
        inv.on_line = self._line
        inv.on_start = self._on_start
        inv.on_exit = meters.stop
        self._inv = inv
        self._thread = threading.Thread(target=self._run, name="joulebench-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.execution = self.runner.execute(self._inv)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def _line(self, line: str) -> None:
        try:
            before = len(self.output.events)
            parse_line(line, self.output, required={})
        except ProtocolError as exc:
            self.protocol_error = str(exc)
            return
        if len(self.output.events) > before:
            e = self.output.events[-1]
            if e["phase"] == "load" and e["edge"] == "start":
                self._say("  load ...")

    def _on_start(self, started: dict[str, Any]) -> None:
        self.started = started
        if "container" in started:
            self._meters.attach_container(started["container"])
        else:
            self._meters.attach_process(started["pid"])

    def alive(self) -> bool:
        return self._thread.is_alive()

    def bound_port(self) -> int | None:
        for e in self.output.events:
            if e["phase"] == "load" and e["edge"] == "end" and isinstance(e.get("port"), int):
                return int(e["port"])
        return None

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def kill(self) -> None:
        """Kill the server now (its process group, or its container); the runner then cleans up."""
        if "pid" in self.started:
            try:
                os.killpg(self.started["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif "container" in self.started:
            try:
                self.runner.client.containers.get(self.started["container"]).kill()
            except Exception:  # noqa: BLE001 - already gone
                pass

    def exit_note(self) -> str:
        """How the server ended, for a failure reason (empty while it runs)."""
        if self.alive():
            return ""
        ex = self.execution
        if ex is None:
            return f"; the runner failed: {self.error!r}"
        try:
            out = parse_stream(ex.stdout, required={})
        except ProtocolError:
            out = self.output
        if ex.start_error:
            return f"; the server could not start: {ex.start_error}"
        if out.error is not None:
            return f"; the server reported {out.error.get('error_type')}: {out.error['message']}"
        if ex.oom_killed:
            return "; the server was killed: out of memory"
        return f"; the server exited with code {ex.exit_code}"

    def log_tail(self) -> list[str]:
        return self.execution.log_tail() if self.execution is not None else []


def wait_ready(server: ServerHandle, host: str, port_of: Callable[[], int | None], timeout_s: float) -> int:
    """The port once /ready answers 200; ServingFailed when the server exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServingFailed("load", f"the server exited before it was ready{server.exit_note()}")
        port = port_of()
        if port is not None:
            try:
                status, _ = http_json(host, port, "GET", "/ready", None, 2.0)
                if status == 200:
                    return port
            except (OSError, http.client.HTTPException):
                pass
        time.sleep(0.1)
    raise ServingFailed("load", f"the server was not ready within {timeout_s:g} s (--ready-timeout)")


# --- exports (onnxruntime, openvino, torchscript) ---------------------------------------------


def model_identity(model: ResolvedModel) -> str:
    """Content of a model folder's small files, names and sizes of its weights; or the hub id."""
    if model.source == "hub":
        return f"hub:{model.location}"
    digest = hashlib.sha256()
    root = Path(model.location)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        if size < 64 << 20:
            digest.update(path.read_bytes())
        else:  # weights of a real model: hash the first and last MiB (hashing GBs on every run is slow)
            with open(path, "rb") as fh:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


def ensure_export(
    runner: Any,
    cache_root: Path,
    fmt: str,
    model: ResolvedModel,
    parity_prompts: list[str],
    timeout_s: float,
    say: Callable[[str], None],
) -> tuple[Path, dict[str, Any]]:
    """(folder, meta) of the cached export, exporting (with a greedy-token parity check) when missing."""
    inputs = {
        "format": fmt,
        "model": model_identity(model),
        "exporter_environment": runner.environment_id(EXPORT_IMAGE),
        "export_code": EXPORT_CODE_VERSION,
        "parity_prompts": parity_prompts,
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]
    root = cache_root / "serving"
    final = root / key
    if (final / "meta.json").is_file():
        return final, json.loads((final / "meta.json").read_text()) | {"reused": True}
    staging = new_staging(root, key, runner)
    out_mount = Mount(str(staging), "/out", read_only=False)
    mounts = [out_mount]
    model_path = model.location
    if model.source == "folder":
        mm = Mount(model.location, f"{MODEL_MOUNT}/{Path(model.location).name}")
        mounts.append(mm)
        model_path = runner.path_for(mm)
    spec = LmExportSpec(
        format=fmt, model_path=model_path, out_dir=runner.path_for(out_mount), parity_prompts=parity_prompts
    )
    say(f"exporting {model.label} to {fmt} in {EXPORT_IMAGE} ({runner.kind}) ...")
    try:
        ex = runner.execute(
            Invocation(
                image=EXPORT_IMAGE,
                argv=["serve-export", "--spec", spec.to_json()],
                timeout_s=timeout_s,
                mounts=mounts,
                network=model.source == "hub",
                env={"HF_HUB_OFFLINE": "1"} if model.source == "folder" else {},
                labels={"joulebench.conversion": f"lm2{fmt}"},
            )
        )
        try:
            out = parse_stream(ex.stdout, LM_EXPORT_FIELDS)
        except ProtocolError as exc:
            raise ServingFailed("export", f"export to {fmt}: {exc}") from None
        if ex.start_error:
            raise ServingFailed("export", f"export to {fmt} could not start: {ex.start_error}")
        if ex.timed_out:
            raise ServingFailed("export", f"export to {fmt} timed out after {timeout_s:g} s")
        if out.error is not None:
            raise ServingFailed("export", f"export to {fmt}: {out.error['message']}")
        if ex.exit_code != 0 or out.result is None:
            tail = " | ".join(ex.log_tail(5))
            raise ServingFailed("export", f"export to {fmt} exited with code {ex.exit_code}: {tail}")
        meta = out.result
        if not meta["parity"]["ok"]:
            raise ServingFailed(
                "export",
                f"{fmt} export's greedy tokens differ from transformers' on "
                f"{1 - meta['parity']['greedy_token_agreement']:.0%} of {meta['parity']['prompts_checked']} prompts",
            )
        meta = {**meta, "key": key, "key_inputs": inputs, "exported_by": ex.runner}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        for path in staging.iterdir():
            path.chmod(0o644)
        try:
            staging.rename(final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
        say(f"exported: {final}")
        return final, meta | {"reused": False}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- metrics ---------------------------------------------------------------------------------


def _energy_per(measurements: dict[str, Any] | None, count: int, what: str) -> dict[str, Any]:
    name = f"energy_per_{what}_j"
    if not measurements:
        return {"name": name, "value": None, "unit": "J", "available": False, "reason": "no measure window"}
    total = measurements["metrics"].get("total_energy_j", {})
    if not total.get("available"):
        return {
            "name": name,
            "value": None,
            "unit": "J",
            "available": False,
            "reason": total.get("reason", "no energy"),
        }
    if count <= 0:
        return {"name": name, "value": None, "unit": "J", "available": False, "reason": f"no {what}s in the window"}
    net = total.get("net_j")
    return {
        "name": name,
        "value": total["value"] / count,
        "unit": "J",
        "available": True,
        "reason": None,
        "net_j": net / count if net is not None else None,
        "net_reason": total.get("net_reason"),
        "covers": total.get("covers"),
        "gross": True,
    }


def serving_metrics(
    results: list[RequestResult], window_ns: tuple[int, int], measurements: dict[str, Any] | None
) -> dict[str, Any]:
    """Per-request time, tokens/s and energy per request and per generated token."""
    ok = [r for r in results if r.ok]
    lat_ms = sorted(r.latency_ns / 1e6 for r in ok)
    window_s = (window_ns[1] - window_ns[0]) / 1e9
    new_tokens = sum(r.new_tokens or 0 for r in ok)
    prompt_tokens = sum(r.prompt_tokens or 0 for r in ok)
    server_total = [r.server_ms["total"] for r in ok if r.server_ms]
    overhead = [r.latency_ns / 1e6 - r.server_ms["total"] for r in ok if r.server_ms]
    return {
        # Same names as batch runs (one request = one sample = one batch of 1), for the report.
        "batches": len(ok),
        "samples": len(ok),
        "latency_ms_mean": statistics.fmean(lat_ms) if lat_ms else None,
        "latency_ms_p50": _percentile(lat_ms, 0.50) if lat_ms else None,
        "latency_ms_p90": _percentile(lat_ms, 0.90) if lat_ms else None,
        "latency_ms_p99": _percentile(lat_ms, 0.99) if lat_ms else None,
        "window_s": window_s,
        "throughput_sps": len(ok) / window_s if window_s > 0 else None,
        # Serving's own.
        "requests": len(results),
        "requests_ok": len(ok),
        "http_errors": len(results) - len(ok),
        "time_per_request_s": statistics.fmean(lat_ms) / 1e3 if lat_ms else None,
        "prompt_tokens_total": prompt_tokens,
        "new_tokens_total": new_tokens,
        "tokens_per_s": new_tokens / window_s if window_s > 0 else None,
        "server_ms_mean": statistics.fmean(server_total) if server_total else None,
        "http_overhead_ms_mean": statistics.fmean(overhead) if overhead else None,
        "energy_per_request_j": _energy_per(measurements, len(ok), "request"),
        "energy_per_token_j": _energy_per(measurements, new_tokens, "token"),
    }


# --- one serving run -------------------------------------------------------------------------


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
    try:
        prompts, info = load_prompts(req.prompts, req.seed, req.limit)
    except PromptError as exc:
        raise UserError(str(exc)) from None
    return manifest, engine, model, prompts, info


def execute(req: ServeRequest, say: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Serve, drive, measure, write the record; returns (record, path). Failed runs are records too."""
    from controller.artifacts import default_cache
    from controller.runs import choose_runner, warn_stale

    manifest, engine, model, prompts, prompt_info = validate(req)
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
        "warmup_requests": req.warmup_requests,
        "warmup_s": req.warmup_s,
        "cooldown_s": req.cooldown_s,
        "request_timeout_s": req.request_timeout_s,
        "ready_timeout_s": req.ready_timeout_s,
        "window": "client-side: time.monotonic_ns() on the host around the replay of the prompt set",
        "requests": [],
    }
    record["serving"] = serving

    def fail(phase: str | None, reason: str, tail: list[str] | None = None) -> tuple[dict[str, Any], Path]:
        record.setdefault("runner", runner.describe(req.image))
        record.update(
            status="failed", failure={"phase": phase, "reason": reason, "exit_code": None, "log_tail": tail or []}
        )
        write_atomic(path, record)
        return record, path

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
        max_new_tokens_limit=max(req.max_new_tokens, 1024),
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
    client_events: list[dict[str, Any]] = []
    results: list[RequestResult] = []
    window: tuple[int, int] | None = None
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
        client_events.append(_event("warmup", "start", requests=req.warmup_requests))
        for i in range(req.warmup_requests):
            r = send_prompt(host, port, i, prompts[i % len(prompts)], req.max_new_tokens, req.request_timeout_s)
            if not r.ok:
                raise ServingFailed("warmup", f"warm-up request {i} ({r.prompt_id}): {r.error}{server.exit_note()}")
        client_events.append(_event("warmup", "end"))
        say(f"  measure: {len(prompts)} prompts, concurrency {req.concurrency} ...")
        start = _event("measure", "start")
        client_events.append(start)
        results = replay(host, port, prompts, req.max_new_tokens, req.concurrency, req.request_timeout_s)
        end = _event("measure", "end")
        client_events.append(end)
        window = (start["t_ns"], end["t_ns"])
        bad = next((r for r in results if not r.ok), None)
        if bad is not None:
            time.sleep(0.2)  # let a dying server's exit be seen, for the reason
            raise ServingFailed(
                "measure", f"request {bad.index} ({bad.prompt_id}) failed: {bad.error}{server.exit_note()}"
            )
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
        serving["requests"] = [asdict(r) for r in results]
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
    serving["requests"] = [asdict(r) for r in results]
    record["events"] = server.output.events + client_events
    if failure is not None:
        fail(failure.phase, failure.reason, server.log_tail())
        record["failure"]["exit_code"] = server.execution.exit_code if server.execution else None
        write_atomic(path, record)
        return record, path
    assert server.execution is not None and window is not None
    try:
        out = parse_stream(server.execution.stdout, SERVE_RESULT_FIELDS)
    except ProtocolError as exc:
        return fail("shutdown", f"protocol: {exc}", server.log_tail())
    if out.result is None or server.execution.exit_code != 0:
        return fail("shutdown", f"the server ended without a result{server.exit_note()}", server.log_tail())
    record["status"] = "ok"
    record["result"] = out.result
    record["measurements"] = meters.summarize(*window)
    record["metrics"] = serving_metrics(results, window, record["measurements"])
    if req.keep_trace:
        trace = path.with_suffix(".trace.parquet")
        meters.write_trace(trace)
        record["trace_path"] = trace.name
    write_atomic(path, record)
    return record, path


def _event(phase: str, edge: str, **info: Any) -> dict[str, Any]:
    return {"kind": "event", "phase": phase, "edge": edge, "t_ns": time.monotonic_ns(), "source": "client", **info}


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


def summary(record: dict[str, Any], path: Path) -> str:
    """The one-screen summary printed after a serving run."""
    from controller.runs import energy_lines

    s = record.get("serving", {})
    lines = [
        f"run        {record['run_id']}  [{record.get('status', '?').upper()}]  serving",
        f"image      {record['image']}   engine {record['engine']}   provider {record['provider']}",
        f"model      {record['model']}   runner {record.get('runner', {}).get('kind', '?')}",
        f"prompts    {s.get('prompts', {}).get('count')} ({s.get('prompts', {}).get('source')})   "
        f"max new tokens {s.get('max_new_tokens')}   concurrency {s.get('concurrency')}",
    ]
    art = record.get("artifact")
    if art:
        parity = art.get("parity", {})
        lines.append(
            f"artifact   {record['conversion']} {'(cached)' if art.get('reused') else '(new)'}  "
            f"greedy-token parity {parity.get('greedy_token_agreement', 0):.0%} of {parity.get('prompts_checked')}"
        )
    if record.get("status") == "ok":
        m = record["metrics"]
        lines += [
            f"load       {record['result']['load_s']:.2f} s (outside the window)",
            f"requests   {m['requests_ok']} in {m['window_s']:.3f} s   {m['tokens_per_s']:.2f} tokens/s   "
            f"{m['new_tokens_total']} tokens out, {m['prompt_tokens_total']} in",
            f"latency    mean {m['latency_ms_mean']:.1f} ms   p50 {m['latency_ms_p50']:.1f} ms   "
            f"p90 {m['latency_ms_p90']:.1f} ms   (HTTP + server overhead {m['http_overhead_ms_mean']:.2f} ms)",
        ]
        for name in ("energy_per_request_j", "energy_per_token_j"):
            e = m[name]
            shown = f"{e['value']:.4f} J" if e["available"] else f"unavailable: {str(e['reason']).split(':')[0]}"
            lines.append(f"energy     per {name.split('_')[2]:<8} {shown}")
        lines += energy_lines(record.get("measurements"))
    else:
        failure = record.get("failure", {})
        lines.append(f"failed     [{failure.get('phase')}] {failure.get('reason')}")
        for line in failure.get("log_tail", [])[-8:]:
            lines.append(f"  | {line}")
    lines.append(f"record     {path}")
    return "\n".join(lines)
