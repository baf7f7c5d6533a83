"""Running a campaign: its cells in order through the run pipeline, resume, cool-downs, progress.

Each run's record is written atomically by the pipeline and carries its cell (``record["cell"]``);
resuming is reading the folder back (``history``). A controller killed with ``kill -9`` therefore
loses at most the run in flight, and the folder's lock keeps a second controller out meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.campaigns.cooldown import CoolDown
from controller.campaigns.estimate import estimate
from controller.campaigns.history import locked, recorded
from controller.campaigns.readiness import Assessment, assess
from controller.campaigns.session import apply_idle_policy, begin_session, ok_line, run_settings, setup_failed, summary
from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError
from controller.progress import CampaignProgress
from controller.requests import MeterSettings, Where


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
