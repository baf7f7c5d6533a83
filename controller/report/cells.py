"""Table cells from groups of runs: a mean or a median, n/a with the recorded reason (never 0),
meter flags marked, the best of a group in bold."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import polars as pl

from controller.report.columns import COLUMNS
from controller.report.data import EnergyKind, flags_of, notes_of
from controller.report.table import Table, Value, num_value


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


def aggregate(t: Table, frame: pl.DataFrame, column: str, stat: str = "mean") -> Value:
    """Mean (or median) over the runs; n/a with the recorded reason when no run measured it; a
    note when some did not; a mark and a note when the meters flagged any of the runs."""
    values = [v for v in frame[column].to_list() if v is not None]
    notes = [t.note(n) for n in notes_of(frame, column)]
    if not values:
        return Value("n/a", None, notes=notes or [t.note("not measured (no reason recorded)")])
    v = num_value(statistics.fmean(values) if stat == "mean" else statistics.median(values))
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
    """Bold the best value of each column among ``rows`` (needs two or more measured values)."""
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
    return out + ([kind.carbon.statement] if kind.carbon is not None else [])
