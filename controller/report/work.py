"""Duration mode in the report: a run given a window (``duration_s``) rather than an amount of work
did as many samples as it could, so its window is no result and its energy is that of unequal
work. The papers' inference time is the time to process a fixed amount of work; for such runs the
report derives it, and their energies, for one fixed amount of work from what was measured:

    inference time for W samples = W × window / samples done
    energy for W samples         = W × energy / samples done (its bound alike)

W is the sample count of the report's sample-mode batch runs when they share one (their figures
are then unchanged and the two kinds compare), else 1,000 samples. Sample-mode runs are never
changed. The frame ``load_runs`` returns is left as measured (``compare`` reads it); the report's
tables, statistics and plots read the frame made here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from controller.report.columns import BOUNDED, ENERGIES

DEFAULT_WORK = 1000
SCALED = (*ENERGIES, "carbon_g", *(f"{c}_uncertainty" for c in (*ENERGIES, "carbon_g")))


@dataclass
class Work:
    samples: int | None  # W; None when no batch run of the report is in duration mode
    runs: int = 0  # duration-mode runs rescaled
    how: str = ""  # how W was chosen

    @property
    def statement(self) -> str | None:
        if self.samples is None:
            return None
        return (
            f"{self.runs} batch run{'s' if self.runs != 1 else ''} measured in duration mode (a requested window, "
            "not a fixed amount of work): the window is no result and is never shown as an inference time. "
            f"Their inference time and energies are for a fixed work of {self.samples:,} samples ({self.how}): "
            f"inference time = {self.samples:,} × window / samples done, energy = {self.samples:,} × energy / "
            "samples done (its bound alike); time per sample, per batch and throughput are from the samples "
            "actually done."
        )

    def note(self, requested: float | None) -> str:
        window = f"a requested window of {requested:g} s" if requested is not None else "a requested window"
        return (
            f"duration mode ({window}): for a fixed work of {self.samples:,} samples, = {self.samples:,} × the "
            "measured figure / samples done"
        )


def choose_work(batch: pl.DataFrame) -> Work:
    """W for the duration-mode runs of these batch runs (see the module's docstring)."""
    duration = batch.filter(pl.col("duration_mode"))
    if duration.height == 0:
        return Work(None)
    counts = {n for n in batch.filter(~pl.col("duration_mode"))["samples"].to_list() if n}
    if len(counts) == 1:
        n = int(next(iter(counts)))
        return Work(n, duration.height, "the sample count of this report's sample-mode runs, whose figures stay")
    how = (
        "the sample-mode runs of this report differ in sample count"
        if counts
        else "every batch run of this report is in duration mode"
    )
    return Work(DEFAULT_WORK, duration.height, f"a round figure: {how}")


SHOWN = ("window_s", *(c for c in BOUNDED if c in ENERGIES or c == "carbon_g"))


def _rescale(row: dict[str, Any], work: Work) -> dict[str, Any]:
    if not row.get("duration_mode") or row.get("serving"):
        return row
    samples = row.get("samples")
    out = dict(row)
    notes = json.loads(row.get("notes") or "{}")
    if not samples:
        # No work done: nothing to derive a fixed work's figures from, and the window is no result.
        for col in (*SHOWN, *SCALED):
            out[col] = None
        for col in SHOWN:
            notes[col] = "duration mode: the run completed no sample in its window, so no figure for a fixed work"
        out["notes"] = json.dumps(notes)
        return out
    factor = (work.samples or samples) / samples
    for col in ("window_s", *SCALED):
        if out.get(col) is not None:
            out[col] = out[col] * factor
    note = work.note(row.get("requested_duration_s"))
    for col in SHOWN:
        if row.get(col) is not None:
            notes[col] = f"{notes[col]}; {note}" if col in notes else note
    out["notes"] = json.dumps(notes)
    return out


def fixed_work(ok: pl.DataFrame) -> tuple[pl.DataFrame, Work]:
    """The report's frame: duration-mode batch runs' time and energies for a fixed work; others as measured."""
    work = choose_work(ok.filter(~pl.col("serving")))
    if work.samples is None:
        return ok, work
    rows = [_rescale(r, work) for r in ok.iter_rows(named=True)]
    return pl.DataFrame(rows, schema=ok.schema), work
