"""The harness as a subprocess of the current Python environment."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from controller.images import package_sources_hash
from controller.runners.base import Execution, Invocation, LineSplitter, Mount, signals_deferred
from harness.serving.formats import EXPORTER_PACKAGES

# Packages whose versions identify a local environment for the artifact cache.
# What makes an export here (its cache key): a new version of any of these makes it again.
ENV_PACKAGES = ("torchvision", *EXPORTER_PACKAGES)


class LocalRunner:
    kind = "local"

    def path_for(self, mount: Mount) -> str:
        return mount.host

    def server_address(self) -> tuple[str, bool]:
        return "127.0.0.1", False

    def environment_id(self, image: str) -> str:
        versions = []
        for name in ENV_PACKAGES:
            try:
                versions.append(f"{name}=={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                continue
        # The sources that build and convert models belong to the environment: a changed
        # definition or exporter must not reuse an artifact made by the old one.
        return f"local:{sys.version.split()[0]}:{package_sources_hash()}:" + ",".join(versions)

    def describe(self, image: str) -> dict[str, Any]:
        return {"kind": self.kind, "image": image, "python": sys.executable}

    def start(self, inv: Invocation) -> StartedProcess:
        return StartedProcess(inv, self.describe(inv.image))


class StartedProcess:
    """The harness in its own process group, so that a kill takes its children too."""

    def __init__(self, inv: Invocation, described: dict[str, Any]) -> None:
        self.inv = inv
        self.out, self.err = LineSplitter(inv.on_line), LineSplitter(None)
        self.killed_by_us = False
        self._deadline = time.monotonic() + inv.timeout_s
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *inv.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **inv.env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self.described = described | {"pid": self.proc.pid}
        try:
            self._readers = [_reader(self.proc.stdout, self.out), _reader(self.proc.stderr, self.err)]
        except BaseException:  # an interrupt here: the process (in its own session) must not outlive us
            with signals_deferred():
                self.kill()
            raise

    @property
    def workload(self) -> dict[str, Any]:
        return {"pid": self.proc.pid}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self) -> Execution:
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        except BaseException:
            self.kill()
            raise
        finally:
            for thread in self._readers:
                thread.join(timeout=5)
        code = self.proc.returncode
        # Without a cgroup the kernel's OOM killer and a user's kill -9 look the same: a SIGKILL
        # the controller did not send. The failure reason says both.
        outside = -code if code is not None and code < 0 and not self.killed_by_us else None
        return Execution(
            exit_code=code,
            stdout=self.out.text(),
            stderr=self.err.text(),
            timed_out=timed_out,
            killed_from_outside=outside,
            runner=self.described,
        )

    def kill(self) -> None:
        self.killed_by_us = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def logs(self) -> list[str]:
        return self.err.tail()

    def published_port(self, container_port: int) -> int | None:
        return None

    def cleanup(self) -> None:
        if self.alive():
            self.kill()


def _reader(stream: IO[bytes] | None, sink: LineSplitter) -> threading.Thread:
    def pump() -> None:
        assert stream is not None
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            sink.feed(chunk)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread
