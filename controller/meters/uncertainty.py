"""The bound every energy figure carries, how its parts combine, and when it is too wide.

A bound is a sum of components (name -> J), each a bound on one effect of how the meter works
(counter resolution, when the counter really updated, where in the bracketing interval the
energy was drawn, sampling, power averaging, wrap risk). Components are added linearly, not in
quadrature: each one holds whatever the others do, so the sum covers the truth whenever each
component does, and the effects at a window's two edges (or in two meters) are often driven by
the same power step, so they cannot be taken as independent. Measured against fakes of known
truth (``tests/meters/test_meters_uncertainty.py``), the bounds cover at least 95 % of windows and
are within a few times the real error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from controller.meters.base import Metric, flag

#: A figure whose bound exceeds this share of its value is flagged (``energy_uncertainty_high``).
DEFAULT_UNCERTAINTY_LIMIT = 0.02
#: The energy figures that carry a bound.
ENERGY_METRICS = ("cpu_energy_j", "dram_energy_j", "gpu_energy_j", "wall_energy_j", "total_energy_j")

COUNTER_METHOD = (
    "sum of worst-case bounds on each effect at the window's two edges (counter resolution, when the "
    "counter really updated, where in the bracketing update interval the energy was drawn); covers the "
    "truth in >= 95 % of windows (checked on fakes of known truth)"
)
SAMPLED_METHOD = (
    "sum of bounds on each effect of integrating sampled power (the edges, the power's changes between "
    "samples at 2 sigma, its averaging); covers the truth in >= 95 % of windows (checked on fakes of known truth)"
)
SUM_METHOD = (
    "sum of its parts' bounds (linear, not root-sum-square: the parts' errors come from the same window "
    "edges and can add up), so it covers the truth whenever every part's bound does"
)


def bound_fields(value: float | None, components: Mapping[str, float], method: str) -> dict[str, Any]:
    """The record fields of a gross figure's bound: ``uncertainty_j``, ``uncertainty_rel``,
    ``uncertainty_components`` and ``uncertainty_method``."""
    parts = {k: max(0.0, float(v)) for k, v in components.items()}
    total = sum(parts.values())
    return {
        "uncertainty_j": total,
        "uncertainty_rel": relative(total, value),
        "uncertainty_components": parts,
        "uncertainty_method": method,
    }


def relative(bound: float | None, value: float | None) -> float | None:
    """``bound / value``; None when either is missing or the value is 0."""
    if bound is None or value is None or value == 0 or not math.isfinite(value):
        return None
    return bound / abs(value)


def add_components(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Components of several figures summed by name (the linear sum of their bounds)."""
    out: dict[str, float] = {}
    for part in parts:
        for name, joules in part.items():
            out[name] = out.get(name, 0.0) + joules
    return out


def uncertainty_flags(metrics: Mapping[str, Metric], limit: float) -> list[dict[str, Any]]:
    """An ``energy_uncertainty_high`` flag for each available energy figure whose bound exceeds
    ``limit`` (a share of its value)."""
    out: list[dict[str, Any]] = []
    for name in ENERGY_METRICS:
        m = metrics.get(name)
        if m is None or not m.available or m.value is None:
            continue
        rel = m.extra.get("uncertainty_rel")
        if rel is None or rel <= limit:
            continue
        components = m.extra.get("uncertainty_components") or {}
        worst = max(components, key=components.__getitem__) if components else None
        out.append(
            flag(
                "energy_uncertainty_high",
                f"{name}: {m.value:.6g} J +- {m.extra['uncertainty_j']:.3g} J ({rel:.1%}), over the "
                f"{limit:.1%} limit"
                + (f"; most of the bound is {worst.replace('_', ' ')}" if worst else "")
                + "; measure a longer window (or sample more often)",
                metric=name,
                uncertainty_rel=rel,
                uncertainty_j=m.extra["uncertainty_j"],
                limit=limit,
            )
        )
    return out
