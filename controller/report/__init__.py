"""``python -m controller report FOLDER``: the papers' tables, statistics and plots of a campaign.

Writes ``FOLDER/report/``: each table as Markdown, LaTeX, CSV and HTML (``table1.md`` ...),
``report.md``, ``report.html`` (self-contained: tables, statistics, plots embedded), ``plots/``
(PNG and SVG). ``--format term`` prints the tables instead.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from controller.errors import UserError
from controller.report import papers, plots, stats
from controller.report.data import Runs, identity_problems, load_runs
from controller.report.table import Table, to_csv, to_html, to_latex, to_markdown, to_term

__all__ = ["build_report"]


def build_report(folder: Path, fmt: str = "files", output: Path | None = None, mix: bool = False) -> int:
    runs = load_runs(folder)
    if runs.ok.height == 0:
        reasons = sorted({r or "?" for r in runs.failed["failure_reason"].to_list()})
        raise UserError(
            f"{folder}: no successful run among {runs.all.height} records; failures: " + "; ".join(reasons[:5])
        )
    problems = identity_problems(runs.ok)
    if problems and not mix:
        raise UserError(
            f"{folder}: these runs differ in identity and would be mixed in one table: "
            + "; ".join(problems)
            + ". Report them separately (one folder per host/build), or pass --mix to accept the mix "
            "(the report then says so)"
        )
    sections = assemble(runs, problems if mix else [])
    if fmt == "term":
        print(render_term(runs, sections))
        return 0
    out = output or Path(folder) / "report"
    written = write_files(runs, sections, out)
    print(f"report of {runs.ok.height} runs ({runs.failed.height} failed) in {out}")
    for path in written:
        print(f"  {path}")
    return 0


class Sections:
    def __init__(self) -> None:
        self.papers: list[Table] = []
        self.papers_note: str | None = None
        self.stats: list[Table] = []
        self.stability: Table | None = None
        self.failures: Table | None = None
        self.mixed: list[str] = []

    def tables(self) -> list[Table]:
        out = [*self.papers, *self.stats]
        if self.stability:
            out.append(self.stability)
        if self.failures:
            out.append(self.failures)
        return out


def assemble(runs: Runs, mixed: list[str]) -> Sections:
    s = Sections()
    s.mixed = mixed
    batch = runs.ok.filter(~pl.col("serving"))
    notes = []
    if batch.height:
        s.papers = [papers.table1(batch), papers.table2(batch), papers.table3(batch)]
    else:
        notes.append("Tables 1-3 (first paper) need batch runs; these records are serving runs only.")
    t45 = papers.tables45(runs.ok)
    if isinstance(t45, str):
        notes.append(t45)
    else:
        s.papers += [*t45, papers.serving_models(runs.ok)]
    s.papers_note = " ".join(notes) or None
    tests, unmeasured = stats.run_tests(runs.ok)
    s.stats = [
        stats.tests_table(tests, unmeasured),
        stats.posthoc_table(tests),
        stats.descriptive_table(tests),
        stats.correlation_table(stats.correlations(runs.ok)),
    ]
    s.stability = papers.stability(runs.ok)
    if runs.failed.height:
        s.failures = papers.failures(runs.failed, runs.ok)
    return s


def _heading(runs: Runs) -> str:
    campaigns = ", ".join(sorted({c or "?" for c in runs.all["campaign"].to_list()}))
    return f"joulebench report: {campaigns} — {runs.ok.height} runs ok, {runs.failed.height} failed ({runs.folder})"


def render_term(runs: Runs, s: Sections) -> str:
    parts = [_heading(runs), ""]
    for w in s.mixed:
        parts.append(f"WARNING (--mix): {w}")
    for t in s.tables():
        if t.key in ("posthoc", "descriptive") and len(t.rows) > 40:
            parts.append(f"{t.title}: {len(t.rows)} rows (see the report's files)\n")
            continue
        parts.append(to_term(t))
    if s.papers_note:
        parts.append(s.papers_note)
    return "\n".join(parts)


def write_files(runs: Runs, s: Sections, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in s.tables():
        for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv), ("html", to_html)):
            path = out / f"{t.key}.{ext}"
            path.write_text(render(t))
            written.append(path)
    batch, serving = runs.ok.filter(~pl.col("serving")), runs.ok.filter(pl.col("serving"))
    box, skipped = plots.box_plots(batch, out / "plots") if batch.height else ([], [])
    if serving.height:
        serving_box, serving_skipped = plots.serving_box_plots(serving, out / "plots")
        box += serving_box
        skipped += serving_skipped
    evt = plots.energy_vs_time(runs.ok, out / "plots")
    if isinstance(evt, str):
        skipped.append(evt)
        figures = box
    else:
        figures = [*box, evt]
    traces = plots.power_traces(runs.ok, out / "plots", runs.folder)
    if not traces:
        skipped.append("Power traces: no run of these records kept a trace (run with keep_trace = true / --keep-trace)")
    md = [f"# {_heading(runs)}", ""]
    md += [f"> WARNING (--mix): {w}" for w in s.mixed]
    for t in s.tables():
        md.append(to_markdown(t))
    if s.papers_note:
        md.append(s.papers_note + "\n")
    md.append("## Plots\n")
    md += [f"![{p.title}](plots/{p.png.name})\n" for p in [*figures, *traces]]
    md += [f"- {n}" for n in skipped]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.tex").write_text("\n".join(to_latex(t) for t in s.tables()))
    (out / "report.html").write_text(render_html(runs, s, figures, traces, skipped))
    written += [out / "report.md", out / "report.tex", out / "report.html", out / "plots"]
    return written


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.jb { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.85em; }
table.jb caption { text-align: left; font-weight: 600; padding-bottom: 0.4em; }
table.jb th, table.jb td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; }
table.jb th { background: #f3f3f3; }
table.jb td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.jb td.best { background: #dff5df; }
table.jb td.na { color: #888; }
table.jb tr.group td { border-top: 2px solid #999; }
.notes { font-size: 0.8em; color: #555; } .notes p { margin: 0.15em 0; }
.warning { background: #fff4d6; border: 1px solid #e0b400; padding: 0.5em; }
figure { display: inline-block; margin: 0.5em; } figure img { max-width: 640px; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_html(
    runs: Runs, s: Sections, figures: list[plots.Plot], traces: list[plots.Plot], skipped: list[str]
) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(_heading(runs))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(_heading(runs))}</h1>",
        f"<p>Generated {now}. Values are means over repetitions; <strong>bold</strong> marks the best in its "
        "group; n/a marks what could not be measured, with the reason in a footnote.</p>",
    ]
    for w in s.mixed:
        parts.append(f'<p class="warning">Runs of differing identity are mixed (--mix): {html.escape(w)}</p>')
    parts.append("<h2>The papers' tables</h2>")
    parts += [to_html(t) for t in s.papers]
    if s.papers_note:
        parts.append(f"<p>{html.escape(s.papers_note)}</p>")
    parts.append("<h2>Statistics</h2>")
    parts += [to_html(t) for t in s.stats]
    parts.append("<h2>Plots</h2>")
    for p in [*figures, *traces]:
        parts.append(f"<figure>{_img(p.png)}<figcaption>{html.escape(p.title)}</figcaption></figure>")
    if skipped:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in skipped) + "</ul>")
    parts.append("<h2>Stability and provenance</h2>")
    if s.stability:
        parts.append(to_html(s.stability))
    if s.failures:
        parts.append("<h2>Failed runs</h2>")
        parts.append(to_html(s.failures))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
