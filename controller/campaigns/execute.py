"""Running a campaign: its cells in order through the run pipeline, resume, cool-downs, progress.

Each run's record is written atomically by the pipeline and carries its cell (``record["cell"]``);
resuming is reading the folder back (``history``). A controller killed with ``kill -9`` therefore
loses at most the run in flight, and the folder's lock keeps a second controller out meanwhile.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.campaigns.cooldown import CoolDown
from controller.campaigns.estimate import estimate
from controller.campaigns.history import (
    cell_state,
    check_identity,
    duplicated,
    interrupted,
    locked,
    log_session,
    recorded,
    resolve_seed,
)
from controller.campaigns.readiness import Assessment, assess
from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError
from controller.progress import CampaignProgress
from controller.record import Failure, RunRecord, new_run_id, now_iso, record_path, write_record
from controller.requests import MeterSettings, Where


def apply_idle_policy(campaign: Campaign, say: Callable[[str], None]) -> None:
    from controller.meters import load_baseline, measure_idle, save_baseline

    policy = campaign.idle
    status = load_baseline(max_age_s=policy.max_age_days * 86400)
    if policy.policy == "stored":
        return
    if policy.policy == "require":
        if not status.usable:
            raise UserError(
                f"the campaign's idle policy is 'require' and the idle baseline is {status.status}: "
                f"{status.reason}. Measure one: python -m controller idle --duration {policy.duration_s:g}"
            )
        return
    if policy.policy == "measure-if-missing" and status.usable:
        return
    say(f"idle baseline ({policy.policy}): measuring {policy.duration_s:g} s of idle power; keep this host idle ...")
    baseline = measure_idle(policy.duration_s, interval_s=campaign.interval_s)
    path = save_baseline(baseline)
    shown = ", ".join(
        f"{d} {e['power_w']:.2f} W" if e["available"] else f"{d} unavailable"
        for d, e in sorted(baseline.domains.items())
    )
    say(f"idle baseline stored {path}: {shown}")


def setup_failed(
    cell: Cell,
    where: Where,
    record_cell: dict[str, Any],
    reason: str,
    code: str = Failure.SETUP,
    cluster: dict[str, Any] | None = None,
) -> Path:
    """A run that could not even start (validation, runner), or was lost with its node, is still a
    failed record."""
    record = RunRecord(
        run_id=new_run_id(),
        campaign=where.campaign,
        started_at=now_iso(),
        mode=cell.mode,
        image=cell.image,
        engine=cell.engine,
        provider=None,
        model=cell.model,
        model_size=cell.model_size,
        weights=cell.weights,
        cell=record_cell,
        spec={"batch_size": cell.batch_size, "dataset": cell.dataset},
        cluster=cluster,
    ).fail(code, reason, "setup" if code == Failure.SETUP else None)
    path = record_path(where.results, where.campaign, record.run_id)
    write_record(path, record)
    return path


def run_settings(campaign: Campaign, runner: str, results: Path, cache: Path | None) -> tuple[Where, MeterSettings]:
    """Where the campaign's runs execute and write, and their meters."""
    where = Where(
        runner=runner,
        results=results,
        campaign=campaign.name,
        cache=cache,
        timeout_s=campaign.timeout_s,
        memory=campaign.memory,
    )
    meters = MeterSettings(
        interval_s=campaign.interval_s,
        keep_trace=campaign.keep_trace,
        baseline_max_age_s=campaign.idle.max_age_days * 86400,
    )
    return where, meters


def ok_line(record: dict[str, Any]) -> str:
    """What a finished run shows on the progress line."""
    m = record.get("metrics") or {}
    window = m.get("window_s") or 0
    if record.get("mode") == "serving":
        return f"{m.get('requests_ok')} requests, {m.get('tokens_per_s') or 0:.1f} tokens/s over {window:.3f} s"
    line = f"{m.get('throughput_sps') or 0:.1f} samples/s over {window:.3f} s"
    acc = m.get("accuracy") or {}
    if acc.get("available"):
        line += f", top-1 {acc['value']:.2%}" + ("" if acc.get("meaningful") else " (random weights)")
    return line


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Todo:
    """What this session of a campaign runs, and what it leaves."""

    ordered: list[Cell]
    run: list[Cell]
    blocked: list[tuple[Cell, str | None]]
    kept_failed: list[Cell]
    already_ok: int


def todo(
    campaign: Campaign, assessment: Assessment, history: dict[str, list[dict[str, Any]]], seed: int, retry: bool
) -> Todo:
    ordered = campaign.ordered(seed)
    states = {c.id: cell_state(history.get(c.id, [])) for c in ordered}
    blocked = [(c, assessment.runnable(c)[1]) for c in ordered if not assessment.runnable(c)[0]]
    blocked_ids = {c.id for c, _ in blocked}
    runnable = [c for c in ordered if c.id not in blocked_ids]
    run = [c for c in runnable if states[c.id] in ("todo", "interrupted") or (states[c.id] == "failed" and retry)]
    kept = [c for c in runnable if states[c.id] == "failed" and not retry]
    return Todo(ordered, run, blocked, kept, sum(1 for s in states.values() if s == "ok"))


def run_campaign(
    campaign: Campaign,
    results: Path,
    *,
    retry_failed: bool = False,
    cache: Path | None = None,
    runner: str | None = None,
    cluster: str | None = None,
    build_images: bool = False,
    say: Callable[[str], None] = _stderr,
) -> int:
    """Run what is left of the campaign, here or on the Ray cluster at ``cluster``; print the summary
    on stdout. Exit status 0 when every cell is recorded ok, 1 when some failed or cannot run, 130
    when interrupted."""
    if cluster is not None:
        from controller.cluster.execute import run_on_cluster

        return run_on_cluster(campaign, results, cluster, retry_failed, cache, runner, build_images, say)
    assessment = assess(campaign, runner)
    with locked(results, campaign, say):
        return _run_locked(campaign, results, assessment, retry_failed, cache, say)


@dataclass
class Session:
    """A session of a campaign as it starts: its seed, the folder's records, what it runs."""

    seed: int
    history: dict[str, list[dict[str, Any]]]
    plan: Todo


def begin_session(
    campaign: Campaign,
    results: Path,
    assessment: Assessment,
    retry_failed: bool,
    say: Callable[[str], None],
    logged: dict[str, Any],
    here: str = "here",
) -> Session:
    """Read the folder back, decide what runs, log the session and say so (the lock is held)."""
    seed = resolve_seed(results, campaign)
    history = recorded(results, campaign.name, warn=say)
    check_identity(campaign, history)
    plan = todo(campaign, assessment, history, seed, retry_failed)
    log_session(
        results,
        campaign,
        {
            "file": str(campaign.path),
            "seed": seed,
            "order": campaign.order,
            "runner": assessment.runner,
            "retry_failed": retry_failed,
            "pid": os.getpid(),
            "to_run": len(plan.run),
            "already_ok": plan.already_ok,
            **logged,
        },
    )
    say(
        f"campaign {campaign.name}: {len(plan.ordered)} runs in the matrix; {plan.already_ok} already ok, "
        f"{len(plan.kept_failed)} failed earlier{' (retried)' if retry_failed else ''}, "
        f"{len(plan.blocked)} not runnable {here}, {len(plan.run)} to run now"
        f" (order {campaign.order}{f', seed {seed}' if campaign.order == 'interleaved' else ''}; "
        f"runner {assessment.runner_note})"
    )
    for cid, n in duplicated(history).items():
        say(f"  warning: cell {cid} has {n} ok records (runs of this campaign overlapped before); the report says so")
    if plan.kept_failed:
        say(f"  {len(plan.kept_failed)} failed runs are not retried: add --retry-failed to run them again")
    return Session(seed, history, plan)


def _run_locked(
    campaign: Campaign,
    results: Path,
    assessment: Assessment,
    retry_failed: bool,
    cache: Path | None,
    say: Callable[[str], None],
) -> int:
    session = begin_session(campaign, results, assessment, retry_failed, say, {})
    seed, history, plan = session.seed, session.history, session.plan
    if not plan.run:
        print(summary(campaign, results, plan, [], history, interrupted_now=False))
        return 1 if plan.kept_failed or plan.blocked else 0

    apply_idle_policy(campaign, say)
    est = estimate(plan.run, assessment, history)
    say(f"estimated duration {est.describe()}")
    where, meters = run_settings(campaign, assessment.runner, results, cache)
    position = {c.id: i for i, c in enumerate(plan.ordered)}
    failed_now: list[tuple[Cell, str, str]] = []
    interrupted_now = False
    progress = CampaignProgress(total=len(plan.run), first_guess_s=est.seconds / max(1, len(plan.run)))
    cooldown = CoolDown(campaign.cooldown, progress.note)
    with progress:
        for k, cell in enumerate(plan.run):
            record_cell = cell.to_record(seed, position[cell.id], campaign.order)
            try:
                ok, line, name = _run_cell(cell, where, meters, record_cell, progress)
                if not ok:
                    failed_now.append((cell, line, name))
                if k + 1 < len(plan.run):
                    cooldown()
            except KeyboardInterrupt:
                interrupted_now = True
                progress.note(f"interrupted during {cell.label}; run the same command again to resume")
                break
    history = recorded(results, campaign.name)
    print(summary(campaign, results, plan, failed_now, history, interrupted_now))
    if interrupted_now:
        return 130
    return 1 if failed_now or plan.kept_failed or plan.blocked else 0


def _run_cell(
    cell: Cell, where: Where, meters: MeterSettings, record_cell: dict[str, Any], progress: CampaignProgress
) -> tuple[bool, str, str]:
    """Run one cell; (ok, what the progress line shows, the record's file name)."""
    from controller import pipeline

    progress.cell(cell.label)
    try:
        record, path = pipeline.run(cell.request(where, meters, record_cell), progress)
        data = record.to_dict()
    except UserError as exc:
        path = setup_failed(cell, where, record_cell, str(exc))
        data = {"status": "failed", "failure": {"reason": str(exc)}}
    ok = data.get("status") == "ok"
    line = ok_line(data) if ok else str((data.get("failure") or {}).get("reason") or "?")
    progress.finished(ok, f"{line} -> {path.name}")
    return ok, line, path.name


def summary(
    campaign: Campaign,
    results: Path,
    plan: Todo,
    failed_now: list[tuple[Cell, str, str]],
    history: dict[str, list[dict[str, Any]]],
    interrupted_now: bool,
    here: str = "on this host",
) -> str:
    cells = campaign.matrix()
    states = {c.id: cell_state(history.get(c.id, [])) for c in cells}
    counts = {k: sum(1 for s in states.values() if s == k) for k in ("ok", "failed", "interrupted", "todo")}
    lines = [
        f"campaign {campaign.name}{' (interrupted)' if interrupted_now else ''}: "
        f"{counts['ok']} of {len(cells)} runs ok, {counts['failed']} failed, "
        f"{counts['todo'] + counts['interrupted']} not run"
    ]
    if failed_now:
        lines.append("failed in this session:")
        for cell, reason, name in failed_now:
            lines.append(f"  {cell.id}: {reason} ({name})")
    if plan.kept_failed:
        lines.append("failed earlier, not retried (--retry-failed runs them again):")
        for cell in plan.kept_failed:
            recs = [r for r in history.get(cell.id, []) if r.get("status") == "failed" and not interrupted(r)]
            last = (recs[-1].get("failure") or {}).get("reason") if recs else None
            lines.append(f"  {cell.id}: {last or '?'}")
    if plan.blocked:
        lines.append(f"not runnable {here} (see `campaign plan`):")
        seen = set()
        for cell, why in plan.blocked:
            key = (cell.configuration, cell.model)
            if key in seen:
                continue
            seen.add(key)
            n = sum(1 for c, _ in plan.blocked if (c.configuration, c.model) == key)
            shown = cell.id.split(".")[0] if cell.mode == "serving" else cell.model
            lines.append(f"  {shown} on {cell.configuration} ({n} runs): {why}")
    lines.append(f"records    {results / campaign.name}")
    if counts["ok"]:
        lines.append(f"report     python -m controller report {results / campaign.name}")
    return "\n".join(lines)
