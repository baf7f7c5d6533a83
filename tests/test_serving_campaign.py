"""Serving campaigns (the second paper): the full matrix planned honestly on this host, the CPU
variant run for real on a tiny model built here, and the report's Tables 4-5 and box plots from
serving records (real ones, and real ones with hand-set energies to test the arithmetic)."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller.campaigns import load_campaign_file
from controller.errors import UserError
from tests.conftest import REPO, containers_labelled, controller

CAMPAIGNS = REPO / "suite" / "campaigns"
FULL = CAMPAIGNS / "code-slm-serving.toml"
CPU = CAMPAIGNS / "code-slm-serving-cpu.toml"
FIXTURE = REPO / "tests" / "fixtures" / "records" / "fixture-serving"


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# --- the paper's matrix, planned ---------------------------------------------------------------


def test_the_papers_matrix_is_12_models_by_7_configurations_by_10_repetitions():
    c = load_campaign_file(FULL)
    cells = c.matrix()
    assert c.mode == "serving" and len(cells) == 840
    assert [conf.name for conf in c.configurations] == [
        "torch-cpu",
        "onnx-cpu",
        "ov-cpu",
        "jit-cpu",
        "torch-cuda",
        "onnx-cuda",
        "jit-cuda",
    ]
    assert c.serving is not None and c.serving.limit is None  # every one of the 164 prompts
    assert (c.serving.warmup_s, c.serving.cooldown_s, c.serving.concurrency) == (300, 300, 1)
    categories = {cell.model_size for cell in cells}
    assert categories == {"category-1", "category-2", "category-3"}
    assert cells[0].id == "codeparrot-small.category-1.torch-cpu.b1.r1"


def test_plan_of_the_full_matrix_says_per_cell_why_it_cannot_run_here(tmp_path):
    from controller.campaigns.readiness import _nvml_reason
    from suite.hub import hub_unreachable

    proc = controller("campaign", "plan", str(FULL), "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "840 serving runs = 7 configurations × 12 models × 10 repetitions" in out
    assert "estimated duration of all 840 runs left, on a host that can run them" in out
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
    entries = json.loads(controller("campaign", "plan", str(FULL), "--json", "--results", str(tmp_path)).stdout)
    assert len(entries) == 84
    hub, nvml = hub_unreachable(), _nvml_reason()
    for e in entries:
        if hub is not None:  # this host cannot download the paper's models: every cell says so
            assert not e["runnable"] and "Hugging Face hub, which" in e["reason"], e
        if nvml is not None and e["configuration"].endswith("-cuda"):
            assert "needs an NVIDIA GPU and NVML sees none here" in e["reason"], e
    if hub is not None:
        assert "comes from the Hugging Face hub" in out and "name its save_pretrained folder" in out


def test_serving_campaign_files_refuse_batch_keys_and_say_what_replaces_them(tmp_path):
    base = '[campaign]\nmode = "serving"\n{extra}\n[matrix]\nmodels = ["phi2"]\n{more}\n' + (
        '[[matrix.configurations]]\nimage = "torch-cpu"\n'
    )
    cases = [
        ("samples = 10", "", r"samples does not apply to a serving campaign \(the number of prompts is \[serving\]"),
        ("", "batch_sizes = [1, 8]", "one prompt per request"),
        ("", "[serving]\nmax_new_tokns = 3", r"max_new_tokns in \[serving\]"),
        ("", "[serving]\nload = [1, 4]", "one closed-loop concurrency.*--concurrency 1,4,16"),
        ("", '[serving]\nslo = "ttft=soon"', r"\[serving\] --slo"),
        ("", "[serving]\nslo = 500", "slo must be a string"),
        ("", "[serving]\nignore_eos = 1", "ignore_eos must be true or false"),
        ("", '[serving]\nextra_inputs = "min_tokens=4"', "extra_inputs must be a table"),
        ("", "[serving]\nextra_inputs = { max_tokens = 4 }", "joulebench sets max_tokens itself"),
    ]
    for extra, more, expected in cases:
        path = tmp_path / "bad.toml"
        path.write_text(base.format(extra=extra, more=more))
        with pytest.raises(UserError, match=expected):
            load_campaign_file(path)
    serving_table = (
        '[serving]\nslo = "ttft=500ms,tpot=50ms"\nsynthetic = "input=8,output=4"\n'
        "extra_inputs = { min_tokens = 4, repeat_penalty = 1.0 }"
    )
    path.write_text(base.format(extra="", more=serving_table))
    serving = load_campaign_file(path).serving
    assert serving is not None and serving.slo == {"ttft": 500.0, "tpot": 50.0} and serving.ignores_eos()
    assert serving.extra_inputs == {"min_tokens": 4, "repeat_penalty": 1.0}
    path = tmp_path / "batch.toml"
    path.write_text('[serving]\nlimit = 3\n[matrix]\nmodels = ["resnet50"]\n[[matrix.configurations]]\nimage = "x"\n')
    with pytest.raises(UserError, match='needs mode = "serving"'):
        load_campaign_file(path)


# --- the CPU variant, run for real -------------------------------------------------------------

LIMIT = 3
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("fastapi")
    from harness.serving.tiny import build_tiny_lm

    path = build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-gpt2")
    for file in path.iterdir():
        file.chmod(0o644)  # readable by containers too
    return path


def cpu_overrides(model: Path, *extra: str) -> list[str]:
    sets = [
        f'matrix.models=["{model}"]',
        f"serving.limit={LIMIT}",
        f"serving.max_new_tokens={NEW_TOKENS}",
        "serving.warmup_requests=1",
        "serving.warmup_s=0",
        "serving.cooldown_s=0",
        "campaign.repetitions=2",
        "cooldown.mode=none",
        "idle.policy=stored",
        *extra,
    ]
    return [arg for s in sets for arg in ("--set", s)]


@pytest.fixture(scope="module")
def cpu_campaign(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path) -> tuple[Path, subprocess.CompletedProcess]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    root = tmp_path_factory.mktemp("cpu-campaign")
    args = ["--results", str(root / "results"), "--cache", str(root / "cache"), "--runner", "local"]
    proc = controller("campaign", "run", str(CPU), *args, *cpu_overrides(tiny_lm), timeout=900)
    return root, proc


@pytest.mark.slow
def test_the_cpu_variant_serves_every_cpu_configuration_and_they_agree_on_tokens(cpu_campaign, tiny_lm):
    root, proc = cpu_campaign
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 of 8 runs ok" in proc.stdout
    recs = records(root / "results" / "code-slm-serving-cpu")
    assert len(recs) == 8 and all(r["status"] == "ok" and r["mode"] == "serving" for r in recs)
    engines = {r["cell"]["configuration"]: r["engine"] for r in recs}
    assert engines == {"torch-cpu": "torch", "onnx-cpu": "onnxruntime", "ov-cpu": "openvino", "jit-cpu": "torchscript"}
    for r in recs:
        assert r["cell"]["serving"]["limit"] == LIMIT and r["cell"]["model"] == str(tiny_lm)
        assert r["cell"]["id"] == f"tiny-gpt2.uncategorised.{r['cell']['configuration']}.b1.r{r['cell']['repetition']}"
        assert r["metrics"]["requests_ok"] == LIMIT and r["serving"]["max_new_tokens"] == NEW_TOKENS
    # Greedy decoding on every engine: the same tokens for the same prompts as torch's.
    tokens = {
        (r["cell"]["configuration"], r["cell"]["repetition"]): [q["token_ids"] for q in r["serving"]["requests"]]
        for r in recs
    }
    assert len({json.dumps(t) for t in tokens.values()}) == 1
    # The overrides are recorded beside the results.
    assert "serving.limit=3" in (root / "results" / "code-slm-serving-cpu" / "campaign" / "campaign.toml").read_text()


@pytest.mark.slow
def test_the_cpu_variant_resumes_and_refuses_changed_settings(cpu_campaign, tiny_lm):
    root, _ = cpu_campaign
    args = ["--results", str(root / "results"), "--cache", str(root / "cache"), "--runner", "local"]
    again = controller("campaign", "run", str(CPU), *args, *cpu_overrides(tiny_lm))
    assert again.returncode == 0 and "0 to run now" in again.stderr
    changed = controller("campaign", "run", str(CPU), *args, *cpu_overrides(tiny_lm, "serving.max_new_tokens=8"))
    assert changed.returncode == 2 and "other settings" in changed.stderr and "serving" in changed.stderr


@pytest.mark.slow
def test_report_of_real_serving_records_shows_table4_unmeasured_energy_as_na_with_the_reason(cpu_campaign):
    root, proc = cpu_campaign
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = root / "results" / "code-slm-serving-cpu"
    out = root / "report"
    report = controller("report", str(folder), "--output", str(out))
    assert report.returncode == 0, report.stdout + report.stderr
    recs = records(folder)
    rows = {r["Serving configuration"]: r for r in read_csv(out / "table4.csv")}
    assert set(rows) == {"<TORCH, CPU>", "<ONNX, CPU>", "<OV, CPU>", "<JIT, CPU>"}
    label = {"torch-cpu": "<TORCH, CPU>", "onnx-cpu": "<ONNX, CPU>", "ov-cpu": "<OV, CPU>", "jit-cpu": "<JIT, CPU>"}
    for conf, name in label.items():
        windows = [r["metrics"]["window_s"] for r in recs if r["cell"]["configuration"] == conf]
        row = rows[name]
        assert row["Model size category"] == "uncategorised" and row["Runs"] == "2"
        assert float(row["Execution time (s)"]) == pytest.approx(statistics.median(windows), rel=1e-2)
        energy = recs[0]["measurements"]["metrics"]["total_energy_j"]
        if not energy["available"]:
            # This host measures no energy: n/a with the recorded reason, never 0.
            assert row["Global energy (J)"] == "n/a"
            assert "no energy domain could be measured" in row["footnotes"]
    assert not (out / "table5.csv").exists()
    assert (
        "Table 5 (CUDA execution provider): no serving run of these records used it" in (out / "table4.md").read_text()
    )
    per_model = read_csv(out / "serving.csv")
    assert len(per_model) == 4 and all(float(r["Throughput (tokens/s)"]) > 0 for r in per_model)
    assert (out / "plots" / "serving-box-window_s.png").is_file()
    md = (out / "report.md").read_text()
    assert "Tables 1-3 (first paper) need batch runs" in md
    stats = read_csv(out / "stats.csv")
    assert {r["Group"] for r in stats} == {"tiny-gpt2 serving"}
    assert any(r["Metric"].startswith("Throughput (tokens/s)") for r in stats)
    if not recs[0]["measurements"]["metrics"]["total_energy_j"]["available"]:
        # The plots not drawn are one note per reason, naming each plot left out.
        assert re.search(r"No box plots of [^:\n]*Serving, Total energy[^:\n]*: not measured \(", md), md


# --- Tables 4-5 arithmetic on real records with hand-set energies ------------------------------


def fixture_values(recs: list[dict[str, Any]], key: str) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in recs:
        if r["status"] != "ok":
            continue
        m = r["measurements"]["metrics"]
        value = {"total": m["total_energy_j"]["value"], "cpu": m["cpu_energy_j"]["value"]}.get(key)
        if key == "gpu":
            value = m["gpu_energy_j"]["value"]
        if key == "time":
            value = r["metrics"]["window_s"]
        out.setdefault((r["model_size"], r["cell"]["configuration"]), []).append(value)
    return out


def test_table4_medians_by_category_and_the_mean_section_on_hand_set_energies(tmp_path):
    out = tmp_path / "report"
    proc = controller("report", str(FIXTURE), "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records(FIXTURE)
    energy, time = fixture_values(recs, "total"), fixture_values(recs, "time")
    rows = read_csv(out / "table4.csv")
    label = {"torch-cpu": "<TORCH, CPU>", "onnx-cpu": "<ONNX, CPU>", "ov-cpu": "<OV, CPU>"}
    by = {(r["Model size category"], r["Serving configuration"]): r for r in rows}
    assert set(by) == {(cat, lab) for cat in ("1", "2", "1,2") for lab in label.values()}
    for conf, name in label.items():
        medians = []
        for cat in ("1", "2"):
            row = by[(cat, name)]
            values = energy[(f"category-{cat}", conf)]
            assert float(row["Global energy (J)"]) == pytest.approx(statistics.median(values), rel=1e-3)
            assert float(row["Execution time (s)"]) == pytest.approx(
                statistics.median(time[(f"category-{cat}", conf)]), rel=1e-2
            )
            assert "gross energy: no idle baseline subtracted" in row["footnotes"]
            medians.append(statistics.median(values))
        # The paper's last section: the mean of the category medians.
        assert float(by[("1,2", name)]["Global energy (J)"]) == pytest.approx(statistics.fmean(medians), rel=1e-3)
    # The best (lowest) energy of each category is bold in Markdown.
    md = (out / "table4.md").read_text()
    for cat in ("1", "2"):
        lowest = min(statistics.median(energy[(f"category-{cat}", c)]) for c in label)
        assert f"**{lowest:,.1f}**" in md or f"**{lowest:.2f}**" in md
    # Energy per generated token: the run's energy over its tokens, median over repetitions.
    per_model = {(r["Model"], r["Serving configuration"]): r for r in read_csv(out / "serving.csv")}
    ok = [r for r in recs if r["status"] == "ok"]
    for model, conf in {(r["model"], r["cell"]["configuration"]) for r in ok}:
        runs = [r for r in ok if r["model"] == model and r["cell"]["configuration"] == conf]
        expected = statistics.median(
            r["measurements"]["metrics"]["total_energy_j"]["value"] / r["metrics"]["new_tokens_total"] for r in runs
        )
        assert float(per_model[(model, label[conf])]["Energy per token (J)"]) == pytest.approx(expected, rel=1e-2)
    stats = {r["Metric"]: r for r in read_csv(out / "stats.csv") if r["Group"].startswith("tiny-lm-a")}
    assert stats["Total energy (J)"]["Test"] in ("Welch's ANOVA", "Kruskal-Wallis")
    assert (out / "plots" / "serving-box-total_energy.png").is_file()


def test_table5_reads_cuda_runs_cpu_gpu_and_global_energy(tmp_path):
    # The fixture's records, made CUDA runs here: provider cuda, a GPU energy set by this test.
    folder = tmp_path / "cuda"
    folder.mkdir()
    gpu_j = {"torch-cpu": 3.0, "onnx-cpu": 7.0, "ov-cpu": 5.0}
    for path in FIXTURE.glob("*.json"):
        rec = json.loads(path.read_text())
        if rec["status"] != "ok" or rec["cell"]["configuration"] == "ov-cpu":
            continue  # OpenVINO has no CUDA configuration in the paper
        conf = rec["cell"]["configuration"]
        rec["provider"] = "cuda"
        rec["cell"]["configuration"] = conf.replace("-cpu", "-cuda")
        m = rec["measurements"]["metrics"]
        g = gpu_j[conf] + rec["cell"]["repetition"]
        m["gpu_energy_j"] = {"value": g, "unit": "J", "source": "set by this test", "available": True, "reason": None}
        total = m["total_energy_j"]["value"] + g
        m["total_energy_j"] |= {"value": total, "covers": ["cpu", "dram", "gpu"]}
        (folder / path.name).write_text(json.dumps(rec))
    out = tmp_path / "report"
    proc = controller("report", str(folder), "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r["Model size category"], r["Serving configuration"]): r for r in read_csv(out / "table5.csv")}
    assert set(rows) == {(c, lab) for c in ("1", "2", "1,2") for lab in ("<TORCH, CUDA>", "<ONNX, CUDA>")}
    recs = records(folder)
    for cat in ("1", "2"):
        for conf, name in (("torch-cuda", "<TORCH, CUDA>"), ("onnx-cuda", "<ONNX, CUDA>")):
            runs = [r for r in recs if r["model_size"] == f"category-{cat}" and r["cell"]["configuration"] == conf]
            m = [r["measurements"]["metrics"] for r in runs]
            row = rows[(cat, name)]
            gpu = statistics.median(x["gpu_energy_j"]["value"] for x in m)
            assert float(row["GPU energy (J)"]) == pytest.approx(gpu)
            assert float(row["CPU energy (J)"]) == pytest.approx(
                statistics.median(x["cpu_energy_j"]["value"] for x in m), rel=1e-3
            )
            assert float(row["Global energy (J)"]) == pytest.approx(
                statistics.median(x["total_energy_j"]["value"] for x in m), rel=1e-3
            )
    assert "cpu+dram+gpu" in (out / "table5.md").read_text()
    assert not (out / "table4.csv").exists()


@pytest.mark.docker
def test_a_serving_campaign_in_docker_leaves_no_container(tmp_path, tiny_lm, docker_client):
    # One configuration without an export (one container): what the docker path adds is the container.
    torch_only = 'matrix.configurations=[{name = "torch-cpu", image = "torch-cpu", engine = "torch"}]'
    args = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--runner", "docker"]
    name = f"serving-docker-{uuid.uuid4().hex[:6]}"  # its own containers only, on an engine others share
    overrides = cpu_overrides(tiny_lm, torch_only, "campaign.repetitions=1", f"campaign.name={name}")
    proc = controller("campaign", "run", str(CPU), *args, *overrides, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records(tmp_path / "results" / name)
    assert len(recs) == 1 and recs[0]["status"] == "ok" and recs[0]["runner"]["kind"] == "docker"
    assert recs[0]["metrics"]["requests_ok"] == LIMIT
    assert containers_labelled(docker_client, f"joulebench.campaign={name}") == []


def test_a_serving_campaign_without_settings_serves_as_the_serve_command_does():
    from controller.campaigns.file import load_campaign_file
    from controller.cli import build_parser
    from controller.requests import from_fields
    from controller.serving.settings import ServingSettings

    args = build_parser().parse_args(["serve", "--image", "onnx-cpu", "--model", "m"])
    from_cli = from_fields(ServingSettings, args)
    campaign = load_campaign_file(CPU, ["serving={}"])  # a [serving] table with nothing set
    assert campaign.serving == from_cli == ServingSettings()
