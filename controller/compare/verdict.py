"""One metric of one matched cell: medians, relative change with a seeded bootstrap interval, the
Mann-Whitney U p-value, and a verdict.

A regression needs both p < alpha and a change beyond the threshold (higher energy or time is
worse). Energy that either side did not measure, or that the meters flagged, is not judged: a gate
must not pass on telemetry that measured nothing. Both sides use one kind of energy (net of idle
only where every run of both has it, else gross).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from controller.compare.match import Pair
from controller.compare.options import METRICS, Options
from controller.report.data import flags_of, notes_of

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"
INSUFFICIENT, NOT_COMPARABLE = "insufficient data", "not comparable"
MIN_REPETITIONS = 3


@dataclass
class Result:
    cell: str
    metric: str
    verdict: str
    n_a: int = 0
    n_b: int = 0
    median_a: float | None = None
    median_b: float | None = None
    change: float | None = None
    ci: tuple[float, float] | None = None
    p: float | None = None
    reason: str = ""
    energy_kind: str = ""
    telemetry_invalid: bool = False  # energy unavailable or flagged: a failure under --require-energy
    notes: list[str] = field(default_factory=list)
    carbon_a: float | None = None
    carbon_b: float | None = None


def _energy_problem(side: str, frame: pl.DataFrame) -> str:
    gross = frame["total_energy_gross"].to_list()
    missing = sum(1 for v in gross if v is None)
    if missing:
        why = (
            "; ".join(
                f"{label}: {'; '.join(notes)}"
                for label, col in (("CPU", "cpu_energy"), ("GPU", "gpu_energy"))
                if (notes := notes_of(frame, col))
            )
            or "; ".join(notes_of(frame, "total_energy"))
            or "no reason recorded"
        )
        return f"energy not measured on side {side} in {missing} of {len(gross)} runs ({why})"
    flagged = flags_of(frame, "total_energy")
    if flagged:
        runs = len({r for r, _, _ in flagged})
        codes = ", ".join(sorted({c for _, c, _ in flagged}))
        return (
            f"energy flagged by the meters on side {side} in {runs} of {frame.height} runs ({codes}): {flagged[0][2]}"
        )
    return ""


def _energy_values(a: pl.DataFrame, b: pl.DataFrame) -> tuple[list[float], list[float], str]:
    both = pl.concat([a.select("total_energy_net"), b.select("total_energy_net")])
    kind = "net" if both["total_energy_net"].null_count() == 0 else "gross"
    col = f"total_energy_{kind}"
    return [float(v) for v in a[col].to_list()], [float(v) for v in b[col].to_list()], kind


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p the exact Mann-Whitney U test can give for these sizes."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def bootstrap_ci(a: list[float], b: list[float], opts: Options, stream: int) -> tuple[float, float]:
    """Percentile interval of median(B) / median(A) - 1 over seeded resamples of each side."""
    import numpy as np

    rng = np.random.default_rng([opts.seed, stream])
    ra = np.median(rng.choice(np.asarray(a), size=(opts.bootstrap, len(a))), axis=1)
    rb = np.median(rng.choice(np.asarray(b), size=(opts.bootstrap, len(b))), axis=1)
    ok = ra > 0
    ratios = rb[ok] / ra[ok] - 1.0
    tail = (1.0 - opts.ci_level) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def judge_values(cell: str, metric: str, a: list[float], b: list[float], opts: Options, stream: int) -> Result:
    import statistics

    from scipy import stats

    r = Result(cell, metric, NO_CHANGE, n_a=len(a), n_b=len(b))
    if len(a) < MIN_REPETITIONS or len(b) < MIN_REPETITIONS:
        r.verdict = INSUFFICIENT
        r.reason = f"fewer than {MIN_REPETITIONS} repetitions a side (A {len(a)}, B {len(b)})"
        return r
    r.median_a, r.median_b = statistics.median(a), statistics.median(b)
    if r.median_a <= 0:
        r.verdict, r.reason = NOT_COMPARABLE, "the median of side A is not positive: no relative change"
        return r
    r.change = r.median_b / r.median_a - 1.0
    r.ci = bootstrap_ci(a, b, opts, stream)
    p = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    r.p = p if math.isfinite(p) else 1.0  # every value tied: no evidence of a difference
    floor = smallest_p(len(a), len(b))
    if floor >= opts.alpha:
        r.notes.append(
            f"with {len(a)} and {len(b)} runs the smallest possible p is {floor:.3g} ≥ alpha {opts.alpha:g}: "
            "no difference can be significant; run more repetitions"
        )
    if r.p < opts.alpha and r.change > opts.threshold:
        r.verdict = REGRESSION
    elif r.p < opts.alpha and r.change < -opts.threshold:
        r.verdict = IMPROVEMENT
    return r


def judge(pair: Pair, metric: str, opts: Options, stream: int) -> Result:
    if pair.problem or pair.a is None or pair.b is None:
        return Result(pair.label, metric, NOT_COMPARABLE, reason=pair.problem)
    column = METRICS[metric]
    if metric == "energy":
        problem = _energy_problem("A", pair.a) or _energy_problem("B", pair.b)
        if problem:
            r = Result(pair.label, metric, NOT_COMPARABLE, pair.a.height, pair.b.height, reason=problem)
            r.telemetry_invalid = True
            return r
        a, b, kind = _energy_values(pair.a, pair.b)
    else:
        a = [float(v) for v in pair.a[column].to_list() if v is not None]
        b = [float(v) for v in pair.b[column].to_list() if v is not None]
        kind = ""
    r = judge_values(pair.label, metric, a, b, opts, stream)
    r.energy_kind = kind
    r.notes = pair.notes + r.notes
    if metric == "energy" and opts.carbon is not None and r.median_a is not None and r.median_b is not None:
        r.carbon_a, r.carbon_b = opts.carbon.grams(r.median_a), opts.carbon.grams(r.median_b)
    return r
