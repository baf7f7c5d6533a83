"""The comparison as a terminal table, as Markdown for a pull-request comment, or as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from controller.compare.verdict import IMPROVEMENT, INSUFFICIENT, NO_CHANGE, NOT_COMPARABLE, REGRESSION, Result
from controller.report.table import Table, Value, fmt_number, fmt_p, text_value, to_markdown, to_term

if TYPE_CHECKING:
    from controller.compare import Comparison

UNITS = {"energy": "J", "time": "s"}
VERDICTS = (REGRESSION, IMPROVEMENT, NO_CHANGE, INSUFFICIENT, NOT_COMPARABLE)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def settings_line(c: Comparison) -> str:
    o = c.opts
    return (
        f"threshold {100 * o.threshold:g} %, alpha {o.alpha:g} (Mann-Whitney U, two-sided); change = median(B) / "
        f"median(A) − 1 with a {100 * o.ci_level:g} % bootstrap interval ({o.bootstrap} resamples, seed {o.seed}); "
        "a regression needs p < alpha and a change above the threshold"
    )


def table(c: Comparison) -> Table:
    ci = f"{100 * c.opts.ci_level:g} % CI"
    columns = ["Cell", "Metric", "Runs A / B", "Median A", "Median B", "Change", ci, "p", "Verdict"]
    if c.opts.carbon is not None:
        columns[5:5] = ["Carbon A, estimated (gCO2e)", "Carbon B, estimated (gCO2e)"]
    t = Table("compare", "Campaign B against campaign A, per cell", columns)
    for r in c.results:
        verdict = Value(r.verdict.upper() if r.verdict == REGRESSION else r.verdict, r.verdict)
        for text in ([r.reason] if r.reason else []) + r.notes:
            verdict.notes.append(t.note(text))
        if r.telemetry_invalid and c.opts.require_energy:
            verdict.notes.append(t.note("--require-energy: energy that is not comparable fails the gate"))
        unit = UNITS[r.metric]
        metric = f"{r.metric} ({unit}{', ' + r.energy_kind if r.energy_kind else ''})"
        row = [
            text_value(r.cell),
            text_value(metric),
            text_value(f"{r.n_a} / {r.n_b}"),
            Value(fmt_number(r.median_a), r.median_a),
            Value(fmt_number(r.median_b), r.median_b),
            Value(_pct(r.change), r.change),
            text_value("n/a" if r.ci is None else f"{_pct(r.ci[0])} … {_pct(r.ci[1])}"),
            Value(fmt_p(r.p), r.p),
            verdict,
        ]
        if c.opts.carbon is not None:
            row[5:5] = [Value(fmt_number(r.carbon_a), r.carbon_a), Value(fmt_number(r.carbon_b), r.carbon_b)]
        t.rows.append(row)
    t.remarks.append(settings_line(c))
    if c.opts.carbon is not None:
        t.remarks.append(c.opts.carbon.statement)
    return t


def summary(c: Comparison) -> str:
    counts: dict[str, int] = {}
    for r in c.results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    shown = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: kv[0] != REGRESSION))
    failing = c.failures()
    if failing:
        return f"FAIL (exit 1): {'; '.join(failing)}. All: {shown}."
    return f"PASS (exit 0): no regression. All: {shown}."


def heading(c: Comparison) -> str:
    return f"A = {c.a_label}; B = {c.b_label}"


def term(c: Comparison) -> str:
    return "\n".join([f"joulebench compare: {heading(c)}", "", to_term(table(c)), summary(c)]) + "\n"


def markdown(c: Comparison) -> str:
    failing = c.failures()
    title = f"❌ {'; '.join(failing)}" if failing else "✅ no regression"
    lines = [f"## joulebench energy gate: {title}", "", heading(c), "", to_markdown(table(c)), "", f"**{summary(c)}**"]
    return "\n".join(lines) + "\n"


def as_dict(r: Result) -> dict[str, Any]:
    return {
        "cell": r.cell,
        "metric": r.metric,
        "unit": UNITS[r.metric],
        "energy_kind": r.energy_kind or None,
        "verdict": r.verdict,
        "runs_a": r.n_a,
        "runs_b": r.n_b,
        "median_a": r.median_a,
        "median_b": r.median_b,
        "change": r.change,
        "ci_low": None if r.ci is None else r.ci[0],
        "ci_high": None if r.ci is None else r.ci[1],
        "p": r.p,
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
            "bootstrap": o.bootstrap,
            "seed": o.seed,
            "require_energy": o.require_energy,
            "test": "Mann-Whitney U, two-sided",
            "change": "median(B) / median(A) - 1",
        },
        "carbon": None if o.carbon is None else {**o.carbon.to_dict(), "statement": o.carbon.statement},
        "results": [as_dict(r) for r in c.results],
        "counts": {v: sum(1 for r in c.results if r.verdict == v) for v in VERDICTS},
        "failures": c.failures(),
        "exit_code": c.exit_code,
        "summary": summary(c),
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
