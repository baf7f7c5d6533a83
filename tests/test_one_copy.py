"""What used to be written twice and had drifted, now said once (issue 25, item 4).

Each serving figure is declared once, with its unit and direction, and written under one name: an
old record's second names (tokens_per_s, http_errors) are read under the one name each has now.
The torch device of a served language model: TorchScriptLM ran an unknown provider on the CPU while
TorchLM refused it; both refuse it now. The language model and the engine are abstract: an adapter
that forgets a step is refused when made, not when the step is first called mid-run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.record import RENAMED_FIGURES, load_record, write_atomic
from controller.report.columns import COLUMNS
from controller.report.rows import extra_row
from controller.serving.client import RequestResult
from controller.serving.definitions import definitions
from controller.serving.metrics import serving_metrics
from harness.engines.base import Engine, EngineError
from harness.protocol import ServeSpec
from harness.serving.lm import LanguageModel, TorchScriptLM, torch_device


def test_an_unknown_provider_is_refused_not_run_on_the_cpu() -> None:
    torch = pytest.importorskip("torch")
    assert torch_device(torch, "cpu").type == "cpu"
    with pytest.raises(EngineError, match="torch serves providers cpu and cuda, not 'rocm'"):
        torch_device(torch, "rocm")


def test_an_adapter_missing_a_step_cannot_be_made() -> None:
    class Half(LanguageModel):
        def load(self) -> None: ...

    class NoInfer(Engine):
        def load(self) -> None: ...

    with pytest.raises(TypeError, match="abstract"):
        Half(ServeSpec.__new__(ServeSpec))  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        NoInfer(None)  # type: ignore[abstract,arg-type]
    assert not TorchScriptLM.__abstractmethods__


def _old_serving_record(tmp_path: Path) -> Path:
    """A serving record as written before each figure had one name (tokens_per_s, http_errors beside theirs)."""
    record = {
        "schema_version": 2,
        "run_id": "old",
        "campaign": "c",
        "mode": "serving",
        "status": "ok",
        "image": "onnx-cpu",
        "engine": "onnxruntime",
        "provider": "cpu",
        "model": "tiny-gpt2",
        "model_size": "full",
        "weights": "pretrained",
        "spec": {},
        "runner": {"kind": "local"},
        "host": {"hostname": "h", "cpu_model": "cpu"},
        "metrics": {"requests_ok": 4, "window_s": 2.0, "new_tokens_total": 32, "tokens_per_s": 16.0, "http_errors": 1},
    }
    path = tmp_path / "old.json"
    write_atomic(path, record)
    return path


def test_an_old_serving_record_loads_with_each_figure_under_its_one_name(tmp_path: Path) -> None:
    metrics = load_record(_old_serving_record(tmp_path))["metrics"]
    assert metrics["output_token_throughput_tps"] == 16.0 and metrics["requests_failed"] == 1
    assert not {"tokens_per_s", "http_errors"} & set(metrics)
    record = load_record(tmp_path / "old.json")
    assert extra_row(record)["tokens_per_s"] == 16.0  # the report's throughput column reads it as before


def test_a_serving_point_writes_each_figure_once_and_each_declared_figure_says_its_direction() -> None:
    ms = 1_000_000
    ok = RequestResult(0, "p0", True, 40 * ms, 0, new_tokens=8)
    failed = RequestResult(1, "p1", False, 10 * ms, 0, error="HTTP 500")
    m = serving_metrics([ok, failed], (0, 100 * ms), None)
    assert m["output_token_throughput_tps"] == pytest.approx(80.0) and m["requests_failed"] == 1
    assert not set(RENAMED_FIGURES) & set(m)
    by_report = {name: c.better for name, c in COLUMNS.items()}
    for name, figure in definitions().items():
        assert figure["unit"] and figure["direction"] in ("high", "low", None), name
        for column in [name.replace("*", "median"), name.replace("*", "p99")]:
            if column in by_report:  # the report's side says the same direction as the writing side
                assert by_report[column] == figure["direction"], column
