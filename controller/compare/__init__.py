"""``python -m controller compare A B``: the energy-regression gate between two campaigns.

Per cell present on both sides (``match``): medians, the relative change with a seeded bootstrap
interval, a Mann-Whitney U p-value, and a verdict (``verdict``). Exit code 1 when any cell
regresses, or, with ``--require-energy``, when energy could not be judged (unavailable or flagged);
2 for a usage error; 0 otherwise. ``--format markdown`` fits a pull-request comment.
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

__all__ = ["Comparison", "compare", "run_compare"]


@dataclass
class Comparison:
    a_label: str
    b_label: str
    opts: Options
    results: list[Result] = field(default_factory=list)

    def failures(self) -> list[str]:
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

    @property
    def exit_code(self) -> int:
        return 1 if self.failures() else 0


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


def compare(a: Path, b: Path, opts: Options) -> Comparison:
    if opts.require_energy and "energy" not in opts.metrics:
        raise UserError("--require-energy needs energy among --metric (e.g. --metric energy,time)")
    runs_a, runs_b = _load(a, "A", opts), _load(b, "B", opts)
    matched = pairs(runs_a.ok, runs_b.ok)
    if not any(p.a is not None and p.b is not None for p in matched):
        raise UserError(
            f"no cell of {a} matches one of {b} (model, image, engine, provider, conversion, batch): "
            "compare two campaigns of the same matrix"
        )
    c = Comparison(_label(a, runs_a), _label(b, runs_b), opts)
    for i, pair in enumerate(matched):
        for metric in opts.metrics:
            c.results.append(judge(pair, metric, opts, stream=i))
    return c


def run_compare(a: Path, b: Path, opts: Options) -> int:
    c = compare(a, b, opts)
    out = {"term": render.term, "markdown": render.markdown, "json": render.as_json}[opts.fmt](c)
    sys.stdout.write(out)
    return c.exit_code
