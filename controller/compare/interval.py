"""The interval of a relative change between two small sets of runs, and how many runs would narrow it.

Method: the distribution-free confidence interval for a shift on the log scale, from inverting the
Mann-Whitney test (Hodges-Lehmann; Hollander & Wolfe, *Nonparametric Statistical Methods*, 4.3).
Of the m·n pairwise log-ratios log(b_j / a_i), sorted, the interval runs from the k-th smallest to
the k-th largest, k the largest integer with P(U ≤ k − 1) ≤ alpha / 2 under the exact null
distribution of U. Why this one:

- its coverage is exact for any continuous distribution of the same shape on both sides, at any
  size (a percentile bootstrap of medians undercovers badly at 3–10 runs a side);
- it rests on ranks, so one outlying run moves it by at most one pairwise order statistic per
  pair it overturns, not by its size;
- on the log scale a shift is a ratio, so the interval is one for B / A − 1, the change users read;
- it says when no interval exists: with 3 runs a side P(U = 0) = 1/20 > 0.025, so no 95 % interval
  can be made, whatever the numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

METHOD = (
    "distribution-free interval of the ratio B / A from inverting the exact Mann-Whitney test on log values "
    "(Hodges-Lehmann: exact coverage at any number of runs, robust to an outlying run)"
)
MIN_REPETITIONS = 3  # a side: fewer shows no run-to-run spread worth the name, whatever the level
EXACT_UP_TO = 2500  # m·n up to which U's null distribution is counted exactly (50 runs a side)


@lru_cache(maxsize=256)
def u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give U = 0, 1, …, m·n: the Gaussian binomial
    [m+n choose m]_q = Π_{i=1..m} (1 − q^(n+i)) / (1 − q^i), multiplied out one factor at a time
    (each partial product is itself such a polynomial, so every division is exact)."""
    c = [0] * (m * n + 1)
    c[0] = 1
    for i in range(1, m + 1):
        for u in range(len(c) - 1, n + i - 1, -1):  # × (1 − q^(n+i))
            c[u] -= c[u - n - i]
        for u in range(i, len(c)):  # ÷ (1 − q^i)
            c[u] += c[u - i]
    return tuple(c)


@lru_cache(maxsize=256)
def _cumulative(m: int, n: int) -> tuple[float, ...]:
    counts, total, running, out = u_counts(min(m, n), max(m, n)), math.comb(m + n, m), 0, []
    for c in counts:
        running += c
        out.append(running / total)
    return tuple(out)


NORMAL = statistics.NormalDist()


def lower_tail(m: int, n: int, u: int) -> float:
    """P(U ≤ u) for sizes m, n with no ties: exact where m·n ≤ EXACT_UP_TO, else normal with
    continuity correction."""
    if u < 0:
        return 0.0
    if m * n <= EXACT_UP_TO:
        table = _cumulative(m, n)
        return table[min(u, len(table) - 1)]
    sd = math.sqrt(m * n * (m + n + 1) / 12.0)
    return NORMAL.cdf((u + 0.5 - m * n / 2.0) / sd)


@lru_cache(maxsize=4096)
def rank_k(m: int, n: int, alpha: float) -> int:
    """The order statistic k of the pairwise differences that bounds a 1 − alpha interval; 0 when
    no interval at that level exists for these sizes."""
    if m < 1 or n < 1 or lower_tail(m, n, 0) > alpha / 2.0:
        return 0
    lo, hi = 1, (m * n + 1) // 2  # the largest k with P(U ≤ k − 1) ≤ alpha / 2; the tail grows with k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if lower_tail(m, n, mid - 1) <= alpha / 2.0:
            lo = mid
        else:
            hi = mid - 1
    return lo


@lru_cache(maxsize=32)
def min_repetitions(alpha: float) -> int:
    """The fewest runs a side (equal sides) for which an interval at 1 − alpha exists at all."""
    n = 1
    while rank_k(n, n, alpha) == 0:
        n += 1
    return n


@dataclass(frozen=True)
class Shift:
    """A change B / A − 1: its estimate, its interval and the interval's exact coverage."""

    estimate: float
    low: float
    high: float
    coverage: float  # exact for continuous data: 1 − 2 P(U ≤ k − 1)
    log_low: float
    log_high: float


def shift_interval(a: list[float], b: list[float], alpha: float) -> Shift | None:
    """The Hodges-Lehmann ratio interval of b against a (positive values), or None when these
    sizes allow no interval at 1 − alpha."""
    m, n = len(a), len(b)
    k = rank_k(m, n, alpha)
    if k == 0:
        return None
    la, lb = [math.log(x) for x in a], [math.log(y) for y in b]
    d = sorted(y - x for x in la for y in lb)
    est = statistics.median(d)
    lo, hi = d[k - 1], d[m * n - k]
    coverage = 1.0 - 2.0 * lower_tail(m, n, k - 1)
    return Shift(math.expm1(est), math.expm1(lo), math.expm1(hi), coverage, lo, hi)


def log_spread(*sides: list[float]) -> float | None:
    """The run-to-run spread of one or more sets of runs on the log scale, robustly: 1.4826 × the
    MAD of each value's distance from its own set's median (one outlying run barely moves it); their
    SD where half or more sit on the median; None with fewer than three values in sets of two or
    more (no spread seen)."""
    residuals: list[float] = []
    for side in sides:
        logs = [math.log(v) for v in side]
        if len(logs) >= 2:
            med = statistics.median(logs)
            residuals += [x - med for x in logs]
    if len(residuals) < 3:
        return None
    mad = 1.4826 * statistics.median(abs(r) for r in residuals)
    return mad if mad > 0 else statistics.pstdev(residuals)


def half_width(sigma: float, n: int, alpha: float) -> float | None:
    """The expected half-width on the log scale of the interval with n runs a side, for values of
    log-spread sigma: the k-th of n² pairwise differences lies near their k / n² quantile, and a
    difference of two such values has spread σ√2. None when n allows no interval."""
    k = rank_k(n, n, alpha)
    if k == 0:
        return None
    return -NORMAL.inv_cdf(k / (n * n)) * sigma * math.sqrt(2.0)


MAX_REPETITIONS = 100_000


def repetitions_to_decide(margin: float, sigma: float, alpha: float, widen: float = 0.0) -> int | None:
    """The fewest runs a side whose interval (its half-width at log-spread ``sigma``, plus ``widen``,
    which does not shrink with runs) would lie within ``margin`` of the estimate on the log scale;
    None when no number of runs would (the margin is 0, or ``widen`` alone fills it)."""
    if margin <= widen:
        return None

    def fits(n: int) -> bool:
        h = half_width(sigma, n, alpha)
        return h is not None and h + widen < margin

    low = min_repetitions(alpha)
    if fits(low):
        return low
    high = low
    while not fits(high):  # the half-width falls with n: double, then halve the gap
        if high >= MAX_REPETITIONS:
            return None
        low, high = high, min(2 * high, MAX_REPETITIONS)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high
