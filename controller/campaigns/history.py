"""What a campaign folder already holds: its records by cell, each cell's state, its sessions, its lock.

Resuming is reading the folder back: cells with an ``ok`` record are done, failed ones are retried
only when asked, interrupted ones always — and so are cells lost with their cluster node (a
``node-lost`` record, or a failure the controller found to be its node's, ``cluster.node_fault``):
such a cell is not done yet, it did not fail. The folder is locked by the ``campaign run`` that owns
it, so two runs of one campaign never measure (and record) the same cells at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller.campaigns.lock import locked as locked  # the folder's lock, taken atomically (lock.py)
from controller.campaigns.spec import Campaign
from controller.errors import UserError
from controller.record import Failure, RecordError, load_record

STATE_DIR = "campaign"  # results/<campaign>/campaign/: the file as run, the sessions, the lock
STATES = ("ok", "failed", "interrupted", "todo")


def state_dir(results: Path, campaign: Campaign) -> Path:
    return results / campaign.name / STATE_DIR


def recorded(
    results: Path, campaign: str, warn: Callable[[str], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Records of a campaign folder that carry a cell, by cell id, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    folder = results / campaign
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            rec = load_record(path)
        except RecordError as exc:
            if warn:
                warn(f"skipping {exc}")
            continue
        cell = rec.get("cell") or {}
        if cell.get("id"):
            out.setdefault(cell["id"], []).append(rec | {"_path": str(path)})
    return out


def interrupted(rec: dict[str, Any]) -> bool:
    """A run the user (or a signal) cut short is not a failure of the configuration."""
    return (rec.get("failure") or {}).get("code") == Failure.INTERRUPTED


def lost_with_node(rec: dict[str, Any]) -> bool:
    """A run a cluster node took with it (it left, or could no longer run what it had passed): not a
    fault of the configuration either."""
    cluster = rec.get("cluster")
    node_fault = isinstance(cluster, dict) and bool(cluster.get("node_fault"))
    return (rec.get("failure") or {}).get("code") == Failure.NODE_LOST or node_fault


def genuine_failure(rec: dict[str, Any]) -> bool:
    """A failed run that says something about its configuration (what --retry-failed reruns)."""
    return rec.get("status") == "failed" and not interrupted(rec) and not lost_with_node(rec)


def cell_state(records: list[dict[str, Any]]) -> str:
    """ok, failed, interrupted (cut short, or lost with its node: to run again) or todo, from a cell's records."""
    if any(r.get("status") == "ok" for r in records):
        return "ok"
    if any(genuine_failure(r) for r in records):
        return "failed"
    return "interrupted" if records else "todo"


def duplicated(history: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Cells recorded ok more than once (two runs of one campaign at once, before the lock): id -> count."""
    counts = {cid: sum(1 for r in recs if r.get("status") == "ok") for cid, recs in history.items()}
    return {cid: n for cid, n in counts.items() if n > 1}


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


def log_session(results: Path, campaign: Campaign, entry: dict[str, Any]) -> None:
    folder = state_dir(results, campaign)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.toml").write_text(campaign.text)
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write(json.dumps({"started_at": datetime.now(timezone.utc).isoformat(), **entry}) + "\n")
