"""The answer (``answer``) as the report's first section: one sentence and one small table per model
(and batch size, or load point), in every format; ``answer.csv`` holds every group's rows."""

from __future__ import annotations

import html
import math
import statistics
import textwrap
from pathlib import Path

from controller.report.answer import ENERGY, TIME, Against, Answer, Config, Group
from controller.report.table import (
    Table,
    Value,
    fmt_bounded,
    fmt_number,
    num_value,
    text_value,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    to_term,
)

HEADING = "Which configuration for your model, and how sure"
CSS = """
#answer { background: #f6f9fd; border: 1px solid #c9d9ee; border-radius: 4px; padding: 0.2em 1.2em 0.8em; }
#answer h2 { margin-top: 0.6em; border-bottom: none; }
#answer p.answer { font-size: 1.05em; margin: 1.1em 0 0.1em; max-width: 1100px; }
#answer p.lead, #answer p.method { color: #444; max-width: 1100px; }
#answer p.method { font-size: 0.8em; }
#answer table.jb { margin-top: 0.4em; background: #fff; }
"""


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ratio(r: float) -> str:
    if not math.isfinite(r):
        return "n/a"
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×" if r < 100 else f"{r:,.0f}×"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if abs(x) < 0.1 else f"{100 * x:.0f} %"


def _less(ratio: float, by: str) -> str:
    """How much less (or more) the best uses than a configuration at ratio other / best."""
    less, more = ("less", "more") if by == ENERGY else ("less time", "more time")
    return f"{_pct(1 - 1 / ratio)} {less}" if ratio >= 1 else f"{_pct(1 / ratio - 1)} {more}"


def _what(g: Group) -> str:
    return f"{g.by} per {g.unit.noun}"


def figure(c: Config, by: str) -> str:
    """The median a configuration is ranked on, in words: "0.71 ± 0.02 J", "6.1 ms"."""
    if by == ENERGY:
        return f"{fmt_bounded(c.median(ENERGY), c.energy_bound)} J"
    return f"{fmt_number(1000 * c.median(TIME))} ms"


def _others(g: Group) -> list[tuple[Config, Against]]:
    return [(c, a) for c, a in zip(g.ranked[1:], g.against[1:], strict=True) if a is not None]


def _unseparated(pairs: list[tuple[Config, Against]], by: str) -> str:
    names = [c.name for c, _ in pairs]
    which = "uses less" if by == ENERGY else "is faster"
    needed = [a.needed for _, a in pairs]
    more = (
        f"; more runs would be needed to tell: about {max(n for n in needed if n)} a side at the spread seen"
        if all(needed)
        else "; see the table"
    )
    if len(names) > 1:
        return f"{_join(names)} are not separated from it (the runs do not say which {which}{more})"
    return f"{names[0]} is not separated from it (the runs do not say which of the two {which}{more})"


def sentence(g: Group) -> str:
    """The group's answer in one sentence, claiming only what the runs separate."""
    head = f"For {g.title}" + (", ranked by time (energy was not measured)" if g.by == TIME else "")
    if not g.ranked:
        return f"{head}: no run measured a time per {g.unit.noun}: nothing to rank."
    best = g.ranked[0]
    n = len(best.values(g.by))
    said = f"{figure(best, g.by)} (median of {n} run{'s' if n != 1 else ''})"
    unranked = [c.name for c in g.unranked]
    tail = f"; {_join(unranked)} measured no energy: not ranked" if unranked else ""
    if len(g.ranked) == 1:
        return f"{head}: only {best.label} ran: {said} per {g.unit.noun}; nothing to compare it with{tail}."
    verb = "used the least energy" if g.by == ENERGY else "took the least time"
    pairs = _others(g)
    clauses = []
    separated = [f"{_less(a.ratio, g.by)} than {c.name}" for c, a in pairs if a.separated]
    if separated:
        clauses.append(_join(separated) + (" (separated)" if len(separated) == 1 else " (each separated)"))
    unseparated = [(c, a) for c, a in pairs if a.separated is False]
    if unseparated:
        clauses.append(_unseparated(unseparated, g.by))
    unjudged = [c.name for c, a in pairs if a.separated is None]
    if unjudged:
        clauses.append(f"{_join(unjudged)}: not judged (the meters flagged the energy; see the table)")
    return f"{head}: {best.label} {verb} per {g.unit.noun}, {said}: " + "; ".join(clauses) + tail + "."


# --- the group's table ---------------------------------------------------------------------------


def _energy_cell(t: Table, c: Config) -> Value:
    if not c.energy:
        return Value("n/a", None, notes=[t.note(f"energy not measured: {c.missing}")])
    med = c.median(ENERGY)
    v = Value(fmt_bounded(med, c.energy_bound), med, uncertainty=c.energy_bound)
    if v.uncertainty is None:
        v.notes.append(
            t.note(
                "no ±: a run of this configuration states no bound (written before joulebench stated bounds, or a net "
                "figure without the idle baseline's spread)"
            )
        )
    if len(c.energy) < c.runs:
        v.notes.append(t.note(f"energy measured in {len(c.energy)} of {c.runs} runs: the median covers those"))
    if c.doubt:
        v.flagged = True
        v.notes.append(t.note(f"{c.name}: {c.doubt}: ranked, not judged against the others"))
    return v


def _median_cell(t: Table, values: list[float], scale: float = 1.0) -> Value:
    if not values:
        return Value("n/a", None, notes=[t.note("not measured in any run")])
    return num_value(scale * statistics.median(values))


def _versus_cells(t: Table, a: Against | None, level: str) -> list[Value]:
    if a is None:
        return [text_value("best"), text_value("–")]
    ratio = Value(_ratio(a.ratio), a.ratio if math.isfinite(a.ratio) else None)
    if a.low is not None and a.high is not None:
        ratio.text += f" ({_ratio(a.low)} … {_ratio(a.high)})"
    if a.unbounded:
        ratio.notes.append(t.note("a configuration states no energy bound: its interval holds the runs' spread only"))
    if a.separated:
        return [ratio, text_value("yes")]
    if a.separated is None:
        return [ratio, Value("not judged", "not judged", notes=[t.note(a.why)])]
    text = f"no: ~{a.needed} runs a side needed" if a.needed else "no"
    return [ratio, Value(text, text, notes=[t.note(a.why[0].upper() + a.why[1:])])]


def _columns(g: Group, level: str) -> list[str]:
    energy = [f"Energy per {g.unit.noun} (J)"] if g.by == ENERGY else []
    return [
        "Rank",
        "Configuration",
        *energy,
        f"Time per {g.unit.noun} (ms)",
        f"Throughput ({g.unit.throughput})",
        "Runs",
        f"× the best ({level} interval)",
        "Separated from the best",
    ]


def group_table(g: Group, key: str, level: str) -> Table:
    t = Table(key, f"{g.title}: ranked by {_what(g)}", _columns(g, level))
    rows: list[tuple[str, Config, Against | None]] = [
        *((str(i + 1), c, a) for i, (c, a) in enumerate(zip(g.ranked, g.against, strict=True))),
        *(("–", c, None) for c in g.unranked),
    ]
    for rank, c, a in rows:
        row = [Value(rank, int(rank) if rank.isdigit() else rank), text_value(c.label)]
        if g.by == ENERGY:
            row.append(_energy_cell(t, c))
        row += [_median_cell(t, c.time, 1000.0), _median_cell(t, c.throughput), Value(str(c.runs), c.runs)]
        if rank == "–":
            row += [text_value("–"), text_value("not ranked: no energy")]
        else:
            row += _versus_cells(t, a, level)
        t.rows.append(row)
    if g.ranked:
        t.rows[0][2].best = True  # the figure ranked on
    if g.by == ENERGY:
        t.bounded = {2}
    if g.covers:
        t.remarks.append(g.covers[0].upper() + g.covers[1:] + ".")
    return t


# --- the section, per format ---------------------------------------------------------------------


def common_missing(a: Answer) -> str:
    """The reason energy is missing, when every group ranked by time shares it (said once)."""
    timed = {g.missing for g in a.groups if g.by == TIME}
    return next(iter(timed)) if len(timed) == 1 and all(g.by == TIME for g in a.groups) else ""


def _missing_remark(g: Group, common: str) -> str:
    if g.by != TIME or not g.missing or g.missing == common:
        return ""
    return f"Energy not measured ({g.missing}): ranked by time per {g.unit.noun} instead."


def lead(a: Answer) -> str:
    units = sorted({f"per {g.unit.noun}" for g in a.groups})
    serving = {g.unit.noun != "sample" for g in a.groups}
    where = {frozenset({False}): "batch size", frozenset({True}): "load point"}.get(
        frozenset(serving), "batch size (serving: each load point)"
    )
    kind = f"; {a.energy}" if a.energy else ""
    ranked = (
        f"ranked by time ({', '.join(units)}; medians over runs)"
        if all(g.by == TIME for g in a.groups)
        else f"ranked by energy ({', '.join(units)}{kind}; medians over runs, energy ± the measurement's "
        f"{a.level} bound)"
    )
    return (
        f"For each model and {where}, its configurations {ranked}, and whether the runs separate each from the best. "
        "Only what the runs separate is claimed. The papers' tables follow."
    )


def method(a: Answer) -> str:
    return (
        f"Separated: the {a.level} interval of the ratio to the best (× the best) lies wholly above 1. The interval "
        "is the exact distribution-free one `compare` uses (Hodges-Lehmann by Mann-Whitney inversion over the runs' "
        "pairwise ratios: exact coverage at any number of runs, robust to an outlying run), widened at each end by "
        "the two configurations' median relative energy bounds in quadrature (a bias every run of a configuration "
        "may share). Fewer than 4 runs a side allow no 95 % interval. Runs a side needed: where the interval would "
        "exclude 1 if the difference stays as seen, at the spread seen (robust, on the log scale). Energy the meters "
        "flagged is not judged. Time carries no measurement bound: a time ranking is separated by the runs' spread "
        "alone. Duration-mode runs count per sample actually done. Serving: energy of the measure window per output "
        "token generated (per request where no tokens were counted)."
    )


def _missing_line(a: Answer) -> str:
    common = common_missing(a)
    return (
        f"Energy was not measured in these records ({common}): every configuration is ranked by time instead."
        if common
        else ""
    )


def _tables(a: Answer) -> list[tuple[Group, Table]]:
    return [(g, group_table(g, f"answer{i + 1}", a.level)) for i, g in enumerate(a.groups)]


def markdown(a: Answer | None) -> list[str]:
    if a is None or not a.groups:
        return []
    out = [f"## {HEADING}", "", lead(a), ""]
    if missing := _missing_line(a):
        out += [missing, ""]
    common = common_missing(a)
    for g, t in _tables(a):
        out += [sentence(g), "", to_markdown(t).split("\n", 2)[2]]
        if remark := _missing_remark(g, common):
            out += [remark, ""]
    out += [f"*{method(a)}*", ""]
    return out


def html_section(a: Answer | None) -> str:
    if a is None or not a.groups:
        return ""
    parts = [f'<section id="answer"><style>{CSS}</style>', f"<h2>{html.escape(HEADING)}</h2>"]
    parts.append(f'<p class="lead">{html.escape(lead(a))}</p>')
    if missing := _missing_line(a):
        parts.append(f'<p class="lead">{html.escape(missing)}</p>')
    common = common_missing(a)
    for g, t in _tables(a):
        text = html.escape(sentence(g))
        title = html.escape(f"For {g.title}")
        text = text.replace(title, f"<strong>{title}</strong>", 1)
        parts.append(f'<p class="answer">{text}</p>')
        t.title = ""
        parts.append(f'<div class="wide">{to_html(t)}</div>')  # scrolls in its box, as every table does
        if remark := _missing_remark(g, common):
            parts.append(f'<p class="method">{html.escape(remark)}</p>')
    parts.append(f'<p class="method">{html.escape(method(a))}</p></section>')
    return "\n".join(parts)


def term(a: Answer | None) -> list[str]:
    if a is None or not a.groups:
        return []
    wrap = lambda s: textwrap.fill(s, 110)  # noqa: E731
    out = [HEADING.upper(), "=" * len(HEADING), wrap(lead(a))]
    if missing := _missing_line(a):
        out.append(wrap(missing))
    common = common_missing(a)
    for g, t in _tables(a):
        out += ["", wrap(sentence(g)), to_term(t).split("\n", 2)[2].rstrip("\n")]
        if remark := _missing_remark(g, common):
            out.append(wrap(remark))
    out += ["", wrap(method(a)), ""]
    return out


def latex(a: Answer | None) -> list[str]:
    if a is None:
        return []
    out = []
    for g, t in _tables(a):
        t.remarks.insert(0, sentence(g))
        out.append(to_latex(t))
    return out


def combined(a: Answer) -> Table:
    """Every group's rows in one table (answer.csv): the group and its unit in columns of their own."""
    t = Table("answer", HEADING, ["Model", "Where", "Ranked by", "Unit of work"])
    for g, small in _tables(a):
        cols = [c.replace(f" per {g.unit.noun}", "").replace(f" ({g.unit.throughput})", "") for c in small.columns]
        if g.by == TIME:
            cols.insert(2, "Energy (J)")
        if len(t.columns) == 4:
            t.columns += [*cols, "Interval low", "Interval high", "Runs a side to separate"]
            t.bounded = {4 + 2}
        for row, (_, ag) in zip(small.rows, _against_rows(g), strict=True):
            values = list(row)
            if g.by == TIME:
                values.insert(2, Value("n/a", None, notes=[small.note(f"energy not measured: {g.missing}")]))
            for v in values:
                v.notes = [t.note(small.footnotes[n - 1]) for n in v.notes]
            extra = [num_value(ag.low if ag else None), num_value(ag.high if ag else None)]
            extra.append(num_value(float(ag.needed)) if ag and ag.needed else text_value("n/a"))
            head = [text_value(g.model), text_value(g.where), text_value(g.by), text_value(g.unit.noun)]
            t.rows.append([*head, *values, *extra])
        t.remarks.append(sentence(g))
    return t


def _against_rows(g: Group) -> list[tuple[Config, Against | None]]:
    return [*zip(g.ranked, g.against, strict=True), *((c, None) for c in g.unranked)]


def write_files(a: Answer | None, out: Path) -> list[Path]:
    """answer.md, answer.tex, answer.csv and answer.html beside the other tables."""
    if a is None or not a.groups:
        return []
    files = {
        "answer.md": "\n".join(markdown(a)),
        "answer.tex": "\n".join(latex(a)),
        "answer.csv": to_csv(combined(a)),
        "answer.html": html_section(a) + "\n",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files]
