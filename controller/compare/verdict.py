"""One metric of one matched cell: medians, the relative change B / A − 1 with its interval, and a
verdict decided from the interval against the threshold (higher energy or time is worse):

- ``regression``: the whole interval lies above +threshold;
- ``improvement``: the whole interval lies below −threshold;
- ``equivalent``: the whole interval lies within ±threshold;
- ``inconclusive``: otherwise (the data cannot tell which);
- ``insufficient data``: too few runs for any interval at the level asked;
- ``not comparable``: the cell is not the same on both sides, or its figure was not measured.

Energy intervals include the energy figures' own bounds: each side's figures may all be off by up to
their bound in one direction, a bias the runs' spread cannot show, so the rank interval is widened
at each end by the two sides' relative bounds combined in quadrature (independent meters' windows).
Every undecided result says how many runs a side would decide it at the spread observed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from controller.compare.figures import Figures, figures_of
from controller.compare.interval import (
    MAX_REPETITIONS,
    MIN_REPETITIONS,
    log_spread,
    lower_tail,
    min_repetitions,
    repetitions_to_decide,
    shift_interval,
)
from controller.compare.match import Pair
from controller.compare.options import METRICS, Options

REGRESSION, IMPROVEMENT, EQUIVALENT = "regression", "improvement", "equivalent"
INCONCLUSIVE, INSUFFICIENT, NOT_COMPARABLE = "inconclusive", "insufficient data", "not comparable"
VERDICTS = (REGRESSION, IMPROVEMENT, EQUIVALENT, INCONCLUSIVE, INSUFFICIENT, NOT_COMPARABLE)
DECIDED = (REGRESSION, IMPROVEMENT, EQUIVALENT)


@dataclass
class Result:
    cell: str
    metric: str
    verdict: str
    figure: str = ""
    n_a: int = 0
    n_b: int = 0
    median_a: float | None = None
    median_b: float | None = None
    change: float | None = None  # Hodges-Lehmann: the median of the pairwise ratios B / A, − 1
    ci: tuple[float, float] | None = None
    coverage: float | None = None  # the rank interval's exact coverage (before any widening)
    p: float | None = None
    bound_a: float | None = None  # energy: the sides' relative bounds, and what widened the interval
    bound_b: float | None = None
    widen: float | None = None
    needed: int | None = None  # runs a side that would decide an undecided result
    needed_reason: str = ""
    reason: str = ""
    energy_kind: str = ""
    telemetry_invalid: bool = False  # energy unavailable or flagged: a failure under --require-energy
    notes: list[str] = field(default_factory=list)
    carbon_a: float | None = None
    carbon_b: float | None = None

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED


def decide(low: float, high: float, threshold: float) -> str:
    """The verdict of an interval of the relative change against ±threshold."""
    if low > threshold:
        return REGRESSION
    if high < -threshold:
        return IMPROVEMENT
    if low >= -threshold and high <= threshold:
        return EQUIVALENT
    return INCONCLUSIVE


def _widening(f: Figures) -> float:
    """The log-scale amount added to each end of an energy interval: the sides' stated relative
    bounds in quadrature (a side that states none adds nothing, and the result says so)."""
    parts = [math.log1p(b) for b in (f.bound_a, f.bound_b) if b is not None]
    return math.sqrt(sum(p * p for p in parts))


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def repetitions_advice(r: Result, a: list[float], b: list[float], opts: Options, widen: float) -> None:
    """Fill in how many runs a side would decide this result at the spread observed, or why none would."""
    if not a or not b:
        r.needed_reason = "no runs on one side"
        return
    sigma = log_spread(a, b)
    if sigma is None:
        r.needed_reason = (
            f"at least {min_repetitions(opts.alpha)} a side for any {100 * opts.ci_level:g} % interval; "
            "too few runs to see their spread"
        )
        return
    est = statistics.median(math.log(y) - math.log(x) for x in a for y in b)
    up = math.log1p(opts.threshold)
    down = math.log1p(-opts.threshold) if opts.threshold < 1 else -math.inf
    if est > up:
        margin, towards = est - up, REGRESSION
    elif est < down:
        margin, towards = down - est, IMPROVEMENT
    else:
        margin, towards = min(up - est, est - down), EQUIVALENT
    n = repetitions_to_decide(margin, sigma, opts.alpha, widen)
    change = math.expm1(est)
    if n is not None:
        r.needed = max(n, max(r.n_a, r.n_b) + 1)  # these runs did not decide it: more are needed
        r.needed_reason = f"to show {towards} if the change stays {_pct(change)} at the spread seen"
    elif margin <= widen and widen > 0:
        r.needed_reason = (
            f"no number of runs: the energy figures' own bounds (±{100 * math.expm1(widen):.1f} %) alone exceed the "
            f"distance from the change ({_pct(change)}) to the threshold"
        )
    else:
        r.needed_reason = (
            f"no number of runs (over {MAX_REPETITIONS:,} a side): the change ({_pct(change)}) sits on the "
            f"threshold (±{100 * opts.threshold:g} %)"
        )


def judge_values(cell: str, metric: str, f: Figures, opts: Options) -> Result:
    from scipy import stats

    a, b = f.a, f.b
    r = Result(cell, metric, INSUFFICIENT, f.figure, n_a=len(a), n_b=len(b))
    if not a or not b:
        r.reason = f"no run with this figure on side {'A' if not a else 'B'}"
        return r
    r.median_a, r.median_b = statistics.median(a), statistics.median(b)
    widen = _widening(f) if metric == "energy" else 0.0
    shift = shift_interval(a, b, opts.alpha)
    level = f"{100 * opts.ci_level:g} %"
    if len(a) < MIN_REPETITIONS or len(b) < MIN_REPETITIONS:
        r.reason = f"fewer than {MIN_REPETITIONS} repetitions a side (A {len(a)}, B {len(b)})"
    elif shift is None:
        r.reason = (
            f"no {level} interval exists with A {len(a)} and B {len(b)} runs (the exact test's smallest two-sided "
            f"p is {2 * lower_tail(len(a), len(b), 0):.3g}, above {opts.alpha:g}): at least "
            f"{min_repetitions(opts.alpha)} a side are needed"
        )
    p = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    r.p = p if math.isfinite(p) else 1.0  # every value tied: no evidence of a difference
    if r.reason or shift is None:
        r.change = math.expm1(statistics.median(math.log(y) - math.log(x) for x in a for y in b))
        repetitions_advice(r, a, b, opts, widen)
        return r
    r.change, r.coverage = shift.estimate, shift.coverage
    r.ci = (math.expm1(shift.log_low - widen), math.expm1(shift.log_high + widen))
    if metric == "energy" and widen > 0:
        r.widen = math.expm1(widen)
    r.verdict = decide(r.ci[0], r.ci[1], opts.threshold)
    if not r.decided:
        repetitions_advice(r, a, b, opts, widen)
    return r


def _not_comparable(pair: Pair, metric: str, reason: str, telemetry_invalid: bool = False) -> Result:
    r = Result(pair.label, metric, NOT_COMPARABLE, reason=reason, telemetry_invalid=telemetry_invalid)
    r.n_a = 0 if pair.a is None else pair.a.height
    r.n_b = 0 if pair.b is None else pair.b.height
    r.needed_reason = "no number of runs: " + (
        "the energy cannot be judged" if telemetry_invalid else "the cell is not the same on both sides"
    )
    return r


def judge(pair: Pair, metric: str, opts: Options) -> Result:
    if pair.problem or pair.a is None or pair.b is None:
        return _not_comparable(pair, metric, pair.problem)
    f = figures_of(pair, metric, METRICS[metric])
    if f.problem:
        r = _not_comparable(pair, metric, f.problem, f.telemetry_invalid)
        r.figure = f.figure
        return r
    r = judge_values(pair.label, metric, f, opts)
    r.energy_kind, r.bound_a, r.bound_b = f.energy_kind, f.bound_a, f.bound_b
    r.notes = pair.notes + f.notes + r.notes
    if f.figure == "energy" and opts.carbon is not None and r.median_a is not None and r.median_b is not None:
        r.carbon_a, r.carbon_b = opts.carbon.grams(r.median_a), opts.carbon.grams(r.median_b)
    return r
