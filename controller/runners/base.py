"""What every runner is: the :class:`Runner` and :class:`Started` protocols, and what they take and return.

A runner starts the harness somewhere (a container, a subprocess) and hands back a
:class:`Started` handle: wait for it, kill it, read its logs, find its published port, clean up.
Nothing outside ``controller/runners/`` touches the Docker SDK's containers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.interrupts import signals_deferred

LOG_TAIL_LINES = 40
DEFAULT_PIDS_LIMIT = 4096  # processes and threads of one container: frameworks start many threads
DEFAULT_TMP_SIZE = "1g"  # the container's /tmp (tmpfs, in RAM)
DEFAULT_SHM_SIZE = "64m"  # the container's /dev/shm (in RAM): Docker's own size, now stated and recorded


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
    pids_limit: int = DEFAULT_PIDS_LIMIT
    tmp_size: str = DEFAULT_TMP_SIZE
    shm_size: str = DEFAULT_SHM_SIZE
    labels: dict[str, str] = field(default_factory=dict)
    # The image's entrypoint is the harness; a benchmark of the harness itself runs another script.
    entrypoint: list[str] | None = None
    on_line: Callable[[str], None] | None = None  # each stdout line, live


@dataclass
class Execution:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    oom_killed: bool = False
    # Killed by a signal the controller did not send (docker kill, kill -9, the OOM killer where
    # the runner cannot tell it apart): the signal's number.
    killed_from_outside: int | None = None
    runner: dict[str, Any] = field(default_factory=dict)
    start_error: str | None = None  # the harness never started (the engine refused the container)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return self.stderr.splitlines()[-lines:]


class Started(Protocol):
    """A harness that a runner started."""

    @property
    def workload(self) -> dict[str, Any]:
        """What the meters attach to: ``{"container": id}`` or ``{"pid": pid}``."""
        ...

    def alive(self) -> bool: ...

    def wait(self) -> Execution:
        """Block until it exits, or kill it at the invocation's timeout; what it said and how it ended."""
        ...

    def kill(self) -> None: ...

    def logs(self) -> list[str]:
        """The last lines of its stderr so far."""
        ...

    def published_port(self, container_port: int) -> int | None:
        """The host port a published container port landed on (None: not published, or not yet)."""
        ...

    def cleanup(self) -> None:
        """Remove what the start left behind (the container); safe to call twice."""
        ...


class Runner(Protocol):
    kind: str

    def path_for(self, mount: Mount) -> str:
        """Where the harness sees a mount."""
        ...

    def environment_id(self, image: str) -> str:
        """What identifies the environment an image's harness runs in (for the artifact cache)."""
        ...

    def describe(self, image: str) -> dict[str, Any]:
        """The runner and image, for the record."""
        ...

    def server_address(self) -> tuple[str, bool]:
        """(address a server binds to, whether its port is published by the runner)."""
        ...

    def start(self, inv: Invocation) -> Started: ...


def execute(runner: Runner, inv: Invocation) -> Execution:
    """Start, wait, always clean up: one harness invocation that runs to its end."""
    started = runner.start(inv)
    try:
        return started.wait()
    finally:
        with signals_deferred():
            started.cleanup()


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

    def tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return self.text().splitlines()[-lines:]
