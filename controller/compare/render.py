"""The comparison as a terminal table, as Markdown for a pull-request comment, or as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from controller.compare.interval import METHOD, min_repetitions
from controller.compare.verdict import REGRESSION, VERDICTS, Result
from controller.report.table import Table, Value, fmt_number, fmt_p, text_value, to_markdown, to_term

if TYPE_CHECKING:
    from controller.compare import Comparison

UNITS = {"energy": "J", "time": "s"}
ENERGY_BOUNDS = (
    "energy intervals are widened at each end by the two sides' own energy bounds (each side's median relative "
    "bound, combined in quadrature): a bias every run of a side may share, which the runs' spread cannot show"
)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def _level(c: Comparison) -> str:
    return f"{100 * c.opts.ci_level:g} %"


def settings_line(c: Comparison) -> str:
    o = c.opts
    t = f"{100 * o.threshold:g} %"
    return (
        f"threshold {t}, {_level(c)} intervals (alpha {o.alpha:g}); change = B / A − 1, the median of the pairwise "
        f"ratios, with its {METHOD}; no {_level(c)} interval exists below {min_repetitions(o.alpha)} runs a side. "
        f"Verdict from the interval: regression above +{t}, improvement below −{t}, equivalent within ±{t}, "
        "inconclusive otherwise. Cells measured for a requested duration are judged per sample. "
        f"{ENERGY_BOUNDS[0].upper()}{ENERGY_BOUNDS[1:]}. 95 % by default: at 99 % five runs a side give the whole "
        "range of the pairwise ratios, so one overlapping run would hide any regression. p: Mann-Whitney U, "
        "two-sided, for reference"
    )


def _needed(r: Result) -> str:
    if r.decided:
        return "-"
    return f"~{r.needed} a side" if r.needed is not None else "none would"


def _metric(r: Result) -> str:
    figure = r.figure or r.metric
    return f"{figure} ({UNITS[r.metric]}{', ' + r.energy_kind if r.energy_kind else ''})"


def _row(c: Comparison, t: Table, r: Result) -> list[Value]:
    verdict = Value(r.verdict.upper() if r.verdict == REGRESSION else r.verdict, r.verdict)
    for text in ([r.reason] if r.reason else []) + r.notes:
        verdict.notes.append(t.note(text))
    if r.telemetry_invalid and c.opts.require_energy:
        verdict.notes.append(t.note("--require-energy: energy that cannot be judged fails the gate"))
    interval = text_value("n/a" if r.ci is None else f"{_pct(r.ci[0])} … {_pct(r.ci[1])}")
    if r.widen is not None:
        bounds = ", ".join(f"{s} ±{100 * b:.1f} %" for s, b in (("A", r.bound_a), ("B", r.bound_b)) if b is not None)
        interval.notes.append(
            t.note(f"includes the energy figures' own bounds ({bounds}; ±{100 * r.widen:.1f} % in all)")
        )
    needed = text_value(_needed(r))
    if not r.decided and r.needed_reason:
        needed.notes.append(t.note(r.needed_reason))
    row = [
        text_value(r.cell),
        text_value(_metric(r)),
        text_value(f"{r.n_a} / {r.n_b}"),
        Value(fmt_number(r.median_a), r.median_a),
        Value(fmt_number(r.median_b), r.median_b),
        Value(_pct(r.change), r.change),
        interval,
        Value(fmt_p(r.p), r.p),
        verdict,
        needed,
    ]
    if c.opts.carbon is not None:
        row[5:5] = [Value(fmt_number(r.carbon_a), r.carbon_a), Value(fmt_number(r.carbon_b), r.carbon_b)]
    return row


def table(c: Comparison) -> Table:
    columns = ["Cell", "Metric", "Runs A / B", "Median A", "Median B", "Change", f"{_level(c)} CI", "p", "Verdict"]
    columns.append("Runs a side to decide")
    if c.opts.carbon is not None:
        columns[5:5] = ["Carbon A, estimated (gCO2e)", "Carbon B, estimated (gCO2e)"]
    t = Table("compare", "Campaign B against campaign A, per cell", columns)
    t.rows = [_row(c, t, r) for r in c.results]
    t.remarks.append(settings_line(c))
    if c.opts.carbon is not None:
        t.remarks.append(c.opts.carbon.statement)
    return t


def _counts(results: list[Result]) -> str:
    counts = {v: sum(1 for r in results if r.verdict == v) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none"


def summary(c: Comparison) -> str:
    failing, undecided = c.failures(), c.undecided()
    decided = [r for r in c.results if r.decided]
    said = f"Decided: {_counts(decided)}. Not decided: {_counts(undecided)}."
    if failing:
        return f"FAIL (exit 1): {'; '.join(failing)}. {said}"
    if not undecided:
        return f"PASS (exit 0): no regression, every result decided. {said}"
    if c.opts.allow_undecided:
        return (
            f"PASS (exit 0): no regression among the decided; {len(undecided)} undecided "
            f"result{'s' if len(undecided) != 1 else ''} let through by --allow-undecided. {said}"
        )
    return (
        f"UNDECIDED (exit {c.exit_code}): no regression among the decided, but {len(undecided)} "
        f"result{'s' if len(undecided) != 1 else ''} could not be decided: run the repetitions said, or let them "
        f"pass with --allow-undecided. {said}"
    )


def title(c: Comparison) -> str:
    failing, undecided = c.failures(), c.undecided()
    if failing:
        return f"❌ {'; '.join(failing)}"
    if undecided and not c.opts.allow_undecided:
        return f"⚠️ {len(undecided)} undecided ({_counts(undecided)})"
    if undecided:
        return f"✅ no regression ({len(undecided)} undecided, let through by --allow-undecided)"
    return "✅ no regression, every result decided"


def heading(c: Comparison) -> str:
    return f"A = {c.a_label}; B = {c.b_label}"


def term(c: Comparison) -> str:
    return "\n".join([f"joulebench compare: {heading(c)}", "", to_term(table(c)), summary(c)]) + "\n"


def markdown(c: Comparison) -> str:
    lines = [
        f"## joulebench energy gate: {title(c)}",
        "",
        heading(c),
        "",
        to_markdown(table(c)),
        "",
        f"**{summary(c)}**",
    ]
    return "\n".join(lines) + "\n"


def as_dict(r: Result) -> dict[str, Any]:
    return {
        "cell": r.cell,
        "metric": r.metric,
        "unit": UNITS[r.metric],
        "energy_kind": r.energy_kind or None,
        "verdict": r.verdict,
        "decided": r.decided,
        "figure": r.figure or r.metric,
        "runs_a": r.n_a,
        "runs_b": r.n_b,
        "median_a": r.median_a,
        "median_b": r.median_b,
        "change": r.change,
        "ci_low": None if r.ci is None else r.ci[0],
        "ci_high": None if r.ci is None else r.ci[1],
        "ci_coverage": r.coverage,
        "energy_bound_a_rel": r.bound_a,
        "energy_bound_b_rel": r.bound_b,
        "energy_bounds_in_ci_rel": r.widen,
        "p": r.p,
        "repetitions_needed": None if r.decided else r.needed,
        "repetitions_needed_reason": None if r.decided else (r.needed_reason or None),
        "reason": r.reason or None,
        "notes": r.notes,
        "telemetry_invalid": r.telemetry_invalid,
        "carbon_a_g_estimated": r.carbon_a,
        "carbon_b_g_estimated": r.carbon_b,
    }


def as_json(c: Comparison) -> str:
    o = c.opts
    data = {
        "a": c.a_label,
        "b": c.b_label,
        "settings": {
            "metrics": list(o.metrics),
            "threshold": o.threshold,
            "alpha": o.alpha,
            "ci_level": o.ci_level,
            "interval": METHOD,
            "min_repetitions": min_repetitions(o.alpha),
            "energy_bounds": ENERGY_BOUNDS,
            "verdicts": {
                "regression": "interval above +threshold",
                "improvement": "interval below -threshold",
                "equivalent": "interval within +-threshold",
                "inconclusive": "otherwise",
            },
            "duration_mode": "cells measured for a requested duration are judged per sample",
            "require_energy": o.require_energy,
            "allow_undecided": o.allow_undecided,
            "p": "Mann-Whitney U, two-sided, for reference",
            "change": "Hodges-Lehmann: median of the pairwise ratios B / A, - 1",
        },
        "carbon": None if o.carbon is None else {**o.carbon.to_dict(), "statement": o.carbon.statement},
        "results": [as_dict(r) for r in c.results],
        "counts": {v: sum(1 for r in c.results if r.verdict == v) for v in VERDICTS},
        "failures": c.failures(),
        "undecided": len(c.undecided()),
        "exit_code": c.exit_code,
        "summary": summary(c),
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
