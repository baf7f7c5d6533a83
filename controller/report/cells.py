"""Table cells from groups of runs: a mean or a median, n/a with the recorded reason (never 0),
meter flags marked, the best of a group in bold, an energy figure with its bound.

The bound of a mean or a median over runs is how far that aggregate can move when each run's
figure moves anywhere within its own bound (interval arithmetic): for a mean, the mean of the
runs' bounds, since a meter's systematic error does not average out over repetitions. It is a
bound on the measurement, not the spread across runs (the stability and descriptive tables)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import polars as pl

from controller.report.columns import BOUNDED, COLUMNS, ENERGIES
from controller.report.data import flags_of, notes_of
from controller.report.kinds import EnergyKind
from controller.report.table import Table, Value, fmt_bounded, num_value


def model_label(model: str, size: str | None) -> str:
    return model if size in ("full", "n/a", None) else f"{model} ({size})"


def groups(frame: pl.DataFrame, keys: list[str]) -> list[tuple[tuple, pl.DataFrame]]:
    out = [(k if isinstance(k, tuple) else (k,), g) for k, g in frame.group_by(keys)]
    return sorted(out, key=lambda kg: tuple(str(x) for x in kg[0]))


def flag_note(t: Table, frame: pl.DataFrame, column: str, stat: str) -> int | None:
    """The footnote for a cell whose runs the meters flagged for this column, or None."""
    flagged = flags_of(frame, column)
    if not flagged:
        return None
    runs = sorted({r for r, _, _ in flagged})
    codes = sorted({c for _, c, _ in flagged})
    first = flagged[0][2]
    return t.note(
        f"flagged by the meters in {len(runs)} of {frame.height} runs ({', '.join(codes)}): {first}"
        + (f" (and {len(flagged) - 1} more flags)" if len(flagged) > 1 else "")
        + f"; the {stat} includes {'it' if len(runs) == 1 else 'them'}: read it with care (list of flags below)"
    )


def aggregate_bound(values: list[float], bounds: list[float], stat: str) -> float:
    """The bound of the mean (or median) of ``values`` whose own bounds are ``bounds``: the farthest
    the aggregate moves when every value moves within its bound."""
    if stat == "mean":
        return statistics.fmean(bounds)
    mid = statistics.median(values)
    high = statistics.median([v + u for v, u in zip(values, bounds, strict=True)])
    low = statistics.median([v - u for v, u in zip(values, bounds, strict=True)])
    return max(high - mid, mid - low)


def bound_of(frame: pl.DataFrame, column: str, stat: str) -> tuple[float | None, list[str]]:
    """The aggregate's bound over the runs that measured ``column``; or None and why not."""
    if f"{column}_uncertainty" not in frame.columns:
        return None, []
    pairs = [(v, u) for v, u in frame.select(column, f"{column}_uncertainty").iter_rows() if v is not None]
    missing = [p for p in pairs if p[1] is None]
    if not pairs:
        return None, []
    if missing:
        why = notes_of(frame, f"{column}_uncertainty") or ["no bound recorded"]
        lead = (
            ""
            if len(missing) == len(pairs)
            else f"{len(missing)} of {len(pairs)} runs have no bound, so the {stat} has none: "
        )
        return None, [lead + "; ".join(why)]
    return aggregate_bound([v for v, _ in pairs], [u for _, u in pairs], stat), []


def aggregate(t: Table, frame: pl.DataFrame, column: str, stat: str = "mean") -> Value:
    """Mean (or median) over the runs; n/a with the recorded reason when no run measured it; a
    note when some did not; a mark and a note when the meters flagged any of the runs; an energy
    figure ``E ± u`` with the aggregate's bound, or a note saying why it has none."""
    values = [v for v in frame[column].to_list() if v is not None]
    notes = [t.note(n) for n in notes_of(frame, column)]
    if not values:
        return Value("n/a", None, notes=notes or [t.note("not measured (no reason recorded)")])
    v = num_value(statistics.fmean(values) if stat == "mean" else statistics.median(values))
    if column in BOUNDED:
        v.uncertainty, why = bound_of(frame, column, stat)
        v.text = fmt_bounded(float(v.raw) if isinstance(v.raw, (int, float)) else None, v.uncertainty)
        v.notes += [t.note(n) for n in why]
    if len(values) < frame.height:
        v.notes.append(t.note(f"measured in {len(values)} of {frame.height} runs; the {stat} covers those"))
    v.notes += [n for n in notes if n not in v.notes]
    flagged = flag_note(t, frame, column, stat)
    if flagged is not None:
        v.flagged = True
        v.notes.append(flagged)
    return v


def metric_value(t: Table, frame: pl.DataFrame, column: str) -> Value:
    return aggregate(t, frame, column, "mean")


def median_value(t: Table, frame: pl.DataFrame, column: str) -> Value:
    return aggregate(t, frame, column, "median")


def mark_best(t: Table, rows: list[int], columns: Iterable[tuple[int, str]]) -> None:
    """Bold the best value of each column among ``rows`` (needs two or more measured values); a
    bold energy whose bound overlaps the next best's says the measurement does not separate them."""
    for idx, column in columns:
        better = COLUMNS[column].better
        if better is None:
            continue
        measured = [(t.rows[r][idx].raw, r) for r in rows if isinstance(t.rows[r][idx].raw, (int, float))]
        if len(measured) < 2:
            continue
        best = min(measured)[0] if better == "low" else max(measured)[0]
        for value, r in measured:
            if value == best:
                t.rows[r][idx].best = True
        if column in BOUNDED:
            _unseparated_best(t, [t.rows[r][idx] for _, r in measured], better)


def _unseparated_best(t: Table, cells: list[Value], better: str) -> None:
    ranked = sorted(cells, key=lambda v: float(v.raw or 0.0), reverse=better == "high")
    best, runner = ranked[0], next((v for v in ranked[1:] if not v.best), None)
    if runner is None or best.uncertainty is None or runner.uncertainty is None:
        return
    gap = abs(float(runner.raw or 0.0) - float(best.raw or 0.0))
    if gap <= best.uncertainty + runner.uncertainty:
        note = t.note(
            f"best by its {'lowest' if better == 'low' else 'highest'} value, but its bound overlaps the next "
            f"best's ({runner.text}): the measurement does not separate them"
        )
        for v in ranked:
            if v.best and note not in v.notes:
                v.notes.append(note)


def bounded_columns(first: int, metrics: list[str]) -> set[int]:
    """The indexes of the energy columns among ``metrics`` (starting at ``first``): their CSV gets
    an "… uncertainty" column."""
    return {first + i for i, c in enumerate(metrics) if c in BOUNDED}


def measured_columns(
    frame: pl.DataFrame, wanted: Iterable[str], optional: Iterable[str] = ("dram_energy",)
) -> list[str]:
    """``wanted`` less the optional columns that no run of ``frame`` measured (DRAM on AMD, ...)."""
    skip = {c for c in optional if frame.height == 0 or frame[c].null_count() == frame.height}
    return [c for c in wanted if c not in skip]


def with_carbon(wanted: tuple[str, ...], kind: EnergyKind) -> tuple[str, ...]:
    """The columns of a table, and the carbon estimate after them when it was asked for."""
    return (*wanted, "carbon_g") if kind.carbon is not None else wanted


def energy_remarks(frame: pl.DataFrame, kind: EnergyKind, paper_total: str) -> list[str]:
    """What Total sums in these runs, whether DRAM is in it, which kind of energy is shown, and
    how the carbon estimate is made when there is one."""
    covers = [c for c in frame["total_energy_covers"].to_list() if c] if frame.height else []
    kinds = sorted(set(covers))
    if not kinds:
        what = "Total energy: no run measured any energy domain"
    elif len(kinds) == 1:
        parts = " + ".join({"cpu": "CPU package", "dram": "DRAM", "gpu": "GPU"}.get(d, d) for d in kinds[0].split("+"))
        what = f"Total energy = {parts}, as measured ({kinds[0]})"
    else:
        counts = ", ".join(f"{k} in {covers.count(k)} runs" for k in kinds)
        what = (
            f"Total energy sums different domains in different runs ({counts}): totals of different coverage "
            "do not compare"
        )
    dram = "dram" in "+".join(kinds)
    out = [
        f"{what}; the paper's Total = {paper_total}."
        + (" DRAM energy is measured here and is part of Total." if dram else " DRAM energy is not measured here."),
        kind.statement,
    ]
    if kind.carbon is None:
        return out
    bound = " Its ± is the energy's bound converted; the grid factor's own uncertainty is not in it."
    return [*out, kind.carbon.statement + bound]


def bounds_statement(frame: pl.DataFrame) -> str:
    """What the ± of the report's energy figures is, or that the records state none (said once)."""
    measured, bounded = 0, 0
    for r in frame.select(*(c for e in ENERGIES for c in (e, f"{e}_uncertainty"))).iter_rows(named=True):
        shown = [e for e in ENERGIES if r[e] is not None]
        if shown:
            measured += 1
            bounded += all(r[f"{e}_uncertainty"] is not None for e in shown)
    if not measured:
        return ""
    what = (
        "Energy figures are shown E ± u: u bounds the measurement's error at 95 % (what the meters state: "
        "counter resolution, update period at the window's edges, sampling gaps, wrap risk; net figures add the "
        "idle baseline's spread). The ± of a mean or median over runs is how far it moves when each run moves "
        "within its own bound (a meter's systematic error does not average out); it is not the spread across "
        "runs, which the stability and descriptive tables give."
    )
    if bounded == measured:
        return what
    if bounded == 0:
        return (
            "These records were written before joulebench stated bounds on its energy figures (or state none): "
            "their energies are shown without ±."
        )
    return (
        f"{what} {measured - bounded} of {measured} runs state no bound (written before joulebench stated them, "
        "or a net figure without the baseline's spread): an aggregate that includes one is shown without ±."
    )
