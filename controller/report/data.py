"""A campaign's records as one Polars DataFrame for the report: the store's columns, plus what the
report needs from each record (``controller/report/rows.py``), with one energy kind and one usage
definition for every run (``controller/report/kinds.py``); duplicated campaign cells refused or
resolved as asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from controller.carbon import CarbonFactor
from controller.errors import UserError
from controller.report.columns import ENERGIES
from controller.report.kinds import EnergyKind, apply_energy_kind, apply_usage_definition, decide_energy_kind
from controller.report.records import read_folder
from controller.report.rows import LOAD_FIGURES, extra_row
from controller.store import COLUMNS as STORE_COLUMNS
from controller.store import flatten

DUPLICATE_POLICIES = ("refuse", "latest", "all")


EXTRA_SCHEMA: dict[str, Any] = {
    "cell_id": pl.Utf8,
    "repetition": pl.Int64,
    "framework": pl.Utf8,
    "converted": pl.Boolean,
    "configuration": pl.Utf8,
    "conversion": pl.Utf8,
    "options": pl.Utf8,
    "dataset": pl.Utf8,
    "accuracy": pl.Float64,
    "serving": pl.Boolean,
    "requests_ok": pl.Int64,
    "new_tokens": pl.Int64,
    "prompts": pl.Int64,
    "time_per_request_s": pl.Float64,
    "tokens_per_s": pl.Float64,
    "energy_per_request": pl.Float64,
    "energy_per_token": pl.Float64,
    "carbon_g": pl.Float64,
    "load_variable": pl.Utf8,
    "load_value": pl.Float64,
    "sweep_group": pl.Utf8,
    "sweep_points": pl.Int64,
    **{name: pl.Float64 for name in LOAD_FIGURES},
    "energy_per_token_steady": pl.Float64,
    "energy_per_token_steady_gross": pl.Float64,
    "energy_per_token_steady_net": pl.Float64,
    **{
        f"{col}_uncertainty{kind}": pl.Float64
        for col in ("energy_per_request", "energy_per_token", "energy_per_token_steady", "carbon_g")
        for kind in ("", "_gross", "_net")
        if not kind or col == "energy_per_token_steady"
    },
    "kv_cache": pl.Boolean,
    "parity": pl.Float64,
    "parity_gated": pl.Boolean,
    "parity_basis": pl.Utf8,
    "kv_cache_reason": pl.Utf8,
    "trace_path": pl.Utf8,
    "elapsed_s": pl.Float64,
    "gpu_mem_util_percent": pl.Float64,
    "gpu_mem_used_percent": pl.Float64,
    "gpu_mem_used_peak_percent": pl.Float64,
    "cpu_usage_percent": pl.Float64,
    "ram_usage_percent": pl.Float64,
    "cpu_usage_process_percent": pl.Float64,
    "ram_usage_process_percent": pl.Float64,
    "ram_peak_mib": pl.Float64,
    **{col: pl.Float64 for col in ENERGIES},
    **{f"{col}_{kind}": pl.Float64 for col in ENERGIES for kind in ("gross", "net")},
    **{f"{col}_uncertainty": pl.Float64 for col in ENERGIES},
    **{f"{col}_uncertainty_{kind}": pl.Float64 for col in ENERGIES for kind in ("gross", "net")},
    "duration_mode": pl.Boolean,
    "requested_duration_s": pl.Float64,
    "time_per_sample_s": pl.Float64,
    "time_per_sample_ms": pl.Float64,
    "time_per_batch_ms": pl.Float64,
    "energy_per_sample": pl.Float64,
    "energy_per_sample_uncertainty": pl.Float64,
    "gpu_idle_power_w": pl.Float64,
    "gpu_power_gross": pl.Float64,
    "net_reason": pl.Utf8,
    "notes": pl.Utf8,
    "flags": pl.Utf8,
    "model_identity": pl.Utf8,
    "fingerprint_id": pl.Utf8,
    "gpu_identity": pl.Utf8,
    "environment": pl.Utf8,
    "versions": pl.Utf8,
    "gpu_names": pl.Utf8,
    "driver": pl.Utf8,
    "lock_sha256": pl.Utf8,
    "base_digest": pl.Utf8,
    "cluster_host": pl.Utf8,
    "cluster_node": pl.Utf8,
    "cluster_block": pl.Utf8,
    "cluster_moved": pl.Utf8,
}
SCHEMA: dict[str, Any] = {**STORE_COLUMNS, **EXTRA_SCHEMA}


@dataclass
class Runs:
    """All records of a folder: ``ok`` (the runs the tables use), ``failed`` (with reasons),
    the files skipped as not run records, and what was said about duplicated cells."""

    folder: Path
    all: pl.DataFrame
    ok: pl.DataFrame
    failed: pl.DataFrame
    energy: EnergyKind
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    skipped_warning: str | None = None


def _duplicates(ok: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ok:
        if r["cell_id"] is not None:
            by.setdefault((r["campaign"], r["cell_id"], r["repetition"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["run_id"]) for k, v in by.items() if len(v) > 1}


def resolve_duplicates(folder: Path, ok: list[dict[str, Any]], policy: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Two ok records of one campaign cell (two campaign runs at once wrote both) are never merged
    silently: refused (default), or kept (``all``: both count) or the latest kept, and said."""
    dups = _duplicates(ok)
    if not dups:
        return ok, []
    shown = "; ".join(f"cell {k[1]}: runs {', '.join(r['run_id'] for r in v)}" for k, v in list(dups.items())[:3])
    more = f" and {len(dups) - 3} more cells" if len(dups) > 3 else ""
    if policy == "refuse":
        raise UserError(
            f"{folder}: {len(dups)} campaign cell(s) have more than one ok record ({shown}{more}), as when two "
            "`campaign run`s of one campaign ran at once; move the extra records out of the folder, or pass "
            "--duplicates all (keep every record as a repetition) or --duplicates latest (keep the latest of each "
            "cell)"
        )
    extra = {r["run_id"] for v in dups.values() for r in v[:-1]}
    said = f"{len(dups)} cell(s) have more than one ok record ({shown}{more}); "
    if policy == "latest":
        return [r for r in ok if r["run_id"] not in extra], [
            said + "only the latest of each is used (--duplicates latest)"
        ]
    return ok, [said + "every record counts as a repetition (--duplicates all)"]


def load_runs(folder: Path | str, duplicates: str = "refuse", carbon: CarbonFactor | None = None) -> Runs:
    if duplicates not in DUPLICATE_POLICIES:
        raise UserError(f"--duplicates {duplicates!r}: use one of {', '.join(DUPLICATE_POLICIES)}")
    found = read_folder(folder)
    rows = []
    for path, record in found.records:
        row = {**flatten(record, path), **extra_row(record)}
        row["cell_id"] = row["cell_id"] or row["run_id"]
        if row["serving"] and row["batch_size"] is None:
            row["batch_size"] = 1  # a serving run sends one prompt per request, as its metrics count it
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    ok, said = resolve_duplicates(found.path, ok, duplicates)
    kind = decide_energy_kind(ok)
    kind.carbon = carbon
    apply_energy_kind(rows, kind)
    apply_usage_definition(ok)

    def frame(part: list[dict[str, Any]]) -> pl.DataFrame:
        return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in part], schema=SCHEMA)

    ok_ids = {r["run_id"] for r in ok}
    return Runs(
        folder=found.path,
        all=frame(rows),
        ok=frame([r for r in rows if r["run_id"] in ok_ids]),
        failed=frame([r for r in rows if r["status"] != "ok"]),
        energy=kind,
        skipped=found.skipped,
        duplicates=said,
        skipped_warning=found.skipped_warning(),
    )


def notes_of(frame: pl.DataFrame, column: str) -> list[str]:
    """The distinct reasons (or gross-energy notes) recorded for ``column`` in these runs."""
    out: list[str] = []
    for text in frame["notes"].to_list():
        note = json.loads(text or "{}").get(column)
        if note and note not in out:
            out.append(note)
    return out


def flags_of(frame: pl.DataFrame, column: str) -> list[tuple[str, str, str]]:
    """(run id, code, message) of every meter flag that puts ``column`` in doubt in these runs."""
    out = []
    for run_id, text in frame.select("run_id", "flags").iter_rows():
        for f in json.loads(text or "[]"):
            if column in f["columns"]:
                out.append((run_id, f["code"], f["message"]))
    return out
