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
from controller.record import Failure
from controller.requests import MeterSettings, RunRequest, ServeSettings, Where
from controller.serving.external import ExternalRunner
from controller.workload import Outcome, Plan


class TwoPoints:
    """Point 1 ok with its figures, point 2 failed (every request failed)."""

    mode = "serving"
    last_phase = None

    def plan(self, check_data: bool = True) -> Plan:
        identity = {"model": "m", "model_size": "n/a", "conversion": None, "weights": "external", "weights_label": None}
        return Plan(None, "external", [], identity, runner=ExternalRunner(None))

    def resolve(self, runner: Any, cache: Any, record: Any, progress: Any) -> None:
        record.serving = {"requests": [], "max_new_tokens": 4}

    def drive(self, runner: Any, meters: Any, record: Any, progress: Any) -> list[Outcome]:
        t1 = time.monotonic_ns()
        time.sleep(0.05)
        t2 = time.monotonic_ns()
        ok = Outcome(
            {"kind": "external"},
            window=(t1, t2),
            result={"external": True},
            serving={"requests": [{"index": 0, "ok": True}], "sweep": {"index": 0, "group": record.run_id}},
        )
        failed = Outcome(
            {"kind": "external"},
            window=(t2, time.monotonic_ns()),
            failure={"code": Failure.REQUEST, "reason": "every request failed", "phase": "measure"},
            serving={"requests": [{"index": 0, "ok": False}], "sweep": {"index": 1, "group": record.run_id}},
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
