"""The model server (harness ``serve``) started through a runner, in a background thread, and its readiness."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from controller.meters import MeterSession
from controller.runners.base import Execution, Invocation
from controller.serving.client import http_json
from controller.serving.settings import ServingFailed
from harness.protocol import (
    HarnessOutput,
    ProtocolError,
    parse_line,
    parse_stream,
)


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
