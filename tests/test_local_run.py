"""Real runs through the CLI with the local runner: real frameworks on small models."""

import pytest

from controller.store import load_campaign

TINY = [
    "--model-size",
    "tiny",
    "--runner",
    "local",
    "--samples",
    "8",
    "--batch-size",
    "2",
    "--warmup",
    "1",
]


def assert_measured_or_explained(measurements):
    """Every metric is a measured number, or unavailable with a reason: never a silent 0."""
    metrics = measurements["metrics"]
    for name in ("cpu_energy_j", "gpu_energy_j", "total_energy_j", "cpu_percent", "ram_peak_bytes"):
        m = metrics[name]
        if m["available"]:
            assert m["value"] is not None and m["value"] > 0, (name, m)
        else:
            assert m["value"] is None and m["reason"], (name, m)
    # An energy figure carries its bound when measured, none when not (this host may have no RAPL).
    for name in ("cpu_energy_j", "dram_energy_j", "gpu_energy_j", "wall_energy_j", "total_energy_j"):
        m = metrics[name]
        if m["available"]:
            assert m["uncertainty_j"] >= 0 and m["uncertainty_components"] and m["uncertainty_method"], (name, m)
        else:
            assert m.get("uncertainty_j") is None, (name, m)
    # The run's own process tree is always measurable, and so is the host as a whole.
    assert metrics["cpu_percent"]["available"] and metrics["ram_peak_bytes"]["value"] > 10 * 2**20
    for name in ("system_cpu_percent", "system_ram_used_percent", "system_ram_used_bytes"):
        assert metrics[name]["available"] and "host-wide" in metrics[name]["scope"], (name, metrics[name])
    assert 0 <= metrics["system_cpu_percent"]["value"] <= 100
    assert measurements["baseline"]["status"] in ("ok", "missing", "stale", "foreign", "invalid")


def run_ok(cli, *args):
    proc = cli("run", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_onnx_cpu_run_writes_a_complete_record_and_reuses_its_artifact(cli, tmp_path):
    cli.cache = tmp_path / "own-cache"  # the first run must convert, whatever ran before
    first = run_ok(cli, "--image", "onnx-cpu", "--model", "resnet50", *TINY)
    assert "throughput" in first.stdout and "p99" in first.stdout
    second = run_ok(cli, "--image", "onnx-cpu", "--model", "resnet50", *TINY)
    assert "(cached)" in second.stdout
    a, b = cli.records()
    for rec in (a, b):
        assert rec["status"] == "ok" and rec["schema_version"] == 2
        assert rec["runner"]["kind"] == "local"
        assert rec["host"]["cpu_model"] and rec["host"]["logical_cores"] >= 1
        assert rec["result"]["providers_active"][0] == "CPUExecutionProvider"
        assert rec["result"]["versions"]["onnxruntime"]
        assert len(rec["result"]["latencies_ns"]) == rec["result"]["batches"] == 4
        assert rec["metrics"]["samples"] == 8 and rec["metrics"]["throughput_sps"] > 0
        phases = [(e["phase"], e["edge"]) for e in rec["events"]]
        assert phases == [(p, e) for p in ("load", "warmup", "measure") for e in ("start", "end")]
        assert rec["artifact"]["conversion"] == "torch2onnx"
        assert rec["artifact"]["parity"]["ok"] and rec["artifact"]["parity"]["max_abs_diff"] < 1e-3
        assert rec["weights"] == "random" and "random" in rec["weights_label"]
        assert_measured_or_explained(rec["measurements"])
        assert rec["measurements"]["meters"]["process"]["available"]
    assert a["artifact"]["reused"] is False and b["artifact"]["reused"] is True
    assert a["artifact"]["key"] == b["artifact"]["key"]
    # Same seeded weights, same inputs: the predictions agree between runs.
    assert a["result"]["predictions_digest"] == b["result"]["predictions_digest"]


@pytest.mark.slow
def test_torch_eager_and_torchscript_agree_with_onnx_on_predictions(cli):
    for image, engine in [
        ("onnx-cpu", "onnxruntime"),
        ("torch-cpu", "torch"),
        ("torch-cpu", "torchscript"),
    ]:
        run_ok(cli, "--image", image, "--engine", engine, "--model", "mobilenetv2", *TINY)
    records = cli.records()
    # Random weights are conditioned so that predictions depend on the input: agreement means something.
    assert all(len(set(r["result"]["predictions_head"])) > 1 for r in records)
    digests = {r["engine"]: r["result"]["predictions_digest"] for r in records}
    assert len(digests) == 3
    assert len(set(digests.values())) == 1, digests


def test_duration_mode_measures_for_at_least_the_duration(cli):
    run_ok(
        cli,
        "--image",
        "torch-cpu",
        "--model",
        "mobilenetv2",
        "--model-size",
        "tiny",
        "--runner",
        "local",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    )
    (rec,) = cli.records()
    assert rec["metrics"]["window_s"] >= 0.5
    assert rec["spec"]["samples"] is None and rec["spec"]["duration_s"] == 0.5


def test_timeout_gives_a_failed_record_with_the_reason(cli):
    proc = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "resnet50",
        "--model-size",
        "tiny",
        "--runner",
        "local",
        "--samples",
        "10000000",  # far more than 8 s of work (a --duration past --timeout is refused before the run)
        "--timeout",
        "8",
        "--campaign",
        "t",
    )
    assert proc.returncode == 1
    (rec,) = cli.records("t")
    assert rec["status"] == "failed"
    assert "timed out after 8 s" in rec["failure"]["reason"]
    assert "metrics" not in rec  # nothing measured is reported as measured


def test_unloadable_weights_file_fails_the_run_with_the_reason(cli, tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"PK\x03\x04 a zip header, then not a checkpoint")  # what is not even that is refused up front
    proc = cli("run", "--image", "torch-cpu", "--model", "resnet50", "--weights", str(bad), *TINY)
    assert proc.returncode == 1
    (rec,) = cli.records()
    assert rec["status"] == "failed" and rec["weights"] == "path"
    assert "cannot load weights file" in rec["failure"]["reason"]
    assert rec["failure"]["log_tail"]


@pytest.mark.slow
def test_weights_file_is_loaded_and_changes_the_predictions(cli, tmp_path):
    torch = pytest.importorskip("torch")
    from suite.torch_models import build

    path = tmp_path / "seed7.pt"
    torch.save(build("resnet50", "tiny", "random", seed=7).state_dict(), path)
    # The same seed makes the same synthetic inputs; the weights come from the file.
    run_ok(cli, "--image", "torch-cpu", "--model", "resnet50", "--weights", str(path), "--seed", "7", *TINY)
    run_ok(cli, "--image", "torch-cpu", "--model", "resnet50", "--seed", "7", *TINY)
    from_file, seeded = cli.records()
    assert from_file["weights"] == "path"
    assert from_file["result"]["predictions_digest"] == seeded["result"]["predictions_digest"]


@pytest.mark.slow
def test_store_loads_a_campaign_as_a_dataframe(cli, tmp_path):
    run_ok(cli, "--image", "onnx-cpu", "--model", "resnet50", *TINY)
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    cli("run", "--image", "torch-cpu", "--model", "resnet50", "--weights", str(bad), *TINY)
    frame = load_campaign(cli.results / "default")
    assert frame.height == 2
    assert sorted(frame["status"].to_list()) == ["failed", "ok"]
    ok = frame.filter(frame["status"] == "ok")
    assert ok["throughput_sps"][0] > 0 and ok["engine"][0] == "onnxruntime"


def test_pretrained_weights_offline_fail_with_a_clear_reason(cli):
    proc = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "resnet50",
        "--weights",
        "pretrained",
        "--runner",
        "local",
        env={"HF_HUB_OFFLINE": "1", "TORCH_HOME": str(cli.results / "empty-hub")},
    )
    assert proc.returncode == 1
    (rec,) = cli.records()
    assert rec["status"] == "failed" and rec["weights"] == "pretrained"
    assert "could not download the pretrained weights of resnet50" in rec["failure"]["reason"]
    assert "--weights PATH" in rec["failure"]["reason"]
    assert "Traceback" not in "\n".join(rec["failure"]["log_tail"])


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize(
    ("image", "module"), [("torch-cpu", "torch"), ("tf-cpu", "tensorflow"), ("mxnet-cpu", "mxnet")]
)
def test_pretrained_weights_download_through_the_framework(cli, image, module):
    # torchvision / transformers, keras.applications, the Gluon model zoo. Containers have no
    # network in batch mode, so downloads are proven with the local runner where the framework is.
    pytest.importorskip(module)
    proc = cli(
        "run",
        "--image",
        image,
        "--model",
        "resnet50",
        "--weights",
        "pretrained",
        "--runner",
        "local",
        "--samples",
        "2",
        "--warmup",
        "0",
    )
    if proc.returncode != 0 and "could not download" in proc.stdout:
        pytest.skip("SKIPPING NETWORK TEST: the model hub is not reachable from here")
    assert proc.returncode == 0, proc.stdout
    (rec,) = cli.records()
    assert rec["weights"] == "pretrained" and rec["weights_label"] is None
