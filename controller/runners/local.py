"""The harness as a subprocess of the current Python environment."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from controller.images import package_sources_hash
from controller.runners.base import Execution, Invocation, LineSplitter, Mount

# Packages whose versions identify a local environment for the artifact cache.
ENV_PACKAGES = ("torch", "torchvision", "transformers", "onnx", "onnxscript", "onnxruntime")


class LocalRunner:
    kind = "local"

    def path_for(self, mount: Mount) -> str:
        return mount.host

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

    def execute(self, inv: Invocation) -> Execution:
        env = {**os.environ, **inv.env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *inv.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: a kill takes its children too
        )
        out, err = LineSplitter(inv.on_line), LineSplitter(None)
        readers = [_reader(proc.stdout, out), _reader(proc.stderr, err)]
        if inv.on_start:
            inv.on_start({"pid": proc.pid})
        timed_out = False
        try:
            proc.wait(timeout=inv.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            for thread in readers:
                thread.join(timeout=5)
        if inv.on_exit:
            inv.on_exit()
        code = proc.returncode
        return Execution(
            exit_code=code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            # Without a cgroup the kernel's OOM killer shows only as SIGKILL we did not send.
            oom_killed=(code == -signal.SIGKILL and not timed_out),
            runner=self.describe(inv.image) | {"pid": proc.pid},
        )


def _reader(stream: IO[bytes] | None, sink: LineSplitter) -> threading.Thread:
    def pump() -> None:
        assert stream is not None
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            sink.feed(chunk)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
