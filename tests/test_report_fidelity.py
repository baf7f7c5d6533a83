"""What the report must never do (issues 13, 14): mix net and gross energy, average flagged energy
silently, print a test that means nothing (Levene's p = 0 at n = 2), stop on a stray file, or keep
one of two records of a cell silently. And the second paper's resource metrics as it defines them."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as sps

from controller.report import stats
from controller.report.data import load_runs
from controller.report.plots import MODEL_COLOURS

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "records"
REAL = FIXTURES / "fixture-real"
ENERGY = FIXTURES / "fixture-energy"
SERVING = FIXTURES / "fixture-serving"


def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "report", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def copy_records(src: Path, dst: Path, keep_traces: bool = False) -> Path:
    dst.mkdir(parents=True)
    for p in src.glob("*.json"):
        rec = json.loads(p.read_text())
        if not keep_traces:
            rec["trace_path"] = None
        (dst / p.name).write_text(json.dumps(rec))
    return dst


def edit(folder: Path, pick, change) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Apply ``change`` to every record ``pick`` selects; return the changed records."""
    changed = []
    for p in sorted(folder.glob("*.json")):
        rec = json.loads(p.read_text())
        if pick(rec):
            change(rec)
            p.write_text(json.dumps(rec))
            changed.append(rec)
    return changed


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# --- files that are not run records; duplicated cells ---------------------------------------------


def test_files_that_are_not_run_records_are_skipped_with_one_warning_naming_them(tmp_path):
    folder = copy_records(REAL, tmp_path / "c")
    (folder / "a-list.json").write_text("[1, 2, 3]")
    (folder / "no-id.json").write_text(json.dumps({"status": "ok", "model": "resnet50"}))
    (folder / "broken.json").write_text("{not json")
    proc = report_cli(str(folder), "--format", "term")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    for name, why in (("a-list.json", "a JSON list"), ("no-id.json", "no run_id"), ("broken.json", "not JSON")):
        assert f"{name} ({why}" in warnings[0]
    assert "15 runs ok" in proc.stdout and "WARNING: skipped 3 files" in proc.stdout


def test_a_folder_of_no_run_records_or_no_folder_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.json").write_text("[]")
    assert "holds no run records" in one_line_error(report_cli(str(tmp_path / "empty")))
    assert "does not exist" in one_line_error(report_cli(str(tmp_path / "nowhere")))
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in one_line_error(report_cli(str(tmp_path / "file")))
    assert "--duplicates 'keep'" in one_line_error(report_cli(str(REAL), "--duplicates", "keep"))


@pytest.mark.slow
def test_two_ok_records_of_one_cell_are_refused_or_reported_loudly_never_merged_silently(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "dup")
    victim = json.loads(sorted(folder.glob("*.json"))[0].read_text())
    twin = json.loads(json.dumps(victim))
    twin["run_id"] = "20261124T070000-d0d0d0"  # a second campaign run wrote the same cell
    (folder / f"{twin['run_id']}.json").write_text(json.dumps(twin))
    cell = victim["cell"]["id"]
    line = one_line_error(report_cli(str(folder)))
    assert cell in line and victim["run_id"] in line and twin["run_id"] in line and "--duplicates" in line
    assert not (folder / "report").exists()

    conf = victim["cell"]["configuration"]
    for policy, runs in (("all", 6), ("latest", 5)):
        out = tmp_path / f"report-{policy}"
        proc = report_cli(str(folder), "--duplicates", policy, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"--duplicates {policy}" in proc.stderr and cell in proc.stderr
        assert "WARNING:" in (out / "report.md").read_text() and cell in (out / "report.md").read_text()
        rows = read_csv(out / "table1.csv") + read_csv(out / "beyond.csv")
        framework = {"torch2onnx": "torch2onnx", "torch": "torch", "torchscript": "torch2torchscript"}[conf]
        assert int(next(r for r in rows if r["Framework"] == framework)["Runs"]) == runs


# --- net and gross energy: one kind per aggregate ---------------------------------------------------


def with_baseline(rec: dict[str, Any], idle_w: float = 2.0) -> None:
    """Give a record an idle-subtracted figure for each measured energy domain, as the meters do."""
    window = rec["measurements"]["window_s"]
    m = rec["measurements"]["metrics"]
    for name in ("cpu_energy_j", "dram_energy_j", "total_energy_j"):
        gross = m[name]["value"]
        idle = idle_w * window
        m[name] |= {"gross_j": gross, "idle_power_w": idle_w, "idle_j": idle, "net_j": gross - idle, "net_reason": None}
    rec["measurements"]["baseline"] = {"status": "ok"}


def test_mixed_net_and_gross_repetitions_are_all_shown_gross_and_said(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "mixed")
    net_runs = edit(folder, lambda r: r["status"] == "ok" and r["cell"]["repetition"] <= 2, with_baseline)
    assert net_runs and len(net_runs) < 15
    runs = load_runs(folder)
    assert runs.energy.kind == "gross" and "so that no aggregate mixes net and gross" in runs.energy.statement
    out = tmp_path / "report"
    assert report_cli(str(folder), "--output", str(out)).returncode == 0
    recs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    gross = [
        r["measurements"]["metrics"]["cpu_energy_j"]["value"]
        for r in recs
        if r["status"] == "ok" and r["cell"]["configuration"] == "torch"
    ]
    row = next(r for r in read_csv(out / "table1.csv") if r["Framework"] == "torch")
    assert float(row["CPU energy (J)"]) == pytest.approx(statistics.fmean(gross))  # one kind: all gross
    assert "shown gross like every run of this report" in row["footnotes"]
    assert "no aggregate mixes net and gross" in (out / "report.md").read_text()


def test_when_every_run_has_a_net_figure_the_report_shows_net_and_says_so(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "net")
    edit(folder, lambda r: r["status"] == "ok", with_baseline)
    runs = load_runs(folder)
    assert runs.energy.kind == "net"
    recs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    net = [
        r["measurements"]["metrics"]["total_energy_j"]["net_j"]
        for r in recs
        if r["status"] == "ok" and r["cell"]["configuration"] == "torch2onnx"
    ]
    frame = runs.ok.filter(runs.ok["configuration"] == "torch2onnx")
    assert statistics.fmean(frame["total_energy"].to_list()) == pytest.approx(statistics.fmean(net))
    assert "net of idle" in runs.energy.statement


# --- flags from the meters --------------------------------------------------------------------------


@pytest.mark.slow
def test_flagged_energy_is_marked_in_every_cell_it_feeds_and_listed(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "flags")

    def reset(rec: dict[str, Any]) -> None:
        rec["measurements"]["flags"] += [
            {
                "code": "rapl_counter_reset",
                "message": "energy_uj went backwards by 12.5 J: the counter was reset",
                "zones": ["/sys/class/powercap/intel-rapl:0"],
            },
            {
                "code": "short_window",
                "message": "cpu_energy_j: the window (40 ms) is shorter than 10 sampling "
                "intervals; biases the energy by about -8.3 %",
                "meter": "rapl",
                "metric": "cpu_energy_j",
                "expected_bias": -0.083,
            },
        ]

    flagged = edit(folder, lambda r: r["status"] == "ok" and r["cell"]["id"].endswith("torch2onnx.b2.r3"), reset)
    assert len(flagged) == 1
    out = tmp_path / "report"
    assert report_cli(str(folder), "--output", str(out)).returncode == 0
    row = next(r for r in read_csv(out / "table1.csv") if r["Framework"] == "torch2onnx")
    assert "flagged by the meters in 1 of 5 runs (rapl_counter_reset, short_window)" in row["footnotes"]
    md = (out / "table1.md").read_text()
    line = next(x for x in md.splitlines() if "| torch2onnx |" in x)
    assert line.count("⚠") == 3  # CPU, DRAM (RAPL) and Total energy; not time, not the torch row
    assert "⚠" not in next(x for x in md.splitlines() if "| torch |" in x).split("|")[10]
    listed = read_csv(out / "flags.csv")
    assert {r["Flag"] for r in listed} >= {"rapl_counter_reset", "short_window"}
    assert any("-8.3 %" in r["Message"] for r in listed)
    stab = next(r for r in read_csv(out / "stability.csv") if r["Configuration"] == "torch2onnx")
    assert "1 run flagged by the meters" in stab["Warning"]
    stat = next(r for r in read_csv(out / "stats.csv") if r["Metric"] == "Total energy (J)")
    assert "1 of 15 runs flagged" in stat["footnotes"]


# --- degenerate tests and corrections ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scipy's own Levene at n = 2, shown
def test_levene_and_the_omnibus_tests_are_na_below_three_values_never_p_zero():
    two = {"a": [1.0, 2.0], "b": [3.0, 4.5], "c": [2.0, 2.2]}
    assert sps.levene(*two.values()).pvalue == 0.0  # what was printed before: 0.00e+00
    c = stats.compare("m b1", "total_energy", two)
    assert c.levene_p is None and "fewer than 3 values in a (n = 2)" in c.levene_reason
    assert c.chosen is not None and c.chosen.p is None and "normality cannot be checked" in c.chosen.reason
    assert c.paper is not None and c.paper.p is None and "fewer than 3 values" in c.paper.reason


def test_zero_variance_makes_welch_na_while_kruskal_still_tests():
    samples = {"a": [5.0, 5.0, 5.0], "b": [6.0, 6.5, 7.2], "c": [4.0, 4.1, 4.6]}
    c = stats.compare("m b1", "window_s", samples)
    assert c.paper is not None and c.paper.test == "Welch's ANOVA" and c.paper.p is None
    assert "zero variance in a" in c.paper.reason
    assert c.chosen is not None and c.chosen.test == "Kruskal-Wallis"
    assert c.chosen.p == pytest.approx(sps.kruskal(*samples.values()).pvalue)


def reference_holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(ps) - rank) * ps[i])
        out[i] = min(1.0, running)
    return out


def test_dunn_uncorrected_and_holm_games_howell_and_holm_across_groups_agree_with_the_libraries():
    import pandas as pd
    import pingouin as pg
    import scikit_posthocs as sp

    a = {"x": [1.0, 1.4, 0.9, 1.2, 1.1], "y": [2.0, 2.6, 2.2, 1.9, 2.4], "z": [1.3, 1.5, 1.2, 1.6, 1.45]}
    frame = pd.DataFrame([(k, v) for k, vs in a.items() for v in vs], columns=["configuration", "value"])
    kw = stats.kruskal(a)
    raw = sp.posthoc_dunn(frame, val_col="value", group_col="configuration")
    holm = sp.posthoc_dunn(frame, val_col="value", group_col="configuration", p_adjust="holm")
    for p in kw.pairs:
        assert p.p_uncorrected == pytest.approx(raw.loc[p.a, p.b]) and p.p_holm == pytest.approx(holm.loc[p.a, p.b])
    welch = stats.welch(a)
    gh = pg.pairwise_gameshowell(data=frame, dv="value", between="configuration")
    assert [p.p_gameshowell for p in welch.pairs] == pytest.approx(list(gh["pval"]))
    raw_t = [sps.ttest_ind(a[p.a], a[p.b], equal_var=False).pvalue for p in welch.pairs]
    assert [p.p_uncorrected for p in welch.pairs] == pytest.approx(raw_t)
    assert [p.p_holm for p in welch.pairs] == pytest.approx(reference_holm(raw_t))
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx(reference_holm([0.01, 0.04, 0.03, 0.2]))


# --- the second paper's resource metrics --------------------------------------------------------------


def test_cpu_and_ram_usage_are_shares_of_the_host_as_the_paper_defines_them():
    runs = load_runs(REAL)
    recs = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in REAL.glob("*.json")}
    for r in runs.ok.iter_rows(named=True):
        rec = recs[r["run_id"]]
        m, host = rec["measurements"]["metrics"], rec["host"]
        assert r["cpu_usage_percent"] == pytest.approx(m["cpu_percent"]["value"] / host["logical_cores"])
        assert r["ram_usage_percent"] == pytest.approx(100 * m["ram_mean_bytes"]["value"] / host["ram_bytes"])
        assert r["cpu_percent"] == pytest.approx(m["cpu_percent"]["value"])  # ours, beside it


def test_gpu_used_memory_is_the_mean_allocated_share_and_na_with_the_reason_without_totals(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "gpu")

    def gpu(rec: dict[str, Any]) -> None:
        m = rec["measurements"]["metrics"]
        m["gpu_mem_used_bytes"] = {
            "value": 6e9,
            "unit": "B",
            "available": True,
            "source": "nvml",
            "per_device": [{"mean": 4e9, "min": 3e9, "max": 6e9}],
        }
        m["gpu_mem_used_percent"] = {"value": 75.0, "unit": "%", "available": True, "source": "nvml"}
        total = None if rec["cell"]["configuration"] == "torch" else 8e9
        rec["measurements"]["meters"]["nvml"]["gpus"] = [{"index": 0, "uuid": "GPU-1", "mem_total_bytes": total}]

    edit(folder, lambda r: r["status"] == "ok", gpu)
    runs = load_runs(folder)
    for r in runs.ok.iter_rows(named=True):
        assert r["gpu_mem_used_peak_percent"] == 75.0  # ours: the peak
        if r["configuration"] == "torch":
            assert r["gpu_mem_used_percent"] is None
            assert "did not report the GPUs' total memory" in json.loads(r["notes"])["gpu_mem_used_percent"]
        else:
            assert r["gpu_mem_used_percent"] == pytest.approx(50.0)  # the paper's: the mean, 4 of 8 GB
    tests, _ = stats.run_tests(runs.ok)
    used = [t for t in tests if t.metric == "gpu_mem_used_percent"]
    assert used and used[0].paper is not None and used[0].paper.test == "Kruskal-Wallis"


# --- plots --------------------------------------------------------------------------------------------


def test_twelve_models_get_twelve_colours_far_apart():
    from matplotlib.colors import to_rgb

    rgb = [to_rgb(c) for c in MODEL_COLOURS]
    assert len(set(MODEL_COLOURS)) == 12
    closest = min(
        sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5 for i, a in enumerate(rgb) for b in rgb[i + 1 :]
    )
    assert closest > 0.25  # tab20's pairs are ~0.2 apart


@pytest.mark.slow
def test_serving_panels_share_one_y_axis_and_every_plot_has_its_legend_and_labels(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    for p in SERVING.glob("*.json"):
        rec = json.loads(p.read_text())
        if rec["status"] == "ok" and rec["cell"]["configuration"] == "torch-cpu":
            cuda = json.loads(json.dumps(rec))  # the same runs as CUDA runs: a second panel
            cuda["run_id"] = rec["run_id"][:-1] + "f"
            cuda["provider"], cuda["cell"]["configuration"] = "cuda", "torch-cuda"
            cuda["cell"]["id"] = cuda["cell"]["id"].replace("torch-cpu", "torch-cuda")
            (folder / f"{cuda['run_id']}.json").write_text(json.dumps(cuda))
        (folder / p.name).write_text(json.dumps(rec))
    out = tmp_path / "report"
    proc = report_cli(str(folder), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    svg = (out / "plots" / "serving-box-total_energy.svg").read_text()
    assert "one y-axis for both panels" in svg and "median" in svg and "mean" in svg
    assert svg.count("Total energy (J)") == 2  # each panel its y-label
    assert "CUDA execution provider" in svg and "CPU execution provider" in svg
    for name in ("energy-vs-time.svg", "energy-vs-time-log.svg"):
        text = (out / "plots" / name).read_text()
        assert "tiny-lm-a" in text and "tiny-lm-b" in text  # models told apart
    assert "log scale" in (out / "plots" / "energy-vs-time-log.svg").read_text()
    html = (out / "report.html").read_text()
    assert "Tables 4-5 and the serving table show medians" in html


def test_batch_box_plots_label_every_panel(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "bs")
    # A second batch size: two panels per figure.
    edit(folder, lambda r: r["cell"]["repetition"] == 5, lambda r: r["spec"].update(batch_size=4))
    out = tmp_path / "report"
    assert report_cli(str(folder), "--output", str(out)).returncode == 0
    svg = (out / "plots" / "box-total_energy.svg").read_text()
    assert svg.count("Total energy (J)") == 2 and "median" in svg and "mean" in svg


# --- issue 24: an uncertainty on every energy figure ------------------------------------------------

ENERGY_NAMES = ("cpu_energy_j", "dram_energy_j", "total_energy_j")


def with_bounds(rel: float, net: bool = False):  # type: ignore[no-untyped-def]
    """The meters' bound fields (issue 24) on every available energy: ``rel`` of the figure, a
    little more on each repetition so that a mean of bounds is not a bound of the mean."""

    def change(rec: dict[str, Any]) -> None:
        rep = rec["cell"]["repetition"]
        for name in ENERGY_NAMES:
            m = rec["measurements"]["metrics"][name]
            u = rel * m["value"] * (1 + 0.1 * rep)
            m |= {
                "uncertainty_j": u,
                "uncertainty_rel": u / m["value"],
                "uncertainty_components": {"resolution": 0.001, "window edges": u - 0.001},
                "uncertainty_method": "fixture: a share of the figure",
                "net_uncertainty_j": 1.5 * u if net else None,
            }

    return change


def build(folder: Path, out: Path) -> Path:
    from controller.report import build_report

    assert build_report(folder, output=out, with_plots=False) == 0
    return out


def md_row(path: Path, first_cell: str) -> dict[str, str]:
    lines = path.read_text().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    row = next(x for x in lines if x.startswith("| ") and f"| {first_cell} |" in x)
    return dict(zip(header, [c.strip() for c in row.strip("|").split("|")], strict=True))


def test_energy_is_shown_with_its_bound_in_the_tables_and_the_csv_keeps_it_in_a_column(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "bounds")
    recs = edit(folder, lambda r: r["status"] == "ok", with_bounds(0.02))
    out = build(folder, tmp_path / "report")
    torch = [r["measurements"]["metrics"]["total_energy_j"] for r in recs if r["cell"]["configuration"] == "torch"]
    mean, bound = statistics.fmean(m["value"] for m in torch), statistics.fmean(m["uncertainty_j"] for m in torch)
    row = next(r for r in read_csv(out / "table1.csv") if r["Framework"] == "torch")
    assert float(row["Total energy (J)"]) == pytest.approx(mean)  # the figure itself is unchanged
    # The mean's bound: the runs' bounds combined (their mean: a meter's systematic error does not
    # average out), not the spread across runs, which is another column of another table.
    assert float(row["Total energy (J) uncertainty"]) == pytest.approx(bound)
    assert row["Inference time (s)"] and "Inference time (s) uncertainty" not in row  # times carry none
    # Markdown: "27.82 ± 0.73", the value no finer than its bound's two significant digits.
    cell = md_row(out / "table1.md", "resnet50 (tiny)")["Total energy (J)"]
    shown = re.match(r"\**([\d.,]+) ± ([\d.]+)", cell)
    assert shown, cell
    assert float(shown.group(1)) == pytest.approx(mean, abs=0.006)
    assert float(shown.group(2)) >= bound and float(shown.group(2)) == pytest.approx(bound, rel=0.1)
    assert len(shown.group(1).split(".")[1]) <= len(shown.group(2).split(".")[1])
    assert "± " in (out / "table1.tex").read_text().replace("$\\pm$", "± ")
    assert " ± " in (out / "table1.html").read_text()
    # The descriptive table: the mean's and the median's bound beside the SD (spread), named apart.
    desc = [r for r in read_csv(out / "descriptive.csv") if r["Metric"] == "Total energy (J)"]
    assert desc and all(float(r["Mean uncertainty"]) > 0 for r in desc)
    assert "SD and CV are the spread across runs" in (out / "descriptive.md").read_text()
    # And the report says once what ± is.
    assert (out / "report.md").read_text().count("Energy figures are shown E ± u") == 1


def test_an_old_record_without_bounds_loads_shows_no_bound_and_says_why_once(tmp_path):
    out = build(copy_records(ENERGY, tmp_path / "old"), tmp_path / "report")
    row = next(r for r in read_csv(out / "table1.csv") if r["Framework"] == "torch")
    assert row["Total energy (J) uncertainty"] == "n/a"
    assert "written before joulebench stated bounds" in row["footnotes"]
    assert "±" not in md_row(out / "table1.md", "resnet50 (tiny)")["Total energy (J)"]
    report = (out / "report.md").read_text()
    assert report.count("These records were written before joulebench stated bounds") == 1
    assert "Energy figures are shown E ± u" not in report


def test_a_net_report_shows_the_net_bound_and_a_net_without_one_is_not_given_the_gross_bound(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "net")
    edit(folder, lambda r: r["status"] == "ok", with_baseline)
    edit(folder, lambda r: r["status"] == "ok", with_bounds(0.02, net=True))
    # One run's idle baseline states no spread: its net figure has no bound.
    edit(folder, lambda r: r["status"] == "ok" and r["cell"]["id"].endswith("torch.b2.r1"), with_bounds(0.02))
    runs = load_runs(folder)
    assert runs.energy.kind == "net"
    onnx = runs.ok.filter(runs.ok["configuration"] == "torch2onnx")
    gross_u = onnx["total_energy_uncertainty_gross"].to_list()
    assert onnx["total_energy_uncertainty"].to_list() == pytest.approx([1.5 * u for u in gross_u])
    out = build(folder, tmp_path / "report")
    rows = {r["Framework"]: r for r in read_csv(out / "table1.csv")}
    assert float(rows["torch2onnx"]["Total energy (J) uncertainty"]) == pytest.approx(1.5 * statistics.fmean(gross_u))
    assert rows["torch"]["Total energy (J) uncertainty"] == "n/a"
    assert "1 of 5 runs have no bound" in rows["torch"]["footnotes"]
    assert "idle baseline records no spread" in rows["torch"]["footnotes"]


def test_a_headline_whose_bounds_overlap_claims_no_saving_and_says_what_was_not_separated(tmp_path):
    for rel, separated in ((0.01, "yes"), (0.6, "no")):
        folder = copy_records(ENERGY, tmp_path / f"h{rel}")
        edit(folder, lambda r: r["status"] == "ok", with_bounds(rel))
        out = build(folder, tmp_path / f"report{rel}")
        row = next(
            r
            for r in read_csv(out / "headlines.csv")
            if r["Comparison"] == "torch2onnx vs torch" and r["Metric"] == "Total energy"
        )
        low, high = (float(x.strip(" %+")) for x in row["Change within the bounds"].split("…"))
        assert low < float(row["Change (value / reference − 1)"]) < high
        assert row["Sign separated by the bounds"] == separated and (high < 0) == (separated == "yes")
        line = next(x for x in (out / "headlines.md").read_text().splitlines() if "torch2onnx vs torch" in x)
        assert ("not separated" in line) == (separated == "no")
        if separated == "no":
            assert "does not decide which is lower" in row["footnotes"]
    time = next(r for r in read_csv(out / "headlines.csv") if r["Metric"] == "Inference time")
    assert time["Sign separated by the bounds"] == "n/a" and "no bound is stated for times" in time["footnotes"]


def test_energy_plots_draw_each_runs_bound_as_an_error_bar(tmp_path):
    from controller.report import plots

    folder = copy_records(ENERGY, tmp_path / "plot")
    edit(folder, lambda r: r["status"] == "ok", with_bounds(0.05))
    drawn = plots.energy_vs_time(load_runs(folder).ok, tmp_path / "plots")
    assert not isinstance(drawn, str)
    assert "run's 95 % bound" in drawn[0].svg.read_text()
    old = plots.energy_vs_time(load_runs(ENERGY).ok, tmp_path / "old-plots")
    assert not isinstance(old, str) and "run's 95 % bound" not in old[0].svg.read_text()


# --- issue 24: times that were measured (duration mode) ---------------------------------------------

# The case: a 2 s window each; the windows differ by 1.7 % while the throughputs differ 170-fold.
DURATION = {"torch": (34.0, 2.034), "torch2onnx": (5747.0, 2.0), "torchscript": (40.0, 2.01)}


def duration_mode(rec: dict[str, Any]) -> None:
    throughput, window = DURATION[rec["cell"]["configuration"]]
    window += 0.001 * rec["cell"]["repetition"]
    samples = 2 * int(throughput * window / 2)  # whole batches of 2
    rec["spec"] |= {"duration_s": 2.0, "samples": None}
    rec["cell"] |= {"duration_s": 2.0, "samples": None}
    rec["metrics"] |= {
        "window_s": window,
        "samples": samples,
        "batches": samples // 2,
        "throughput_sps": samples / window,
    }
    rec["measurements"]["window_s"] = window


def test_a_duration_mode_report_shows_times_per_sample_that_match_its_throughputs(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "duration")
    recs = {r["run_id"]: r for r in edit(folder, lambda r: r["status"] == "ok", duration_mode)}
    out = build(folder, tmp_path / "report")
    rows = {r["Framework"]: r for r in read_csv(out / "table1.csv") + read_csv(out / "beyond.csv")}
    for framework, conf in (("torch", "torch"), ("torch2onnx", "torch2onnx"), ("torch2torchscript", "torchscript")):
        mine = [r for r in recs.values() if r["cell"]["configuration"] == conf]
        per_sample = statistics.fmean(r["metrics"]["window_s"] / r["metrics"]["samples"] for r in mine)
        row = rows[framework]
        # Never the requested window: the inference time is for a fixed work of 1,000 samples.
        assert float(row["Inference time (s)"]) == pytest.approx(1000 * per_sample)
        assert float(row["Time per sample (ms)"]) == pytest.approx(1000 * per_sample)
        throughput = float(row["Throughput (samples/s)"])
        assert throughput == pytest.approx(DURATION[conf][0], rel=0.02)
        assert float(row["Time per sample (ms)"]) == pytest.approx(1000 / throughput, rel=0.02)
        assert float(row["Time per batch (ms)"]) == pytest.approx(2 * float(row["Time per sample (ms)"]), rel=0.01)
        energy = statistics.fmean(
            r["measurements"]["metrics"]["total_energy_j"]["value"] / r["metrics"]["samples"] for r in mine
        )
        assert float(row["Total energy (J)"]) == pytest.approx(1000 * energy)  # energy for the same work
        assert "for a fixed work of 1,000 samples" in row["footnotes"]
    md = (out / "table1.md").read_text()
    assert "| 2.00 |" not in md and "2.0" not in md_row(out / "table1.md", "resnet50 (tiny)")["Inference time (s)"]
    assert "for a fixed work of 1,000 samples" in md and "samples and batches actually done" in md
    # The headline agrees with the throughputs (the issue: "torch2onnx is 1.7 % faster than torch").
    head = next(
        r
        for r in read_csv(out / "headlines.csv")
        if r["Comparison"] == "torch2onnx vs torch" and r["Metric"] == "Inference time"
    )
    expected = float(rows["torch"]["Throughput (samples/s)"]) / float(rows["torch2onnx"]["Throughput (samples/s)"])
    assert float(head["× (value / reference)"]) == pytest.approx(expected, rel=0.02)
    assert float(head["Change (value / reference − 1)"]) < -99
    stab = {r["Configuration"]: r for r in read_csv(out / "stability.csv")}
    assert float(stab["torch2onnx"]["Inference time (s)"]) == pytest.approx(
        float(rows["torch2onnx"]["Inference time (s)"])
    )
    # The frame `compare` reads keeps what was measured.
    assert sorted(load_runs(folder).ok["window_s"].to_list()) == sorted(r["metrics"]["window_s"] for r in recs.values())


def test_duration_runs_beside_sample_runs_use_the_sample_runs_work_and_leave_them_unchanged(tmp_path):
    folder = copy_records(ENERGY, tmp_path / "both")
    edit(folder, lambda r: r["status"] == "ok" and r["cell"]["configuration"] == "torch2onnx", duration_mode)
    before = {
        r["Framework"]: r
        for r in read_csv(build(copy_records(ENERGY, tmp_path / "plain"), tmp_path / "r0") / "table1.csv")
    }
    out = build(folder, tmp_path / "report")
    rows = {r["Framework"]: r for r in read_csv(out / "table1.csv")}
    assert rows["torch"]["Inference time (s)"] == before["torch"]["Inference time (s)"]  # sample mode: unchanged
    assert rows["torch"]["Total energy (J)"] == before["torch"]["Total energy (J)"]
    onnx = float(rows["torch2onnx"]["Time per sample (ms)"])
    assert float(rows["torch2onnx"]["Inference time (s)"]) == pytest.approx(16 * onnx / 1000)  # the campaign's 16
    assert "fixed work of 16 samples" in rows["torch2onnx"]["footnotes"]


# --- issue 24: small-sample statistics ----------------------------------------------------------------


def test_spearman_on_few_points_has_an_exact_permutation_p_and_says_so():
    from controller.report.figures import spearman

    four = [{"x": float(i), "y": float(i * i)} for i in range(4)]
    c = spearman(four, "x", "y", "per configuration")
    assert c.rho == pytest.approx(1.0)
    assert c.p == pytest.approx(1 / 12)  # two-sided: 2 of the 24 orderings reach |rho| = 1 (asymptotic: 0)
    assert sps.spearmanr([r["x"] for r in four], [r["y"] for r in four]).pvalue < 1e-6
    assert c.method == "exact: all 24 permutations"
    xs = [0.3, 1.2, 0.8, 2.5, 1.9, 0.1, 3.3]
    ys = [1.0, 1.1, 0.7, 2.0, 2.6, 0.4, 2.2]
    exact = sps.permutation_test(
        (ys,), lambda y: sps.spearmanr(xs, y).statistic, permutation_type="pairings", n_resamples=10**5
    )
    seven = spearman([{"x": a, "y": b} for a, b in zip(xs, ys, strict=True)], "x", "y", "u")
    assert seven.p == pytest.approx(exact.pvalue) and seven.method == "exact: all 5,040 permutations"
    many = [{"x": float(i), "y": float(i % 7)} for i in range(20)]
    big = spearman(many, "x", "y", "u")
    assert big.p == pytest.approx(sps.spearmanr(range(20), [i % 7 for i in range(20)]).pvalue)
    assert big.method.startswith("asymptotic")


def test_levenes_centring_is_named_and_the_papers_is_the_median_pingouins_default():
    import pandas as pd
    import pingouin as pg

    samples = {"a": [1.0, 1.3, 0.9, 4.0], "b": [2.0, 2.1, 2.2, 2.05], "c": [1.5, 3.0, 0.5, 2.2]}
    c = stats.compare("m b1", "total_energy", samples)
    frame = pd.DataFrame([(k, v) for k, vs in samples.items() for v in vs], columns=["g", "v"])
    default = float(pg.homoscedasticity(frame, dv="v", group="g")["pval"].iloc[0])
    assert c.levene_p == pytest.approx(default)  # pingouin's default: median-centred
    assert c.levene_p == pytest.approx(sps.levene(*samples.values(), center="median").pvalue)
    assert c.levene_mean_p == pytest.approx(sps.levene(*samples.values(), center="mean").pvalue)
    assert c.levene_p != pytest.approx(c.levene_mean_p)  # the centring matters here
    assert stats.LEVENE == "Levene, median-centred (Brown-Forsythe)"


# --- issue 24: the second paper's CPU and RAM usage, system-wide ------------------------------------------


def test_the_papers_cpu_and_ram_usage_are_system_wide_with_the_runs_own_beside_them(tmp_path):
    folder = copy_records(SERVING, tmp_path / "system")

    def system(rec: dict[str, Any]) -> None:
        m = rec["measurements"]["metrics"]
        m["system_cpu_percent"] = {"value": 60.0 + rec["cell"]["repetition"], "unit": "%", "available": True}
        m["system_ram_used_percent"] = {"value": 40.0, "unit": "%", "available": True}
        m["system_ram_used_bytes"] = {"value": 0.4 * rec["host"]["ram_bytes"], "unit": "B", "available": True}

    recs = edit(folder, lambda r: r["status"] == "ok", system)
    out = build(folder, tmp_path / "report")
    rows = read_csv(out / "serving.csv")
    onnx = next(r for r in rows if r["Model"] == "tiny-lm-a" and r["Serving configuration"] == "<ONNX, CPU>")
    mine = [r for r in recs if r["model"] == "tiny-lm-a" and r["cell"]["configuration"] == "onnx-cpu"]
    assert float(onnx["CPU usage (% of host)"]) == pytest.approx(62.0)  # the median of 61, 62, 63: the host's
    assert float(onnx["RAM usage (% of host)"]) == pytest.approx(40.0)
    own = statistics.median(
        r["measurements"]["metrics"]["cpu_percent"]["value"] / r["host"]["logical_cores"] for r in mine
    )
    assert float(onnx["CPU usage, run's processes (% of host)"]) == pytest.approx(own)
    assert "system-wide" in (out / "serving.md").read_text()
    tests, _ = stats.run_tests(load_runs(folder).ok)
    usage = next(t for t in tests if t.metric == "cpu_usage_percent")
    assert usage.paper is not None and usage.paper.test == "Welch's ANOVA"
    assert sorted(usage.samples["onnx-cpu"]) == [61.0, 62.0, 63.0]


def test_an_old_record_falls_back_on_its_process_tree_and_names_the_definition():
    runs = load_runs(SERVING)
    for r in runs.ok.iter_rows(named=True):
        note = json.loads(r["notes"])["cpu_usage_percent"]
        assert r["cpu_usage_percent"] == pytest.approx(r["cpu_usage_process_percent"])
        assert "run's own process tree" in note and "not system-wide" in note and "written before" in note


def test_serving_savings_and_bold_say_where_the_bounds_do_not_separate_the_configurations(tmp_path):
    def bounded(rel: float):  # type: ignore[no-untyped-def]
        def change(rec: dict[str, Any]) -> None:
            for name in ENERGY_NAMES:
                m = rec["measurements"]["metrics"][name]
                if m.get("available"):
                    m |= {"uncertainty_j": rel * m["value"], "net_uncertainty_j": None}

        return change

    for rel, overlapping in ((0.01, False), (0.3, True)):
        folder = copy_records(SERVING, tmp_path / f"s{rel}")
        edit(folder, lambda r: r["status"] == "ok", bounded(rel))
        out = build(folder, tmp_path / f"report{rel}")
        energy = next(
            r
            for r in read_csv(out / "savings.csv")
            if r["Scope"] == "every configuration" and r["Metric"] == "Total energy"
        )
        unseparated = int(energy["Not separated by the bounds"])  # the Markdown: "k of n"
        assert 0 <= unseparated <= int(energy["Comparisons"]) and (unseparated > 0) == overlapping
        assert f"{unseparated} of {energy['Comparisons']}" in (out / "savings.md").read_text()
        table4 = (out / "table4.md").read_text()
        assert ("the measurement does not separate them" in table4) == overlapping
        assert "**20.30 ± " in table4 or "**20.3 ± " in table4  # the bold stays the paper's: the lowest median
