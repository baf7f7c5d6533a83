"""A quiet host before the window opens: foreign load looked for, waited for, recorded, flagged.

Before a run's meters start, the controller looks for what would share the host with the run:
another joulebench run (a harness process of the local runner, a container of the Docker runner)
and CPU time spent outside this controller, with the steal a hypervisor takes, over a short sample
of ``/proc/stat``; ``/proc/loadavg`` is recorded beside them. A run or container whose controller
on this host is gone (killed with ``kill -9``) is ended on sight; one whose controller lives is
waited for, as is a busy CPU, for at most the run's ``quiet_wait_s``; after that the run is
measured anyway and flagged ``foreign_load``: a flagged run is still a record, its energy and
time marked in doubt by the report. What was seen and how long the run waited is the record's
``host_state``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller.runners.base import Runner

FLAG = "foreign_load"
# More than half of all logical CPUs busy outside this controller (one core of a 2-core CI host),
# or a tenth of them taken by the hypervisor: the run would share the CPUs it is measured on.
BUSY_SHARE = 0.5
STEAL_SHARE = 0.1
SAMPLE_S = 0.25
POLL_S = 2.0


@dataclass
class Seen:
    """One look at the host."""

    runs: list[dict[str, Any]] = field(default_factory=list)  # other joulebench runs alive
    ended: list[str] = field(default_factory=list)  # orphans of dead controllers, ended
    cpu_busy_share: float | None = None
    cpu_steal_share: float | None = None
    load_avg: list[float] | None = None
    containers: str = "checked"  # or why the engine's containers could not be listed

    @property
    def reasons(self) -> list[str]:
        out = [f"another joulebench run is alive ({describe_run(r)})" for r in self.runs]
        if self.cpu_busy_share is not None and self.cpu_busy_share > BUSY_SHARE:
            out.append(f"the CPUs are {self.cpu_busy_share:.0%} busy outside this controller")
        if self.cpu_steal_share is not None and self.cpu_steal_share > STEAL_SHARE:
            out.append(f"the hypervisor steals {self.cpu_steal_share:.0%} of the CPUs")
        return out


def describe_run(run: dict[str, Any]) -> str:
    what = f"container {run['name']}" if run["kind"] == "container" else f"local harness, process group {run['pgid']}"
    return f"{what} of controller {run.get('owner') or '?'}, campaign {run.get('campaign') or '?'}"


def quiet_host(
    runner: Runner, wait_s: float, note: Callable[[str], None], sample_s: float = SAMPLE_S
) -> dict[str, Any]:
    """Look for foreign load, wait up to ``wait_s`` for it to go, say so; the record's ``host_state``."""
    t0 = time.monotonic()
    # What the runner's own start ended: containers (by name) or local process groups (described).
    reaped = list(getattr(runner, "reaped", []) or [])
    ended = [f"container {name}" for name in reaped] if runner.kind == "docker" else reaped
    seen = look(runner, sample_s)
    ended += seen.ended
    if seen.reasons and wait_s > 0:
        note(f"waiting up to {wait_s:g} s for a quiet host before measuring: {'; '.join(seen.reasons)}")
    while seen.reasons and time.monotonic() - t0 < wait_s:
        time.sleep(max(0.0, min(POLL_S, wait_s - (time.monotonic() - t0))))
        seen = look(runner, sample_s)
        ended += seen.ended
    waited = time.monotonic() - t0
    for what in ended:
        note(f"ended {what}, left by a controller that is gone")
    if seen.reasons:
        after = f" after waiting {waited:.0f} s" if wait_s > 0 else ""
        note(f"measuring under foreign load{after} (the run is flagged {FLAG}): {'; '.join(seen.reasons)}")
    return {
        "checked_at": datetime.now(timezone.utc).isoformat(),
        "quiet": not seen.reasons,
        "reasons": seen.reasons,
        "waited_s": round(waited, 3),
        "wait_limit_s": wait_s,
        "joulebench_runs": seen.runs,
        "ended_orphans": ended,
        "containers": seen.containers,
        "cpu_busy_share": seen.cpu_busy_share,
        "cpu_steal_share": seen.cpu_steal_share,
        "sample_s": sample_s,
        "load_avg": seen.load_avg,
        "logical_cores": os.cpu_count(),
        "thresholds": {"cpu_busy_share": BUSY_SHARE, "cpu_steal_share": STEAL_SHARE},
    }


def foreign_load_flags(host_state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The measurements' flag of a run measured under foreign load (none for a quiet host)."""
    if not host_state or host_state.get("quiet", True):
        return []
    waited = host_state.get("waited_s") or 0
    return [
        {
            "code": FLAG,
            "message": f"measured under foreign load ({'; '.join(host_state.get('reasons') or [])})"
            + (f" after waiting {waited:.0f} s for quiet" if waited >= 1 else ""),
            "reasons": list(host_state.get("reasons") or []),
        }
    ]


def look(runner: Runner, sample_s: float) -> Seen:
    """Other joulebench runs (orphans ended), then the CPUs over ``sample_s``."""
    from controller.runners.local import local_harnesses
    from controller.runners.local import reap_orphans as reap_local

    seen = Seen(ended=reap_local())
    seen.runs = [
        {"kind": "process", "pgid": h.pgid, "owner": h.owner, **_labels(h.labels)}
        for h in local_harnesses()
        if not h.ours and not h.orphan
    ]
    seen.containers = _containers(runner, seen)
    seen.cpu_busy_share, seen.cpu_steal_share = cpu_sample(sample_s)
    seen.load_avg = load_avg()
    return seen


def _labels(labels: dict[str, str]) -> dict[str, str | None]:
    return {"campaign": labels.get("joulebench.campaign"), "run": labels.get("joulebench.run")}


def _containers(runner: Runner, seen: Seen) -> str:
    """Running joulebench containers of other live controllers into ``seen``; orphans removed."""
    from controller.runners.docker_runner import OWNER_LABEL, labelled, owner_gone, reap_orphans

    client = getattr(runner, "client", None) or _engine()
    if client is None:
        return "not checked: no Docker engine answers here"
    try:
        seen.ended += [f"container {name}" for name in reap_orphans(client)]
        running = labelled(client, running_only=True)
    except Exception as exc:  # noqa: BLE001 - the engine went away: say so, measure on
        return f"not checked: the Docker engine did not answer ({type(exc).__name__})"
    me = f"{socket.gethostname()}:{os.getpid()}"
    for entry in running:
        labels = entry.get("Labels") or {}
        if labels.get(OWNER_LABEL) == me or owner_gone(labels):
            continue
        name = ((entry.get("Names") or [""])[0] or entry["Id"][:12]).lstrip("/")
        seen.runs.append({"kind": "container", "name": name, "owner": labels.get(OWNER_LABEL), **_labels(labels)})
    return "checked"


def _engine() -> Any:
    """A Docker client for a quick look, or None: a local run does not wait for an engine."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return None
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, no SDK, no answer: nothing to look at
        return None
    return client


def _cpu_ticks() -> list[int] | None:
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return [int(x) for x in fields[1:9]] + [0] * (8 - len(fields[1:9]))


def cpu_sample(sample_s: float) -> tuple[float | None, float | None]:
    """(busy share outside this process, steal share) of all CPUs over ``sample_s``; None where
    /proc/stat cannot say."""
    before, own_before = _cpu_ticks(), os.times()
    time.sleep(sample_s)
    after, own_after = _cpu_ticks(), os.times()
    if before is None or after is None:
        return None, None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)  # user nice system idle iowait irq softirq steal (guest is within user)
    if total <= 0:
        return None, None
    own = (own_after.user + own_after.system - own_before.user - own_before.system) * os.sysconf("SC_CLK_TCK")
    busy = total - delta[3] - delta[4] - delta[7] - own
    return round(min(1.0, max(0.0, busy / total)), 3), round(delta[7] / total, 3)


def load_avg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


class SessionWait:
    """How long each run of a campaign session waits for quiet: the bound, except after a run that
    waited it all out on a host that stayed busy; from then on runs check and flag without waiting,
    until one finds the host quiet again (a host busy for good must not add the bound to every run)."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.gave_up = False

    def next_s(self) -> float:
        return 0.0 if self.gave_up else self.bound_s

    def saw(self, host_state: dict[str, Any] | None) -> None:
        if not host_state:
            return
        if host_state.get("quiet"):
            self.gave_up = False
        elif (host_state.get("waited_s") or 0) >= self.bound_s > 0:
            self.gave_up = True
