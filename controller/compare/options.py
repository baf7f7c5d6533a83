"""The options of ``compare``, checked before any record is read: one line and exit 2 when wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.carbon import CarbonFactor, carbon_factor
from controller.errors import UserError

METRICS = {"energy": "total_energy", "time": "window_s"}
FORMATS = ("term", "markdown", "json")


# Why 95 % by default: with 5 runs a side (what a gate affords) the exact interval at 99 % is the
# whole range of the 25 pairwise ratios, so one run of A slower than one of B keeps any slowdown
# from being decided; at 95 % it drops the two extreme ratios a side (coverage 96.8 %, exact), and a
# regression needs its lower end above the threshold: a false alarm is rarer than 2.5 %.
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Options:
    metrics: tuple[str, ...] = ("energy", "time")
    threshold: float = 0.05  # a fraction: 5 % is 0.05
    alpha: float = DEFAULT_ALPHA
    fmt: str = "term"
    require_energy: bool = False
    allow_undecided: bool = False
    duplicates: str = "refuse"
    carbon: CarbonFactor | None = None

    @property
    def ci_level(self) -> float:
        """The interval's level, 1 − alpha: each verdict is a one-sided decision at alpha / 2."""
        return 1.0 - self.alpha


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in names if m not in METRICS]
    if not names or bad:
        raise UserError(f"--metric {text!r}: use energy, time or both (energy,time)")
    return names


def parse_threshold(text: str) -> float:
    body = text.strip()
    if not body.endswith("%") or body.count("%") != 1:
        raise UserError(f"--threshold {text!r}: give a percentage such as 5%")
    try:
        value = float(body[:-1])
    except ValueError:
        raise UserError(f"--threshold {text!r}: give a percentage such as 5%") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"--threshold {text!r}: give a percentage of 0% or more, such as 5%")
    return value / 100.0


def parse_alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--alpha {text!r}: give a significance level between 0 and 1, such as 0.05") from None
    if not 0.0 < value < 1.0:
        raise UserError(f"--alpha {text!r}: give a significance level between 0 and 1 (exclusive), such as 0.05")
    return value


def parse_options(
    metric: str = "energy,time",
    threshold: str = "5%",
    alpha: str = str(DEFAULT_ALPHA),
    fmt: str = "term",
    require_energy: bool = False,
    allow_undecided: bool = False,
    duplicates: str = "refuse",
    grid_intensity: str | None = None,
    country: str | None = None,
    pue: str | None = None,
) -> Options:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return Options(
        metrics=parse_metrics(metric),
        threshold=parse_threshold(threshold),
        alpha=parse_alpha(alpha),
        fmt=fmt,
        require_energy=require_energy,
        allow_undecided=allow_undecided,
        duplicates=duplicates,
        carbon=carbon_factor(grid_intensity, country, pue),
    )
