"""``python -m controller report FOLDER``: the papers' tables, statistics and plots of a campaign.

Writes ``FOLDER/report/``: each table as Markdown, LaTeX, CSV and HTML (``table1.md`` ...),
``report.md``, ``report.html`` (self-contained: tables, statistics, plots embedded), ``plots/``
(PNG and SVG), and ``vllm-bench/RUN_ID.json``: each serving load point as vLLM's ``bench serve``
result JSON; ``mlcommons/RUN_ID.json``: its energy in MLCommons' proposed schema; ``requests/``: its
per-request table as Parquet. ``--format term`` prints the tables instead.

Files of the folder that are not run records are skipped with one warning naming them. Two ok
records of one campaign cell are refused unless ``--duplicates all|latest`` says what to do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from controller.carbon import CarbonFactor
from controller.errors import UserError
from controller.report import headlines, paper1, paper2, provenance, stats, stats_tables
from controller.report import phases as phase_report
from controller.report.answer import Answer, ranked_answer
from controller.report.cells import bounds_statement
from controller.report.data import Runs, load_runs
from controller.report.identity import cluster_blocks, identity_problems, split_blocks
from controller.report.loads import one_load_point
from controller.report.table import Table
from controller.report.work import Work, fixed_work

__all__ = ["build_report"]


@dataclass
class Sections:
    papers: list[Table] = field(default_factory=list)
    papers_note: str | None = None
    figures: list[Table] = field(default_factory=list)
    stats: list[Table] = field(default_factory=list)
    provenance: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # said loudly at the top
    energy: str = ""
    said: list[str] = field(default_factory=list)  # said once at the top: the bounds, duration mode
    frame: pl.DataFrame | None = None  # the ok runs as the tables show them (duration mode: for a fixed work)
    work: Work = field(default_factory=lambda: Work(None))
    answer: Answer | None = None  # placed first: which configuration for each model, and how sure

    def tables(self) -> list[Table]:
        return [*self.papers, *self.figures, *self.stats, *self.provenance]


def build_report(
    folder: Path,
    fmt: str = "files",
    output: Path | None = None,
    mix: bool = False,
    duplicates: str = "refuse",
    with_plots: bool = True,
    carbon: CarbonFactor | None = None,
) -> int:
    from controller.report import render

    runs = load_runs(folder, duplicates, carbon)
    if runs.skipped_warning:
        print(f"warning: {runs.skipped_warning}", file=sys.stderr)
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
    from controller.progress import Progress

    progress = Progress()  # on stderr: tables, statistics and plots take a while on many records
    with progress.step(f"report: tables and statistics of {runs.all.height} records"):
        sections = assemble(runs, problems if mix else [])
    for w in runs.duplicates:
        print(f"warning: {w}", file=sys.stderr)
    if fmt == "term":
        print(render.term(runs, sections))
        return 0
    out = output or Path(folder) / "report"
    with progress.step("report: plots and files"):
        written = render.write_files(runs, sections, out, with_plots)
        written += vllm_results(runs, out / VLLM_FOLDER)
        written += phase_report.files(runs, out)
    print(out / "report.html")  # what a user opens: first, alone on its line
    tables = len({p.stem for p in written if p.suffix == ".csv"})
    plotted = len(list((out / "plots").glob("*.png"))) if (out / "plots").is_dir() else 0
    beside = ""
    if (out / VLLM_FOLDER).is_dir():
        beside = f", {VLLM_FOLDER}/ (each serving point as vLLM's bench serve result)"
    if (out / "mlcommons").is_dir():
        beside += ", mlcommons/ (MLCommons' energy fields per serving point) and requests/ (every request, Parquet)"
    print(
        f"  {runs.all.height} records: {runs.ok.height} runs ok, {runs.failed.height} failed; beside it: report.md, "
        f"report.tex, {tables} tables (.md, .tex, .csv, .html) and plots/ ({plotted} plots, PNG and SVG){beside}"
    )
    return 0


VLLM_FOLDER = "vllm-bench"  # each serving load point as vLLM's bench serve result JSON


def vllm_results(runs: Runs, folder: Path) -> list[Path]:
    """The successful serving records of the report, each as vLLM's ``bench serve`` result JSON."""
    from controller.report.records import read_folder
    from controller.serving.vllm_result import write_vllm_results

    if not runs.ok.filter(pl.col("serving")).height:
        return []
    kept = set(runs.ok["run_id"].to_list())
    return write_vllm_results([(p, r) for p, r in read_folder(runs.folder).records if r.get("run_id") in kept], folder)


def assemble(runs: Runs, mixed: list[str]) -> Sections:
    s = Sections(energy=runs.energy.statement)
    if runs.energy.carbon is not None:
        s.energy += " " + runs.energy.carbon.statement
    ok, s.work = fixed_work(runs.ok)
    s.frame = ok
    s.answer = ranked_answer(ok, runs.energy)
    s.said = [x for x in (bounds_statement(ok), s.work.statement) if x]
    s.warnings += [f"runs of differing identity are mixed (--mix): {w}" for w in mixed]
    s.warnings += [f"measured on the cluster machine(s): {line}" for line in cluster_blocks(runs.ok)]
    s.warnings += split_blocks(runs.ok)
    s.warnings += runs.duplicates
    if runs.skipped_warning:
        s.warnings.append(runs.skipped_warning)
    batch = ok.filter(~pl.col("serving"))
    notes = []
    if batch.height:
        s.papers = [
            paper1.table1(batch, runs.energy, s.work),
            paper1.table2(batch),
            paper1.table3(batch, runs.energy, s.work),
        ]
        extra = paper1.beyond(batch, runs.energy, s.work)
        if extra is not None:
            s.papers.append(extra)
    else:
        notes.append("Tables 1-3 (first paper) need batch runs; these records are serving runs only.")
    t45 = paper2.tables45(ok, runs.energy)
    if isinstance(t45, str):
        notes.append(t45)
    else:
        s.papers += [*t45, paper2.serving_models(ok, runs.energy)]
    compared, load_note = comparable(ok, batch)
    if load_note is not None:
        notes.append("The headline figures and the statistics use the same one load point per configuration and model.")
    s.papers_note = " ".join(notes) or None
    s.figures = [headlines.figures_table(compared), headlines.headlines_table(compared)]
    s.figures += phase_report.tables(ok, runs.folder, runs.energy)
    savings = headlines.savings_table(compared)
    if savings is not None:
        s.figures.append(savings)
    tests, unmeasured = stats.run_tests(compared)
    s.stats = [
        stats_tables.tests_table(tests, unmeasured),
        stats_tables.summary_table(tests),
        stats_tables.posthoc_table(tests),
        stats_tables.pairs_summary_table(tests),
        stats_tables.descriptive_table(tests),
        headlines.correlation_table(headlines.correlations(compared)),
    ]
    s.provenance = [provenance.stability(ok)]
    flags = provenance.flags_table(ok)
    if flags is not None:
        s.provenance.append(flags)
    if runs.failed.height:
        s.provenance.append(provenance.failures(runs.failed, runs.ok))
    return s


def comparable(ok: pl.DataFrame, batch: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """The runs the statistics compare: the batch runs, and of a serving sweep one load point per
    configuration and model (a sweep's points are not repetitions of one another)."""
    serving = ok.filter(pl.col("serving"))
    if not serving.height:
        return ok, None
    kept, note = one_load_point(serving)
    return (pl.concat([batch, kept], how="vertical_relaxed") if batch.height else kept), note
