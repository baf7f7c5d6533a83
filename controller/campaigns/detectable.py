"""The smallest change a campaign's repetitions let ``compare`` decide, from the spread of its earlier records.

``compare`` calls a cell a regression when the whole interval of its change lies above the
threshold. With n runs a side and the run-to-run spread σ (log scale) seen in earlier records of the
same cell, that interval is about ±h(n, σ) wide (plus, for energy, the figures' own bounds), so the
smallest change decided is threshold + h: said per configuration (its worst cell), at compare's
defaults. Times and energies are per sample, so duration-mode records count too.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.estimate import _settings
from controller.campaigns.spec import Campaign
from controller.compare.interval import half_width, log_spread, min_repetitions
from controller.compare.options import DEFAULT_ALPHA

THRESHOLD = 0.05  # compare's default


@dataclass
class Spread:
    runs: int = 0
    time: float | None = None  # σ of log time per sample
    energy: float | None = None  # σ of log energy per sample
    energy_bound: float | None = None  # the median relative bound of the energy figures


@dataclass
class Detectable:
    """Per configuration: cells with a spread, and the worst smallest change decided, time and energy."""

    cells: int = 0
    with_spread: int = 0
    time: list[tuple[float, float]] = field(default_factory=list)  # (smallest change, half-width)
    energy: list[tuple[float, float]] = field(default_factory=list)


def _per_sample(rec: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    metrics = rec.get("metrics") or {}
    samples, window = metrics.get("samples"), metrics.get("window_s")
    if not isinstance(samples, (int, float)) or not samples or not isinstance(window, (int, float)) or window <= 0:
        return None, None, None
    energy = ((rec.get("measurements") or {}).get("metrics") or {}).get("total_energy_j") or {}
    value = energy.get("value") if energy.get("available") else None
    if not isinstance(value, (int, float)) or value <= 0:
        return window / samples, None, None
    bound = energy.get("uncertainty_j")
    return window / samples, value / samples, (bound / value if isinstance(bound, (int, float)) else None)


def spread_of(records: list[dict[str, Any]]) -> Spread:
    ok = [_per_sample(r) for r in records if r.get("status") == "ok" and r.get("mode") != "serving"]
    times = [t for t, _, _ in ok if t is not None]
    energies = [e for _, e, _ in ok if e is not None]
    bounds = [b for _, e, b in ok if e is not None and b is not None]
    s = Spread(runs=len(times), time=log_spread(times))
    if energies and len(energies) == len(times):
        s.energy = log_spread(energies)
        s.energy_bound = statistics.median(bounds) if len(bounds) == len(energies) else None
    return s


def smallest(sigma: float, n: int, widen: float = 0.0) -> tuple[float, float] | None:
    """(smallest change decided as a regression, the interval's half-width), relative; None when
    n runs a side allow no interval."""
    h = half_width(sigma, n, DEFAULT_ALPHA)
    if h is None:
        return None
    return math.expm1(math.log1p(THRESHOLD) + h + widen), math.expm1(h + widen)


def by_configuration(campaign: Campaign, history: dict[str, list[dict[str, Any]]]) -> dict[str, Detectable]:
    by_settings: dict[str, list[dict[str, Any]]] = {}
    for recs in history.values():
        for r in recs:
            if r.get("cell"):
                by_settings.setdefault(_settings(r["cell"]), []).append(r)
    out: dict[str, Detectable] = {}
    seen: set[str] = set()
    reps = {c.name: campaign.repetitions_of(c) for c in campaign.configurations}
    for cell in campaign.matrix():
        key = _settings(cell.identity())
        if key in seen:
            continue
        seen.add(key)
        d = out.setdefault(cell.configuration, Detectable())
        d.cells += 1
        s = spread_of(by_settings.get(key, []))
        if s.time is None:
            continue
        d.with_spread += 1
        if (t := smallest(s.time, reps[cell.configuration])) is not None:
            d.time.append(t)
        if s.energy is not None:
            widen = math.sqrt(2.0) * math.log1p(s.energy_bound or 0.0)  # both sides' bounds, in quadrature
            if (e := smallest(s.energy, reps[cell.configuration], widen)) is not None:
                d.energy.append(e)
    return out


def _worst(found: list[tuple[float, float]], cells: int) -> str:
    if not found:
        return "no energy in the records" if cells else "-"
    change, h = max(found)
    return f"+{100 * change:.1f} % (interval ±{100 * h:.1f} %)"


def render(campaign: Campaign, results: Path, history: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The lines `campaign plan` prints about the smallest change its repetitions can decide."""
    # A configuration measured fewer times than the others (its own repetitions) bounds what is decided.
    n = min(campaign.repetitions_of(c) for c in campaign.configurations)
    level = f"{100 * (1 - DEFAULT_ALPHA):g} %"
    where = results / campaign.name
    if campaign.mode == "serving":
        return [f"smallest change compare can decide: not estimated for serving campaigns ({n} repetitions a side)"]
    if n < min_repetitions(DEFAULT_ALPHA):
        return [
            f"smallest change compare can decide: none; with {n} repetitions a side no {level} interval exists, so "
            f"compare will call every cell insufficient data ({min_repetitions(DEFAULT_ALPHA)} or more needed)"
        ]
    found = by_configuration(campaign, history)
    if not any(d.with_spread for d in found.values()):
        return [
            f"smallest change compare can decide with {n} repetitions a side: unknown, no earlier records in {where} "
            "give a spread (3 ok runs of a cell or more; run the campaign once, or give --results where its records "
            "are)"
        ]
    header = ("CONFIGURATION", "CELLS WITH A SPREAD", "TIME PER SAMPLE", "ENERGY PER SAMPLE")
    rows = [
        (name, f"{d.with_spread} of {d.cells}", _worst(d.time, d.with_spread), _worst(d.energy, d.with_spread))
        for name, d in found.items()
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return [
        f"smallest change compare can decide as a regression with {n} repetitions a side (its defaults: threshold "
        f"{100 * THRESHOLD:g} %, {level} intervals), at the spread of the earlier records in {where} (worst cell "
        "of each configuration; equivalence can be shown only where the interval is narrower than the threshold):",
        *("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)),
    ]
