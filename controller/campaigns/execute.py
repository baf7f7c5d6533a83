"""Running a campaign: its cells in order through the run pipeline, resume, cool-downs, progress.

Each run's record is written atomically by the pipeline and carries its cell (``record["cell"]``);
resuming is reading the folder back (``history``). A controller killed with ``kill -9`` therefore
loses at most the run in flight, and the folder's lock keeps a second controller out meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from controller.cache import check_writable_folder
from controller.campaigns.cooldown import CoolDown
from controller.campaigns.estimate import estimate
from controller.campaigns.history import recorded, state_dir
from controller.campaigns.lock import locked
from controller.campaigns.readiness import Assessment, assess
from controller.campaigns.session import apply_idle_policy, begin_session, ok_line, run_settings, setup_failed, summary
from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError
from controller.progress import CampaignProgress
from controller.quiet import SessionWait
from controller.requests import MeterSettings, Where, check_meters, check_where


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_campaign(
    campaign: Campaign,
    results: Path,
    *,
    retry_failed: bool = False,
    cache: Path | None = None,
    runner: str | None = None,
    cluster: str | None = None,
    build_images: bool = False,
    quiet_wait_s: float | None = None,
    node_wait_s: float | None = None,
    say: Callable[[str], None] = _stderr,
) -> int:
    """Run what is left of the campaign, here or on the Ray cluster at ``cluster``; print the summary
    on stdout. Exit status 0 when every cell is recorded ok, 1 when some failed or cannot run, 130
    when interrupted, 3 when the Ray cluster's head was lost (the process ends there). Each run waits
    up to ``quiet_wait_s`` (default: the file's) for a quiet host."""
    if quiet_wait_s is not None:
        campaign = replace(campaign, quiet_wait_s=quiet_wait_s)
    if cluster is not None:
        from controller.cluster.execute import run_on_cluster
        from controller.cluster.placing import NODE_WAIT_S, Settings

        settings = Settings(runner, cache, build_images, NODE_WAIT_S if node_wait_s is None else node_wait_s)
        return run_on_cluster(campaign, results, cluster, retry_failed, settings, say)
    assessment = assess(campaign, runner)
    # What every run would be refused for (a cache that is a file, --memory where the runner is local)
    # is refused once, before the session, rather than recorded as a failed run per cell.
    where, meters = run_settings(campaign, assessment.runner, results, cache)
    check_where(where)
    check_meters(meters)
    check_writable_folder(state_dir(results, campaign), "the campaign's state folder")
    with locked(results, campaign, say):
        return _run_locked(campaign, results, assessment, retry_failed, cache, say)


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
    quiet = SessionWait(campaign.quiet_wait_s)
    with progress:
        for k, cell in enumerate(plan.run):
            record_cell = cell.to_record(seed, position[cell.id], campaign.order)
            try:
                meters = replace(meters, quiet_wait_s=quiet.next_s())
                ok, line, name = _run_cell(cell, where, meters, record_cell, progress, quiet.saw)
                if not ok:
                    failed_now.append((cell, line, name))
                if k + 1 < len(plan.run) and campaign.cooldown.mode != "none":
                    with progress.step("cool-down"):  # its clock shows while it waits
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
    cell: Cell,
    where: Where,
    meters: MeterSettings,
    record_cell: dict[str, Any],
    progress: CampaignProgress,
    host_seen: Callable[[dict[str, Any] | None], None],
) -> tuple[bool, str, str]:
    """Run one cell; (ok, what the progress line shows, the record's file name)."""
    from controller import pipeline

    progress.cell(cell.label)
    try:
        record, path = pipeline.run(cell.request(where, meters, record_cell), progress)
        host_seen(record.host_state)
        data = record.to_dict()
    except UserError as exc:
        path = setup_failed(cell, where, record_cell, str(exc))
        data = {"status": "failed", "failure": {"reason": str(exc)}}
    ok = data.get("status") == "ok"
    line = ok_line(data) if ok else str((data.get("failure") or {}).get("reason") or "?")
    progress.finished(ok, f"{line} -> {path.name}")
    return ok, line, path.name
