"""The options of ``compare``, checked before any record is read: one line and exit 2 when wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.carbon import CarbonFactor, carbon_factor
from controller.errors import UserError

METRICS = {"energy": "total_energy", "time": "window_s"}
FORMATS = ("term", "markdown", "json")


@dataclass(frozen=True)
class Options:
    metrics: tuple[str, ...] = ("energy", "time")
    threshold: float = 0.05  # a fraction: 5 % is 0.05
    alpha: float = 0.01
    fmt: str = "term"
    require_energy: bool = False
    bootstrap: int = 2000
    seed: int = 0
    duplicates: str = "refuse"
    carbon: CarbonFactor | None = None

    @property
    def ci_level(self) -> float:
        """The bootstrap interval's level, 1 - alpha, so that it speaks at the test's level."""
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
        raise UserError(f"--alpha {text!r}: give a significance level between 0 and 1, such as 0.01") from None
    if not 0.0 < value < 1.0:
        raise UserError(f"--alpha {text!r}: give a significance level between 0 and 1 (exclusive), such as 0.01")
    return value


def parse_int(flag: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: give a whole number") from None
    if value < low:
        raise UserError(f"{flag} {text!r}: give a whole number of at least {low}")
    return value


def parse_options(
    metric: str = "energy,time",
    threshold: str = "5%",
    alpha: str = "0.01",
    fmt: str = "term",
    require_energy: bool = False,
    bootstrap: str = "2000",
    seed: str = "0",
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
        bootstrap=parse_int("--bootstrap", bootstrap, 100),
        seed=parse_int("--seed", seed, 0),
        duplicates=duplicates,
        carbon=carbon_factor(grid_intensity, country, pue),
    )
