"""What the report must never do (issues 13, 14): mix net and gross energy, average flagged energy
silently, print a test that means nothing (Levene's p = 0 at n = 2), stop on a stray file, or keep
one of two records of a cell silently. And the second paper's resource metrics as it defines them."""

from __future__ import annotations

import csv
import io
import json
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
