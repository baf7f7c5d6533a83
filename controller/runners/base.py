"""What every runner takes and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Mount:
    host: str
    target: str  # where a container sees it; the local runner uses ``host`` itself
    read_only: bool = True


@dataclass
class Invocation:
    """One start of the harness: its arguments and the conditions it runs under."""

    image: str
    argv: list[str]
    timeout_s: float
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # False: no network (batch runs); True: the engine's default network; "host": the host's.
    network: bool | str = False
    # Container ports to publish, each on the given host address (e.g. {8000: "127.0.0.1"}).
    ports: dict[int, str] = field(default_factory=dict)
    gpu: bool = False
    memory: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    on_line: Callable[[str], None] | None = None  # each stdout line, live
    on_start: Callable[[dict[str, Any]], None] | None = None  # {"pid": ..} or {"container": ..}
    # Called once the harness has exited, before its container is removed (cgroup still there).
    on_exit: Callable[[], None] | None = None


@dataclass
class Execution:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    oom_killed: bool = False
    runner: dict[str, Any] = field(default_factory=dict)
    start_error: str | None = None  # the harness never started (the engine refused the container)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return self.stderr.splitlines()[-lines:]


class LineSplitter:
    """Turns chunks of bytes into complete lines for a callback; keeps everything it saw."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self._on_line = on_line
        self._pending = b""
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.parts.append(chunk)
        if self._on_line is None:
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._on_line(line.decode("utf-8", "replace"))

    def text(self) -> str:
        return b"".join(self.parts).decode("utf-8", "replace")
