"""``advise --plan``: the space, what was left out and why, how energy will be judged here, and what the
search will cost against the budget; nothing runs."""

from __future__ import annotations

from controller.advise.search import Search
from controller.advise.space import Space, fixed_options, grouped
from controller.progress import fmt_duration


def energy_here() -> str:
    """Whether this host measures energy (RAPL, NVML), and what advise does when it does not."""
    from controller.meters import check_system

    checks = {c.name: c for c in check_system()}
    found = [n for n in ("rapl_zones", "nvml") if checks.get(n) is not None and checks[n].ok]
    if found:
        return (
            f"measured here ({', '.join({'rapl_zones': 'RAPL', 'nvml': 'NVML'}[n] for n in found)}): ranked on energy"
        )
    why = "; ".join(f"{n.split('_')[0].upper()}: {checks[n].detail}" for n in ("rapl_zones", "nvml") if n in checks)
    return f"not measurable on this host ({why[:300]}): advise ranks on time only, and says so"


def _runs_line(space: Space) -> str:
    req = space.request
    if req.mode == "serving":
        s = req.serving
        return (
            f"{s.get('limit') or 'all'} prompts ({s.get('prompts', 'humaneval')}), "
            f"{s.get('max_new_tokens')} new tokens each, {s.get('warmup_requests')} warm-up requests"
        )
    amount = f"{req.samples} samples" if req.samples else (f"{req.duration_s:g} s" if req.duration_s else "64 samples")
    return (
        f"{req.model_size} model, {req.weights} weights, dataset {req.dataset}, {amount} per run, "
        f"warm-up {req.warmup} batches"
    )


def render_plan(space: Space) -> str:
    req = space.request
    goal = "; ".join(g.describe() for g in req.goals) or "none given: the front alone, least energy overall"
    lines = [
        f"advise plan  {req.model} ({req.mode}) into {req.results / req.campaign}; runner {space.runner_note}",
        f"runs         {_runs_line(space)}",
        f"goal         {goal}",
        f"quality      reduced precision: agreement with full precision ≥ {req.min_agreement:.1%} of "
        + ("greedy tokens (against transformers')" if req.mode == "serving" else "top-1 predictions")
        + (f", accuracy at most {100 * req.max_accuracy_drop:g} points below" if req.dataset != "synthetic" else ""),
        f"energy       {energy_here()}",
        f"space        {len(space.candidates)} candidates:",
        *[f"  {d}" for d in space.dimensions],
    ]
    common = fixed_options(space.candidates)
    if common:
        lines.append("  every candidate: " + ", ".join(f"{k}={v}" for k, v in common.items()))
    lines += ["", "candidates"]
    width = max([len(c.name) for c in space.candidates] or [4])
    rwidth = max([len(c.runtime) for c in space.candidates] or [4])
    lines += [f"  {c.name:<{width}}  {c.runtime:<{rwidth}}  {c.settings()}" for c in space.candidates] or ["  none"]
    lines += ["", "left out, and why"]
    lines += grouped(space.exclusions) or ["  nothing"]
    lines += ["", *search_lines(space)]
    return "\n".join(lines)


def search_lines(space: Space) -> list[str]:
    req = space.request
    if not space.candidates:
        return ["search       nothing can run here"]
    search = Search(space, say=lambda _: None)
    runs_each, est = search.screen_plan()
    n = len(space.candidates)
    screened = sum(max(0, runs_each - search.reps.get(c.name, 0)) for c in space.candidates)
    lines = [
        f"search       screening {n} candidates × {runs_each} run{'s' if runs_each != 1 else ''} each ({screened} runs "
        f"left), estimated ~{fmt_duration(est)} of the {fmt_duration(req.budget_s)} budget"
        + (f" ({req.screen} each would not fit)" if runs_each < req.screen else ""),
        f"             then more runs, up to {req.max_repetitions} each, only for candidates that may still be the "
        "answer or on the front, until their intervals separate or the budget is spent",
        f"             a full grid of this space at {req.max_repetitions} runs each: {n * req.max_repetitions} runs",
    ]
    if any(search.reps.values()):
        held = sum(1 for v in search.reps.values() if v)
        lines.append(f"             the folder already holds runs of {held} candidates: the search resumes")
    return lines
