"""What a workload is to the run pipeline: its :class:`Plan`, its :class:`Outcome`, the :class:`Workload` steps.

``controller/batch.py`` (the harness's measure loop) and ``controller/serving/workload.py`` (a
model server driven over HTTP) implement it; ``controller/pipeline.py`` runs them. A workload never
writes the record: it says what it planned (:class:`Plan`), what it made on the way
(:class:`RunParts`) and how each point ended (:class:`Outcome`); the pipeline builds the record from
those, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.cache import ArtifactCache
from controller.images import Manifest
from controller.meters import MeterSession
from controller.progress import Progress
from controller.record import Failure, FailureInfo
from controller.runners.base import Execution, Runner


@dataclass(frozen=True)
class Identity:
    """What the record names the run by: the model as run, its size and weights, the conversion."""

    model: str
    model_size: str
    weights: str
    conversion: str | None = None
    weights_label: str | None = None
    # The user's own model: kind, location, label, sha256 of its files (None for registry models).
    model_source: dict[str, Any] | None = None


@dataclass
class Plan:
    """What validation found, before anything starts: the image, engine and what the record names."""

    manifest: Manifest | None  # None: nothing of ours runs (a server someone else started)
    engine: str
    images: list[str]  # the run's image and the images of its conversions
    identity: Identity
    runner: Runner | None = None  # the workload's own runner (none to choose: nothing is started)

    @property
    def image(self) -> str:
        return self.manifest.name if self.manifest else "external"

    @property
    def provider(self) -> str:
        return self.manifest.provider if self.manifest else "unknown"

    @property
    def gpu(self) -> bool | None:
        """Whether the run uses GPUs; None: unknown (every GPU of the host is measured)."""
        return self.manifest.gpu if self.manifest else None


@dataclass
class RunParts:
    """What a workload made on its way that the record keeps, read by the pipeline whether the run
    ends or is interrupted: each is None (left out of the record) until the step that makes it."""

    artifact: dict[str, Any] | None = None  # what the engine loads, converted or exported (resolve)
    serving: dict[str, Any] | None = None  # the serving block: the settings, then what the drive learned
    spec: dict[str, Any] | None = None  # what the harness (or server) was asked to do
    elapsed_s: float | None = None  # the drive, start to clean-up


@dataclass
class Outcome:
    """What driving the workload gave for one record: how it ended, and what the record keeps of it.

    A workload gives one outcome per record: a batch run one, a serving run one per load point."""

    runner: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[int, int] | None = None  # the measure window, time.monotonic_ns()
    failure: FailureInfo | None = None  # None: it ran, and ``result`` is what it gave
    result: dict[str, Any] | None = None
    serving: dict[str, Any] = field(default_factory=dict)  # this point's part of the record's serving block
    detail: Any = None  # the workload's own, for its metrics()


Summarize = Callable[[int, int], dict[str, Any]]  # the meters' summary of a window (t0_ns, t1_ns)


class Workload(Protocol):
    mode: str
    last_phase: str | None  # where an interrupt found it
    parts: RunParts  # what it made so far, for the record

    def plan(self, check_data: bool = True) -> Plan:
        """Validate the request (UserError, before any work) and say what the run needs.

        ``check_data=False`` leaves the dataset unread (a campaign's plan checks it its own way)."""
        ...

    def resolve(self, runner: Runner, cache: ArtifactCache, progress: Progress) -> None:
        """Convert or export what the engine loads, once, into the cache (ConversionFailed); its
        ``parts`` say what was made."""
        ...

    def drive(self, runner: Runner, meters: MeterSession, run_id: str, progress: Progress) -> list[Outcome]:
        """Start the harness, attach the meters, run the workload, stop the meters, clean up; one
        outcome per record to write (never none). ``run_id``: the run's (and a sweep's group's) id."""
        ...

    def metrics(self, outcome: Outcome, measurements: dict[str, Any] | None, summarize: Summarize) -> dict[str, Any]:
        """The record's figures of an ok run (``summarize`` measures another window, e.g. a steady one)."""
        ...


def attach_meters(meters: MeterSession, workload: dict[str, Any]) -> None:
    """Sample the started harness's container (cgroup) or process tree."""
    if "container" in workload:
        meters.attach_container(workload["container"])
    elif "pid" in workload:
        meters.attach_process(workload["pid"])


def harness_failure(
    execution: Execution, error: dict[str, Any] | None, no_result: bool, timeout_s: float, memory: str | None
) -> tuple[str | None, str | None]:
    """(failure code, reason) of a harness that did not end well, or (None, None). ``{phase}`` in a
    reason stands for the phase it was in."""
    if execution.start_error:
        return Failure.START, f"the harness could not start: {execution.start_error}"
    if execution.timed_out:
        return Failure.TIMEOUT, f"timed out after {timeout_s:g} s (in phase {{phase}})"
    if execution.oom_killed:
        memory = memory or execution.runner.get("memory_limit")  # the default limit when none was asked for
        limit = f" (limit {memory})" if memory else ""
        return Failure.OUT_OF_MEMORY, f"killed: out of memory{limit} in phase {{phase}}"
    if execution.killed_from_outside is not None:
        who = (
            "from outside the controller (not a timeout; the container was not out of memory)"
            if execution.runner.get("kind") == "docker"
            else "from outside the controller (a user's kill, or the kernel's OOM killer: the local runner "
            "cannot tell which)"
        )
        return Failure.KILLED, f"killed by signal {execution.killed_from_outside} {who} in phase {{phase}}"
    if error is not None:
        return Failure.HARNESS_ERROR, f"{error.get('error_type', 'error')}: {error['message']}"
    if execution.exit_code != 0:
        return Failure.EXIT_CODE, f"harness exited with code {execution.exit_code}"
    if no_result:
        return Failure.NO_RESULT, "harness exited without a result"
    return None, None
