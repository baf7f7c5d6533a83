import json

import pytest

from harness.protocol import (
    PROTOCOL_VERSION,
    HarnessOutput,
    ProtocolError,
    RunSpec,
    parse_line,
    parse_stream,
)


def spec(**kw):
    base = dict(run_id="r1", engine="onnxruntime", provider="cpu", model="resnet50")
    return RunSpec(**(base | kw))


def result_line(**overrides):
    result = {
        "engine": "onnxruntime",
        "provider": "cpu",
        "providers_active": ["CPUExecutionProvider"],
        "batch_size": 1,
        "samples": 2,
        "batches": 2,
        "latencies_ns": [10, 20],
        "predictions_digest": "ab",
        "versions": {"onnxruntime": "1"},
        "timing_scope": "compute",
    } | overrides
    return json.dumps({"joulebench": PROTOCOL_VERSION, "kind": "result", "result": result})


def test_spec_round_trips_through_json():
    original = spec(batch_size=64, options={"intra_op_threads": "2"})
    assert RunSpec.from_json(original.to_json()) == original


def test_spec_from_another_protocol_version_is_refused_with_instruction():
    data = json.loads(spec().to_json()) | {"joulebench": PROTOCOL_VERSION + 1}
    with pytest.raises(ProtocolError, match="rebuild the image"):
        RunSpec.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"samples": None}, "exactly one"),
        ({"warmup": -1}, "warmup"),
    ],
)
def test_spec_with_impossible_values_is_refused(bad, message):
    data = json.loads(spec().to_json()) | bad
    with pytest.raises(ProtocolError, match=message):
        RunSpec.from_json(json.dumps(data))


def test_framework_chatter_is_kept_as_log_not_parsed():
    out = parse_stream('2024 W tensorflow: something\n{"not": "ours"}\n' + result_line())
    assert out.log == ["2024 W tensorflow: something", '{"not": "ours"}']
    assert out.result["samples"] == 2


def test_result_missing_a_field_is_refused():
    with pytest.raises(ProtocolError, match="latencies_ns"):
        parse_stream(result_line(latencies_ns=None))


def test_unknown_kind_and_second_result_are_refused():
    with pytest.raises(ProtocolError, match="unknown line kind"):
        parse_line(json.dumps({"joulebench": PROTOCOL_VERSION, "kind": "shout"}), HarnessOutput())
    with pytest.raises(ProtocolError, match="more than one result"):
        parse_stream(result_line() + "\n" + result_line())


def test_measure_window_comes_from_the_phase_events():
    lines = [
        json.dumps({"joulebench": PROTOCOL_VERSION, "kind": "event", "phase": p, "edge": e, "t_ns": t})
        for p, e, t in [("load", "start", 1), ("measure", "start", 100), ("measure", "end", 350)]
    ]
    out = parse_stream("\n".join(lines))
    assert out.window_ns("measure") == (100, 350)
    assert out.window_ns("load") is None
