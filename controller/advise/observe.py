"""What the advise folder's records say about each candidate: per run its objective (energy per
inference, or time per inference where energy was not measured) and the figures of the goal, its
failures, and its quality.

Energies come from the report's frame (``controller/report/data.py``), so that advise and ``report``
agree: net of idle where every run has a net figure, else gross for all, each with its own bound.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.advise.candidate import Candidate
from controller.advise.quality import Quality, quality_of
from controller.advise.slo import Goal
from controller.advise.slo import axes as slo_axes
from controller.campaigns.history import interrupted, recorded


@dataclass
class Run:
    run_id: str
    objective_energy: float | None  # J per sample (batch) or per output token (serving)
    bound_rel: float | None  # that energy's own bound, relative
    objective_time: float  # s per sample or per output token
    figures: dict[str, float | None]
    throughput: float | None  # samples/s or output tokens/s
    elapsed_s: float | None
    energy_note: str = ""  # why this run's energy is not used (unmeasured, flagged)


@dataclass
class Observation:
    candidate: Candidate
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # the ok ones
    quality: Quality | None = None

    @property
    def n(self) -> int:
        return len(self.runs)

    def first(self) -> dict[str, Any] | None:
        return self.records[0] if self.records else None


@dataclass
class Basis:
    """What candidates are ranked on: energy per inference, or time where energy was not measured."""

    energy: bool
    unit: str  # "J/sample", "s/token"
    label: str  # "energy per sample (net of idle)"
    reason: str = ""  # why time only
    kind: str = ""  # net or gross


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _frame_rows(folder: Path) -> tuple[dict[str, dict[str, Any]], str, str]:
    """Report-frame rows by run id, the energy kind (net, gross or "") and its statement."""
    from controller.report.data import load_runs

    if not folder.is_dir() or not any(folder.glob("*.json")):
        return {}, "", ""
    runs = load_runs(folder, duplicates="all")
    rows = {r["run_id"]: r for r in runs.ok.iter_rows(named=True)}
    return rows, runs.energy.kind or "", runs.energy.statement


def _energy_note(row: dict[str, Any]) -> str:
    # What was never measured says why first: a flag (say, foreign load) matters only on a figure there is.
    if row.get("total_energy") is None:
        notes = json.loads(row.get("notes") or "{}")
        parts = [f"{d.split('_')[0].upper()}: {notes[d]}" for d in ("cpu_energy", "gpu_energy") if notes.get(d)]
        return "; ".join(parts) or notes.get("total_energy") or "energy not measured"
    flags = [f for f in json.loads(row.get("flags") or "[]") if "total_energy" in f.get("columns", [])]
    if flags:
        return f"energy flagged by the meters ({flags[0].get('code')}): {flags[0].get('message')}"
    return ""


def _run(record: dict[str, Any], row: dict[str, Any], goals: list[Goal], serving: bool) -> Run:
    metrics = record.get("metrics") or {}
    figures = {g.figure: _number(metrics.get(g.figure)) for g in goals}
    note = _energy_note(row)
    total, u = row.get("total_energy"), row.get("total_energy_uncertainty")
    if serving:
        tokens = _number(metrics.get("new_tokens_total"))
        window = _number(metrics.get("window_s"))
        per_time = window / tokens if window and tokens else None
        energy = total / tokens if total is not None and tokens else None
        throughput = _number(metrics.get("output_token_throughput_tps"))
    else:
        per_time = row.get("time_per_sample_s")
        energy = row.get("energy_per_sample")
        throughput = _number(metrics.get("throughput_sps"))
    bound = u / total if u is not None and total else None
    return Run(
        run_id=record["run_id"],
        objective_energy=None if note else energy,
        bound_rel=bound,
        objective_time=float(per_time) if per_time else float("nan"),
        figures=figures,
        throughput=throughput,
        elapsed_s=_number(record.get("elapsed_s")),
        energy_note=note,
    )


def observe(
    candidates: list[Candidate], results: Path, campaign: str, goals: list[Goal], serving: bool
) -> tuple[dict[str, Observation], Basis]:
    """Each candidate's runs so far, and the basis the ranking can stand on."""
    goals = slo_axes(goals, "serving" if serving else "batch")  # the default latency when no goal names one
    history = recorded(results, campaign)
    rows, kind, _ = _frame_rows(results / campaign)
    by_name = {c.name: Observation(c) for c in candidates}
    for recs in history.values():
        for rec in recs:
            obs = by_name.get(str((rec.get("cell") or {}).get("configuration")))
            if obs is None:
                continue
            if rec.get("status") == "ok" and rec["run_id"] in rows:
                run = _run(rec, rows[rec["run_id"]], goals, serving)
                if run.objective_time == run.objective_time:  # a run with no time figure is no run
                    obs.runs.append(run)
                    obs.records.append(rec)
            elif rec.get("status") != "ok" and not interrupted(rec):
                obs.failures.append(str((rec.get("failure") or {}).get("reason") or "failed (no reason recorded)"))
    for obs in by_name.values():
        if obs.candidate.reduced:
            ref = by_name.get(obs.candidate.reference or "")
            obs.quality = quality_of(obs.candidate, obs.first(), ref.first() if ref else None)
    pool_quality(list(by_name.values()))
    return by_name, basis_of(by_name, kind, serving)


def pool_quality(observations: list[Observation]) -> None:
    """A runtime's reduced precision is judged by the lowest agreement any of its candidates measured:
    the numbers it changes are the same whatever the threads or batch size, and one candidate's few
    samples (a batch-1 run's first predictions) must not pass a precision that another's fail. (The
    samples overlap between candidates, so they are not added up.)"""
    groups: dict[tuple[str, str], list[Quality]] = {}
    for obs in observations:
        q = obs.quality
        if q is not None and q.agreement is not None:
            groups.setdefault((obs.candidate.runtime, obs.candidate.precision), []).append(q)
    for obs in observations:
        members = groups.get((obs.candidate.runtime, obs.candidate.precision), [])
        if obs.quality is None or len(members) < 2:
            continue
        worst = min(members, key=lambda q: (q.agreement or 0.0, -(q.n or 0)))
        if worst is obs.quality:
            continue
        obs.quality = Quality(
            worst.agreement,
            worst.n,
            f"{worst.basis}; the lowest of the {len(members)} {obs.candidate.precision} candidates of "
            f"{obs.candidate.runtime}",
            obs.quality.accuracy,
            obs.quality.reference_accuracy,
        )


def basis_of(observations: dict[str, Observation], kind: str, serving: bool) -> Basis:
    per = "output token" if serving else "sample"
    runs = [r for o in observations.values() for r in o.runs]
    lacking = [r for r in runs if r.objective_energy is None]
    if runs and not lacking:
        what = {"net": "net of idle", "gross": "gross: idle not subtracted"}.get(kind, kind)
        return Basis(True, f"J/{per}", f"energy per {per} ({what})", kind=kind)
    notes = list(dict.fromkeys(r.energy_note for r in lacking if r.energy_note))
    reason = (
        f"energy could not be measured in {len(lacking)} of {len(runs)} runs ({'; '.join(notes)[:400] or 'no reason'})"
        if runs
        else "no run has finished yet"
    )
    return Basis(False, f"s/{per}", f"time per {per} (energy unavailable: ranked on time only)", reason)


def values(obs: Observation, basis: Basis) -> list[float]:
    """The candidate's objective per run, on the basis the ranking uses."""
    if basis.energy:
        return [r.objective_energy for r in obs.runs if r.objective_energy is not None]
    return [r.objective_time for r in obs.runs]


def figure_values(obs: Observation, figure: str) -> list[float]:
    return [v for r in obs.runs if (v := r.figures.get(figure)) is not None]


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def bound(obs: Observation, basis: Basis) -> float | None:
    """The median relative bound of the candidate's energy figures (None for time, or none stated)."""
    if not basis.energy:
        return None
    bounds = [r.bound_rel for r in obs.runs if r.bound_rel is not None]
    return statistics.median(bounds) if bounds else None
