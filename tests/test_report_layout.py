"""The report a newcomer opens: where it is, what is in it (a table of contents), nothing shown empty or
said eight times, tables that fit the page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, controller

FIXTURES = REPO / "tests" / "fixtures" / "records"


@pytest.fixture(scope="module")
def no_energy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The real records of a VM without RAPL: nothing measured energy, accuracy is not applicable."""
    out = tmp_path_factory.mktemp("real") / "report"
    proc = controller("report", str(FIXTURES / "fixture-real"), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_report_html_is_named_first_and_the_count_of_runs_says_ok_and_failed(tmp_path):
    out = tmp_path / "report"
    proc = controller("report", str(FIXTURES / "fixture-energy"), "--output", str(out))
    first, second = proc.stdout.splitlines()  # two lines, not one per file written
    assert first == str(out / "report.html")
    assert second.startswith("  16 records: 15 runs ok, 1 failed; beside it: report.md, report.tex, ")


def test_the_page_opens_with_its_contents_and_every_entry_leads_somewhere(no_energy):
    out, _ = no_energy
    page = (out / "report.html").read_text()
    toc = re.search(r'<nav class="toc">(.*?)</nav>', page, re.S)
    # The contents come before every section they list (the answer, placed first, is above them).
    assert toc is not None and page.index('<nav class="toc">') < page.index('<h2 id="sec-')
    targets = re.findall(r'href="#([^"]+)"', page)
    assert {"sec-papers", "sec-statistics", "sec-plots", "sec-provenance", "table1", "stability"} <= set(targets)
    for target in targets:
        assert page.count(f'id="{target}"') == 1, target  # one place each


def test_nothing_measured_is_left_out_once_not_shown_as_empty_tables_or_said_per_table(no_energy):
    out, _ = no_energy
    page = (out / "report.html").read_text()
    assert page.count("No run measured energy.") == 1  # the energy statement, once at the top
    left_out = re.search(r'<p class="left-out">(.*?)</p>', page, re.S)
    assert left_out is not None
    assert "Table 2: framework × model accuracy" in left_out.group(1) and "synthetic data" in left_out.group(1)
    assert 'id="table2"' not in page and 'id="figures"' not in page  # their tables are not drawn
    assert (out / "table2.csv").is_file()  # the files are still written, for whoever wants them
    box = re.findall(r"<li>(No box plots of [^<]*)</li>", page)
    assert len(box) == 3 and "GPU energy, GPU power" in box[2]  # one line per reason (total, CPU, GPU), not per plot
    md = (out / "report.md").read_text()
    assert md.count("No run measured energy.") == 1 and "## The papers' tables" in md


def test_every_table_scrolls_in_its_own_box_rather_than_spill_over_the_page(no_energy):
    out, _ = no_energy
    page = (out / "report.html").read_text()
    tables = page.count('<table class="jb"')
    assert tables >= 6 and page.count('<div class="wide"><table class="jb"') == tables
    assert ".wide { overflow-x: auto;" in page
