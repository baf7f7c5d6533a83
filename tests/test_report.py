"""The report on committed records: its numbers against scipy on the same numbers, n/a with reasons,
identity refusal, the terminal format, and report.html rendered in headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "records"
REAL = FIXTURES / "fixture-real"
ENERGY = FIXTURES / "fixture-energy"


def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "report", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def ok_records(folder: Path) -> list[dict]:
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [r for r in recs if r["status"] == "ok"]


def by_configuration(recs: list[dict], value) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in recs:
        out.setdefault(r["cell"]["configuration"], []).append(value(r))
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "report"
    proc = report_cli(str(REAL), "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def energy_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("energy") / "report"
    proc = report_cli(str(ENERGY), "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def stat_row(report: Path, metric_label: str) -> dict[str, str]:
    rows = [r for r in read_csv(report / "stats.csv") if r["Metric"].startswith(metric_label)]
    assert len(rows) == 1, rows
    return rows[0]


def test_table1_means_are_the_means_of_the_records(real_report):
    recs = ok_records(REAL)
    times = by_configuration(recs, lambda r: r["metrics"]["window_s"])
    ram = by_configuration(recs, lambda r: r["measurements"]["metrics"]["ram_peak_bytes"]["value"] / 2**20)
    rows = {r["Framework"]: r for r in read_csv(real_report / "table1.csv")}
    # Issue 14: Table 1 is the native frameworks and their ONNX conversions; TorchScript has its own table.
    assert set(rows) == {"torch", "torch2onnx"}
    beyond = {r["Framework"]: r for r in read_csv(real_report / "beyond.csv")}
    assert set(beyond) == {"torch2torchscript"}
    rows |= beyond
    for framework, conf in (("torch", "torch"), ("torch2onnx", "torch2onnx"), ("torch2torchscript", "torchscript")):
        assert int(rows[framework]["Runs"]) == 5
        assert float(rows[framework]["Inference time (s)"]) == pytest.approx(statistics.fmean(times[conf]), rel=1e-12)
        assert float(rows[framework]["RAM peak (MiB)"]) == pytest.approx(statistics.fmean(ram[conf]), rel=1e-12)


def test_unmeasured_energy_is_na_with_the_recorded_reason_never_zero(real_report):
    reason = ok_records(REAL)[0]["measurements"]["metrics"]["cpu_energy_j"]["reason"]
    for row in read_csv(real_report / "table1.csv"):
        for col in ("CPU energy (J)", "GPU energy (J)", "Total energy (J)", "GPU power (W)"):
            assert row[col] == "n/a", (col, row)
        assert reason in row["footnotes"]
    md = (real_report / "table1.md").read_text()
    assert "n/a" in md and reason in md and "| 0.00 |" not in md
    assert "n/a: synthetic data / random weights" in (real_report / "table2.csv").read_text()


def test_test_choice_and_p_values_match_scipy_on_the_same_numbers(real_report):
    recs = ok_records(REAL)
    for label, value in (
        ("Inference time", lambda r: r["metrics"]["window_s"]),
        ("Throughput", lambda r: r["metrics"]["throughput_sps"]),
        ("RAM peak", lambda r: r["measurements"]["metrics"]["ram_peak_bytes"]["value"] / 2**20),
    ):
        groups = by_configuration(recs, value)
        normal = all(stats.shapiro(v).pvalue > 0.05 for v in groups.values())
        row = stat_row(real_report, label)
        if normal:
            expected = stats.f_oneway(*groups.values(), equal_var=False)  # Welch's ANOVA, independently
            assert row["Test"] == "Welch's ANOVA"
        else:
            expected = stats.kruskal(*groups.values())
            assert row["Test"] == "Kruskal-Wallis"
        assert float(row["p"]) == pytest.approx(expected.pvalue, rel=1e-6), label
        assert float(row["Statistic"]) == pytest.approx(expected.statistic, rel=1e-6), label
        # Issue 24: Levene's centring is named; the median-centred (Brown-Forsythe) one is scipy's and
        # pingouin's default, taken as the paper's; the mean-centred one beside it.
        brown_forsythe = stats.levene(*groups.values(), center="median").pvalue
        assert float(row["Levene, median-centred (Brown-Forsythe) p"]) == pytest.approx(brown_forsythe, rel=1e-9)
        mean_centred = stats.levene(*groups.values(), center="mean").pvalue
        assert float(row["Levene, mean-centred (Levene 1960) p"]) == pytest.approx(mean_centred, rel=1e-9)
    # Both paths of the procedure are exercised by these records.
    tests = {r["Test"] for r in read_csv(real_report / "stats.csv")}
    assert tests == {"Welch's ANOVA", "Kruskal-Wallis"}
    # Issue 14: Dunn's p is shown uncorrected and Holm-corrected, in two columns (was "Dunn (Holm)").
    posthoc = {r["Test"] for r in read_csv(real_report / "posthoc.csv")}
    assert posthoc == {"Games-Howell", "Dunn"}


def test_energy_statistics_and_spearman_match_scipy_on_the_hand_set_energies(energy_report):
    recs = ok_records(ENERGY)
    energy = by_configuration(recs, lambda r: r["measurements"]["metrics"]["total_energy_j"]["value"])
    cpu = by_configuration(recs, lambda r: r["measurements"]["metrics"]["cpu_energy_j"]["value"])
    rows = {r["Framework"]: r for r in read_csv(energy_report / "table1.csv")}
    assert float(rows["torch2onnx"]["CPU energy (J)"]) == pytest.approx(statistics.fmean(cpu["torch2onnx"]))
    assert float(rows["torch"]["Total energy (J)"]) == pytest.approx(statistics.fmean(energy["torch"]))
    assert "gross energy: no idle baseline subtracted" in rows["torch"]["footnotes"]
    assert rows["torch"]["GPU energy (J)"] == "n/a"

    row = stat_row(energy_report, "Total energy")
    assert row["Test"] == "Welch's ANOVA"  # the hand-set numbers are normal per configuration
    welch = stats.f_oneway(*energy.values(), equal_var=False)
    assert float(row["p"]) == pytest.approx(welch.pvalue, rel=1e-6)
    kw = stats.kruskal(*energy.values())
    assert kw.pvalue != pytest.approx(welch.pvalue)  # the two tests would disagree: the choice matters

    times = [r["metrics"]["window_s"] for r in recs]
    totals = [r["measurements"]["metrics"]["total_energy_j"]["value"] for r in recs]
    rho = stats.spearmanr(times, totals)
    # Issue 14: pooled runs are one labelled unit beside the paper's (one point per configuration).
    corr = [
        r for r in read_csv(energy_report / "correlations.csv") if r["Y"] == "Total energy" and "per run" in r["Unit"]
    ][0]
    assert int(corr["n"]) == 15
    assert float(corr["ρ"]) == pytest.approx(rho.statistic, rel=1e-9)
    assert float(corr["p"]) == pytest.approx(rho.pvalue, rel=1e-9)


def test_failed_runs_are_listed_with_reasons_and_kept_out_of_the_tables(energy_report):
    failures = read_csv(energy_report / "failures.csv")
    assert len(failures) == 1 and "out of memory" in failures[0]["Reason"]
    assert all(int(r["Runs"]) == 5 for r in read_csv(energy_report / "table1.csv"))
    assert "out of memory" in (energy_report / "report.html").read_text()


def test_stability_warns_above_five_percent_and_names_hosts_and_environments(real_report):
    rows = read_csv(real_report / "stability.csv")
    assert len(rows) == 3
    for r in rows:
        cv = float(r["CV time"])
        assert (f"time CV {cv:.1%} > 5%" in r["Warning"]) == (cv > 0.05)
        assert "vm" in r["Hosts"] or r["Hosts"]
        assert "local:" in r["Image / environment"]


def test_runs_of_differing_identity_are_refused_unless_mix(tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(REAL, folder)
    victim = sorted(folder.glob("*.json"))[0]
    rec = json.loads(victim.read_text())
    rec["host"]["fingerprint_id"] = "another-host"
    rec["host"]["hostname"] = "other"
    victim.write_text(json.dumps(rec))
    refused = report_cli(str(folder))
    assert refused.returncode == 2
    assert "differ in identity" in refused.stderr and "--mix" in refused.stderr and "other" in refused.stderr
    assert not (folder / "report").exists()
    mixed = report_cli(str(folder), "--mix")
    assert mixed.returncode == 0, mixed.stderr
    assert "mixed (--mix)" in (folder / "report" / "report.html").read_text()


def test_term_format_prints_the_tables_and_writes_nothing(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(REAL, folder)
    proc = report_cli(str(folder), "--format", "term")
    assert proc.returncode == 0, proc.stderr
    for title in ("Table 1", "Table 2", "Table 3", "Statistics per metric", "Stability and provenance"):
        assert title in proc.stdout
    assert "n/a" in proc.stdout and "Tables 4-5" in proc.stdout
    assert not (folder / "report").exists()


def test_every_format_and_plot_is_written(real_report):
    for key in ("table1", "table2", "table3", "stats", "posthoc", "correlations", "stability"):
        for ext in ("md", "tex", "csv", "html"):
            assert (real_report / f"{key}.{ext}").stat().st_size > 0
    tex = (real_report / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex
    # Issue 14: bold among native and among converted runs separately, as the paper; here each has one
    # row, so nothing is bold (tests/test_report_papers.py checks the paper's own bold). The meters
    # flagged the torch runs' CPU load (sample gaps): marked, never averaged silently.
    assert "\\textbf{" not in tex and "$^{!}$" in tex
    plots = {p.name for p in (real_report / "plots").iterdir()}
    assert {"box-window_s.png", "box-window_s.svg"} <= plots
    assert any(name.startswith("trace-") for name in plots)  # the fixture kept traces


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_html_renders_in_headless_chromium(real_report, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip(
            "SKIPPING HTML RENDER TEST: no chromium on PATH. Install it: apt-get install -y chromium "
            "(CI: add it to the system packages of .ci/run)"
        )
    page = real_report / "report.html"
    text = page.read_text()
    assert "<script" not in text and 'src="http' not in text  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 4
    from PIL import Image

    for data in images:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        assert img.width > 200 and img.height > 150
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") >= 6 and "Table 1" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, "--window-size=1400,4000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 4000)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200  # text, tables and plots, not a blank page
    assert any(abs(r - 255) < 4 and abs(g - 232) < 4 and abs(b - 204) < 4 for _, (r, g, b) in colours)  # a flagged cell
    print(f"screenshot: {shot}")


def _rewrite(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    for k, path in enumerate(sorted(folder.glob("*.json"))):
        rec = json.loads(path.read_text())
        change(k, rec)
        path.write_text(json.dumps(rec))


def test_runs_of_one_image_from_two_lock_files_are_refused_unless_mix(tmp_path):
    folder = tmp_path / "locks"
    shutil.copytree(REAL, folder)

    def docker(k: int, rec: dict) -> None:
        rec["runner"] = {
            "kind": "docker",
            "image_id": f"sha256:{rec['image']}",
            "lock_sha256": ("2" if k == 0 and rec["image"] == "onnx-cpu" else "1") * 64,
            "base_digest": "sha256:" + "b" * 64,
        }

    _rewrite(folder, docker)
    refused = report_cli(str(folder))
    assert refused.returncode == 2 and "image onnx-cpu installed from 2 different lock files" in refused.stderr
    mixed = report_cli(str(folder), "--mix")
    assert mixed.returncode == 0, mixed.stderr
    stability = (folder / "report" / "stability.md").read_text()
    assert "lock 111111111111, base sha256:bbbb" in stability and "lock 222222222222" in stability


def test_a_cluster_campaign_compares_within_a_machine_and_names_it(tmp_path):
    folder = tmp_path / "cluster"
    shutil.copytree(REAL, folder)

    def node(name: str):  # type: ignore[no-untyped-def]
        def change(k: int, rec: dict) -> None:
            host = name if k else "node-b"
            rec["cluster"] = {"node_id": f"id-{host}", "node_ip": "10.0.0.1", "hostname": host}
            rec["host"]["hostname"], rec["host"]["fingerprint_id"] = host, f"fp-{host}"

        return change

    _rewrite(folder, node("node-b"))  # every run on one machine of the cluster
    one = report_cli(str(folder), "--format", "term")
    assert one.returncode == 0, one.stderr
    assert "measured on the cluster machine(s): resnet50 batch 2: node-b" in one.stdout
    _rewrite(folder, node("node-a"))  # one run of the same comparison on another machine
    spread = report_cli(str(folder))
    assert spread.returncode == 2
    assert "several machines of the cluster: resnet50 batch 2 on node-a, node-b" in spread.stderr


def test_blocks_on_different_machines_are_not_a_mix():
    import polars as pl

    from controller.report.identity import cluster_blocks, host_problems

    ok = pl.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "batch_size": [1, 1, 1, 1],
            "host": ["n1", "n1", "n2", "n2"],
            "cpu_model": ["x"] * 4,
            "fingerprint_id": ["f1", "f1", "f2", "f2"],
            "cluster_host": ["n1", "n1", "n2", "n2"],
        }
    )
    assert host_problems(ok) == [] and cluster_blocks(ok) == ["a batch 1: n1", "b batch 1: n2"]
    off_cluster = ok.with_columns(pl.lit(None, dtype=pl.Utf8).alias("cluster_host"))
    assert host_problems(off_cluster)[0].startswith("2 different hosts")
