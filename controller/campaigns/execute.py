"""Running a campaign: cells in order, each one run record, resume, cool-downs, live progress.

Each run's record is written atomically by :func:`controller.runs.execute` and carries its cell
(``record["cell"]``); resuming is reading the folder back: cells with an ``ok`` record are
skipped, failed ones are retried only when asked, interrupted ones always. A controller killed
with ``kill -9`` therefore loses at most the run in flight.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller.campaigns.cooldown import CoolDown
from controller.campaigns.plan import (
    Assessment,
    assess,
    cell_state,
    estimate,
    fmt_duration,
    interrupted,
    recorded,
)
from controller.campaigns.spec import Campaign, Cell
from controller.errors import UserError

STATE_DIR = "campaign"  # results/<campaign>/campaign/: the file as run, the sessions, the seed


def state_dir(results: Path, campaign: Campaign) -> Path:
    return results / campaign.name / STATE_DIR


def sessions(results: Path, campaign: Campaign) -> list[dict[str, Any]]:
    path = state_dir(results, campaign) / "sessions.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the sessions log is informative only
    return out


def resolve_seed(results: Path, campaign: Campaign) -> int:
    """The file's seed, else the one recorded by this campaign's first session, else a new one."""
    if campaign.seed is not None:
        return campaign.seed
    for s in sessions(results, campaign):
        if isinstance(s.get("seed"), int):
            return int(s["seed"])
    return secrets.randbelow(2**31)


def check_identity(campaign: Campaign, history: dict[str, list[dict[str, Any]]]) -> None:
    """Refuse to resume into a folder whose runs were made with other settings."""
    planned = {c.id: c.identity() for c in campaign.matrix()}
    for cid, recs in history.items():
        want = planned.get(cid)
        if want is None:
            continue  # a cell the file no longer has: kept, not run again
        for rec in recs:
            got = {k: v for k, v in (rec.get("cell") or {}).items() if k != "order"}
            diff = sorted(k for k in want if got.get(k) != want[k])
            if diff:
                shown = ", ".join(f"{k}: recorded {got.get(k)!r}, file {want[k]!r}" for k in diff[:4])
                raise UserError(
                    f"results/{campaign.name} already holds cell {cid} run with other settings ({shown}). "
                    "A changed campaign is a new campaign: give it another name in [campaign] name, "
                    "or another --results folder"
                )


@dataclass
class Progress:
    """Done / failed / left, the current run and phase, and an ETA, on stderr."""

    total: int
    skipped_ok: int
    first_guess_s: float
    out: Callable[[str], None]
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    current: str = ""

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def eta(self) -> str:
        finished = self.done + self.failed
        if finished:
            per = (time.monotonic() - self.started) / finished
        else:
            per = self.first_guess_s
        return fmt_duration(per * self.left)

    def show(self, phase: str) -> None:
        n = self.done + self.failed + 1
        self.out(
            f"[{n}/{self.total}  done {self.done}  failed {self.failed}  left {self.left}  ETA {self.eta()}] "
            f"{self.current}: {phase}"
        )


class RunSay:
    """Turns runs.execute's messages into progress lines; repeated notices are shown once."""

    def __init__(self, progress: Progress, out: Callable[[str], None]) -> None:
        self.progress = progress
        self.out = out
        self.seen: set[str] = set()

    def __call__(self, text: str) -> None:
        stripped = text.strip()
        if text.startswith("  ") and stripped.endswith(" ..."):
            self.progress.show(stripped.removesuffix(" ..."))
        elif stripped.startswith("running "):
            self.progress.show("start")
        elif stripped.startswith(("runner:", "idle baseline")):
            if stripped not in self.seen:
                self.seen.add(stripped)
                self.out(f"  {stripped}")
        else:
            self.out(f"  {stripped}")


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


def failed_record(req: Any, cell: Cell, reason: str) -> Path:
    """A run that could not even start (validation, runner) is still a failed record."""
    from controller.record import SCHEMA_VERSION, new_run_id, record_path, write_atomic

    run_id = new_run_id()
    path = record_path(req.results, req.campaign, run_id)
    write_atomic(
        path,
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "campaign": req.campaign,
            "cell": req.cell,
            "started_at": datetime.now(timezone.utc).isoformat(),
            "image": cell.image,
            "engine": cell.engine,
            "provider": None,
            "model": cell.model,
            "model_size": cell.model_size,
            "weights": cell.weights,
            "mode": cell.mode,
            "spec": {"batch_size": cell.batch_size, "dataset": cell.dataset},
            "status": "failed",
            "failure": {"phase": "setup", "reason": reason, "exit_code": None, "log_tail": []},
        },
    )
    return path


def request_for(
    cell: Cell, campaign: Campaign, results: Path, runner: str, cache: Path | None, seed: int, position: int
) -> Any:
    """The RunRequest (batch) or ServeRequest (serving) that runs this cell."""
    from controller import runs, serving

    common: dict[str, Any] = {
        "image": cell.image,
        "model": cell.model,
        "engine": cell.engine,
        "options": dict(cell.options),
        "runner": runner,
        "results": results,
        "campaign": campaign.name,
        "timeout_s": campaign.timeout_s,
        "memory": campaign.memory,
        "cache": cache,
        "interval_s": campaign.interval_s,
        "keep_trace": campaign.keep_trace,
        "baseline_max_age_s": campaign.idle.max_age_days * 86400,
        "cell": cell.to_record(seed, position, campaign.order),
    }
    if cell.mode == "serving":
        s = cell.serving or {}
        return serving.ServeRequest(
            prompts=None if s["prompts"] == "humaneval" else Path(s["prompts"]),
            limit=s["limit"],
            seed=s["seed"],
            max_new_tokens=s["max_new_tokens"],
            concurrency=s["concurrency"],
            warmup_requests=s["warmup_requests"],
            warmup_s=s["warmup_s"],
            cooldown_s=s["cooldown_s"],
            request_timeout_s=s["request_timeout_s"],
            ready_timeout_s=s["ready_timeout_s"],
            **common,
        )
    return runs.RunRequest(
        source=cell.source,
        model_size=cell.model_size,
        weights=cell.weights,
        dataset=cell.dataset,
        dataset_path=Path(cell.dataset_path) if cell.dataset_path else None,
        limit=cell.limit,
        batch_size=cell.batch_size,
        samples=cell.samples,
        duration_s=cell.duration_s,
        warmup=cell.warmup,
        **common,
    )


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


def run_campaign(
    campaign: Campaign,
    results: Path,
    *,
    retry_failed: bool = False,
    cache: Path | None = None,
    runner: str | None = None,
    say: Callable[[str], None] = _stderr,
) -> int:
    """Run what is left of the campaign; print the summary on stdout. Exit status 0 when every cell
    is recorded ok, 1 when some failed or cannot run here, 130 when interrupted."""
    from controller import runs, serving

    assessment = assess(campaign, runner)
    seed = resolve_seed(results, campaign)
    history = recorded(results, campaign.name, warn=say)
    check_identity(campaign, history)
    ordered = campaign.ordered(seed)
    states = {c.id: cell_state(history.get(c.id, [])) for c in ordered}
    blocked = [(c, assessment.runnable(c)[1]) for c in ordered if not assessment.runnable(c)[0]]
    blocked_ids = {c.id for c, _ in blocked}
    todo = [
        c
        for c in ordered
        if c.id not in blocked_ids
        and (states[c.id] in ("todo", "interrupted") or (states[c.id] == "failed" and retry_failed))
    ]
    kept_failed = [c for c in ordered if states[c.id] == "failed" and not retry_failed and c.id not in blocked_ids]
    n_ok = sum(1 for s in states.values() if s == "ok")

    folder = state_dir(results, campaign)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.toml").write_text(campaign.text)
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write(
            json.dumps(
                {
                    "started_at": datetime.now(timezone.utc).isoformat(),
                    "file": str(campaign.path),
                    "seed": seed,
                    "order": campaign.order,
                    "runner": assessment.runner,
                    "retry_failed": retry_failed,
                    "pid": os.getpid(),
                    "to_run": len(todo),
                    "already_ok": n_ok,
                }
            )
            + "\n"
        )

    say(
        f"campaign {campaign.name}: {len(ordered)} runs in the matrix; {n_ok} already ok, "
        f"{len(kept_failed)} failed earlier{' (retried)' if retry_failed else ''}, "
        f"{len(blocked)} not runnable here, {len(todo)} to run now"
        f" (order {campaign.order}{f', seed {seed}' if campaign.order == 'interleaved' else ''}; "
        f"runner {assessment.runner_note})"
    )
    if kept_failed:
        say(f"  {len(kept_failed)} failed runs are not retried: add --retry-failed to run them again")
    if not todo:
        print(summary(campaign, results, assessment, blocked, [], kept_failed, history, interrupted_now=False))
        return 1 if kept_failed or blocked else 0

    apply_idle_policy(campaign, say)
    est = estimate(todo, assessment, history)
    progress = Progress(total=len(todo), skipped_ok=n_ok, first_guess_s=est.seconds / max(1, len(todo)), out=say)
    say(f"estimated duration {est.describe()}")
    cooldown = CoolDown(campaign.cooldown, say)
    run_say = RunSay(progress, say)
    position = {c.id: i for i, c in enumerate(ordered)}
    session_failed: list[tuple[Cell, str, str]] = []
    interrupted_now = False
    for k, cell in enumerate(todo):
        progress.current = cell.label
        req = request_for(cell, campaign, results, assessment.runner, cache, seed, position[cell.id])
        try:
            if cell.mode == "serving":
                record, path = serving.execute(req, say=run_say)
            else:
                record, path = runs.execute(req, say=run_say)
        except UserError as exc:
            path = failed_record(req, cell, str(exc))
            record = {"status": "failed", "failure": {"reason": str(exc)}}
        except KeyboardInterrupt:
            interrupted_now = True
            say(f"interrupted during {cell.label}; run the same command again to resume")
            break
        if record.get("status") == "ok":
            progress.done += 1
            say(f"  ok: {ok_line(record)} -> {path.name}")
        else:
            progress.failed += 1
            reason = (record.get("failure") or {}).get("reason") or "?"
            session_failed.append((cell, reason, path.name))
            say(f"  FAILED: {reason} -> {path.name}")
        if k + 1 < len(todo):
            try:
                cooldown()
            except KeyboardInterrupt:
                interrupted_now = True
                say("interrupted during a cool-down; run the same command again to resume")
                break
    history = recorded(results, campaign.name)
    print(summary(campaign, results, assessment, blocked, session_failed, kept_failed, history, interrupted_now))
    if interrupted_now:
        return 130
    return 1 if session_failed or kept_failed or blocked else 0


def summary(
    campaign: Campaign,
    results: Path,
    assessment: Assessment,
    blocked: list[tuple[Cell, str | None]],
    session_failed: list[tuple[Cell, str, str]],
    kept_failed: list[Cell],
    history: dict[str, list[dict[str, Any]]],
    interrupted_now: bool,
) -> str:
    cells = campaign.matrix()
    states = {c.id: cell_state(history.get(c.id, [])) for c in cells}
    counts = {k: sum(1 for s in states.values() if s == k) for k in ("ok", "failed", "interrupted", "todo")}
    lines = [
        f"campaign {campaign.name}{' (interrupted)' if interrupted_now else ''}: "
        f"{counts['ok']} of {len(cells)} runs ok, {counts['failed']} failed, "
        f"{counts['todo'] + counts['interrupted']} not run"
    ]
    if session_failed:
        lines.append("failed in this session:")
        for cell, reason, name in session_failed:
            lines.append(f"  {cell.id}: {reason} ({name})")
    if kept_failed:
        lines.append("failed earlier, not retried (--retry-failed runs them again):")
        for cell in kept_failed:
            recs = [r for r in history.get(cell.id, []) if r.get("status") == "failed" and not interrupted(r)]
            last = (recs[-1].get("failure") or {}).get("reason") if recs else None
            lines.append(f"  {cell.id}: {last or '?'}")
    if blocked:
        lines.append("not runnable on this host (see `campaign plan`):")
        seen = set()
        for cell, why in blocked:
            key = (cell.configuration, cell.model)
            if key in seen:
                continue
            seen.add(key)
            n = sum(1 for c, _ in blocked if (c.configuration, c.model) == key)
            shown = cell.id.split(".")[0] if cell.mode == "serving" else cell.model
            lines.append(f"  {shown} on {cell.configuration} ({n} runs): {why}")
    lines.append(f"records    {results / campaign.name}")
    if counts["ok"]:
        lines.append(f"report     python -m controller report {results / campaign.name}")
    return "\n".join(lines)
