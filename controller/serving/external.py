"""``serve --endpoint URL --model NAME``: measure an OpenAI-compatible server someone else started.

Nothing is started or stopped: the server (vLLM's, llama.cpp's, ours started by hand, a user's)
runs already, on this host, so the host's meters (RAPL, NVML, a wall meter) measure it with the
rest of the host. It goes through the run pipeline like every run (``controller/pipeline.py``)
with the same load as our servers (``controller/serving/drive.py``): probe (reachable, serves
NAME, streams) while validating, warm-up, one measure window per load point, one record each.
The server's process is not ours: its CPU time and RAM are measured only when ``--endpoint-pid``
names it; otherwise they are unavailable with that reason. The record says
``serving.endpoint.ours: false``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path
from typing import Any

from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.meters import MeterSession
from controller.progress import Progress
from controller.requests import RunRequest, ServeSettings
from controller.runners.base import Invocation, Mount, Started
from controller.serving.client import Endpoint, EndpointError, WorkItem, probe
from controller.serving.drive import Driven, drive, work_items
from controller.serving.workload import failure_info, point_metrics, point_outcomes, serving_settings_block
from controller.workload import Identity, Outcome, Plan, RunParts, Summarize
from suite.prompts import Prompt, PromptError, load_prompts

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


class ExternalRunner:
    """The runner of a server someone else started: nothing to start, convert or mount."""

    kind = "external"

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def path_for(self, mount: Mount) -> str:
        return mount.host

    def environment_id(self, image: str) -> str:
        return "external"

    def describe(self, image: str) -> dict[str, Any]:
        return {"kind": self.kind, "pid": self.pid}

    def server_address(self) -> tuple[str, bool]:
        return "127.0.0.1", False

    def start(self, inv: Invocation) -> Started:
        raise RuntimeError("an external endpoint's server is not started by joulebench")


class EndpointWorkload:
    mode = "serving"

    def __init__(self, request: RunRequest) -> None:
        assert isinstance(request.what, ServeSettings)
        self.request = request
        self.what: ServeSettings = request.what
        self.last_phase: str | None = None
        self.parts = RunParts()
        self.endpoint: Endpoint | None = None
        self.found: dict[str, Any] = {}
        self.prompts: list[Prompt] = []
        self.prompt_info: dict[str, Any] = {}
        self.meters: MeterSession | None = None  # its traces split each point's energy by phase

    def plan(self, check_data: bool = True) -> Plan:
        """Check the settings, read the prompts, probe the endpoint: UserError before any load."""
        w, s = self.what, self.what.serving
        if w.image or w.engine:
            raise UserError("--endpoint measures a server already running: --image and --engine do not apply to it")
        try:
            self.endpoint = ep = Endpoint.parse(str(w.endpoint), w.model)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if w.endpoint_pid is not None:
            import psutil

            if not psutil.pid_exists(w.endpoint_pid):
                raise UserError(f"--endpoint-pid {w.endpoint_pid}: no such process on this host")
        try:
            prompts_file = None if s.prompts == "humaneval" else Path(s.prompts)
            self.prompts, self.prompt_info = load_prompts(prompts_file, s.seed, s.limit, s.synthetic)
        except (ValueError, PromptError) as exc:
            raise UserError(str(exc)) from None
        if check_data:
            try:
                self.found = probe(ep, self.prompts[0].text, min(s.request_timeout_s, 60.0))
            except EndpointError as exc:
                raise UserError(str(exc)) from None
        identity = Identity(model=w.model, model_size="n/a", weights="external")
        return Plan(None, "external", [], identity, runner=ExternalRunner(w.endpoint_pid))

    def resolve(self, runner: Any, cache: ArtifactCache, progress: Progress) -> None:
        """Nothing to convert; the record's serving block says whose server it measures."""
        assert self.endpoint is not None
        ep, pid = self.endpoint, self.what.endpoint_pid
        local = is_local(ep.host)
        if not local:
            progress.note(f"warning: {ep.host} does not resolve to this host; the meters measure this host, not it")
        self.parts.spec = {"mode": "serving", "engine": "external", "endpoint": ep.url, "model": ep.model}
        self.parts.serving = {
            "endpoint": {
                "url": ep.url,
                "model": ep.model,
                "ours": False,
                "local": local,
                "pid": pid,
                "measured": "this host's meters (RAPL, NVML, wall) over each window; the server's own CPU and RAM "
                + ("through --endpoint-pid" if pid else "unavailable (no --endpoint-pid)"),
                **self.found,
            },
            "address": f"{ep.host}:{ep.port}",
            "prompts": self.prompt_info,
            **serving_settings_block(self.what.serving, self.items(), self.what.serving.extra_inputs or {}),
            "requests": [],
        }

    def items(self) -> list[WorkItem]:
        s = self.what.serving
        return work_items(self.prompts, s.max_new_tokens, s.ignores_eos())

    def drive(self, runner: Any, meters: MeterSession, run_id: str, progress: Progress) -> list[Outcome]:
        assert self.endpoint is not None
        self.meters = meters
        s = self.what.serving
        progress.note(f"measuring {self.endpoint.model} at {self.endpoint.url} (not started by joulebench) ...")
        if self.what.endpoint_pid is not None:
            meters.attach_process(self.what.endpoint_pid)
        t0 = time.monotonic()
        self.last_phase = "warmup"
        if s.warmup_s:
            time.sleep(s.warmup_s)
        self.last_phase = "measure"
        driven: Driven = drive(
            self.endpoint,
            self.items(),
            s.points(),
            warmup_requests=s.warmup_requests,
            timeout_s=s.request_timeout_s,
            say=progress.phase,
            extra=s.extra_inputs,
        )
        if s.cooldown_s and driven.failure is None:
            self.last_phase = "cooldown"
            time.sleep(s.cooldown_s)
        meters.stop()
        self.parts.elapsed_s = time.monotonic() - t0
        result = {"external": True, "endpoint": self.endpoint.url, "models": self.found.get("models")}
        overall = driven.failure if not driven.runs else None
        return point_outcomes(
            driven,
            [],
            runner.describe(""),
            result,
            failure_info,
            overall,
            run_id,
        )

    def metrics(self, outcome: Outcome, measurements: dict[str, Any] | None, summarize: Summarize) -> dict[str, Any]:
        if self.what.endpoint_pid is None:
            summarize = _not_ours(summarize)
            if measurements is not None:
                _say_not_ours(measurements)
        return point_metrics(outcome, measurements, summarize, self.what.serving.slo, meters=self.meters)


def _say_not_ours(summary: dict[str, Any]) -> None:
    """The workload figures the session could not take are unavailable because the server is not ours."""
    for name in WORKLOAD_METRICS:
        metric = summary["metrics"].get(name)
        if metric is not None and not metric["available"]:
            metric["reason"] = NOT_OURS
    if "workload" in summary.get("meters", {}):
        summary["meters"]["workload"]["reason"] = NOT_OURS


def _not_ours(summarize: Summarize) -> Summarize:
    def wrapped(t0_ns: int, t1_ns: int) -> dict[str, Any]:
        out = summarize(t0_ns, t1_ns)
        _say_not_ours(out)
        return out

    return wrapped
