"""The harness as a subprocess of the current Python environment: it dies with its controller
(``guard.py``), and one left by a controller that died anyway is found and ended by the next start,
as a Docker orphan is (its environment names its controller)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controller.hostinfo import pid_alive
from controller.images import package_sources_hash
from controller.runners.base import Execution, Invocation, LineSplitter, Mount, signals_deferred
from harness.serving.formats import EXPORTER_PACKAGES

# Packages whose versions identify a local environment for the artifact cache.
# What makes an export here (its cache key): a new version of any of these makes it again.
ENV_PACKAGES = ("torchvision", *EXPORTER_PACKAGES)
# What a local harness carries in its environment, as a container carries labels: the controller
# that started it (host:pid) and the run's labels (JSON).
OWNER_ENV = "JOULEBENCH_OWNER"
LABELS_ENV = "JOULEBENCH_LABELS"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class LocalHarness:
    """A process group of a local harness on this host, found through its environment."""

    pgid: int
    owner: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def orphan(self) -> bool:
        """Its controller ran on this host and is gone."""
        host, _, pid = self.owner.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))

    @property
    def ours(self) -> bool:
        return self.owner == _owner()


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def local_harnesses() -> list[LocalHarness]:
    """The local harnesses alive on this host (any controller's), one per process group."""
    found: dict[int, LocalHarness] = {}
    me, my_group = os.getpid(), os.getpgrp()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == me:
            continue
        env = _environ(entry)
        if OWNER_ENV not in env:
            continue
        try:
            pgid = os.getpgid(int(entry))
        except ProcessLookupError:
            continue
        if pgid == my_group or pgid in found:
            continue  # a controller started from within a harness: never our own group
        try:
            labels = json.loads(env.get(LABELS_ENV) or "{}")
        except ValueError:
            labels = {}
        found[pgid] = LocalHarness(pgid, env[OWNER_ENV], labels if isinstance(labels, dict) else {})
    return list(found.values())


def reap_orphans() -> list[str]:
    """End the local harnesses whose controller on this host is gone; what was ended."""
    ended = []
    for harness in local_harnesses():
        if not harness.orphan:
            continue
        try:
            os.killpg(harness.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        ended.append(f"process group {harness.pgid} (run {harness.labels.get('joulebench.run', '?')})")
    return ended


class LocalRunner:
    kind = "local"

    def __init__(self) -> None:
        self.reaped = reap_orphans()

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
        # The harness watches the read end (guard.py); this process holds the write end until the
        # harness is done with, so that the kernel closes it, and the harness dies, if we die first.
        watched, self._lifeline = os.pipe()
        env = {OWNER_ENV: _owner(), LABELS_ENV: json.dumps(inv.labels)}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.runners.guard", str(watched), "harness", *inv.argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **inv.env, "PYTHONUNBUFFERED": "1", **env},
                start_new_session=True,
                pass_fds=(watched,),
            )
        except BaseException:
            os.close(self._lifeline)
            raise
        finally:
            os.close(watched)
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
        self._let_go()

    def _let_go(self) -> None:
        """Close our end of the lifeline (once): a harness still running dies with it."""
        fd, self._lifeline = self._lifeline, -1
        if fd >= 0:
            os.close(fd)

    def logs(self) -> list[str]:
        return self.err.tail()

    def published_port(self, container_port: int) -> int | None:
        return None

    def cleanup(self) -> None:
        if self.alive():
            self.kill()
        self._let_go()


def _reader(stream: IO[bytes] | None, sink: LineSplitter) -> threading.Thread:
    def pump() -> None:
        assert stream is not None
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            sink.feed(chunk)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread
