"""What the report shows, in which order: its sections (named in a table of contents), the tables in
each, a table with nothing measured in it left out and named once in a note, and a remark every
table would repeat (the energy statement, said at the top) said once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from controller.report.table import Table

if TYPE_CHECKING:
    from controller.report import Sections


@dataclass
class Section:
    key: str  # the anchor the table of contents links to (apart from the tables' own: sec-...)
    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # sentences under the section's tables


def is_empty(t: Table) -> bool:
    """A table of measurements none of which was measured: no row, or n/a cells and no figure."""
    cells = [v for row in t.rows for v in row]
    if not cells:
        return True
    figures = any(isinstance(v.raw, float) for v in cells)
    return not figures and any(v.text == "n/a" for v in cells)


def _why(t: Table) -> str:
    reasons = [n.removeprefix("n/a: ") for n in t.footnotes[:1]]
    return f"{t.title} ({reasons[0]})" if reasons else t.title


def _shown(t: Table, said: str) -> Table:
    """The table without the remarks the report says once at the top."""
    remarks = [r for r in t.remarks if r.strip() != said.strip()]
    return t if remarks == t.remarks else replace(t, remarks=remarks)


def sections(s: Sections) -> tuple[list[Section], str | None]:
    """The sections with their tables, empty ones and empty tables left out; and the one note that
    names what was left out (None when nothing was)."""
    out, empty = [], []
    for key, title, tables, note in (
        ("sec-papers", "The papers' tables", s.papers, s.papers_note),
        ("sec-figures", "The papers' figures", s.figures, None),
        ("sec-statistics", "Statistics", s.stats, None),
        ("sec-provenance", "Stability, flags and provenance", s.provenance, None),
    ):
        kept = [_shown(t, s.energy) for t in tables if not is_empty(t)]
        notes = [note] if note else []
        for t in tables:
            if not is_empty(t):
                continue
            if not t.rows and t.remarks:  # a list with nothing in it (no flag): what it says without a table
                notes.append(f"{t.title}: none. " + " ".join(r for r in t.remarks if r.strip() != s.energy.strip()))
            else:
                empty.append(_why(t))
        if kept or notes:
            out.append(Section(key, title, kept, notes))
    if not empty:
        return out, None
    return out, "Left out, nothing in them was measured in these runs: " + "; ".join(empty) + "."


NOT_DRAWN = re.compile(r"^(?P<what>.+?): no box plot, not measured \((?P<why>.*)\)$")


def plot_notes(skipped: list[str]) -> list[str]:
    """The plots not drawn, one line per reason: "No box plots of CPU energy, GPU energy: not measured (...)"."""
    order: list[tuple[bool, str]] = []  # (a reason shared by box plots, the text)
    by_reason: dict[str, list[str]] = {}
    for note in skipped:
        found = NOT_DRAWN.match(note)
        if found is None:
            order.append((False, note))
            continue
        if found["why"] not in by_reason:
            order.append((True, found["why"]))
        by_reason.setdefault(found["why"], []).append(found["what"])
    return [
        f"No box plots of {', '.join(by_reason[text])}: not measured ({text})" if shared else text
        for shared, text in order
    ]
