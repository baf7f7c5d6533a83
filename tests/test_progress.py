"""What a user sees while long work runs: steps, where the work stands, and a line before 10 s of stillness."""

import io
import json
import sys
import threading

from controller.progress import CampaignProgress, Progress, relay_progress
from harness import progress as harness_progress
from harness.protocol import PROTOCOL_VERSION, Emitter, parse_stream


class Clock:
    """time.monotonic for the progress module, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def beat(progress: Progress, clock: Clock, seconds: float) -> None:
    """Let ``seconds`` pass and the ticker look once (as its thread would, without waiting for it)."""
    clock.now += seconds
    progress._tick_once()


def test_a_long_step_says_what_runs_where_it_stands_and_how_long_before_10_s_of_stillness(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("controller.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(out, live=False)
    with p.step("conversion torch2onnx of resnet50"):
        beat(p, clock, 5)
        assert lines(out) == ["conversion torch2onnx of resnet50 ..."]  # nothing yet: under the heartbeat
        beat(p, clock, 4)
        assert lines(out)[-1] == "  [9s] conversion torch2onnx of resnet50"
        p.detail("exporting to ONNX with torch.onnx: Run decompositions")
        assert lines(out)[-1] == "    exporting to ONNX with torch.onnx: Run decompositions"  # a new stage: at once
        beat(p, clock, 8)
        assert lines(out)[-1] == (
            "  [17s] conversion torch2onnx of resnet50 — exporting to ONNX with torch.onnx: Run decompositions"
        )
    n = len(lines(out))
    beat(p, clock, 60)
    assert len(lines(out)) == n  # the step ended: no heartbeat for nothing


def test_counts_within_a_stage_wait_for_the_heartbeat_instead_of_a_line_each(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("controller.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(out, live=False)
    with p.step("export of tiny to onnx"):
        for k in range(9):
            p.detail(f"greedy parity of the export ({k}/9 prompts)")
        assert lines(out) == ["export of tiny to onnx ...", "    greedy parity of the export (0/9 prompts)"]
        beat(p, clock, 8)
        assert lines(out)[-1] == "  [8s] export of tiny to onnx — greedy parity of the export (8/9 prompts)"


def test_a_phase_is_named_once_and_a_run_that_ended_stops_the_heartbeat(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("controller.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(out, live=False)
    p.phase("  measure 1/1: 20 requests, concurrency 1 ...")  # what the serving load says
    assert lines(out) == ["  measure 1/1: 20 requests, concurrency 1 ..."]  # not "... ..."
    beat(p, clock, 8)
    assert lines(out)[-1] == "  [8s] measure 1/1: 20 requests, concurrency 1"
    p.idle()
    beat(p, clock, 30)
    assert len(lines(out)) == 2


def test_a_campaign_line_keeps_its_counts_and_its_heartbeat_names_the_cell(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("controller.progress.time.monotonic", clock)
    out = io.StringIO()
    p = CampaignProgress(total=4, first_guess_s=10, stream=out, live=False)
    p.cell("resnet50 torch2onnx b1 r1")
    p.phase("measure")
    beat(p, clock, 8)
    assert lines(out)[-1] == "  [8s] resnet50 torch2onnx b1 r1: measure"
    p.finished(True, "1.3 samples/s")
    beat(p, clock, 30)
    assert lines(out)[-1] == "  ok: 1.3 samples/s"


def test_the_heartbeat_thread_writes_by_itself_and_ends_with_the_step():
    out = io.StringIO()
    p = Progress(out, live=False, heartbeat_s=0.2)
    with p.step("a slow step"):
        done = threading.Event()
        done.wait(1.0)
        assert any(line.startswith("  [") and "a slow step" in line for line in lines(out))
    done.wait(1.0)  # the ticker notices the step ended and stops
    assert p._ticker is None


def test_a_terminal_shows_a_spinner_with_the_stage_and_a_clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("controller.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(out, live=True)
    shown = []
    monkeypatch.setattr(p, "_show_live", shown.append)
    with p.step("conversion torch2onnx of resnet50"):
        p.detail("checking parity (1/2 outputs)")
        beat(p, clock, 65)
    assert shown[-2] == "[1m05s] conversion torch2onnx of resnet50 — checking parity (1/2 outputs)"
    assert shown[-1] is None  # the step ended: the spinner goes


def test_harness_progress_reaches_the_controller_as_a_line_it_shows_live():
    stream = io.StringIO()
    emit = Emitter(stream)
    saved = sys.stdout
    harness_progress.set_sink(emit.progress)
    try:
        harness_progress.report("exporting to ONNX")
        harness_progress.report("greedy parity", 3, 9, "prompts")
        with harness_progress.relayed_prints(harness_progress.TORCH_ONNX_STAGE, "exporting to ONNX"):
            print("[torch.onnx] Obtain model graph for `ResNet([...]` with `torch.export.export(..., strict=False)`...")
            print("[torch.onnx] Obtain model graph ... ✅")
            print("[torch.onnx] Run decompositions...")
    finally:
        harness_progress.set_sink(None)
    shown: list[str] = []
    relay = relay_progress(shown.append)
    for line in stream.getvalue().splitlines():
        relay(line)
    assert shown == [
        "exporting to ONNX",
        "greedy parity (3/9 prompts)",
        "exporting to ONNX: Obtain model graph",
        "exporting to ONNX: Run decompositions",
    ]
    assert sys.stdout is saved  # the library's prints go where they went before
    out = parse_stream(stream.getvalue(), required={})
    assert out.progress_lines == 4 and out.progress is not None
    assert out.progress["step"] == "exporting to ONNX: Run decompositions"  # only the latest is kept
    assert out.events == [] and out.result is None  # progress is shown, not recorded
    first = json.loads(stream.getvalue().splitlines()[0])
    assert first == {"joulebench": PROTOCOL_VERSION, "kind": "progress", "step": "exporting to ONNX"}


def test_without_a_sink_a_report_goes_nowhere():
    harness_progress.set_sink(None)
    harness_progress.report("building resnet50")  # a converter called directly (tests, benchmarks)
