"""The run pipeline writes one record per outcome (a serving sweep's load points): each record is
its own, and a point that failed does not carry the figures of the point before it.

The workload here is a stand-in at the pipeline's boundary (what a serving workload's drive gives
back); the pipeline, meters, record checks and writing are the real ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from controller import pipeline
from controller.progress import Quiet
from controller.record import Failure, FailureInfo
from controller.requests import MeterSettings, RunRequest, ServeSettings, Where
from controller.serving.external import ExternalRunner
from controller.workload import Identity, Outcome, Plan, RunParts


class TwoPoints:
    """Point 1 ok with its figures, point 2 failed (every request failed)."""

    mode = "serving"
    last_phase = None

    def __init__(self) -> None:
        self.parts = RunParts()

    def plan(self, check_data: bool = True) -> Plan:
        return Plan(None, "external", [], Identity("m", "n/a", "external"), runner=ExternalRunner(None))

    def resolve(self, runner: Any, cache: Any, progress: Any) -> None:
        self.parts.serving = {"requests": [], "max_new_tokens": 4}

    def drive(self, runner: Any, meters: Any, run_id: str, progress: Any) -> list[Outcome]:
        t1 = time.monotonic_ns()
        time.sleep(0.05)
        t2 = time.monotonic_ns()
        ok = Outcome(
            {"kind": "external"},
            window=(t1, t2),
            result={"external": True},
            serving={"requests": [{"index": 0, "ok": True}], "sweep": {"index": 0, "group": run_id}},
        )
        failed = Outcome(
            {"kind": "external"},
            window=(t2, time.monotonic_ns()),
            failure=FailureInfo(Failure.REQUEST, "every request failed", "measure"),
            serving={"requests": [{"index": 0, "ok": False}], "sweep": {"index": 1, "group": run_id}},
        )
        return [ok, failed]

    def metrics(self, outcome: Outcome, measurements: Any, summarize: Any) -> dict[str, Any]:
        return {"requests_ok": 1, "window_s": 0.05}


def test_a_failed_point_after_an_ok_one_is_its_own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "workload_for", lambda request: TwoPoints())
    request = RunRequest(
        ServeSettings("", "m", endpoint="http://127.0.0.1:1/v1"),
        Where(results=tmp_path, campaign="points"),
        MeterSettings(),
    )
    written = pipeline.run_all(request, Quiet())
    assert [r.status for r, _ in written] == ["ok", "failed"]
    first, second = (json.loads(p.read_text()) for _, p in written)
    assert first["run_id"] != second["run_id"] and second["serving"]["sweep"]["group"] == first["run_id"]
    assert first["metrics"]["requests_ok"] == 1 and first["result"] == {"external": True}
    # The failed point has its own requests and reason, none of the ok point's figures.
    assert second["failure"]["reason"] == "every request failed"
    assert second["serving"]["requests"] == [{"index": 0, "ok": False}]
    assert second.get("metrics") is None and second.get("result") is None and second.get("measurements") is None
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == sorted(p.name for _, p in written)


def test_a_record_is_checked_as_it_is_built() -> None:
    """The one builder refuses a record that breaks the schema when it is made, not when it is read back."""
    from controller.record import RecordError, RunRecord

    fields = {"run_id": "r", "campaign": "c", "started_at": "t", "mode": "batch", "image": "onnx-cpu"}
    fields |= {"engine": "onnxruntime", "provider": "cpu", "model": "m", "model_size": "full", "weights": "random"}
    with pytest.raises(RecordError, match="an ok record needs metrics"):
        RunRecord(**fields, status="ok")
    with pytest.raises(RecordError, match="a failed record needs failure.reason"):
        RunRecord(**fields, status="failed")
    with pytest.raises(RecordError, match="cannot hold"):
        RunRecord(**fields, status="ok", metrics={"window_s": float("nan")})
    with pytest.raises(ValueError, match="unknown failure code"):
        FailureInfo("bogus", "why")
    assert RunRecord(**fields, failure=FailureInfo(Failure.SETUP, "no image")).to_dict()["failure"]["code"] == "setup"
