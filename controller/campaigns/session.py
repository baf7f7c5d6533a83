"""A campaign session's parts shared by running it here (``execute.py``) and on a Ray cluster
(``controller/cluster/``): what it runs (:func:`todo`, :func:`begin_session`), the settings of its
runs, the idle policy, the record of a cell that could not start, and the closing summary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.campaigns.history import (
    cell_state,
    check_identity,
    duplicated,
    genuine_failure,
    log_session,
    recorded,
    resolve_seed,
)
from controller.campaigns.readiness import Assessment
from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError
from controller.record import Failure, FailureInfo, RunRecord, new_run_id, now_iso, record_path, write_record
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
    from controller.progress import Progress

    say(f"idle baseline ({policy.policy}): measuring {policy.duration_s:g} s of idle power; keep this host idle")
    with Progress().step("measuring idle power"):  # minutes: its clock shows, a line at least every 8 s
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
        failure=FailureInfo(code, reason, "setup" if code == Failure.SETUP else None),
    )
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
        uncertainty_limit=campaign.uncertainty_limit / 100,
    )
    return where, meters


def ok_line(record: dict[str, Any]) -> str:
    """What a finished run shows on the progress line."""
    m = record.get("metrics") or {}
    window = m.get("window_s") or 0
    if record.get("mode") == "serving":
        rate = m.get("output_token_throughput_tps")
        tokens = f"{rate:.1f} tokens/s" if rate is not None else "tokens/s unavailable"
        return f"{m.get('requests_ok')} requests, {tokens} over {window:.3f} s"
    line = f"{m.get('throughput_sps') or 0:.1f} samples/s over {window:.3f} s"
    acc = m.get("accuracy") or {}
    if acc.get("available"):
        line += f", top-1 {acc['value']:.2%}" + ("" if acc.get("meaningful") else " (random weights)")
    return line


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
            recs = [r for r in history.get(cell.id, []) if genuine_failure(r)]
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
