"""The model server (harness ``serve``) started through a runner, and its readiness."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any

from controller.progress import Progress, fold_line
from controller.runners.base import Execution, Invocation, Runner, Started, signals_deferred
from controller.serving.client import http_json
from controller.serving.settings import CONTAINER_PORT, CONTROL_PORT, ServingFailed
from harness.protocol import (
    HarnessOutput,
    ProtocolError,
    parse_stream,
)


class ServerHandle:
    """The harness ``serve`` started through a runner; a thread waits for its end."""

    def __init__(
        self,
        runner: Runner,
        inv: Invocation,
        on_start: Callable[[dict[str, Any]], None],
        on_exit: Callable[[], None],
        progress: Progress,
    ) -> None:
        self.runner = runner
        self.output = HarnessOutput()
        self.protocol_error: str | None = None
        self.execution: Execution | None = None
        self.error: BaseException | None = None
        self.started: Started | None = None
        self._on_start, self._on_exit = on_start, on_exit
        self._progress = progress
        inv.on_line = self._line
        self._inv = inv
        self._thread = threading.Thread(target=self._wait, name="joulebench-server", daemon=True)

    def start(self) -> None:
        self.started = self.runner.start(self._inv)
        self._on_start(self.started.workload)
        self._thread.start()

    def _wait(self) -> None:
        assert self.started is not None
        try:
            self.execution = self.started.wait()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
        finally:
            self._on_exit()  # before the container (and its cgroup) is removed

    def _line(self, line: str) -> None:
        try:
            before = len(self.output.events)
            fold_line(line, self.output, self._progress.detail)  # the load's progress shown live
        except ProtocolError as exc:
            self.protocol_error = str(exc)
            return
        if len(self.output.events) > before:
            e = self.output.events[-1]
            if e["phase"] == "load" and e["edge"] == "start":
                self._progress.phase("load")

    @property
    def workload(self) -> dict[str, Any]:
        return self.started.workload if self.started is not None else {}

    def alive(self) -> bool:
        return self._thread.is_alive()

    def bound_port(self, key: str = "port") -> int | None:
        """The port the server reported binding (in its process or container); ``control_port``: where
        a runtime with its own server answers /ready and /shutdown (None: on the same port)."""
        for e in self.output.events:
            if e["phase"] == "load" and e["edge"] == "end" and isinstance(e.get(key), int):
                return int(e[key])
        return None

    def port(self, published: bool, key: str = "port") -> int | None:
        """Where the client reaches the server: the bound port, or the host port Docker published."""
        bound = self.bound_port(key)
        if not published or bound is None or self.started is None:
            return bound
        return self.started.published_port(CONTAINER_PORT if key == "port" else CONTROL_PORT)

    def control_port(self, published: bool) -> int | None:
        """Where /ready and /shutdown are: the control port of a runtime's own server, else the API's."""
        if self.bound_port("control_port") is not None:
            return self.port(published, "control_port")
        return self.port(published)

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def kill(self) -> None:
        """Kill the server now; :meth:`cleanup` then removes what is left."""
        if self.started is not None:
            self.started.kill()

    def cleanup(self) -> None:
        if self.started is not None:
            with signals_deferred():
                if self.alive():
                    self.started.kill()
                    self.wait(60.0)
                self.started.cleanup()

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
        if ex.killed_from_outside is not None:
            return f"; the server was killed by signal {ex.killed_from_outside} from outside the controller"
        return f"; the server exited with code {ex.exit_code}"

    def log_tail(self) -> list[str]:
        if self.execution is not None:
            return self.execution.log_tail()
        return self.started.logs() if self.started is not None else []


def wait_ready(server: ServerHandle, host: str, published: bool, timeout_s: float) -> int:
    """The port once /ready answers 200; ServingFailed when the server exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServingFailed("load", f"the server exited before it was ready{server.exit_note()}")
        port, control = server.port(published), server.control_port(published)
        if port is not None and control is not None:
            try:
                status, _ = http_json(host, control, "GET", "/ready", None, 2.0)
                if status == 200:
                    return port
            except (OSError, http.client.HTTPException):
                pass
        time.sleep(0.1)
    raise ServingFailed("load", f"the server was not ready within {timeout_s:g} s (--ready-timeout)")
