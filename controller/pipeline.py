"""One run on this host, batch or serving, as its steps — read this after ``cli.py``.

    validate -> choose the runner -> resolve artifacts -> a quiet host -> start the meters
      -> drive the workload -> cut the traces to its window -> build each record, once -> write -> summarise

Batch and serving runs differ only in their :class:`Workload` (``controller/batch.py``: the
harness's measure loop; ``controller/serving/workload.py``: a model server driven over HTTP;
``controller/serving/external.py``: a server someone else started). A workload's drive gives one
outcome per record: a serving run's load sweep (``--concurrency 1,4,16``) is one record per point,
each with its own run id, naming the first as its sweep's group.
A failed run is a record too; an interrupted one is recorded, then the interrupt goes on; a signal
while a record is being written waits until it is written. The pipeline is the one writer of the
record: a workload says what it made (its ``parts``) and how each point ended (its outcomes).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller import hostinfo
from controller.artifacts import ConversionFailed, default_cache
from controller.batch import BatchWorkload
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.interrupts import interrupted_reason, signals_deferred
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.progress import Progress
from controller.quiet import foreign_load_flags, quiet_host
from controller.record import Failure, FailureInfo, RunRecord, new_run_id, now_iso, record_path, write_record
from controller.requests import RunRequest, ServeSettings, check_meters, check_where
from controller.runners.base import Runner
from controller.runners.choose import choose_runner, stale_images
from controller.serving.external import EndpointWorkload
from controller.serving.workload import ServingWorkload
from controller.summary import summary
from controller.workload import Outcome, Plan, RunParts, Workload
from harness.protocol import PROTOCOL_VERSION


def workload_for(request: RunRequest) -> Workload:
    if request.mode == "serving":
        if isinstance(request.what, ServeSettings) and request.what.endpoint is not None:
            return EndpointWorkload(request)
        return ServingWorkload(request)
    return BatchWorkload(request)


def run(request: RunRequest, progress: Progress) -> tuple[RunRecord, Path]:
    """Run once and write the record; (record, path) of the first (a sweep's other points: :func:`run_all`)."""
    return run_all(request, progress)[0]


def run_all(request: RunRequest, progress: Progress) -> list[tuple[RunRecord, Path]]:
    """Run once and write its records, one per outcome; [(record, path)]. A failed run is a record too."""
    workload = workload_for(request)
    fingerprint = host_fingerprint()  # NVML opened once a run: the host's identity, its GPUs, the baseline's key
    plan = validate(request, workload, fingerprint)
    # The run exists from here on: one interrupted while its runner is chosen is recorded too.
    run = Run(request, plan, workload.parts, new_run_id(), now_iso(), fingerprint)
    path = record_path(request.where.results, request.where.campaign, run.run_id)
    try:
        runner = plan.runner or choose_runner(request.where.runner, plan.images, progress.note, progress)
        check_local_packages(request, plan, runner)  # a refusal: nothing is written
        for image in stale_images(runner, plan.images):
            progress.note(
                f"warning: image {image} was built from other harness/suite sources than this checkout's; "
                f"rebuild it: python -m controller images build {image}"
            )
        run.runner = runner.describe(plan.image)
        cache = open_cache(request, runner, progress)
    except KeyboardInterrupt as exc:
        with signals_deferred():
            write_record(path, run.failed(FailureInfo.interrupted("setup", interrupted_reason(exc))))
        raise

    try:
        workload.resolve(runner, cache, progress)
    except ConversionFailed as exc:
        record = run.failed(FailureInfo(Failure.CONVERSION, exc.reason, "convert", log_tail=exc.log_tail))
        with signals_deferred():
            write_record(path, record)
        return [(record, path)]
    except KeyboardInterrupt as exc:
        with signals_deferred():
            write_record(path, run.failed(FailureInfo.interrupted("convert", interrupted_reason(exc))))
        raise

    meters: MeterSession | None = None
    try:
        run.host_state = quiet_host(runner, request.meters.quiet_wait_s, progress.note)
        meters = start_meters(request, plan, fingerprint, progress)
        outcomes = workload.drive(runner, meters, run.run_id, progress)
    except KeyboardInterrupt as exc:
        # The tail of an interrupted run: a second Ctrl-C (or a SIGTERM) must not lose its record.
        with signals_deferred():
            try:
                if meters is not None:
                    meters.stop()
            finally:
                progress.idle()
                phase = workload.last_phase or "start-up"
                write_record(path, run.failed(FailureInfo.interrupted(phase, interrupted_reason(exc))))
        raise
    except BaseException:
        if meters is not None:
            meters.stop()
        progress.idle()
        raise
    # The tail of a run that ended: an interrupt now is acted on once its records are written.
    with signals_deferred():
        meters.stop()
        progress.idle()
        return write_outcomes(run, workload, path, outcomes, meters)


@dataclass
class Run:
    """What the pipeline knows of a run as it goes; each record of it is built from this once, at its end
    (as pyperf's worker builds its Run: ``create_run``), and checked as it is built."""

    request: RunRequest
    plan: Plan
    parts: RunParts  # what the workload made on its way
    run_id: str
    started_at: str
    fingerprint: dict[str, Any]
    runner: dict[str, Any] = field(default_factory=dict)  # described once chosen
    host_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.runner = self.runner or {"kind": self.request.where.runner, "image": self.plan.image}

    def failed(self, failure: FailureInfo) -> RunRecord:
        """The record of a run that ended before any outcome (interrupted, a failed conversion)."""
        return self.record(self.run_id, failure=failure)

    def record(
        self,
        run_id: str,
        outcome: Outcome | None = None,
        failure: FailureInfo | None = None,
        ended: tuple[dict[str, Any], dict[str, Any] | None, str | None] | None = None,
    ) -> RunRecord:
        """The record: the run as planned and driven, how ``outcome`` ended (or ``failure``), and an ok
        outcome's figures ``ended`` = (metrics, measurements, trace file)."""
        request, plan, parts = self.request, self.plan, self.parts
        failure = outcome.failure if outcome is not None else failure
        metrics, measurements, trace = ended if ended is not None and failure is None else (None, None, None)
        serving = parts.serving
        if serving is not None or (outcome is not None and outcome.serving):
            serving = copy.deepcopy(serving or {}) | copy.deepcopy(outcome.serving if outcome else {})
        return RunRecord(
            run_id=run_id,
            campaign=request.where.campaign,
            started_at=self.started_at,
            mode=request.mode,
            image=plan.image,
            engine=plan.engine,
            provider=plan.provider,
            cell=request.cell,
            host=hostinfo.host(self.fingerprint),
            gpus=hostinfo.gpus(self.fingerprint),
            runner=(outcome.runner if outcome is not None else None) or self.runner,
            protocol_version=PROTOCOL_VERSION,
            **asdict(plan.identity),
            spec=copy.deepcopy(parts.spec or {}),
            artifact=copy.deepcopy(parts.artifact),
            serving=serving,
            events=outcome.events if outcome is not None else [],
            elapsed_s=parts.elapsed_s,
            status="failed" if failure is not None else "ok",
            failure=failure,
            result=outcome.result if outcome is not None and failure is None else None,
            metrics=metrics,
            measurements=measurements,
            trace_path=trace,
            host_state=self.host_state,
        )


def write_outcomes(
    run: Run, workload: Workload, path: Path, outcomes: list[Outcome], meters: MeterSession
) -> list[tuple[RunRecord, Path]]:
    """One record per outcome, from the run as driven and the meters' traces; [(record, path)]. A
    sweep's further points are records of their own, each with its own run id."""
    where = run.request.where
    trace: str | None = None
    if run.request.meters.keep_trace and any(o.window is not None for o in outcomes):
        meters.write_trace(path.with_suffix(".trace.parquet"))  # the whole session, once, for every record
        trace = path.with_suffix(".trace.parquet").name
    written = []
    for k, outcome in enumerate(outcomes):
        run_id = run.run_id if k == 0 else new_run_id()
        at = path if k == 0 else record_path(where.results, where.campaign, run_id)
        record = run.record(run_id, outcome, ended=figures(run, workload, outcome, meters, trace))
        write_record(at, record)
        written.append((record, at))
    return written


def figures(
    run: Run, workload: Workload, outcome: Outcome, meters: MeterSession, trace: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None, str | None] | None:
    """An ok outcome's (metrics, measurements over its window, trace file); None for a failed one."""
    if outcome.failure is not None:
        return None
    assert outcome.result is not None
    measurements = None
    if outcome.window is not None:
        measurements = meters.summarize(*outcome.window)
        measurements["flags"] += foreign_load_flags(run.host_state)
    metrics = workload.metrics(outcome, measurements, meters.summarize)
    return metrics, measurements, trace if measurements is not None else None


def validate(request: RunRequest, workload: Workload, fingerprint: dict[str, Any]) -> Plan:
    """Every check that can fail before work starts: the request, where it writes, its meters, the host."""
    check_where(request.where)
    check_meters(request.meters)
    plan = workload.plan()
    gpus = hostinfo.gpus(fingerprint)
    if plan.gpu and not gpus["available"]:
        raise UserError(
            f"image {plan.image} ({plan.engine} on {plan.provider}) needs an NVIDIA GPU and this "
            f"host has none that NVML can see ({gpus['reason']}); run it on a GPU host, or use a CPU image "
            "(python -m controller images list)"
        )
    return plan


def check_local_packages(request: RunRequest, plan: Plan, runner: Runner) -> None:
    """The local runner runs in this Python: a package it lacks is said now, not after a conversion started."""
    from controller.local_needs import local_reasons, local_serving_reasons

    if runner.kind != "local" or plan.manifest is None:
        return
    conversion = plan.identity.conversion
    if request.mode == "serving":
        reasons = local_serving_reasons(plan.engine, conversion is not None)
    else:
        reasons = local_reasons(plan.engine, plan.provider, conversion)
    if reasons:
        raise UserError("; ".join(reasons))


def open_cache(request: RunRequest, runner: Runner, progress: Progress) -> ArtifactCache:
    cache = ArtifactCache(request.where.cache or default_cache(), runner.kind == "docker", progress.note)
    for abandoned in cache.clean_abandoned():
        progress.note(f"removed {abandoned.name}, left by a conversion that was killed")
    return cache


def start_meters(request: RunRequest, plan: Plan, fingerprint: dict[str, Any], progress: Progress) -> MeterSession:
    m = request.meters
    baseline = load_baseline(m.baseline, fingerprint=fingerprint, max_age_s=m.baseline_max_age_s)
    if not baseline.usable:
        progress.note(f"idle baseline {baseline.status}: {baseline.reason} (energies are gross only)")
    meters = MeterSession(
        m.interval_s,
        gpu_uuids=[] if plan.gpu is False else None,  # a CPU image's run is not charged for GPUs
        wall_url=m.wall_url,
        wall_output=m.wall_output,
        baseline=baseline,
        keep_trace=m.keep_trace,
        uncertainty_limit=m.uncertainty_limit,
    )
    meters.start()
    return meters


def summarise(record: RunRecord, path: Path) -> str:
    """The one-screen summary printed after a run."""
    return summary(record.to_dict(), path)
