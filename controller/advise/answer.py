"""The answer: the front as a table, the recommendation with its margin and that margin's confidence,
what was excluded and why, the runs used; as text (stdout, ``answer.md``) and data (``advise.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from controller.advise.margin import Margin, margin
from controller.advise.observe import Observation, figure_values, median, values
from controller.advise.race import axes_of, best
from controller.advise.search import Outcome
from controller.advise.space import grouped
from controller.compare.interval import min_repetitions
from controller.progress import fmt_duration


@dataclass
class Answer:
    outcome: Outcome
    recommended: str | None
    runner_up: Margin | None = None
    per_runtime: list[Margin] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    grid_runs: int = 0

    @property
    def runs_used(self) -> int:
        return sum(o.n + len(o.failures) for o in self.outcome.observations.values())


def _prefix(value: float) -> tuple[float, str]:
    for factor, prefix in ((1.0, ""), (1e-3, "m")):
        if abs(value) >= factor:
            return factor, prefix
    return 1e-6, "µ"


def scaled(value: float | None, unit: str, like: float | None = None) -> str:
    """1.2 ms, 35 mJ, 3.1 s: a value in its unit's best prefix (``like``'s, when given)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "ms":  # a latency: in s from a second on
        return f"{value:.3g} ms" if abs(value) < 1000 else scaled(value / 1000.0, "s")
    if unit not in ("s", "J") and not unit.startswith(("s/", "J/")):
        return f"{value:.3g} {unit}"
    base = unit.split("/")[0]
    factor, prefix = _prefix(value if like is None else like)
    return f"{value / factor:.3g} {prefix}{base}{unit[len(base) :]}"


def status(name: str, outcome: Outcome, recommended: str | None) -> str:
    s = outcome.table[name]
    if name == recommended:
        return "RECOMMENDED"
    if not s.admissible:
        return "excluded: " + s.why_not
    if s.dominated_by:
        return f"dominated by {s.dominated_by}"
    parts = ["front" if s.on_front else "may be on the front"]
    if s.missed:
        parts.append("misses " + "; ".join(s.missed))
    return ", ".join(parts)


def _row(obs: Observation, outcome: Outcome, recommended: str | None) -> dict[str, Any]:
    basis = outcome.basis
    c = obs.candidate
    vals = values(obs, basis)
    axes = axes_of(outcome.space.request.goals, basis, outcome.space.request.mode)
    figures = {a.name: median(figure_values(obs, a.name)) for a in axes[1:]}
    throughput = median([r.throughput for r in obs.runs if r.throughput is not None])
    return {
        "name": c.name,
        "runtime": c.runtime,
        "settings": c.settings(),
        "options": c.options,
        "precision": c.precision,
        "reduced": c.reduced,
        "runs": obs.n,
        "failed": len(obs.failures),
        "objective": vals,
        "objective_median": median(vals),
        "figures": figures,
        "throughput": throughput,
        "quality": None
        if obs.quality is None
        else {
            "agreement": obs.quality.agreement,
            "agreement_lower_95": obs.quality.lower_bound(),
            "n": obs.quality.n,
            "basis": obs.quality.basis,
            "reason": obs.quality.reason,
        },
        "front": outcome.table[c.name].on_front,
        "dominated_by": outcome.table[c.name].dominated_by,
        "feasible": outcome.table[c.name].feasible,
        "admissible": outcome.table[c.name].admissible,
        "status": status(c.name, outcome, recommended),
    }


def build_answer(outcome: Outcome, grid_repetitions: int | None = None) -> Answer:
    obs, basis, table = outcome.observations, outcome.basis, outcome.table
    req = outcome.space.request
    top = best(obs, table, basis)
    answer = Answer(outcome, top)
    ran = [o for o in obs.values() if o.n or o.failures]
    order = sorted(ran, key=lambda o: (not table[o.candidate.name].admissible, median(values(o, basis)) or math.inf))
    answer.rows = [_row(o, outcome, top) for o in order]
    reps = grid_repetitions or max([min_repetitions(req.alpha), *(o.n for o in obs.values())])
    answer.grid_runs = reps * len(outcome.space.candidates)
    if top is None:
        return answer
    r = obs[top]
    others = [
        o for o in order if o is not r and table[o.candidate.name].admissible and table[o.candidate.name].feasible
    ]
    if others:
        answer.runner_up = margin(r, others[0], basis, req.alpha)
    seen = {r.candidate.runtime, *(o.candidate.runtime for o in others[:1])}  # the next one is said already
    for o in others:
        if o.candidate.runtime not in seen:
            seen.add(o.candidate.runtime)
            answer.per_runtime.append(margin(r, o, basis, req.alpha))
    return answer


def _goal_text(answer: Answer) -> str:
    req = answer.outcome.space.request
    goal = "; ".join(g.describe() for g in req.goals) or "none given (the front alone decides)"
    quality = (
        f"reduced precision must agree with full precision on ≥ {req.min_agreement:.1%} of "
        + ("greedy tokens (against transformers')" if req.mode == "serving" else "top-1 predictions")
        + (f" and lose at most {100 * req.max_accuracy_drop:g} accuracy points" if req.dataset != "synthetic" else "")
    )
    return f"goal       {goal}\nquality    {quality}"


def _table(answer: Answer) -> list[str]:
    outcome = answer.outcome
    basis = outcome.basis
    axes = axes_of(outcome.space.request.goals, basis, outcome.space.request.mode)
    tput_unit = "tokens/s" if outcome.space.request.mode == "serving" else "samples/s"
    header = ["CANDIDATE", basis.unit.upper(), "MIN-MAX", *(a.goal.key.upper() if a.goal else a.name for a in axes[1:])]
    header += [tput_unit.upper(), "AGREEMENT", "N", "STATUS"]
    rows = []
    for row in answer.rows:
        vals = row["objective"]
        spread = (
            f"{scaled(min(vals), basis.unit, like=max(vals)).split()[0]}–{scaled(max(vals), basis.unit)}"
            if vals
            else "-"
        )
        figs = [scaled(row["figures"][a.name], a.goal.unit if a.goal else "ms") for a in axes[1:]]
        quality = row["quality"]
        agreement = (
            "-" if quality is None else (f"{quality['agreement']:.1%}" if quality["agreement"] is not None else "n/a")
        )
        runs = f"{row['runs']}" + (f" (+{row['failed']} failed)" if row["failed"] else "")
        rows.append(
            [row["name"], scaled(row["objective_median"], basis.unit), spread, *figs]
            + [f"{row['throughput']:.3g}" if row["throughput"] else "n/a", agreement, runs, row["status"]]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return [
        "  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in [header, *rows]
    ]


def _recommendation(answer: Answer) -> list[str]:
    outcome = answer.outcome
    basis = outcome.basis
    if answer.recommended is None:
        admissible = [n for n, s in outcome.table.items() if s.admissible]
        why = (
            "no candidate finished a run"
            if not admissible
            else "no admissible candidate meets the goal by its medians (see MISSES in the table)"
        )
        return [f"recommendation  none: {why}"]
    obs = outcome.observations[answer.recommended]
    c = obs.candidate
    req = outcome.space.request
    what = basis.label.split(" (")[0]
    lines = [
        f"recommendation  {c.describe()}",
        f"  {what}: {scaled(median(values(obs, basis)), basis.unit)} (median of {obs.n} runs)",
    ]
    for g in req.goals:
        m = median(figure_values(obs, g.figure))
        lines.append(f"  {g.what} {scaled(m, g.unit)} within the goal {g.describe()}")
    if c.reduced and obs.quality is not None:
        lines.append(f"  top-1 agreement with full precision {obs.quality.describe()} {obs.quality.basis}")
        undecided = obs.quality.undecided(req.min_agreement)
        if undecided:
            lines.append(f"  warning: {undecided}")
    if answer.runner_up is not None:
        lines.append(f"  margin over the next candidate {answer.runner_up.other}: {answer.runner_up.describe(what)}")
        if not answer.runner_up.separated and answer.runner_up.low is not None:
            lines.append(
                "  the data could not tell these two apart at this level: either serves; more runs would decide "
                "(advise --max-repetitions, or a larger --budget)"
            )
    else:
        lines.append("  margin: no other candidate meets the goal")
    for each in answer.per_runtime[:6]:
        other = outcome.observations[each.other].candidate
        lines.append(f"  vs {other.runtime}'s best ({other.settings()}): {each.describe(what)}")
    return lines


def _exclusions(answer: Answer) -> list[str]:
    outcome = answer.outcome
    lines = ["excluded before running (advise --plan lists the space):"]
    lines += grouped(outcome.space.exclusions) or ["  nothing"]
    out_of = [r for r in answer.rows if not r["admissible"]]
    if out_of:
        lines.append("excluded after running:")
        lines += [f"  {r['name']}: {r['status'].removeprefix('excluded: ')}" for r in out_of]
    return lines


def render(answer: Answer, files: dict[str, str]) -> str:
    outcome = answer.outcome
    req = outcome.space.request
    basis = outcome.basis
    progress = outcome.progress
    lines = [
        f"advise     {req.model} ({req.mode}), {len(outcome.space.candidates)} candidates, "
        f"runner {outcome.space.runner_note}",
        _goal_text(answer),
        f"ranked on  {basis.label}" + (f"\n           {basis.reason}" if basis.reason else ""),
        f"search     {answer.runs_used} runs ({progress.runs} in this session, {fmt_duration(progress.spent())} of its "
        f"{fmt_duration(req.budget_s)} budget); stopped by {outcome.stopped}; a full grid of this space at the most "
        f"runs any candidate got would be {answer.grid_runs} runs",
        "",
        f"candidates (front: no other is better on {basis.label.split(' (')[0]} and every goal figure by medians; "
        "dominated: surely worse on all of them)",
        *_table(answer),
        "",
        *_recommendation(answer),
        "",
        *_exclusions(answer),
    ]
    if outcome.interrupted:
        lines.append("interrupted: run the same command again to resume")
    for label, path in files.items():
        lines.append(f"{label:<10} {path}")
    return "\n".join(lines)


def to_json(answer: Answer) -> dict[str, Any]:
    outcome = answer.outcome
    req = outcome.space.request

    def m(x: Margin | None) -> dict[str, Any] | None:
        return None if x is None else x.__dict__ | {"separated": x.separated}

    return {
        "model": req.model,
        "mode": req.mode,
        "goal": [g.__dict__ for g in req.goals],
        "min_agreement": req.min_agreement,
        "basis": outcome.basis.__dict__,
        "runner": outcome.space.runner,
        "recommended": answer.recommended,
        "margin_next": m(answer.runner_up),
        "margin_per_runtime": [m(x) for x in answer.per_runtime],
        "candidates": answer.rows,
        "exclusions": [e.__dict__ for e in outcome.space.exclusions],
        "runs_used": answer.runs_used,
        "grid_runs": answer.grid_runs,
        "seconds": outcome.progress.spent(),
        "budget_s": req.budget_s,
        "stopped_by": outcome.stopped,
        "repetitions": outcome.reps,
    }
