"""`compare`, the energy-regression gate: real runs for time (one side made slower for real), the
hand-set energies of tests/fixtures/records for energy (no RAPL or NVML on this host), carbon from
the bundled table, and every usage error as one line with exit code 2."""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

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


def test_the_same_configuration_twice_is_no_change_in_at_least_19_of_20_seeded_repeats(campaigns, tmp_path):
    a, _ = campaigns
    verdicts = []
    for seed in range(20):
        left, right = split(a, tmp_path, seed)  # ten real runs of one configuration, five a side
        opts = parse_options(metric="time", seed=str(seed))
        c = compare(left, right, opts)
        verdicts.append((c.results[0].verdict, c.exit_code))
    assert sum(1 for v, code in verdicts if v == "no change" and code == 0) >= 19, verdicts
    left, right = split(a, tmp_path / "cli", 0)
    proc = controller("compare", str(left), str(right), "--metric", "time")
    assert proc.returncode == 0 and "no change" in proc.stdout, proc.stdout + proc.stderr


# --- energy, on hand-set fixture energies ---------------------------------------------------------


def test_energy_regression_improvement_and_no_change_on_hand_set_energies():
    proc = controller("compare", str(ENERGY), str(REGRESSED), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    energy = {r["cell"].split("[")[1].rstrip("]"): r for r in data["results"] if r["metric"] == "energy"}
    assert energy["torch2onnx"]["verdict"] == "regression"
    assert energy["torchscript"]["verdict"] == "improvement"
    assert energy["torch"]["verdict"] == "no change"

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
    assert all(t["verdict"] == "no change" for t in data["results"] if t["metric"] == "time")
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
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "All: 3 not comparable, 3 no change" in plain.stdout
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
    three = tmp_path / "three"
    three.mkdir()
    for p in sorted(ENERGY.glob("*.json")):
        rec = json.loads(p.read_text())
        if rec["status"] == "ok" and rec["cell"]["repetition"] <= 3:
            shutil.copy(p, three / p.name)
    out = controller("compare", str(three), str(three), "--metric", "energy").stdout
    assert "the smallest possible p is 0.1 ≥ alpha 0.01" in out  # the gate says it cannot fail


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
        (["--bootstrap", "10"], "at least 100"),
        (["--seed", "-1"], "--seed"),
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
