"""The recommendation's margin over another candidate: the change of its objective against the other's,
with ``compare``'s exact interval (energy widened by the figures' own bounds) and the one-sided
confidence that the recommendation is the better of the two (the exact Mann-Whitney test, on the
same pairwise log-ratios and the same widening)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from controller.advise.observe import Basis, Observation, bound, values
from controller.compare.interval import lower_tail, min_repetitions, shift_interval


@dataclass
class Margin:
    other: str  # the candidate compared with
    change: float  # recommendation / other - 1 (negative: the recommendation needs less)
    low: float | None = None  # the interval of the change, where the runs allow one
    high: float | None = None
    level: float = 0.95
    confidence: float | None = None  # P(the recommendation is the better of the two), one-sided
    widen: float = 0.0  # the energy bounds' share of the interval
    note: str = ""  # why no interval

    @property
    def separated(self) -> bool:
        return self.high is not None and self.high < 0

    def describe(self, what: str) -> str:
        saving = -self.change
        text = f"{abs(saving):.0%} {'less' if saving >= 0 else 'more'} {what}"
        if self.low is not None and self.high is not None:
            text += (
                f" ({100 * self.level:g} % interval of the change {100 * self.low:+.1f} % … {100 * self.high:+.1f} %"
                + (
                    f", including the energy figures' own bounds ±{100 * math.expm1(self.widen):.1f} %"
                    if self.widen
                    else ""
                )
                + ")"
            )
        else:
            text += f" ({self.note})"
        if self.confidence is not None:
            text += f", confidence {self.confidence:.1%} that it is the lower"
        return text


def margin(r: Observation, other: Observation, basis: Basis, alpha: float) -> Margin:
    a, b = values(other, basis), values(r, basis)
    logs = sorted(math.log(y) - math.log(x) for x in a for y in b)
    change = math.expm1(statistics.median(logs))
    parts = [math.log1p(x) for x in (bound(r, basis), bound(other, basis)) if x is not None]
    widen = math.sqrt(sum(p * p for p in parts))
    out = Margin(other.candidate.name, change, level=1.0 - alpha, widen=widen)
    # One-sided: the pairs that do not show the recommendation lower (after widening) count against it.
    against = sum(1 for d in logs if d + widen >= 0)
    out.confidence = 1.0 - lower_tail(len(a), len(b), against)
    shift = shift_interval(a, b, alpha)
    if shift is None:
        out.note = (
            f"no {100 * (1 - alpha):g} % interval with {len(b)} and {len(a)} runs: "
            f"{min_repetitions(alpha)} a side are needed"
        )
        return out
    out.low, out.high = math.expm1(shift.log_low - widen), math.expm1(shift.log_high + widen)
    return out
