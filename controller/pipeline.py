"""One run on this host, batch or serving, as its steps — read this after ``cli.py``.

    validate -> choose the runner -> the record -> resolve artifacts -> a quiet host -> start the meters
      -> drive the workload -> cut the traces to its window -> build the record -> write -> summarise

Batch and serving runs differ only in their :class:`Workload` (``controller/batch.py``: the
harness's measure loop; ``controller/serving/workload.py``: a model server driven over HTTP;
``controller/serving/external.py``: a server someone else started). A workload's drive gives one
outcome per record: a serving run's load sweep (``--concurrency 1,4,16``) is one record per point,
each with its own run id, naming the first as its sweep's group.
A failed run is a record too; an interrupted one is recorded, then the interrupt goes on; a signal
while a record is being written waits until it is written.
"""

from __future__ import annotations

import copy
from pathlib import Path

from controller import hostinfo
from controller.artifacts import ConversionFailed, default_cache
from controller.batch import BatchWorkload
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.interrupts import interrupted_reason, signals_deferred
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.progress import Progress
from controller.quiet import foreign_load_flags, quiet_host
from controller.record import Failure, RunRecord, new_run_id, now_iso, record_path, write_record
from controller.requests import RunRequest, ServeSettings, check_meters, check_where
from controller.runners.base import Runner
from controller.runners.choose import choose_runner, stale_images
from controller.serving.external import EndpointWorkload
from controller.serving.workload import ServingWorkload
from controller.summary import summary
from controller.workload import Outcome, Plan, Workload
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
    plan = validate(request, workload)
    # The record exists from here on: a run interrupted while its runner is chosen is recorded too.
    record = new_record(request, plan)
    path = record_path(request.where.results, request.where.campaign, record.run_id)
    try:
        runner = plan.runner or choose_runner(request.where.runner, plan.images, progress.note, progress)
        check_local_packages(request, plan, runner)  # a refusal: nothing is written
        for image in stale_images(runner, plan.images):
            progress.note(
                f"warning: image {image} was built from other harness/suite sources than this checkout's; "
                f"rebuild it: python -m controller images build {image}"
            )
        record.runner = runner.describe(plan.image)
        cache = open_cache(request, runner, progress)
    except KeyboardInterrupt as exc:
        with signals_deferred():
            write_record(path, record.interrupted("setup", reason=interrupted_reason(exc)))
        raise

    try:
        workload.resolve(runner, cache, record, progress)
    except ConversionFailed as exc:
        with signals_deferred():
            write_record(path, record.fail(Failure.CONVERSION, exc.reason, "convert", log_tail=exc.log_tail))
        return [(record, path)]
    except KeyboardInterrupt as exc:
        with signals_deferred():
            write_record(path, record.interrupted("convert", reason=interrupted_reason(exc)))
        raise

    meters: MeterSession | None = None
    try:
        record.host_state = quiet_host(runner, request.meters.quiet_wait_s, progress.note)
        meters = start_meters(request, plan, progress)
        outcomes = workload.drive(runner, meters, record, progress)
    except KeyboardInterrupt as exc:
        # The tail of an interrupted run: a second Ctrl-C (or a SIGTERM) must not lose its record.
        with signals_deferred():
            try:
                if meters is not None:
                    meters.stop()
            finally:
                progress.idle()
                phase = workload.last_phase or "start-up"
                write_record(path, record.interrupted(phase, reason=interrupted_reason(exc)))
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
        return write_outcomes(request, workload, record, path, outcomes, meters)


def write_outcomes(
    request: RunRequest,
    workload: Workload,
    record: RunRecord,
    path: Path,
    outcomes: list[Outcome],
    meters: MeterSession,
) -> list[tuple[RunRecord, Path]]:
    """One record per outcome, from the run as driven and the meters' traces; [(record, path)]."""
    template = copy.deepcopy(record)  # a sweep's further records start from the run as driven, not from the first
    trace: str | None = None
    if request.meters.keep_trace and any(o.window is not None for o in outcomes):
        meters.write_trace(path.with_suffix(".trace.parquet"))  # the whole session, once, for every record
        trace = path.with_suffix(".trace.parquet").name
    written = []
    for k, outcome in enumerate(outcomes):
        rec, at = (record, path) if k == 0 else point_record(template, request)
        build_record(rec, workload, outcome, meters)
        if rec.measurements is not None:
            rec.trace_path = trace
        write_record(at, rec)
        written.append((rec, at))
    return written


def point_record(template: RunRecord, request: RunRequest) -> tuple[RunRecord, Path]:
    """A further record of the same run (a sweep's next point): the run's copy with its own id."""
    rec = copy.deepcopy(template)
    rec.run_id = new_run_id()
    return rec, record_path(request.where.results, request.where.campaign, rec.run_id)


def validate(request: RunRequest, workload: Workload) -> Plan:
    """Every check that can fail before work starts: the request, where it writes, its meters, the host."""
    check_where(request.where)
    check_meters(request.meters)
    plan = workload.plan()
    fingerprint = host_fingerprint()
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
    conversion = plan.identity.get("conversion")
    if request.mode == "serving":
        reasons = local_serving_reasons(plan.engine, conversion is not None)
    else:
        reasons = local_reasons(plan.engine, plan.provider, conversion)
    if reasons:
        raise UserError("; ".join(reasons))


def new_record(request: RunRequest, plan: Plan) -> RunRecord:
    """The run's record as it starts: failed until the workload proves otherwise (its runner is
    described once chosen)."""
    fingerprint = host_fingerprint()
    return RunRecord(
        run_id=new_run_id(),
        campaign=request.where.campaign,
        started_at=now_iso(),
        mode=request.mode,
        image=plan.image,
        engine=plan.engine,
        provider=plan.provider,
        cell=request.cell,
        host=hostinfo.host(fingerprint),
        gpus=hostinfo.gpus(fingerprint),
        runner={"kind": request.where.runner, "image": plan.image},
        protocol_version=PROTOCOL_VERSION,
        **plan.identity,
    )


def open_cache(request: RunRequest, runner: Runner, progress: Progress) -> ArtifactCache:
    cache = ArtifactCache(request.where.cache or default_cache(), runner.kind == "docker", progress.note)
    for abandoned in cache.clean_abandoned():
        progress.note(f"removed {abandoned.name}, left by a conversion that was killed")
    return cache


def start_meters(request: RunRequest, plan: Plan, progress: Progress) -> MeterSession:
    m = request.meters
    baseline = load_baseline(m.baseline, fingerprint=host_fingerprint(), max_age_s=m.baseline_max_age_s)
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


def build_record(record: RunRecord, workload: Workload, outcome: Outcome, meters: MeterSession) -> None:
    """Fill the record from the outcome: the failure, or the result with its figures over the window."""
    record.runner = outcome.runner or record.runner
    record.events = outcome.events
    try:
        if outcome.failure is not None:
            record.fail(**outcome.failure)
            return
        assert outcome.result is not None
        if outcome.window is not None:
            record.measurements = meters.summarize(*outcome.window)
            record.measurements["flags"] += foreign_load_flags(record.host_state)
        record.ok(outcome.result, workload.metrics(outcome, record.measurements, meters.summarize))
    finally:
        if outcome.serving:
            assert record.serving is not None
            record.serving.update(outcome.serving)


def summarise(record: RunRecord, path: Path) -> str:
    """The one-screen summary printed after a run."""
    return summary(record.to_dict(), path)
