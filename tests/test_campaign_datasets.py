"""Campaigns on real datasets: a digits campaign end to end (accuracy in the records and in the
report's Table 2), and plan-time reasons for datasets that cannot be read."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from controller.campaigns import load_campaign_file
from controller.errors import UserError
from tests.conftest import controller


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


DIGITS_CAMPAIGN = """
[campaign]
name = "digits-accuracy"
repetitions = 2
model_size = "full"
weights = "{weights}"
dataset = "digits"
limit = 90
warmup = 1
runner = "local"
order = "grouped"

[matrix]
models = ["digits-cnn"]
batch_sizes = [16]

[[matrix.configurations]]
name = "torch"
image = "torch-cpu"
engine = "torch"

[[matrix.configurations]]
name = "torch2onnx"
image = "onnx-cpu"
engine = "onnxruntime"
source = "torch"
"""


@pytest.mark.slow
def test_a_digits_campaign_records_accuracy_and_the_report_shows_it(tmp_path, digits_weights, artifact_cache):
    pytest.importorskip("onnxruntime")
    file = tmp_path / "digits.toml"
    # The weights file relative to the campaign file: resolved from the file's folder.
    (tmp_path / digits_weights.name).write_bytes(digits_weights.read_bytes())
    file.write_text(DIGITS_CAMPAIGN.format(weights=digits_weights.name))
    results = tmp_path / "results"

    plan = controller("campaign", "plan", str(file), "--results", str(results))
    assert plan.returncode == 0, plan.stderr
    assert "dataset digits (limit 90)" in plan.stdout and "every run is runnable" in plan.stdout

    run = controller("campaign", "run", str(file), "--results", str(results), "--cache", str(artifact_cache))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 of 4 runs ok" in run.stdout
    assert "top-1" in run.stderr  # progress lines show each run's accuracy

    recs = records(results / "digits-accuracy")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    by_conf: dict[str, list[float]] = {}
    for r in recs:
        acc = r["metrics"]["accuracy"]
        assert acc["available"] and acc["meaningful"] and acc["dataset"] == "digits" and acc["n"] == 90
        assert r["cell"]["dataset"] == "digits" and r["cell"]["limit"] == 90
        assert r["weights"] == "path"
        by_conf.setdefault(r["cell"]["configuration"], []).append(acc["value"])
    assert statistics.fmean(by_conf["torch"]) > 0.5, "well above chance (0.1)"
    assert by_conf["torch"] == by_conf["torch2onnx"], "the ONNX export predicts what torch predicts"

    out = tmp_path / "report"
    report = controller("report", str(results / "digits-accuracy"), "--output", str(out))
    assert report.returncode == 0, report.stdout + report.stderr
    rows = {r["Framework"]: r for r in read_csv(out / "table2.csv")}
    assert set(rows) == {"torch"}  # Table 2 is the native models', as the paper's
    shown = rows["torch"]["digits-cnn (digits)"]
    assert float(shown) == pytest.approx(statistics.fmean(by_conf["torch"]) * 100, abs=0.005)
    md = (out / "table2.md").read_text()
    assert f"torch2onnx {float(shown):.2f} %, the same as torch" in md


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MATRIX = """
[matrix]
models = ["resnet50", "bert-imdb"]
batch_sizes = [1]

[[matrix.configurations]]
name = "torch"
image = "torch-cpu"
engine = "torch"
"""


def test_plan_says_why_a_dataset_cannot_be_read_and_run_runs_none_of_those_cells(tmp_path):
    no_path = write(
        tmp_path / "no-path.toml",
        '[campaign]\nname = "no-path"\nmodel_size = "tiny"\nrunner = "local"\ndataset = "imagenet-val"\n'
        'dataset_path = "/no/imagenet"\n'
        f'[datasets.bert-imdb]\ndataset = "imdb"\ndataset_path = "aclImdb"\n{MATRIX}',
    )
    plan = controller("campaign", "plan", str(no_path), "--results", str(tmp_path / "results"))
    assert plan.returncode == 0, plan.stderr
    out = plan.stdout
    assert "dataset imagenet-val for resnet50 ([campaign]): dataset_path /no/imagenet does not exist" in out
    # A relative path is read from the campaign file's folder, and the plan names where it looked.
    where = tmp_path / "aclImdb"
    assert f"dataset imdb for bert-imdb ([datasets.bert-imdb]): dataset_path {where} does not exist" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  torch ")]
    assert len(rows) == 2 and all(r[-1] == "NO" for r in rows)

    run = controller("campaign", "run", str(no_path), "--results", str(tmp_path / "results"))
    assert run.returncode == 1
    assert "not runnable on this host" in run.stdout and "/no/imagenet does not exist" in run.stdout
    assert not list((tmp_path / "results" / "no-path").glob("*.json"))  # nothing ran

    # The folder appears: the imdb cell becomes runnable as far as its data goes.
    acl = tmp_path / "aclImdb" / "test"
    for label, text in (("pos", "great film"), ("neg", "dull film")):
        (acl / label).mkdir(parents=True)
        (acl / label / "0_9.txt").write_text(text)
    as_json = json.loads(controller("campaign", "plan", str(no_path), "--json", "--results", str(tmp_path)).stdout)
    bert = next(e for e in as_json if e["model"] == "bert-imdb")
    assert "dataset" not in (bert["reason"] or "")


def test_dataset_choices_that_cannot_fit_the_model_are_named_at_plan_time(tmp_path):
    file = write(
        tmp_path / "shape.toml",
        '[campaign]\nname = "shape"\nmodel_size = "tiny"\nrunner = "local"\ndataset = "digits"\n' + MATRIX,
    )
    as_json = json.loads(controller("campaign", "plan", str(file), "--json", "--results", str(tmp_path)).stdout)
    reasons = {e["model"]: e["reason"] for e in as_json}
    assert "digits gives 1x8x8 images; resnet50 (tiny) takes 3x64x64" in reasons["resnet50"]
    assert (
        "dataset digits serves image-classification models; bert-imdb is a text-classification model"
        in (reasons["bert-imdb"])
    )


def test_campaign_dataset_keys_are_validated_when_the_file_is_read(tmp_path):
    bad = write(tmp_path / "bad.toml", f'[campaign]\ndataset = "cifar"\n{MATRIX}')
    with pytest.raises(UserError, match="valid datasets: synthetic, digits, imagenet-val, imdb"):
        load_campaign_file(bad)
    bad = write(tmp_path / "bad.toml", f'[campaign]\n[datasets.resnet50]\ndataset = "digits"\nlimt = 3\n{MATRIX}')
    with pytest.raises(UserError, match=r"limt in \[datasets.resnet50\]"):
        load_campaign_file(bad)
    # What a dataset needs is the file's business, whatever the host has: refused when it is read.
    bad = write(tmp_path / "bad.toml", f'[campaign]\ndataset = "imagenet-val"\n{MATRIX}')
    with pytest.raises(UserError, match=r"\[campaign\] dataset imagenet-val needs dataset_path"):
        load_campaign_file(bad)
    bad = write(tmp_path / "bad.toml", f'[campaign]\n[datasets.resnet5]\ndataset = "digits"\n{MATRIX}')
    with pytest.raises(UserError, match=r"\[datasets.resnet5\] names resnet5, which is not in \[matrix\] models"):
        load_campaign_file(bad)
    # Without samples or duration_s a labelled dataset is measured once through; synthetic: 64 samples.
    text = f'[campaign]\nmodel_size = "tiny"\n[datasets.resnet50]\ndataset = "digits"\n{MATRIX}'
    ok = write(tmp_path / "ok.toml", text)
    cells = {c.model: c for c in load_campaign_file(ok).matrix()}
    assert cells["resnet50"].dataset == "digits" and cells["resnet50"].samples is None
    assert cells["bert-imdb"].dataset == "synthetic" and cells["bert-imdb"].samples == 64
