"""Which figure of a matched cell is judged, and its values on each side.

Time is the measured window; energy the total (net of idle only where every run of both sides has a
positive net figure, else gross for both). A cell measured for a requested duration on either side
is judged per sample (time per sample, energy per sample): its window is the duration asked for,
no result, and its sample count differs by design. Energy that either side did not measure, or
that the meters flagged, is not judged: a gate must not pass on telemetry that measured nothing.
Each energy figure's own bound (``uncertainty_j``, relative to the figure) is carried along so
that the interval can include it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import polars as pl

from controller.compare.match import Pair
from controller.report.data import flags_of, notes_of


@dataclass
class Figures:
    figure: str  # what is judged: "time", "time per sample", "energy", "energy per sample"
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    energy_kind: str = ""
    bound_a: float | None = None  # median relative bound of side A's energy figures
    bound_b: float | None = None
    problem: str = ""  # why the figure cannot be judged at all
    telemetry_invalid: bool = False
    notes: list[str] = field(default_factory=list)


def per_sample(pair: Pair) -> bool:
    assert pair.a is not None and pair.b is not None
    return bool(pair.a["duration_mode"].any() or pair.b["duration_mode"].any())


def mode_note(pair: Pair) -> str:
    """Said when the two sides measured differently: one for a duration, the other a fixed amount."""
    assert pair.a is not None and pair.b is not None
    da, db = bool(pair.a["duration_mode"].any()), bool(pair.b["duration_mode"].any())
    if da == db:
        return ""
    timed, fixed = ("A", "B") if da else ("B", "A")
    return (
        f"side {timed} measured for a requested duration, side {fixed} a fixed number of samples: "
        "compared per sample (time per sample, energy per sample)"
    )


def energy_problem(side: str, frame: pl.DataFrame) -> str:
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


def _energy_kind(a: pl.DataFrame, b: pl.DataFrame) -> str:
    net = pl.concat([a.select("total_energy_net"), b.select("total_energy_net")])["total_energy_net"]
    return "net" if net.null_count() == 0 and bool((net > 0).all()) else "gross"


def _relative_bound(frame: pl.DataFrame, kind: str) -> float | None:
    """The median of the runs' relative bounds, or None when a run states none (older records)."""
    energies = frame[f"total_energy_{kind}"].to_list()
    bounds = frame[f"total_energy_uncertainty_{kind}"].to_list()
    if any(u is None for u in bounds):
        return None
    return statistics.median(abs(float(u)) / abs(float(e)) for u, e in zip(bounds, energies, strict=True))


def _divided(frame: pl.DataFrame, column: str, by_samples: bool) -> list[float]:
    out = []
    for value, samples in frame.select(column, "samples").iter_rows():
        if value is None or (by_samples and not samples):
            continue
        out.append(float(value) / samples if by_samples else float(value))
    return out


def energy_figures(pair: Pair, by_samples: bool) -> Figures:
    assert pair.a is not None and pair.b is not None
    f = Figures("energy per sample" if by_samples else "energy")
    f.problem = energy_problem("A", pair.a) or energy_problem("B", pair.b)
    if f.problem:
        f.telemetry_invalid = True
        return f
    f.energy_kind = kind = _energy_kind(pair.a, pair.b)
    f.a = _divided(pair.a, f"total_energy_{kind}", by_samples)
    f.b = _divided(pair.b, f"total_energy_{kind}", by_samples)
    if min(f.a + f.b, default=1.0) <= 0:
        f.problem, f.telemetry_invalid = "an energy figure is not positive: no ratio can be formed", True
        return f
    f.bound_a, f.bound_b = _relative_bound(pair.a, kind), _relative_bound(pair.b, kind)
    unstated = [s for s, bound in (("A", f.bound_a), ("B", f.bound_b)) if bound is None]
    if unstated:
        whose = f"side {unstated[0]} states" if len(unstated) == 1 else "sides A and B state"
        f.notes.append(
            f"{whose} no bound on the energy figures (records written before joulebench stated one): the interval "
            + (
                "holds the runs' spread and the other side's bound only"
                if len(unstated) == 1
                else "holds the runs' spread only"
            )
        )
    return f


def time_figures(pair: Pair, column: str, by_samples: bool) -> Figures:
    assert pair.a is not None and pair.b is not None
    f = Figures("time per sample" if by_samples else "time")
    source = "time_per_sample_s" if by_samples else column
    f.a, f.b = _divided(pair.a, source, False), _divided(pair.b, source, False)
    if min(f.a + f.b, default=1.0) <= 0:
        f.problem = "a time is not positive: no ratio can be formed"
    return f


def figures_of(pair: Pair, metric: str, column: str) -> Figures:
    by_samples = not bool(pair.key[0]) and per_sample(pair)  # key[0]: serving
    f = energy_figures(pair, by_samples) if metric == "energy" else time_figures(pair, column, by_samples)
    if by_samples and (note := mode_note(pair)):
        f.notes.insert(0, note)
    return f
