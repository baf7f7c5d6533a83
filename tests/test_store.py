import json

import pytest

from controller.record import write_atomic
from controller.store import RecordError, load_campaign


def record(run_id, status="ok", **extra):
    base = {
        "schema_version": 1,
        "run_id": run_id,
        "campaign": "c",
        "status": status,
        "image": "onnx-cpu",
        "engine": "onnxruntime",
        "provider": "cpu",
        "model": "resnet50",
        "model_size": "tiny",
        "weights": "random",
        "spec": {"batch_size": 4},
        "runner": {"kind": "local"},
        "host": {"hostname": "h", "cpu_model": "cpu"},
    }
    return base | extra


def test_failed_runs_are_rows_with_their_reason_and_no_metrics(tmp_path):
    write_atomic(tmp_path / "a.json", record("a", metrics={"samples": 8, "throughput_sps": 10.0}))
    write_atomic(tmp_path / "b.json", record("b", "failed", failure={"reason": "timed out"}))
    frame = load_campaign(tmp_path)
    assert frame["run_id"].to_list() == ["a", "b"]
    assert frame["throughput_sps"].to_list() == [10.0, None]
    assert frame["failure_reason"].to_list() == [None, "timed out"]
    assert frame["batch_size"].to_list() == [4, 4]


def test_records_of_another_schema_version_are_refused_with_instruction(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(record("a") | {"schema_version": 99}))
    with pytest.raises(RecordError, match="schema version 99"):
        load_campaign(tmp_path)


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
