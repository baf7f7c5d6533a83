"""``python -m controller compare A B``: the energy-regression gate between two campaigns.

Per cell present on both sides (``match``) and metric: medians, the relative change with an exact
distribution-free interval (``interval``), and a verdict decided from that interval against the
threshold (``verdict``). Exit codes: 1 when any cell regresses, or, with ``--require-energy``, when
energy could not be judged (unavailable or flagged); 3 when any result is undecided (inconclusive,
insufficient data, not comparable) unless ``--allow-undecided``; 2 for a usage error; 0 when every
result is equivalent or an improvement. ``--format markdown`` fits a pull-request comment.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from controller.compare import render
from controller.compare.match import pairs
from controller.compare.options import Options
from controller.compare.verdict import REGRESSION, Result, judge
from controller.errors import UserError
from controller.report.data import Runs, load_runs

__all__ = ["EXIT_UNDECIDED", "Comparison", "compare", "run_compare"]

EXIT_UNDECIDED = 3  # not 1: a gate can tell "it regressed" from "these runs cannot tell"


@dataclass
class Comparison:
    a_label: str
    b_label: str
    opts: Options
    results: list[Result] = field(default_factory=list)

    def failures(self) -> list[str]:
        """What fails the gate (exit 1): regressions, and energy not judged under --require-energy."""
        out = []
        regressions = [r for r in self.results if r.verdict == REGRESSION]
        if regressions:
            out.append(f"{len(regressions)} regression{'s' if len(regressions) != 1 else ''}")
        if self.opts.require_energy:
            invalid = [r for r in self.results if r.metric == "energy" and r.telemetry_invalid]
            if invalid:
                out.append(
                    f"energy required but not comparable in {len(invalid)} cell{'s' if len(invalid) != 1 else ''}"
                )
        return out

    def undecided(self) -> list[Result]:
        """Results the data could not decide (inconclusive, insufficient data, not comparable)."""
        return [r for r in self.results if not r.decided]

    @property
    def exit_code(self) -> int:
        if self.failures():
            return 1
        if self.undecided() and not self.opts.allow_undecided:
            return EXIT_UNDECIDED
        return 0


def _label(folder: Path, runs: Runs) -> str:
    campaigns = ", ".join(sorted({c or "?" for c in runs.ok["campaign"].to_list()}))
    return f"{folder} (campaign {campaigns}, {runs.ok.height} runs ok)"


def _load(folder: Path, side: str, opts: Options) -> Runs:
    runs = load_runs(folder, opts.duplicates)
    if runs.skipped_warning:
        print(f"warning: side {side}: {runs.skipped_warning}", file=sys.stderr)
    if runs.ok.height == 0:
        raise UserError(f"{folder}: no successful run among its {runs.all.height} records; nothing to compare")
    return runs


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one is missing: loading it says so
        return a.resolve() == b.resolve()


def compare(a: Path, b: Path, opts: Options) -> Comparison:
    if opts.require_energy and "energy" not in opts.metrics:
        raise UserError("--require-energy needs energy among --metric (e.g. --metric energy,time)")
    if _same_folder(a, b):
        raise UserError(
            f"A and B are the same folder ({a}): compare a campaign with another one, e.g. the reference's "
            "results with the candidate's (to check a rerun, run the campaign again under another name)"
        )
    runs_a, runs_b = _load(a, "A", opts), _load(b, "B", opts)
    matched = pairs(runs_a.ok, runs_b.ok)
    if not any(p.a is not None and p.b is not None for p in matched):
        raise UserError(
            f"no cell of {a} matches one of {b} (model, image, engine, provider, conversion, batch): "
            "compare two campaigns of the same matrix"
        )
    c = Comparison(_label(a, runs_a), _label(b, runs_b), opts)
    for pair in matched:
        for metric in opts.metrics:
            c.results.append(judge(pair, metric, opts))
    return c


def run_compare(a: Path, b: Path, opts: Options) -> int:
    c = compare(a, b, opts)
    out = {"term": render.term, "markdown": render.markdown, "json": render.as_json}[opts.fmt](c)
    sys.stdout.write(out)
    return c.exit_code
