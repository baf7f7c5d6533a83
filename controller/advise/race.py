"""Which candidates are still in the race, and which need more runs.

A candidate leaves the race when another is surely better on every axis: the objective (energy per
inference, or time) and each figure of the goal (its latency, throughput). "Surely" is the exact
interval of ``compare`` (Hodges-Lehmann, from inverting the Mann-Whitney test; energy widened by the
figures' own bounds) once both have enough runs for one (4 a side at 95 %); before that, a normal
approximation on the log scale with the run-to-run spread pooled over every candidate (the relative
spread is assumed alike across candidates: one host, one model), at a level divided among the
candidates compared (Bonferroni), so that screening drops only what is far behind. With one run
each no spread is seen yet and an assumed :data:`PRIOR_SPREAD` stands in.

A candidate in the race gets more runs while it may still be the answer (its objective's interval
overlaps the best feasible candidate's) or while its place on the front rests on fewer runs than an
exact interval needs; never beyond the repetition cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller.advise.observe import Basis, Observation, bound, figure_values, median, values
from controller.advise.slo import Goal
from controller.advise.slo import axes as slo_axes
from controller.compare.interval import NORMAL, log_spread, min_repetitions, shift_interval

PRIOR_SPREAD = 0.10  # assumed log-scale run-to-run spread before any candidate has two runs


@dataclass(frozen=True)
class Axis:
    name: str  # "objective" or a goal's figure
    label: str
    higher_is_better: bool = False
    goal: Goal | None = None


@dataclass
class Standing:
    """A candidate's place after the runs so far."""

    name: str
    admissible: bool = True  # ran, and meets the quality constraint (or needs none)
    why_not: str = ""  # why it is not admissible
    feasible: bool | None = None  # meets every goal by its medians (None: no runs)
    surely_infeasible: bool = False  # every run missed a goal
    dominated_by: str | None = None  # surely dominated (left the race) by this candidate
    on_front: bool = False  # not dominated by medians among the admissible
    missed: list[str] = field(default_factory=list)  # the goals its medians miss


def axes_of(goals: list[Goal], basis: Basis, mode: str) -> list[Axis]:
    """The objective, then every goal's figure (or the mode's default latency when no goal is given)."""
    out = [Axis("objective", basis.label)]
    out += [Axis(g.figure, g.what, g.higher_is_better, g) for g in slo_axes(goals, mode)]
    return out


def axis_values(obs: Observation, axis: Axis, basis: Basis) -> list[float]:
    vals = values(obs, basis) if axis.name == "objective" else figure_values(obs, axis.name)
    return [v for v in vals if v > 0]


def _widen(a: Observation, b: Observation, axis: Axis, basis: Basis) -> float:
    """Energy's own bounds, in quadrature, on the log scale (as ``compare`` widens its intervals)."""
    if axis.name != "objective" or not basis.energy:
        return 0.0
    parts = [math.log1p(x) for x in (bound(a, basis), bound(b, basis)) if x is not None]
    return math.sqrt(sum(p * p for p in parts))


@dataclass
class Judge:
    """Pairwise "surely better" decisions on every axis, at one level."""

    observations: dict[str, Observation]
    basis: Basis
    axes: list[Axis]
    alpha: float
    comparisons: int = 1  # candidates compared: the normal rule's level is shared among them
    spreads: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for axis in self.axes:
            sides = [axis_values(o, axis, self.basis) for o in self.observations.values()]
            self.spreads[axis.name] = log_spread(*[s for s in sides if len(s) >= 2]) or PRIOR_SPREAD

    def better(self, d: Observation, c: Observation, axis: Axis) -> bool:
        """Whether d is surely better than c on this axis."""
        vd, vc = axis_values(d, axis, self.basis), axis_values(c, axis, self.basis)
        if not vd or not vc:
            return False
        sign = -1.0 if axis.higher_is_better else 1.0  # > 0: c worse than d
        widen = _widen(d, c, axis, self.basis)
        enough = min_repetitions(self.alpha)
        if len(vd) >= enough and len(vc) >= enough:
            shift = shift_interval(vd, vc, self.alpha)  # c / d - 1
            if shift is not None:
                low, high = shift.log_low - widen, shift.log_high + widen
                return low > 0 if sign > 0 else high < 0
        diff = sign * (math.log(median(vc) or 1.0) - math.log(median(vd) or 1.0))
        z = NORMAL.inv_cdf(1.0 - self.alpha / (2.0 * max(1, self.comparisons)))
        sigma = self.spreads[axis.name]
        return diff > z * sigma * math.sqrt(1.0 / len(vc) + 1.0 / len(vd)) + widen

    def dominates(self, d: Observation, c: Observation) -> bool:
        return all(self.better(d, c, axis) for axis in self.axes)

    def separated(self, a: Observation, b: Observation) -> bool:
        """Whether the objective tells a and b apart (either way)."""
        objective = self.axes[0]
        return self.better(a, b, objective) or self.better(b, a, objective)


def _feasibility(obs: Observation, goals: list[Goal]) -> tuple[bool | None, bool, list[str]]:
    if not obs.runs:
        return None, False, []
    missed, surely = [], False
    for g in goals:
        vals = figure_values(obs, g.figure)
        m = median(vals)
        if m is None or not g.met(m):
            missed.append(g.describe())
        if vals and not any(g.met(v) for v in vals):
            surely = True
    return not missed, surely, missed


def _median_dominates(a: Observation, b: Observation, axes: list[Axis], basis: Basis) -> bool:
    """a at least as good as b on every axis by medians, and better on one."""
    strictly = False
    for axis in axes:
        ma, mb = median(axis_values(a, axis, basis)), median(axis_values(b, axis, basis))
        if ma is None or mb is None:
            return False
        if axis.higher_is_better:
            ma, mb = -ma, -mb
        if ma > mb:
            return False
        strictly = strictly or ma < mb
    return strictly


def standings(
    observations: dict[str, Observation],
    basis: Basis,
    goals: list[Goal],
    axes: list[Axis],
    alpha: float,
    min_agreement: float,
    max_drop: float,
) -> dict[str, Standing]:
    """Every candidate's standing: admissible, feasible, dominated (and by whom), on the front."""
    out: dict[str, Standing] = {}
    for name, obs in observations.items():
        s = Standing(name)
        if not obs.runs:
            s.admissible = False
            s.why_not = f"every run failed: {obs.failures[-1]}" if obs.failures else "not run (the budget ended first)"
        elif obs.candidate.reduced and obs.quality is not None:
            s.admissible, s.why_not = obs.quality.verdict(min_agreement, max_drop)
        s.feasible, s.surely_infeasible, s.missed = _feasibility(obs, goals)
        out[name] = s
    racing = [observations[n] for n, s in out.items() if s.admissible]
    judge = Judge(observations, basis, axes, alpha, comparisons=max(1, len(racing) - 1))
    for c in racing:
        for d in racing:
            if d is not c and judge.dominates(d, c):
                out[c.candidate.name].dominated_by = d.candidate.name
                break
    for c in racing:
        out[c.candidate.name].on_front = not any(d is not c and _median_dominates(d, c, axes, basis) for d in racing)
    return out


def best(observations: dict[str, Observation], table: dict[str, Standing], basis: Basis) -> str | None:
    """The admissible candidate that meets the goal with the least median objective."""
    ok = [o for n, o in observations.items() if table[n].admissible and table[n].feasible]
    ranked = sorted(ok, key=lambda o: median(values(o, basis)) or math.inf)
    return ranked[0].candidate.name if ranked else None


def wanted(
    observations: dict[str, Observation],
    table: dict[str, Standing],
    basis: Basis,
    axes: list[Axis],
    alpha: float,
    max_repetitions: int,
) -> list[str]:
    """Candidates that need another run, most useful first: those that may still be the answer,
    then those that may be on the front with fewer runs than an exact interval needs."""
    racing = {n: o for n, o in observations.items() if table[n].admissible and table[n].dominated_by is None}
    judge = Judge(observations, basis, axes, alpha, comparisons=max(1, len(racing) - 1))
    top = best(observations, table, basis)
    enough = min_repetitions(alpha)
    out: list[str] = []
    if top is not None:
        r = observations[top]
        contenders = [
            o
            for n, o in racing.items()
            if n != top and not table[n].surely_infeasible and not judge.better(r, o, axes[0])
        ]
        target = median(values(r, basis)) or 0.0
        contenders.sort(key=lambda o: abs((median(values(o, basis)) or math.inf) - target))
        if contenders and r.n < max_repetitions:
            out.append(top)
        out += [o.candidate.name for o in contenders if o.n < max_repetitions]
        # The margin is stated over the next candidate that meets the goal, left the race or not: it
        # needs the runs of an exact interval on both sides.
        follow = runner_up(observations, table, basis, top)
        for name in (top, follow):
            if name is not None and name not in out and observations[name].n < min(enough, max_repetitions):
                out.append(name)
    out += [n for n, o in racing.items() if n not in out and o.n < min(enough, max_repetitions)]
    return out


def runner_up(
    observations: dict[str, Observation], table: dict[str, Standing], basis: Basis, top: str | None
) -> str | None:
    """The admissible candidate meeting the goal with the next least median objective after ``top``."""
    ok = [o for n, o in observations.items() if n != top and table[n].admissible and table[n].feasible]
    ranked = sorted(ok, key=lambda o: median(values(o, basis)) or math.inf)
    return ranked[0].candidate.name if ranked else None
