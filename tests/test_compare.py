"""`compare`, the energy-regression gate: real runs for time (one side made slower for real), the
hand-set energies of tests/fixtures/records for energy (no RAPL or NVML on this host), record
folders built here for the verdicts from the interval (issue 24), carbon from the bundled table,
and every usage error as one line with exit code 2."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from controller.carbon import countries, source
from controller.compare import compare
from controller.compare.options import parse_options

REPO = Path(__file__).resolve().parent.parent
RECORDS = REPO / "tests" / "fixtures" / "records"
ENERGY, REGRESSED, REAL = RECORDS / "fixture-energy", RECORDS / "fixture-energy-regressed", RECORDS / "fixture-real"

CAMPAIGN = """
[campaign]
name = "{name}"
description = "compare test: one ONNX Runtime configuration, {threads} intra-op thread(s)"
repetitions = {repetitions}
model_size = "tiny"
weights = "random"
dataset = "synthetic"
samples = 32
warmup = 2
runner = "local"
order = "interleaved"
seed = 3
timeout_s = 300

[idle]
policy = "stored"

[cooldown]
mode = "none"

[matrix]
models = ["resnet50"]
batch_sizes = [8]

[[matrix.configurations]]
name = "resnet-ort"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"
options = {{ intra_op_threads = {threads} }}
"""


def controller(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory, artifact_cache) -> tuple[Path, Path]:
    """Campaign A, and a copy B whose one configuration keeps its name but runs ONNX Runtime with 8
    intra-op threads on this 2-core host: oversubscribed, its spinning threads make it slower for real."""
    root = tmp_path_factory.mktemp("gate")
    folders = []
    for name, threads, reps in (("gate-a", 1, 10), ("gate-b", 8, 6)):
        toml = root / f"{name}.toml"
        toml.write_text(CAMPAIGN.format(name=name, threads=threads, repetitions=reps))
        proc = controller(
            "campaign", "run", str(toml), "--results", str(root / "results"), "--cache", str(artifact_cache)
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        folders.append(root / "results" / name)
    return folders[0], folders[1]


def window(folder: Path) -> list[float]:
    return [json.loads(p.read_text())["metrics"]["window_s"] for p in sorted(folder.glob("*.json"))]


@pytest.mark.slow
def test_a_slower_candidate_is_a_regression_and_exits_1(campaigns):
    a, b = campaigns
    assert statistics.median(window(b)) > 1.05 * statistics.median(window(a))  # slower for real
    proc = controller("compare", str(a), str(b))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    time_row = next(line for line in proc.stdout.splitlines() if "time (s)" in line)
    assert "REGRESSION" in time_row and "10 / 6" in time_row
    assert "engine options differ: A intra_op_threads=1; B intra_op_threads=8" in proc.stdout
    assert "energy not measured on side A" in proc.stdout  # no RAPL here: energy is not judged
    assert "FAIL (exit 1): 1 regression" in proc.stdout
    # The other way round it is an improvement, and the gate passes.
    back = controller("compare", str(b), str(a), "--metric", "time", "--format", "json")
    assert back.returncode == 0, back.stderr
    data = json.loads(back.stdout)
    assert [r["verdict"] for r in data["results"]] == ["improvement"] and data["exit_code"] == 0


def split(folder: Path, dest: Path, seed: int) -> tuple[Path, Path]:
    files = sorted(folder.glob("*.json"))
    random.Random(seed).shuffle(files)
    half = len(files) // 2
    out = []
    for name, part in (("a", files[:half]), ("b", files[half:])):
        d = dest / f"{seed}-{name}"
        d.mkdir(parents=True)
        for p in part:
            shutil.copy(p, d / p.name)
        out.append(d)
    return out[0], out[1]


@pytest.mark.slow
def test_the_same_configuration_twice_is_never_a_regression_in_20_random_splits(campaigns, tmp_path):
    a, _ = campaigns
    verdicts = []
    for seed in range(20):
        left, right = split(a, tmp_path, seed)  # ten real runs of one configuration, five a side
        c = compare(left, right, parse_options(metric="time"))
        verdicts.append((c.results[0].verdict, c.exit_code))
    # Equivalent (exit 0) where this host's spread allows a decision, else inconclusive (exit 3): never
    # a regression or an improvement, and never passed when undecided.
    assert all(v in ("equivalent", "inconclusive") for v, _ in verdicts), verdicts
    assert all(code == (0 if v == "equivalent" else 3) for v, code in verdicts), verdicts
    left, right = split(a, tmp_path / "cli", 0)
    proc = controller("compare", str(left), str(right), "--metric", "time")
    assert proc.returncode in (0, 3) and "REGRESSION" not in proc.stdout, proc.stdout + proc.stderr


# --- energy, on hand-set fixture energies ---------------------------------------------------------


def test_energy_regression_improvement_and_an_undecided_rerun_on_hand_set_energies():
    proc = controller("compare", str(ENERGY), str(REGRESSED), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    energy = {r["cell"].split("[")[1].rstrip("]"): r for r in data["results"] if r["metric"] == "energy"}
    assert energy["torch2onnx"]["verdict"] == "regression"
    assert energy["torchscript"]["verdict"] == "improvement"
    # The same five energies on both sides, 8 % apart at most: not a regression, but five runs a side
    # cannot show it within ±5 % either, and the gate says how many would.
    assert energy["torch"]["verdict"] == "inconclusive" and energy["torch"]["repetitions_needed"] > 5

    # Medians and change from the records themselves; the interval brackets the change.
    def totals(folder: Path, conf: str) -> list[float]:
        recs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
        return [
            r["measurements"]["metrics"]["total_energy_j"]["value"]
            for r in recs
            if r["status"] == "ok" and r["cell"]["configuration"] == conf
        ]

    med_a, med_b = statistics.median(totals(ENERGY, "torch2onnx")), statistics.median(totals(REGRESSED, "torch2onnx"))
    r = energy["torch2onnx"]
    assert r["median_a"] == pytest.approx(med_a) and r["median_b"] == pytest.approx(med_b)
    assert r["change"] == pytest.approx(med_b / med_a - 1) and r["ci_low"] <= r["change"] <= r["ci_high"]
    assert r["p"] == pytest.approx(2 / 252) and r["energy_kind"] == "gross"
    assert all(t["verdict"] == "inconclusive" for t in data["results"] if t["metric"] == "time")
    assert data["failures"] == ["1 regression"] and data["exit_code"] == 1


def test_markdown_for_a_pull_request_comment():
    proc = controller("compare", str(ENERGY), str(REGRESSED), "--format", "markdown", "--metric", "energy")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "## joulebench energy gate: ❌ 1 regression"
    assert any(line.startswith("| Cell | Metric |") for line in lines)
    assert any("REGRESSION" in line and line.startswith("| resnet50") for line in lines)
    assert "**FAIL (exit 1): 1 regression" in proc.stdout


def test_one_side_without_energy_is_not_comparable_and_fails_with_require_energy():
    plain = controller("compare", str(ENERGY), str(REAL))
    assert plain.returncode == 3, plain.stdout + plain.stderr  # energy not judged is never passed
    assert "Decided: none. Not decided: 3 inconclusive, 3 not comparable." in plain.stdout
    assert "energy not measured on side B in 5 of 5 runs" in plain.stdout
    required = controller("compare", str(ENERGY), str(REAL), "--require-energy")
    assert required.returncode == 1
    assert "energy required but not comparable in 3 cells" in required.stdout


def test_flagged_energy_is_not_judged(tmp_path):
    b = tmp_path / "b"
    shutil.copytree(REGRESSED, b)
    for p in b.glob("*.json"):
        rec = json.loads(p.read_text())
        if rec["cell"]["id"].endswith("torch2onnx.b2.r2"):
            rec["measurements"]["flags"].append(
                {"code": "rapl_counter_reset", "message": "energy_uj went backwards: the counter was reset"}
            )
            p.write_text(json.dumps(rec))
    data = json.loads(controller("compare", str(ENERGY), str(b), "--format", "json", "--metric", "energy").stdout)
    r = next(x for x in data["results"] if "torch2onnx" in x["cell"])
    assert r["verdict"] == "not comparable" and "rapl_counter_reset" in r["reason"] and r["telemetry_invalid"]


def test_identity_and_too_few_runs_are_said(tmp_path):
    b = tmp_path / "b"
    shutil.copytree(REGRESSED, b)
    for p in b.glob("*.json"):
        rec = json.loads(p.read_text())
        conf, rep = rec["cell"]["configuration"], rec["cell"]["repetition"]
        if conf == "torch":
            rec["host"]["cpu_model"] = "Intel Xeon"  # another kind of host
        if conf == "torchscript" and rep > 2:
            p.unlink()
            continue
        p.write_text(json.dumps(rec))
    data = json.loads(controller("compare", str(ENERGY), str(b), "--format", "json", "--metric", "energy").stdout)
    by = {r["cell"].split("[")[1].rstrip("]"): r for r in data["results"]}
    assert by["torch"]["verdict"] == "not comparable" and "host kind differs" in by["torch"]["reason"]
    assert by["torchscript"]["verdict"] == "insufficient data" and "A 5, B 2" in by["torchscript"]["reason"]
    threes = []
    for side in ("a", "b"):
        threes.append(tmp_path / f"three-{side}")
        threes[-1].mkdir()
        for p in sorted(ENERGY.glob("*.json")):
            rec = json.loads(p.read_text())
            if rec["status"] == "ok" and rec["cell"]["repetition"] <= 3:
                shutil.copy(p, threes[-1] / p.name)
    proc = controller("compare", str(threes[0]), str(threes[1]), "--metric", "energy")
    assert proc.returncode == 3 and "Not decided: 3 insufficient data" in proc.stdout
    assert "no 95 % interval exists with A 3 and B 3 runs" in proc.stdout  # the gate says it cannot decide


# --- carbon ---------------------------------------------------------------------------------------


def test_carbon_is_energy_times_the_tables_factor_times_pue_and_names_its_source_and_year():
    fra = countries()["FRA"]
    data = json.loads(
        controller(
            "compare", str(ENERGY), str(REGRESSED), "--format", "json", "--country", "FRA", "--pue", "1.5"
        ).stdout
    )
    r = next(x for x in data["results"] if x["metric"] == "energy" and "torch2onnx" in x["cell"])
    assert r["carbon_a_g_estimated"] == pytest.approx(r["median_a"] / 3.6e6 * fra.g_per_kwh * 1.5)
    assert data["carbon"]["g_co2e_per_kwh"] == fra.g_per_kwh and data["carbon"]["pue"] == 1.5
    for fmt in ("term", "markdown"):
        text = controller("compare", str(ENERGY), str(REGRESSED), "--format", fmt, "--country", "FRA").stdout
        assert f"annual average for {fra.year}" in text and source() in text and "estimate" in text
        assert "Carbon A, estimated (gCO2e)" in text
    # The report adds the same estimate as a column, and says how it is made.
    proc = controller("report", str(ENERGY), "--format", "term", "--grid-intensity", "400", "--pue", "1.2")
    assert proc.returncode == 0, proc.stderr
    assert "Carbon, estimated (gCO2e)" in proc.stdout and "400 gCO2e/kWh (given with --grid-intensity)" in proc.stdout


def test_the_bundled_table_states_its_source_and_years():
    head = (REPO / "controller" / "carbon" / "grid_intensity.csv").read_text().splitlines()[:5]
    assert any("Source: CodeCarbon" in line for line in head) and any("Year:" in line for line in head)
    table = countries()
    assert len(table) > 200 and all(1990 < c.year < 2100 and c.g_per_kwh >= 0 for c in table.values())


# --- usage errors: one line, exit 2 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--threshold", "5%%"], "--threshold '5%%'"),
        (["--threshold", "abc"], "--threshold 'abc'"),
        (["--threshold=-5%"], "0% or more"),
        (["--threshold", "-5%"], "--threshold '-5%'"),  # a value starting with '-' reaches its check
        (["--alpha", "0"], "between 0 and 1"),
        (["--alpha", "1"], "between 0 and 1"),
        (["--alpha", "x"], "--alpha 'x'"),
        (["--metric", "power"], "use energy, time"),
        (["--format", "html"], "term, markdown, json"),
        (["--country", "Atlantis"], "not in the bundled table"),
        (["--country", "FRA", "--pue", "-1"], "at least 1.0"),
        (["--country", "FRA", "--pue", "nan"], "finite"),
        (["--pue", "1.2"], "--grid-intensity G or --country ISO"),
        (["--grid-intensity", "0"], "above 0"),
        (["--grid-intensity", "300", "--country", "FRA"], "give one of them"),
        (["--bootstrap", "2000"], "unrecognized arguments: --bootstrap"),  # the exact interval resamples nothing
        (["--metric", "time", "--require-energy"], "--require-energy needs energy"),
        (["--duplicates", "keep"], "--duplicates 'keep'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, expected):
    proc = controller("compare", str(ENERGY), str(REGRESSED), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr


def test_bad_folders_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.json").write_text("[1]")
    (tmp_path / "other").mkdir()
    rec = json.loads(sorted(ENERGY.glob("*.json"))[0].read_text())
    rec["model"] = rec["cell"]["model"] = "mobilenetv2"
    (tmp_path / "other" / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    for a, b, expected in (
        (tmp_path / "nowhere", ENERGY, "does not exist"),
        (ENERGY, tmp_path / "empty", "holds no run records"),
        (tmp_path / "junk", ENERGY, "holds no run records"),
        (ENERGY, tmp_path / "other", "no cell of"),
    ):
        proc = controller("compare", str(a), str(b))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr


# --- the verdict from the interval (issue 24): record folders built in tmp_path ------------------

TEMPLATE = json.loads((ENERGY / "20261124T053750-b7435b.json").read_text())  # torch2onnx b2, 16 samples


def record(campaign: str, batch: int, rep: int, window: float, samples: int = 16, **energy: float | None) -> dict:
    """A real record of fixture-energy, re-dressed: its cell, window, samples and total energy set.
    ``energy``: ``j`` (the total, J), ``bound`` (its uncertainty_j), ``duration`` (duration mode, s)."""
    rec = json.loads(json.dumps(TEMPLATE))
    cell_id = f"resnet50.tiny.torch2onnx.b{batch}.r{rep}"
    rec["run_id"] = f"20270101T{batch:02d}{rep:04d}-{abs(hash((campaign, cell_id))) % 16**6:06x}"
    rec["campaign"] = rec["cell"]["campaign"] = campaign
    rec["cell"].update(id=cell_id, repetition=rep, batch_size=batch)
    rec["spec"]["batch_size"] = batch
    duration = energy.get("duration")
    rec["cell"]["samples"] = rec["spec"]["samples"] = None if duration else samples
    rec["cell"]["duration_s"] = rec["spec"]["duration_s"] = duration
    rec["metrics"].update(window_s=window, samples=samples, throughput_sps=samples / window)
    rec["measurements"]["window_s"] = window
    total = rec["measurements"]["metrics"]["total_energy_j"]
    if energy.get("j") is None:  # as on a host without RAPL: no domain measured
        for name in ("cpu_energy_j", "dram_energy_j", "total_energy_j"):
            rec["measurements"]["metrics"][name].update(
                value=None, available=False, reason="no powercap on this host", gross_j=None
            )
    else:
        total.update(value=energy["j"], gross_j=energy["j"], available=True)
        if energy.get("bound") is not None:
            total.update(uncertainty_j=energy["bound"], uncertainty_rel=energy["bound"] / energy["j"])
    return rec


def campaign_folder(root: Path, name: str, cells: dict[int, list[float]], **per_run) -> Path:
    """A campaign of one configuration: ``cells`` maps a batch size to its runs' windows (s).
    ``per_run`` keys (energies, bounds, samples, duration) are lists beside the windows, or one value."""
    folder = root / name
    folder.mkdir(parents=True)
    for batch, windows in cells.items():
        for i, w in enumerate(windows):
            args = {
                k: (v[batch][i] if isinstance(v, dict) else v[i] if isinstance(v, list) else v)
                for k, v in per_run.items()
            }
            samples = args.pop("samples", 16)
            rec = record(name, batch, i + 1, w, samples, **args)
            (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    return folder


class Proc(NamedTuple):
    returncode: int
    stdout: str


def gate(a: Path, b: Path, *args: str) -> tuple[int, str]:
    """`compare A B ARGS` in this process (the CLI's parser and command; no interpreter to start)."""
    from controller.cli import build_parser
    from controller.cli_study import cmd_compare

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cmd_compare(build_parser().parse_args(["compare", str(a), str(b), *args]))
    return code, out.getvalue()


def run_json(a: Path, b: Path, *args: str) -> tuple[int, dict]:
    code, out = gate(a, b, "--format", "json", *args)
    data = json.loads(out)
    assert data["exit_code"] == code
    return code, data


# The issue's case: median 5.69 s → 16.30 s, one run of A (14.0 s) slower than one of B (13.5 s):
# Mann-Whitney p = 0.016, and the old gate's 99 % bootstrap interval +14 % … +518 % ("no change").
ISSUE_A, ISSUE_B = [5.2, 5.5, 5.69, 5.9, 14.0], [13.5, 16.0, 16.3, 17.0, 34.0]


def test_the_issues_slowdown_with_one_overlapping_run_is_a_regression_at_the_defaults(tmp_path):
    a = campaign_folder(tmp_path, "a", {2: ISSUE_A})
    b = campaign_folder(tmp_path, "b", {2: ISSUE_B})
    proc = controller("compare", str(a), str(b), "--metric", "time")  # the real CLI, as a user runs it
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "time (s)" in line)
    assert "REGRESSION" in row and "5.69" in row and "16.30" in row and "0.0159" in row
    assert "FAIL (exit 1): 1 regression" in proc.stdout
    code, data = run_json(a, b, "--metric", "time")
    r = data["results"][0]
    assert r["ci_low"] > 0.05 and r["ci_coverage"] == pytest.approx(1 - 2 * 4 / 252)  # exact, 96.8 %
    assert "Mann-Whitney" in data["settings"]["interval"] and data["settings"]["ci_level"] == 0.95
    # At 99 % the exact interval for 5 vs 5 is the whole range of pairwise ratios: the overlap keeps
    # it from being decided, and the gate says so (exit 3) rather than passing.
    code, data = run_json(a, b, "--metric", "time", "--alpha", "0.01")
    assert code == 3 and data["results"][0]["verdict"] == "inconclusive" and data["results"][0]["ci_low"] < 0


def test_one_outlying_run_does_not_flip_a_clear_regression(tmp_path):
    rng = random.Random(7)
    base = [1.0 * math.exp(rng.gauss(0, 0.03)) for _ in range(10)]
    slow = [1.5 * math.exp(rng.gauss(0, 0.03)) for _ in range(10)]
    for name, a, b in (
        ("plain", base, slow),
        ("a-outlier", base[:9] + [40.0], slow),  # A's worst run far above every run of B
        ("b-outlier", base, slow[:9] + [0.2]),  # B's best run far below every run of A
    ):
        fa = campaign_folder(tmp_path / name, "a", {2: a})
        fb = campaign_folder(tmp_path / name, "b", {2: b})
        code, data = run_json(fa, fb, "--metric", "time")
        assert code == 1 and data["results"][0]["verdict"] == "regression", (name, data["results"][0])
        assert 0.40 < data["results"][0]["change"] < 0.60, name  # the estimate barely moves


def test_a_change_with_a_wide_interval_is_inconclusive_exits_3_and_says_the_runs_needed(tmp_path):
    a_runs = [1.0, 2.0, 3.0, 4.0, 5.0]
    a = campaign_folder(tmp_path, "a", {2: a_runs})
    b = campaign_folder(tmp_path, "b", {2: [1.18 * x for x in (3.0, 1.0, 5.0, 2.0, 4.0)]})
    proc = Proc(*gate(a, b, "--metric", "time"))
    assert proc.returncode == 3, proc.stdout
    row = next(line for line in proc.stdout.splitlines() if "time (s)" in line)
    assert "+18.0 %" in row and "inconclusive" in row and "a side" in row
    assert "UNDECIDED (exit 3)" in proc.stdout and "--allow-undecided" in proc.stdout
    assert "to show regression if the change stays +18.0 % at the spread seen" in proc.stdout
    code, data = run_json(a, b, "--metric", "time")
    r = data["results"][0]
    assert r["ci_low"] < -0.05 and r["ci_high"] > 0.05 and r["verdict"] == "inconclusive"
    assert isinstance(r["repetitions_needed"], int) and r["repetitions_needed"] > 5
    assert data["counts"]["inconclusive"] == 1 and data["undecided"] == 1 and data["exit_code"] == 3
    # --allow-undecided lets it through, and says it did.
    allowed = Proc(*gate(a, b, "--metric", "time", "--allow-undecided"))
    assert allowed.returncode == 0, allowed.stdout
    assert "PASS (exit 0)" in allowed.stdout and "1 undecided result let through by --allow-undecided" in allowed.stdout
    md = gate(a, b, "--metric", "time", "--format", "markdown")[1]
    assert md.splitlines()[0] == "## joulebench energy gate: ⚠️ 1 undecided (1 inconclusive)"


def test_a_change_on_the_threshold_says_no_number_of_runs_decides_it(tmp_path):
    a_runs = [1.0, 1.1, 1.2, 1.3, 1.4]
    a = campaign_folder(tmp_path, "a", {2: a_runs})
    b = campaign_folder(tmp_path, "b", {2: [1.05 * x for x in a_runs]})
    code, data = run_json(a, b, "--metric", "time")
    r = data["results"][0]
    assert code == 3 and r["verdict"] == "inconclusive" and r["repetitions_needed"] is None
    assert "sits on the threshold" in r["repetitions_needed_reason"]


@pytest.mark.parametrize("reps", [3, 2])
def test_three_repetitions_a_side_never_pass_silently(tmp_path, reps):
    a = campaign_folder(tmp_path, "a", {2: [1.0, 1.01, 0.99][:reps]}, j=[10.0, 10.1, 9.9][:reps])
    b = campaign_folder(tmp_path, "b", {2: [1.0, 1.0, 1.02][:reps]}, j=[10.0, 10.05, 9.95][:reps])
    proc = Proc(*gate(a, b))
    assert proc.returncode == 3, proc.stdout
    assert "UNDECIDED (exit 3)" in proc.stdout and "Not decided: 2 insufficient data" in proc.stdout
    code, data = run_json(a, b)
    assert all(r["verdict"] == "insufficient data" for r in data["results"])
    if reps == 3:
        assert "no 95 % interval exists with A 3 and B 3 runs" in data["results"][0]["reason"]
        assert "at least 4 a side are needed" in data["results"][0]["reason"]
    # Even a threefold slowdown is not called a regression from so few runs; it is not passed either.
    slow = campaign_folder(tmp_path, "slow", {2: [3.0, 3.1, 2.9][:reps]}, j=[30.0, 31.0, 29.0][:reps])
    assert gate(a, slow)[0] == 3


def test_a_rerun_of_the_same_distribution_is_never_a_regression_and_equivalent_when_its_spread_is_small():
    """Seeded A/A draws (log-normal runs, the same on both sides). Where the spread is small beside the
    5 % threshold a rerun is never a regression and is shown equivalent; where it is large the gate
    says inconclusive, and calls a regression no more often than the interval's one-sided error
    (2.5 % at 95 %; exactly 4/252 = 1.6 % at 5 runs a side, before the threshold's margin)."""
    from controller.compare.figures import Figures
    from controller.compare.verdict import judge_values

    opts = parse_options(metric="time")
    for sigma, n in ((0.01, 5), (0.02, 10), (0.03, 5), (0.1, 5), (0.3, 5), (0.5, 10)):
        verdicts = []
        for seed in range(200):
            rng = random.Random(f"a/a {sigma} {n} {seed}")
            a = [math.exp(rng.gauss(0, sigma)) for _ in range(n)]
            b = [math.exp(rng.gauss(0, sigma)) for _ in range(n)]
            r = judge_values("cell", "time", Figures("time", a, b), opts)
            verdicts.append(r.verdict)
            assert r.ci is not None and r.ci[0] <= r.change <= r.ci[1]
            if r.verdict == "equivalent":  # never with an interval reaching past the threshold
                assert -0.05 <= r.ci[0] and r.ci[1] <= 0.05 and r.ci[1] - r.ci[0] <= 0.10
            else:
                assert r.ci[0] < -0.05 or r.ci[1] > 0.05
        wrong = verdicts.count("regression") + verdicts.count("improvement")
        if sigma <= 0.03:
            assert wrong == 0, (sigma, n, wrong)
        assert verdicts.count("regression") <= 0.025 * len(verdicts), (sigma, n, verdicts.count("regression"))
        if sigma <= 0.02:  # small spread: a rerun is shown equivalent
            assert verdicts.count("equivalent") >= 0.98 * len(verdicts), (sigma, n, verdicts.count("equivalent"))
        if sigma >= 0.3:  # large spread: never equivalent, the gate says it cannot tell
            assert verdicts.count("equivalent") == 0 and verdicts.count("inconclusive") >= 0.95 * len(verdicts)


def test_a_rerun_through_the_cli_is_equivalent_and_passes(tmp_path):
    rng = random.Random(3)
    runs = [[math.exp(rng.gauss(0, 0.01)) for _ in range(6)] for _ in range(2)]
    energies = [[20 * math.exp(rng.gauss(0, 0.005)) for _ in range(6)] for _ in range(2)]
    a = campaign_folder(tmp_path, "a", {2: runs[0]}, j={2: energies[0]}, bound=0.1)
    b = campaign_folder(tmp_path, "b", {2: runs[1]}, j={2: energies[1]}, bound=0.1)
    proc = Proc(*gate(a, b))
    assert proc.returncode == 0, proc.stdout
    assert "PASS (exit 0): no regression, every result decided. Decided: 2 equivalent." in proc.stdout


def test_the_energy_figures_own_bounds_widen_the_energy_interval(tmp_path):
    windows = [1.0, 1.01, 0.99, 1.02, 0.98]
    ja, jb = [20.0, 20.1, 19.9, 20.2, 19.8], [20.05, 20.15, 19.95, 20.1, 19.9]
    verdicts = {}
    for bound in (None, 0.1, 0.8):  # J, on ~20 J: unstated, 0.5 %, 4 %
        a = campaign_folder(tmp_path / str(bound), "a", {2: windows}, j={2: ja}, bound=bound)
        b = campaign_folder(tmp_path / str(bound), "b", {2: windows}, j={2: jb}, bound=bound)
        _, data = run_json(a, b, "--metric", "energy")
        verdicts[bound] = r = data["results"][0]
        if bound is not None:
            rel = bound / 20.0
            assert r["energy_bound_a_rel"] == pytest.approx(rel, rel=0.02)
            assert math.log1p(r["energy_bounds_in_ci_rel"]) == pytest.approx(
                math.hypot(math.log1p(r["energy_bound_a_rel"]), math.log1p(r["energy_bound_b_rel"]))
            )
    plain, small, large = verdicts[None], verdicts[0.1], verdicts[0.8]
    assert plain["energy_bounds_in_ci_rel"] is None and "sides A and B state no bound" in " ".join(plain["notes"])
    assert (
        large["ci_low"] < small["ci_low"] < plain["ci_low"] and large["ci_high"] > small["ci_high"] > plain["ci_high"]
    )
    assert plain["verdict"] == small["verdict"] == "equivalent"
    # 4 % a figure on each side: ±5.7 % added at each end, more than the threshold: no number of runs
    # can show these two equivalent, and the gate says so.
    assert large["verdict"] == "inconclusive" and large["repetitions_needed"] is None
    assert "the energy figures' own bounds (±5.7 %) alone exceed" in large["repetitions_needed_reason"]
    text = gate(tmp_path / "0.8" / "a", tmp_path / "0.8" / "b", "--metric", "energy")[1]
    assert "includes the energy figures' own bounds (A ±4.0 %, B ±4.0 %; ±5.7 % in all)" in text


def test_energy_not_measured_on_a_side_is_never_passed(tmp_path):
    a = campaign_folder(tmp_path, "a", {2: [1.0, 1.01, 0.99, 1.0, 1.0]}, j=20.0)
    b = campaign_folder(tmp_path, "b", {2: [1.0, 1.01, 0.99, 1.0, 1.0]}, j=None)
    code, data = run_json(a, b)
    energy = next(r for r in data["results"] if r["metric"] == "energy")
    assert code == 3 and energy["verdict"] == "not comparable" and energy["telemetry_invalid"]
    assert energy["repetitions_needed"] is None and "cannot be judged" in energy["repetitions_needed_reason"]
    # --allow-undecided lets it through; --require-energy fails it even then.
    assert run_json(a, b, "--allow-undecided")[0] == 0
    code, data = run_json(a, b, "--allow-undecided", "--require-energy")
    assert code == 1 and data["failures"] == ["energy required but not comparable in 1 cell"]


def test_duration_mode_cells_are_matched_and_judged_per_sample(tmp_path):
    # Both sides measured for 2 s: the window is the duration asked for; B does half the samples.
    a = campaign_folder(
        tmp_path,
        "a",
        {2: [2.0] * 5},
        samples={2: [400, 404, 398, 402, 401]},
        duration=2.0,
        j={2: [40.0, 40.2, 39.8, 40.1, 40.0]},
    )
    b = campaign_folder(
        tmp_path,
        "b",
        {2: [2.0] * 5},
        samples={2: [200, 199, 201, 202, 198]},
        duration=2.0,
        j={2: [40.1, 39.9, 40.0, 40.2, 40.0]},
    )
    proc = Proc(*gate(a, b))
    assert proc.returncode == 1, proc.stdout
    assert "not comparable" not in proc.stdout
    time_row = next(line for line in proc.stdout.splitlines() if "time per sample (s)" in line)
    energy_row = next(line for line in proc.stdout.splitlines() if "energy per sample (J" in line)
    assert "REGRESSION" in time_row and "REGRESSION" in energy_row  # twice the time and energy per sample
    code, data = run_json(a, b)
    by = {r["metric"]: r for r in data["results"]}
    assert by["time"]["figure"] == "time per sample" and by["time"]["median_a"] == pytest.approx(2.0 / 401)
    assert by["energy"]["figure"] == "energy per sample" and 0.9 < by["energy"]["change"] < 1.1
    # One side measured for a duration, the other a fixed number of samples: per sample too, said.
    fixed = campaign_folder(
        tmp_path, "fixed", {2: [1.0, 1.01, 0.99, 1.0, 1.0]}, samples=200, j={2: [20.0, 20.1, 19.9, 20.0, 20.05]}
    )
    code, data = run_json(a, fixed)
    by = {r["metric"]: r for r in data["results"]}
    assert by["time"]["figure"] == "time per sample" and by["time"]["verdict"] == "equivalent"
    assert any("side A measured for a requested duration, side B a fixed number" in n for n in by["time"]["notes"])


def test_comparing_a_folder_with_itself_is_refused(tmp_path):
    (tmp_path / "link").symlink_to(ENERGY)
    for b in (ENERGY, tmp_path / "link", Path(str(ENERGY) + "/")):
        proc = controller("compare", str(ENERGY), str(b))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "the same folder" in lines[0] and not proc.stdout


def test_campaign_plan_prints_the_smallest_change_its_repetitions_can_decide(tmp_path):
    toml = tmp_path / "gate-plan.toml"
    toml.write_text(
        '[campaign]\nname = "gate-plan"\nrepetitions = 5\nmodel_size = "tiny"\nweights = "random"\n'
        'dataset = "synthetic"\nsamples = 16\nwarmup = 2\nrunner = "local"\n[idle]\npolicy = "stored"\n'
        '[matrix]\nmodels = ["resnet50"]\nbatch_sizes = [2, 4]\n[[matrix.configurations]]\nname = "torch2onnx"\n'
        'image = "onnx-cpu"\nengine = "onnxruntime"\nsource = "torch"\n'
    )
    results = tmp_path / "results"
    plan = controller("campaign", "plan", str(toml), "--results", str(results), "--runner", "local")
    assert plan.returncode == 0, plan.stderr
    assert "no earlier records in" in plan.stdout and "give a spread" in plan.stdout
    # Earlier records of the b2 cell: 2 % spread in time, 1 % in energy, each energy with a 0.5 % bound.
    rng = random.Random(5)
    windows = [0.1 * math.exp(rng.gauss(0, 0.02)) for _ in range(6)]
    energies = [10 * math.exp(rng.gauss(0, 0.01)) for _ in range(6)]
    campaign_folder(results, "gate-plan", {2: windows}, j={2: energies}, bound=0.05)
    plan = controller("campaign", "plan", str(toml), "--results", str(results), "--runner", "local")
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("smallest change compare can decide"))
    assert "with 5 repetitions a side" in lines[head] and "threshold 5 %, 95 % intervals" in lines[head]
    row = lines[head + 2].split()
    assert row[0] == "torch2onnx" and row[1:4] == ["1", "of", "2"]
    time_change, energy_change = float(row[4].strip("+")), float(row[9].strip("+"))
    assert 5.5 < time_change < 12 and 5.5 < energy_change < 12  # threshold + the interval's half-width
    few = controller("campaign", "plan", str(toml), "--results", str(results), "--set", "campaign.repetitions=3")
    assert "with 3 repetitions a side no 95 % interval exists" in few.stdout
