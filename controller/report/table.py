"""A table of the report and its renderings: Markdown, LaTeX, CSV, HTML and the terminal.

A value that could not be measured is ``n/a`` with a numbered footnote giving the reason, never 0;
best values are marked (bold; ``*`` on the terminal); a value built from runs the meters flagged
carries ``⚠`` and a footnote naming the flags. An energy figure is shown ``E ± u`` with no more
digits than its bound allows; the CSV keeps the number and puts the bound in a column of its own.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

FLAG = "⚠"


@dataclass
class Value:
    text: str
    raw: float | str | None = None
    best: bool = False
    notes: list[int] = field(default_factory=list)
    flagged: bool = False
    uncertainty: float | None = None  # the 95 % bound of ``raw`` (energy figures), None: none stated

    @property
    def shown(self) -> str:
        return f"{self.text} {FLAG}" if self.flagged else self.text


@dataclass
class Table:
    key: str  # file stem: table1, table3, stats, ...
    title: str
    columns: list[str]
    rows: list[list[Value]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # free text under the table
    group_starts: set[int] = field(default_factory=set)  # row indexes that begin a group
    bounded: set[int] = field(default_factory=set)  # column indexes whose CSV gets an "… uncertainty" column

    def note(self, text: str) -> int:
        """The footnote number for ``text`` (added once)."""
        if text not in self.footnotes:
            self.footnotes.append(text)
        return self.footnotes.index(text) + 1


def fmt_number(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1 or a == 0:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _decimals(v: float) -> int:
    """The decimals ``fmt_number`` shows for ``v``."""
    a = abs(v)
    if a >= 1000:
        return 0
    if a >= 100:
        return 1
    if a >= 1 or a == 0:
        return 2
    return 2 - math.floor(math.log10(a))  # three significant digits


def _fixed(v: float, decimals: int) -> str:
    """``v`` rounded to ``decimals`` (negative: to tens, hundreds, ...), thousands separated."""
    if decimals < 0:
        step = 10**-decimals
        return f"{round(v / step) * step:,.0f}"
    return f"{v:,.{decimals}f}"


def fmt_bounded(v: float | None, u: float | None) -> str:
    """``E ± u``: the bound to two significant digits, rounded up (a bound never shrinks by
    rounding), and the value to no more decimals than the bound's (nor than ``fmt_number``'s)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if u is None or not math.isfinite(u) or u < 0:
        return fmt_number(v)
    if u == 0:
        return f"{fmt_number(v)} ± 0"
    bound_decimals = 1 - math.floor(math.log10(u))  # two significant digits of u
    decimals = min(bound_decimals, _decimals(v))
    shown = decimals if round(u * 10.0**decimals, 9) >= 1 else bound_decimals  # u keeps a significant digit
    up = math.ceil(round(u * 10.0**shown, 9)) / 10.0**shown
    return f"{_fixed(v, decimals)} ± {_fixed(up, shown)}"


def bounded_value(v: float | None, u: float | None) -> Value:
    return Value(fmt_bounded(v, u), v, uncertainty=u if v is not None else None)


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def text_value(text: str) -> Value:
    return Value(text, text)


def num_value(v: float | None) -> Value:
    return Value(fmt_number(v), v)


# --- renderings ------------------------------------------------------------------------------


def _refs(v: Value, sup: bool) -> str:
    if not v.notes:
        return ""
    joined = ",".join(str(n) for n in v.notes)
    return _superscript(joined) if sup else f" [{joined}]"


_SUP = str.maketrans("0123456789,", "⁰¹²³⁴⁵⁶⁷⁸⁹˒")


def _superscript(text: str) -> str:
    return text.translate(_SUP)


def to_markdown(t: Table) -> str:
    def cell(v: Value) -> str:
        # "<ONNX, CPU>" would be read as an HTML tag by Markdown renderers: escape the bracket.
        text = v.shown.replace("|", "\\|").replace("<", "\\<")
        if v.best:
            text = f"**{text}**"
        return text + _refs(v, sup=True)

    lines = [f"### {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    for row in t.rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    lines.append("")
    for i, note in enumerate(t.footnotes, 1):
        lines.append(f"{_superscript(str(i))} {note}  ")
    for remark in t.remarks:
        lines += ["", remark]
    return "\n".join(lines).rstrip() + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "ρ": r"$\rho$",
    "≥": r"$\geq$",
    "°": r"$^\circ$",
    "⚠": r"$^{!}$",
    "×": r"$\times$",
    "≈": r"$\approx$",
    "–": "--",
    "…": r"\ldots{}",
    "−": "$-$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(t: Table) -> str:
    def cell(v: Value) -> str:
        text = latex_escape(v.shown)
        if v.best:
            text = f"\\textbf{{{text}}}"
        if v.notes:
            text += "$^{" + ",".join(str(n) for n in v.notes) + "}$"
        return text

    align = "l" * min(3, len(t.columns)) + "r" * max(0, len(t.columns) - 3)
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\caption{{{latex_escape(t.title)}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in t.columns) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(t.rows):
        if i in t.group_starts and i:
            lines.append("\\midrule")
        lines.append(" & ".join(cell(v) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if t.footnotes or t.remarks:
        lines.append("\\par\\smallskip\\footnotesize")
        for i, note in enumerate(t.footnotes, 1):
            lines.append(f"$^{{{i}}}$ {latex_escape(note)}\\\\")
        for remark in t.remarks:
            lines.append(latex_escape(remark) + "\\\\")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    """Raw numbers (full precision); ``n/a`` where unmeasured; after each energy column its bound
    (``… uncertainty``, n/a where none is stated); reasons in a ``footnotes`` column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header: list[str] = []
    for i, c in enumerate(t.columns):
        header += [c, f"{c} uncertainty"] if i in t.bounded else [c]
    w.writerow([*header, "footnotes"])
    for row in t.rows:
        refs = sorted({n for v in row for n in v.notes})
        cells: list[object] = []
        for i, v in enumerate(row):
            cells.append("n/a" if v.raw is None else v.raw)
            if i in t.bounded:
                cells.append("n/a" if v.uncertainty is None else v.uncertainty)
        w.writerow(cells + ["; ".join(f"[{n}] {t.footnotes[n - 1]}" for n in refs)])
    return buf.getvalue()


def to_html(t: Table) -> str:
    def cell(v: Value, numeric: bool) -> str:
        text = html.escape(v.shown)
        cls = []
        if v.best:
            text = f"<strong>{text}</strong>"
            cls.append("best")
        if v.text == "n/a":
            cls.append("na")
        if v.flagged:
            cls.append("flagged")
        if numeric:
            cls.append("num")
        refs = "".join(f'<sup><a href="#{t.key}-fn{n}">{n}</a></sup>' for n in v.notes)
        attr = f' class="{" ".join(cls)}"' if cls else ""
        return f"<td{attr}>{text}{refs}</td>"

    out = [f'<table class="jb" id="{t.key}">', f"<caption>{html.escape(t.title)}</caption>", "<thead><tr>"]
    out += [f"<th>{html.escape(c)}</th>" for c in t.columns]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cls = ' class="group"' if i in t.group_starts and i else ""
        out.append(f"<tr{cls}>" + "".join(cell(v, isinstance(v.raw, (int, float))) for v in row) + "</tr>")
    out.append("</tbody></table>")
    if t.footnotes or t.remarks:
        out.append('<div class="notes">')
        for i, note in enumerate(t.footnotes, 1):
            out.append(f'<p id="{t.key}-fn{i}"><sup>{i}</sup> {html.escape(note)}</p>')
        for remark in t.remarks:
            out.append(f'<p class="remark">{html.escape(remark)}</p>')
        out.append("</div>")
    return "\n".join(out) + "\n"


def to_term(t: Table) -> str:
    def cell(v: Value) -> str:
        return v.shown + ("*" if v.best else "") + _refs(v, sup=True)

    rows = [[cell(v) for v in row] for row in t.rows]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(t.columns)]
    numeric = [any(isinstance(row[i].raw, (int, float)) for row in t.rows) for i in range(len(t.columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            (c.rjust(w) if num else c.ljust(w)) for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [t.title, "=" * min(len(t.title), 100), line(t.columns), line(["-" * w for w in widths])]
    for i, r in enumerate(rows):
        if i in t.group_starts and i:
            out.append("")
        out.append(line(r))
    if any(v.best for row in t.rows for v in row):
        out.append("(* best in its group)")
    if any(v.flagged for row in t.rows for v in row):
        out.append(f"({FLAG} built from runs the meters flagged: see the footnote)")
    for i, note in enumerate(t.footnotes, 1):
        out.append(f"{_superscript(str(i))} {note}")
    out += t.remarks
    return "\n".join(out) + "\n"
