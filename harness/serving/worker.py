"""The generation process: the engine alone in its process, generating one request at a time.

The HTTP server (:mod:`harness.serving.server`) starts it and talks to it through two pipes: jobs
in, events out. Why a process of its own: in one process, the event loop that writes each token to
its client and the thread that generates share the GIL, and on a busy CPU every token's hand-off
then costs the generating thread a wait for the GIL (measured on two shared cores: +20 % time per
output token). Here handing a token over is one write to a pipe, and nothing the server does can
hold the generation up.

Lines, each a kind letter and its fields::

    jobs    j {"id", "ids", "max_tokens", "ignore_eos"}  |  c <id> (cancel)  |  q (quit)
    events  r {"generation", "providers_active", "versions"} (loaded)  |  x <message> (could not load)
            t <id> <token> <t_ns>  |  d <id> {"token_ids", "start_ns", "first_ns", "end_ns"}  |  e <id> <message>

Times are ``time.monotonic_ns()``, the clock the server's process (and the host's client) reads too;
``t_ns`` is when the engine handed the token out, the engine's own token time the record keeps beside
the client's. Per token the generation does one clock read and one pipe write: a cancel is looked
for at most every ``CANCEL_CHECK_NS`` (a select() per token would cost the generation a system
call per token for an event that is rare). Fault injection (the
spec's options): ``fault_exit_after=N`` exits with code 70 when generation N+1 starts;
``fault_hang_after=N`` never finishes generation N+1.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from harness import progress
from harness.engines.base import EngineError
from harness.progress import report
from harness.protocol import ServeSpec
from harness.serving.registry import language_model


class Cancelled(Exception):
    """The server said the client went away: stop generating for it."""


CANCEL_CHECK_NS = 2_000_000  # a client that left is noticed within 2 ms (and one more token)


class JobReader:
    """Lines from the server as they come; a cancel is noticed between two tokens."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.lines: deque[str] = deque()
        self.cancelled: set[int] = set()

    def _read(self, block: bool) -> None:
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return
        data = os.read(self.fd, 1 << 16)
        if not data:  # the server is gone
            self.lines.append("q")
            return
        *full, self.buffer = (self.buffer + data).split(b"\n")
        for raw in full:
            line = raw.decode()
            if line.startswith("c "):
                self.cancelled.add(int(line[2:]))
            else:
                self.lines.append(line)

    def next(self) -> str:
        while not self.lines:
            self._read(block=True)
        return self.lines.popleft()

    def is_cancelled(self, job_id: int) -> bool:
        self._read(block=False)
        return job_id in self.cancelled


def generate(lm: Any, job: dict[str, Any], jobs: JobReader, send: Callable[..., None], events: int) -> bool:
    """Run one job, each token written as it comes; whether it finished."""
    jid = job["id"]
    times = {"start_ns": time.monotonic_ns(), "first_ns": 0}
    checked = [times["start_ns"]]

    def on_token(token: int) -> None:
        now = time.monotonic_ns()
        if not times["first_ns"]:
            times["first_ns"] = now
        os.write(events, b"t %d %d %d\n" % (jid, token, now))
        if now - checked[0] > CANCEL_CHECK_NS:
            checked[0] = now
            if jobs.is_cancelled(jid):
                raise Cancelled

    try:
        new = lm.stream_ids(job["ids"], job["max_tokens"], on_token, job["ignore_eos"])
    except Cancelled:
        send("e", jid, json.dumps("cancelled"))
        return False
    except Exception as exc:  # noqa: BLE001 - this request fails, the server goes on
        send("e", jid, json.dumps(f"{type(exc).__name__}: {exc}"))
        return False
    send("d", jid, json.dumps({"token_ids": new, **times, "end_ns": time.monotonic_ns()}))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.serving.worker")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--jobs", type=int, required=True, help="fd to read jobs from")
    parser.add_argument("--events", type=int, required=True, help="fd to write events to")
    args = parser.parse_args(argv)
    spec = ServeSpec.from_json(args.spec)

    def send(kind: str, *fields: object) -> None:
        os.write(args.events, (" ".join([kind, *map(str, fields)]) + "\n").encode())

    progress.set_sink(lambda payload: send("p", json.dumps(payload)))  # the server passes it on
    try:
        lm = language_model(spec)
        report(f"loading the model ({spec.engine})")
        lm.load()
    except EngineError as exc:
        send("x", json.dumps(str(exc)))
        return 3
    except Exception as exc:  # noqa: BLE001 - told to the server, which fails its load with it
        send("x", json.dumps(f"{type(exc).__name__}: {exc}"))
        return 3
    progress.set_sink(None)  # loaded: the events pipe carries tokens from now on
    send(
        "r",
        json.dumps({"generation": lm.describe(), "providers_active": lm.providers_active(), "versions": lm.versions()}),
    )
    jobs = JobReader(args.jobs)
    served = 0
    exit_after = int(spec.options.get("fault_exit_after", -1))
    hang_after = int(spec.options.get("fault_hang_after", -1))
    while (line := jobs.next()) != "q":
        job = json.loads(line[2:])
        if job["id"] in jobs.cancelled:
            continue
        if served == exit_after:
            os._exit(70)
        if served == hang_after:
            threading.Event().wait()
        if generate(lm, job, jobs, send, args.events):
            served += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
