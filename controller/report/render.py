"""The report on the terminal, and as files: every table in four formats, report.md, report.tex
and a self-contained report.html with the plots embedded."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from controller.report import answer_render, curves, phases, plots, traces
from controller.report.data import Runs
from controller.report.layout import Section, plot_notes, sections
from controller.report.loads import one_load_point
from controller.report.table import to_csv, to_html, to_latex, to_markdown, to_term

if TYPE_CHECKING:
    from controller.report import Sections

LONG = ("posthoc", "descriptive", "pairs_summary", "headlines", "flags")
AGGREGATES = (
    "Tables 1-3 and the table beyond the paper show means over repetitions (as the first paper); Tables 4-5 and "
    "the serving table show medians (as the second paper). Bold marks the best in its group; n/a marks what "
    "could not be measured, with the reason in a footnote; ⚠ marks a value built from runs the meters flagged."
)


def heading(runs: Runs) -> str:
    campaigns = ", ".join(sorted({c or "?" for c in runs.all["campaign"].to_list()}))
    return f"joulebench report: {campaigns} — {runs.ok.height} runs ok, {runs.failed.height} failed ({runs.folder})"


def term(runs: Runs, s: Sections) -> str:
    parts = [heading(runs), ""]
    parts += [f"WARNING: {w}" for w in s.warnings]
    parts += answer_render.term(s.answer)
    parts += [AGGREGATES, f"Energy: {s.energy}", *s.said, ""]
    shown, left_out = sections(s)
    for section in shown:
        for t in section.tables:
            if t.key in LONG and len(t.rows) > 40:
                parts.append(f"{t.title}: {len(t.rows)} rows (see the report's files)\n")
                continue
            parts.append(to_term(t))
        parts += [note + "\n" for note in section.notes]
    if left_out:
        parts.append(left_out)
    return "\n".join(parts)


def write_files(runs: Runs, s: Sections, out: Path, with_plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in s.tables():
        for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv), ("html", to_html)):
            path = out / f"{t.key}.{ext}"
            path.write_text(render(t))
            written.append(path)
    ok = s.frame if s.frame is not None else runs.ok
    figures, trace_plots, skipped = make_plots(runs, ok, out / "plots") if with_plots else ([], [], ["plots not drawn"])
    shown, left_out = sections(s)
    md = [f"# {heading(runs)}", ""]
    md += [f"> **WARNING:** {w}" for w in s.warnings]
    md += ["", *answer_render.markdown(s.answer)]
    md += ["", AGGREGATES, "", f"Energy: {s.energy}", ""]
    md += [x for said in s.said for x in (said, "")]
    for section in shown:
        md.append(f"## {section.title}\n")
        md += [to_markdown(t) for t in section.tables]
        md += [note + "\n" for note in section.notes]
    if left_out:
        md.append(left_out + "\n")
    md.append("## Plots\n")
    md += [f"![{p.title}](plots/{p.png.name})\n" for p in [*figures, *trace_plots]]
    md += [f"- {n}" for n in plot_notes(skipped)]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.tex").write_text("\n".join([*answer_render.latex(s.answer), *(to_latex(t) for t in s.tables())]))
    written += answer_render.write_files(s.answer, out)
    (out / "report.html").write_text(render_html(runs, s, figures, trace_plots, skipped))
    written += [out / "report.md", out / "report.tex", out / "report.html", out / "plots"]
    return written


def make_plots(runs: Runs, ok: pl.DataFrame, folder: Path) -> tuple[list[plots.Plot], list[plots.Plot], list[str]]:
    """The plots of ``ok``: the runs as the tables show them (duration mode: for a fixed work)."""
    batch, serving = ok.filter(~pl.col("serving")), ok.filter(pl.col("serving"))
    figures, skipped = plots.box_plots(batch, folder) if batch.height else ([], [])
    if serving.height:
        one_point, load_note = one_load_point(serving)
        serving_box, serving_skipped = plots.serving_box_plots(one_point, folder)
        figures += serving_box
        skipped += serving_skipped + ([load_note] if load_note else [])
        serving_curves, curves_skipped = curves.serving_curves(serving, folder, runs.energy, runs.folder)
        figures += serving_curves
        skipped += curves_skipped
        phase_plots, phase_skipped = phases.plots(serving, runs.folder, folder, runs.energy)
        figures, skipped = figures + phase_plots, skipped + phase_skipped
    evt = plots.energy_vs_time(ok, folder)
    if isinstance(evt, str):
        skipped.append(evt)
    else:
        figures += evt
    trace_plots = traces.power_traces(ok, folder, runs.folder)
    if not trace_plots:
        skipped.append("Power traces: no run of these records kept a trace (run with keep_trace = true / --keep-trace)")
    return figures, trace_plots, skipped


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.jb { border-collapse: collapse; margin: 0 0 0.3em; font-size: 0.85em; }
.wide { overflow-x: auto; max-width: 100%; margin-top: 1em; }
nav.toc { background: #f7f7f7; border: 1px solid #ddd; padding: 0.4em 0.8em; font-size: 0.9em; }
p.index { font-size: 0.8em; color: #555; margin: 0.3em 0; }
p.left-out { font-size: 0.85em; color: #555; }
table.jb caption { text-align: left; font-weight: 600; padding-bottom: 0.4em; }
table.jb th, table.jb td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; }
table.jb th { background: #f3f3f3; }
table.jb td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.jb td.best { background: #dff5df; }
table.jb td.na { color: #888; }
table.jb td.flagged { background: #ffe8cc; }
table.jb tr.group td { border-top: 2px solid #999; }
.notes { font-size: 0.8em; color: #555; } .notes p { margin: 0.15em 0; }
.warning { background: #fff4d6; border: 1px solid #e0b400; padding: 0.5em; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; }
figure img { max-width: 640px; border: 1px solid #eee; } figure.wide-plot img { max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _toc(parts: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """The table of contents, one line: each section and how many tables or plots it holds."""
    links = [
        f'<a href="#{key}">{html.escape(title)}</a>' + (f" ({len(entries)})" if entries else "")
        for key, title, entries in parts
    ]
    return '<nav class="toc"><strong>Contents:</strong> ' + " · ".join(links) + "</nav>"


def _index(entries: list[tuple[str, str]]) -> str:
    """A section's own contents: a link to each of its tables or plots."""
    if len(entries) < 2:
        return ""
    links = " · ".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in entries)
    return f'<p class="index">{links}</p>'


def _section_html(section: Section) -> str:
    parts = [f'<h2 id="{section.key}">{html.escape(section.title)}</h2>']
    parts.append(_index([(t.key, t.title) for t in section.tables]))
    parts += [f'<div class="wide">{to_html(t)}</div>' for t in section.tables]  # a wide table scrolls in its box
    parts += [f'<p class="notes">{html.escape(note)}</p>' for note in section.notes]
    return "\n".join(parts)


def _plots_html(figures: list[plots.Plot], skipped: list[str]) -> str:
    parts = ['<h2 id="sec-plots">Plots</h2>', _index([(p.key, p.title) for p in figures])]
    for p in figures:
        wide = ' class="wide-plot"' if p.key.startswith("serving-curve") else ""
        caption = f"<figcaption>{html.escape(p.title)}</figcaption>"
        parts.append(f'<figure id="{p.key}"{wide}>{_img(p.png)}{caption}</figure>')
    notes = plot_notes(skipped)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def render_html(
    runs: Runs, s: Sections, figures: list[plots.Plot], trace_plots: list[plots.Plot], skipped: list[str]
) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shown, left_out = sections(s)
    drawn = [*figures, *trace_plots]
    # The provenance section comes after the plots, as before; the table of contents follows the page.
    before = [x for x in shown if x.key != "sec-provenance"]
    after = [x for x in shown if x.key == "sec-provenance"]
    contents = [(x.key, x.title, [(t.key, t.title) for t in x.tables]) for x in before]
    contents.append(("sec-plots", "Plots", [(p.key, p.title) for p in drawn]))
    contents += [(x.key, x.title, [(t.key, t.title) for t in x.tables]) for x in after]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(heading(runs))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(heading(runs))}</h1>",
    ]
    parts += [f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>' for w in s.warnings]
    parts.append(answer_render.html_section(s.answer))  # the answer first: which configuration, how sure
    parts.append(_toc(contents))
    parts += [f"<p>Generated {now}. {html.escape(AGGREGATES)}</p>", f"<p>Energy: {html.escape(s.energy)}</p>"]
    parts += [f"<p>{html.escape(said)}</p>" for said in s.said]
    if left_out:
        parts.append(f'<p class="left-out">{html.escape(left_out)}</p>')
    parts += [_section_html(x) for x in before]
    parts.append(_plots_html(drawn, skipped))
    parts += [_section_html(x) for x in after]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
