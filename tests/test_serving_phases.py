"""The split of a served load point's energy by phase and request, on synthetic power timelines of
known truth: a RAPL-like counter (updated every millisecond, read every 10 ms with jitter) under
power that steps with what each request is doing. At concurrency 1 the phases are disjoint and both
the gross and the active split must come back within their stated bounds; under overlap the active
split must, with the attribution's own bound where prefill and decode shared time. Also: what is
unavailable says why, the least-squares cross-check finds the per-token costs it was built with,
ML.ENERGY's window, and MLCommons' fields (null with a reason, never 0)."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from controller.meters.base import Trace
from controller.meters.powercap import RaplZone
from controller.meters.timeline import DomainCurve, gpu_curve, rapl_curve
from controller.record import percentile
from controller.serving.client import RequestResult
from controller.serving.load import LoadPoint
from controller.serving.mlcommons import mlcommons_fields
from controller.serving.mlenergy import mlenergy_window
from controller.serving.phase_figures import phase_metric, split_energy, window_static_active
from controller.serving.phase_fit import fit
from controller.serving.phase_lines import phase_lines
from controller.serving.phases import Attribution, Idle, attribute
from controller.serving.request_energy import distribution, request_fields

IDLE_W, PREFILL_W, DECODE_W = 20.0, 60.0, 25.0  # per request above idle, by phase
GRID_S = 0.01


@dataclass
class Req:
    send: float
    start: float  # prefill starts (after any queueing)
    first: float
    tokens: list[float]  # when each token was made, the first at ``first``
    prompt: int

    @property
    def end(self) -> float:
        return self.tokens[-1] + 0.001


def power_at(reqs: list[Req], t: float) -> float:
    p = IDLE_W
    for r in reqs:
        if r.start <= t < r.first:
            p += PREFILL_W
        elif r.first <= t < r.tokens[-1]:
            p += DECODE_W
    return p


def steps(reqs: list[Req]) -> list[float]:
    return sorted({0.0, *(x for r in reqs for x in (r.start, r.first, r.tokens[-1]))})


def joules(reqs: list[Req], a: float, b: float) -> float:
    """Exact energy over [a, b] of the piecewise-constant power."""
    cuts = [a, *(s for s in steps(reqs) if a < s < b), b]
    return sum(power_at(reqs, x) * (y - x) for x, y in zip(cuts, cuts[1:], strict=False))


def truth(reqs: list[Req], t0: float, t1: float) -> dict[str, float]:
    """Gross energy while only prefill / only decode ran, and the active energy of each phase."""
    out = dict.fromkeys(("prefill", "decode", "mixed", "other", "active_prefill", "active_decode"), 0.0)
    cuts = [t0, *(s for s in steps(reqs) if t0 < s < t1), t1]
    for x, y in zip(cuts, cuts[1:], strict=False):
        mid = (x + y) / 2
        p = sum(1 for r in reqs if r.start <= mid < r.first)
        d = sum(1 for r in reqs if r.first <= mid < r.tokens[-1])
        state = "mixed" if p and d else "prefill" if p else "decode" if d else "other"
        out[state] += power_at(reqs, mid) * (y - x)
        out["active_prefill"] += PREFILL_W * p * (y - x)
        out["active_decode"] += DECODE_W * d * (y - x)
    return out


def rapl_trace(reqs: list[Req], t_end: float, rng: random.Random) -> Trace:
    """A package counter updated every ms (at a random phase), read every 10 ms with jitter."""
    trace = Trace("rapl", ["cpu.package-0.energy_uj"])
    phase = rng.random() * 1e-3
    cum, last_q, t = 0.0, 0.0, 0.0
    while t < t_end:
        q = max(0.0, math.floor((t - phase) / 1e-3) * 1e-3 + phase)
        cum += joules(reqs, last_q, q) if q > last_q else 0.0
        last_q = max(last_q, q)
        trace.append(int(t * 1e9), [cum * 1e6])
        t += GRID_S + rng.gauss(0.0, 0.0008)
    return trace


def curves(trace: Trace, t0: int, t1: int) -> dict[str, DomainCurve]:
    zone = RaplZone("cpu", "package-0", "package-0", Path("/fake"), 2**40)
    rapl = SimpleNamespace(zones=[zone], update_period_s=0.001, pessimistic_power_w=1000.0)
    return {"cpu": rapl_curve(rapl, trace, "cpu", t0, t1)}


def results(reqs: list[Req], engine_times: bool = True, prefill_ms: bool = False) -> list[RequestResult]:
    out = []
    for i, r in enumerate(reqs):
        send = int(r.send * 1e9)
        res = RequestResult(i, f"p{i}", True, int((r.end - r.send) * 1e9), send, prompt_tokens=r.prompt)
        res.new_tokens = len(r.tokens)
        res.token_times_us = [int((t + 0.0002 - r.send) * 1e6) for t in r.tokens]  # delivered 0.2 ms later
        if engine_times:
            res.engine_token_times_us = [int((t - r.send) * 1e6) for t in r.tokens]
        if prefill_ms:
            res.server_ms = {"first_token": (r.first - r.start) * 1e3, "queue": (r.start - r.send) * 1e3}
        res.t_first_token_ns, res.t_last_token_ns = int(r.tokens[0] * 1e9), int(r.tokens[-1] * 1e9)
        out.append(res)
    return out


def one_at_a_time(rng: random.Random, n: int, queue: bool = False, concurrency: int = 1) -> list[Req]:
    """Requests served one after another (the engine busy with one at a time); with ``queue``, each
    was sent ``concurrency`` requests ahead and waited for the engine."""
    reqs: list[Req] = []
    t = 0.1
    for _ in range(n):
        prompt = rng.randrange(20, 400)
        first = t + 0.01 + prompt * 1.5e-4
        gap = 0.008 + 0.01 * rng.random()
        tokens = [first + k * gap for k in range(rng.randrange(2, 30))]
        send = reqs[-concurrency].end if queue and len(reqs) >= concurrency else t
        reqs.append(Req(min(send, t), t, first, tokens, prompt))
        t = tokens[-1] + 0.001 + 0.004 * rng.random()
    return reqs


def overlapping(rng: random.Random, n: int, concurrency: int) -> list[Req]:
    """A closed loop of ``concurrency``: each request sent when one ends, all generating at once."""
    ends = [0.1 + 0.013 * k for k in range(concurrency)]
    reqs = []
    for _ in range(n):
        t = min(ends)
        ends.remove(t)
        prompt = rng.randrange(20, 400)
        first = t + 0.02 + prompt * 1e-4
        gap = 0.01 + 0.01 * rng.random()
        tokens = [first + k * gap for k in range(rng.randrange(3, 25))]
        reqs.append(Req(t, t, first, tokens, prompt))
        ends.append(tokens[-1] + 0.001)
    return reqs


def idle(power: float | None = IDLE_W) -> Idle:
    if power is None:
        return Idle({"cpu": None}, {"cpu": "no idle baseline given"}, lambda d, s: None)
    return Idle({"cpu": power}, {}, lambda d, s: 0.0)


def split(reqs: list[Req], seed: int, **kw: Any) -> tuple[Attribution, dict[str, float], tuple[int, int]]:
    rng = random.Random(seed)
    res = results(reqs, **kw)
    t0, t1 = res[0].t_start_ns, max(r.t_start_ns + r.latency_ns for r in res)
    trace = rapl_trace(reqs, t1 / 1e9 + 0.1, rng)
    attr, _ = split_energy(res, (t0, t1), curves(trace, t0, t1), idle(), GRID_S, ["cpu"])
    return attr, truth(reqs, t0 / 1e9, t1 / 1e9), (t0, t1)


def figure(attr: Attribution, phase: str, idle_: Idle | None = None) -> dict[str, Any]:
    return phase_metric(attr, phase, ["cpu"], idle_ or idle(), 0.0)


# -- recovery -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_at_concurrency_one_the_split_is_recovered_within_its_bound(seed: int) -> None:
    reqs = one_at_a_time(random.Random(seed), 12)
    attr, true, _ = split(reqs, seed)
    for phase in ("prefill", "decode"):
        f = figure(attr, phase)
        assert f["uncertainty_components"]["phase_split"] == 0.0  # one request at a time: nothing shared
        assert abs(f["value"] - true[phase]) <= f["uncertainty_j"], (phase, f["value"], true[phase])
        assert abs(f["active_j"] - true[f"active_{phase}"]) <= f["active_uncertainty_j"]
        # A bound that says something: a few % of the phase, not all of it.
        assert f["uncertainty_j"] < 0.1 * f["value"]
    other = figure(attr, "other")
    assert abs(other["value"] - true["other"]) <= other["uncertainty_j"]


@pytest.mark.parametrize("seed", range(8))
def test_under_overlap_the_active_split_is_recovered_within_its_bound(seed: int) -> None:
    reqs = overlapping(random.Random(seed), 16, concurrency=3)
    attr, true, _ = split(reqs, seed)
    assert attr.mixed_s > 0
    for phase in ("prefill", "decode"):
        f = figure(attr, phase)
        assert f["uncertainty_components"]["phase_split"] > 0  # prefill and decode shared pieces: said
        assert abs(f["active_j"] - true[f"active_{phase}"]) <= f["active_uncertainty_j"], phase
    figures = [figure(attr, p) for p in ("prefill", "decode", "other")]
    total, whole = sum(f["value"] for f in figures), sum(true[k] for k in ("prefill", "decode", "mixed", "other"))
    assert abs(total - whole) <= sum(f["uncertainty_components"]["meters"] for f in figures)  # the parts add up


def nvml_trace(reqs: list[Req], t_end: float, period_s: float, rng: random.Random) -> Trace:
    """A GPU's total-energy counter (mJ) updated every ``period_s`` on its own clock, and its instant
    power, read every 10 ms with jitter."""
    trace = Trace("nvml", ["gpu0.energy_mj", "gpu0.power_w"])
    phase = rng.random() * period_s
    t = 0.0
    while t < t_end:
        q = max(0.0, math.floor((t - phase) / period_s) * period_s + phase)
        trace.append(int(t * 1e9), [round(joules(reqs, 0.0, q) * 1e3), power_at(reqs, t)])
        t += GRID_S + rng.gauss(0.0, 0.0008)
    return trace


@pytest.mark.parametrize(("source", "period_s"), [("counter", 0.02), ("counter", 0.1), ("power", 0.02)])
def test_a_gpus_split_is_recovered_within_its_bound_from_its_counter_or_its_power(source: str, period_s: float) -> None:
    rng = random.Random(11)
    reqs = one_at_a_time(rng, 12)
    res = results(reqs)
    t0, t1 = res[0].t_start_ns, max(r.t_start_ns + r.latency_ns for r in res)
    trace = nvml_trace(reqs, t1 / 1e9 + 0.3, period_s, rng)
    gpu = SimpleNamespace(index=0, uuid="GPU-a", power_averaging="instantaneous", power_source="field")
    dev = {"uuid": "GPU-a", "energy_j": 1.0, "counter_update_period_s": period_s}
    dev["energy_source"] = "total-energy counter" if source == "counter" else "integrated power (field)"
    curve = gpu_curve([gpu], trace, [dev], t0, t1)
    assert curve.available and curve.resolution_s is not None and curve.resolution_s >= 0.009
    attr = attribute(res, (t0, t1), {"gpu": curve}, Idle({"gpu": IDLE_W}, {}, lambda d, s: 0.0), GRID_S)
    true = truth(reqs, t0 / 1e9, t1 / 1e9)
    for phase in ("prefill", "decode"):
        f = phase_metric(attr, phase, ["gpu"], Idle({"gpu": IDLE_W}, {}, lambda d, s: 0.0), 0.0)
        assert abs(f["value"] - true[phase]) <= f["uncertainty_j"], (phase, f["value"], true[phase], f["uncertainty_j"])
        # Instantaneous power shapes even a 100 ms counter's intervals: the bound stays a fraction.
        assert f["uncertainty_j"] < 0.25 * f["value"]


def test_queueing_behind_the_engine_is_not_prefill_when_the_server_says_how_long_prefill_took() -> None:
    reqs = one_at_a_time(random.Random(3), 10, queue=True, concurrency=3)
    assert sum(r.start - r.send for r in reqs) > 0.5  # they waited
    attr, true, _ = split(reqs, 3, prefill_ms=True)
    f = figure(attr, "prefill")
    assert abs(f["active_j"] - true["active_prefill"]) <= f["active_uncertainty_j"]
    assert f["time_s"] == pytest.approx(sum(r.first - r.start for r in reqs), rel=0.01)


def test_each_request_gets_its_share_and_the_shares_add_up() -> None:
    reqs = one_at_a_time(random.Random(5), 8)
    attr, _, _ = split(reqs, 5)
    res = results(reqs)
    rows = [request_fields(attr, r, None, None) for r in res]
    prefill, decode = figure(attr, "prefill"), figure(attr, "decode")
    assert sum(r["request_energy_j"] for r in rows) == pytest.approx(prefill["value"] + decode["value"])
    for req, row in zip(reqs, rows, strict=True):
        own = joules(reqs, req.start, req.tokens[-1])
        assert abs(row["request_energy_j"] - own) <= row["request_energy_uncertainty_j"]
        assert row["request_energy_per_output_token_j"] == pytest.approx(row["request_energy_j"] / len(req.tokens))
        assert row["request_active_energy_j"] == pytest.approx(row["request_energy_j"] - row["request_static_energy_j"])


def test_each_requests_active_energy_and_the_distributions_figures_hold_the_truth_within_their_bounds() -> None:
    reqs = one_at_a_time(random.Random(9), 25)
    attr, _, _ = split(reqs, 9)
    spread_w = 0.5  # what the idle baseline's spread allows per second
    baseline = Idle({"cpu": IDLE_W}, {}, lambda d, s: spread_w * s)
    rows = [{"ok": True} | request_fields(attr, r, None, None, baseline, ["cpu"]) for r in results(reqs)]
    for req, row in zip(reqs, rows, strict=True):
        active = PREFILL_W * (req.first - req.start) + DECODE_W * (req.tokens[-1] - req.first)
        assert abs(row["request_active_energy_j"] - active) <= row["request_active_energy_uncertainty_j"]
        seconds = row["request_static_energy_j"] / IDLE_W  # the idle baseline's spread over the request's time
        extra = row["request_active_energy_uncertainty_j"] - row["request_energy_uncertainty_j"]
        assert extra == pytest.approx(spread_w * seconds)
    true = sorted(joules(reqs, r.start, r.tokens[-1]) for r in reqs)
    d = distribution(rows, "request_energy_j")
    u = d["request_energy_j_uncertainty"]
    assert abs(d["request_energy_j_mean"] - statistics.fmean(true)) <= u["mean"]
    for stat, q in (("median", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert abs(d[f"request_energy_j_{stat}"] - percentile(true, q)) <= u[stat], stat
    assert u["median"] == max(r["request_energy_uncertainty_j"] for r in rows)
    lines = phase_lines({"prefill_energy_j": {"available": True}, **d})
    assert any(line.startswith("request") and "median" in line and "±" in line for line in lines)
    rows[3]["request_energy_uncertainty_j"] = None  # one request without a bound: the distribution has none
    unbounded = distribution(rows, "request_energy_j")["request_energy_j_uncertainty"]
    assert unbounded["median"] is None and unbounded["reason"] == "a request's figure has no bound"


def test_without_a_baseline_static_and_active_are_unavailable_with_the_reason() -> None:
    reqs = one_at_a_time(random.Random(1), 4)
    attr, true, _ = split(reqs, 1)
    f = figure(attr, "prefill", idle(None))
    assert f["available"] and abs(f["value"] - true["prefill"]) <= f["uncertainty_j"]
    assert f["static_j"] is None and f["active_j"] is None and "no idle baseline" in f["active_reason"]
    row = request_fields(attr, results(reqs)[0], None, "no idle baseline: none given")
    assert row["request_energy_j"] is not None and row["request_active_energy_j"] is None
    assert row["request_static_reason"] == "no idle baseline: none given"
    total = {"available": True, "value": 5.0, "net_j": None, "net_reason": "idle baseline missing: none"}
    measured = {"window_s": 1.0, "metrics": {"total_energy_j": total}}
    both = window_static_active(measured, None, "measure window")
    assert not both["static_energy_j"]["available"] and "idle baseline missing" in both["active_energy_j"]["reason"]


def test_without_a_meter_every_figure_is_unavailable_with_the_reason_never_zero() -> None:
    reqs = one_at_a_time(random.Random(2), 3)
    res = results(reqs)
    why = "no energy domain could be measured: cpu: no RAPL here"
    measured = {"window_s": 1.0, "metrics": {"total_energy_j": {"available": False, "value": None, "reason": why}}}
    assert window_static_active(measured, None, "measure window")["static_energy_j"]["reason"] == why
    row = request_fields(None, res[0], why, None)
    assert row["request_energy_j"] is None and row["request_energy_reason"] == why
    none = {"cpu": DomainCurve("cpu", None, "rapl", None, "no RAPL here")}
    attr = attribute(res, (res[0].t_start_ns, res[-1].t_start_ns + res[-1].latency_ns), none, idle(), GRID_S)
    f = figure(attr, "decode")
    assert not f["available"] and f["value"] is None and "no RAPL here" in f["reason"]


# -- the least-squares cross-check ----------------------------------------------------------


def test_the_fit_finds_the_per_token_costs_the_timeline_was_built_with() -> None:
    # Work at fixed rates: a prompt token takes 0.15 ms of prefill (at +60 W: 9 mJ), an output token
    # 10 ms of decode (at +25 W: 0.25 J); idle gaps between requests let the static power show.
    rng = random.Random(7)
    reqs, t = [], 0.1
    for _ in range(40):
        prompt = rng.randrange(20, 400)
        first = t + prompt * 1.5e-4
        tokens = [first + k * 0.01 for k in range(rng.randrange(2, 30))]
        reqs.append(Req(t, t, first, tokens, prompt))
        t = tokens[-1] + 0.02 + 0.05 * rng.random()
    attr, _, _ = split(reqs, 7)
    fixed = fit(attr.gram, IDLE_W)
    assert fixed["available"] and fixed["r2"] > 0.9 and fixed["static"] == "fixed at the idle baseline's power"
    assert fixed["j_per_prompt_token"] == pytest.approx(PREFILL_W * 1.5e-4, rel=0.1)
    assert fixed["j_per_output_token"] == pytest.approx(DECODE_W * 0.01, rel=0.1)
    free = fit(attr.gram)
    assert free["static"] == "fitted" and free["static_w"] == pytest.approx(IDLE_W, rel=0.1)
    assert free["j_per_output_token"] == pytest.approx(DECODE_W * 0.01, rel=0.15)
    assert not fit([[0.0] * 5 for _ in range(5)])["available"]


# -- ML.ENERGY's window ---------------------------------------------------------------------


def _req(i: int, start_ms: int, first_ms: int, end_ms: int) -> RequestResult:
    r = RequestResult(i, f"p{i}", True, (end_ms - start_ms) * 1_000_000, start_ms * 1_000_000, new_tokens=2)
    r.t_first_token_ns = first_ms * 1_000_000
    r.token_times_us = [(first_ms - start_ms) * 1000, (end_ms - start_ms) * 1000]
    return r


def test_mlenergys_window_runs_from_the_b_th_first_token_to_the_n_minus_b_minus_1_th_finish() -> None:
    rs = [_req(i, 10 * i, 10 * i + 5, 10 * i + 50) for i in range(8)]
    win = mlenergy_window(rs, LoadPoint(concurrency=2), None)
    assert win["available"] and win["name"] == "ML.ENERGY" and win["batch"] == 2
    assert (win["t0_ns"], win["t1_ns"]) == (15_000_000, 90_000_000)  # the 2nd first token; the 5th finish (8 - 2 - 1)
    engine_one = mlenergy_window(rs, LoadPoint(concurrency=4), {"requests": 1})
    assert engine_one["batch"] == 1  # the engine serves one at a time, whatever the load keeps in flight
    few = mlenergy_window(rs[:3], LoadPoint(concurrency=2), None)
    assert not few["available"] and "too few" in few["reason"]
    unknown = mlenergy_window(rs, LoadPoint(request_rate=math.inf), None)
    assert not unknown["available"] and "batch size" in unknown["reason"]


# -- MLCommons' fields ----------------------------------------------------------------------


def _record(phases: bool, covers: list[str], concurrency: int | None = 1) -> dict[str, Any]:
    def fig(v: float) -> dict[str, Any]:
        return {"available": True, "value": v, "uncertainty_j": 0.1, "active_j": v / 2}

    requests = [
        {"ok": True, "prompt_tokens": 10 + i, "new_tokens": 4, "request_energy_j": 1.0 + i}
        | {"request_decode_energy_j": 0.4}
        for i in range(3)
    ]
    metrics = {"window_s": 2.0, "engine_concurrency": None}
    if phases:
        metrics |= {"prefill_energy_j": fig(3.0), "decode_energy_j": fig(1.2), "phase_attribution": {"peak_power_w": 9}}
    else:
        why = {"available": False, "value": None, "reason": "no energy domain could be measured: cpu: no RAPL"}
        metrics |= {"prefill_energy_j": why, "decode_energy_j": why}
    total = {"available": bool(covers), "value": 6.0 if covers else None, "covers": covers, "net_j": None}
    total |= {
        "net_reason": "no idle baseline given",
        "reason": None if covers else "no energy domain could be measured",
    }
    return {
        "run_id": "r1",
        "mode": "serving",
        "status": "ok",
        "metrics": metrics,
        "measurements": {"metrics": {"total_energy_j": total}, "sampler": {"interval_s": 0.01}},
        "serving": {"load": {"concurrency": concurrency, "request_rate": None}, "requests": requests},
    }


def _nulls_have_reasons(out: dict[str, Any]) -> None:
    for key, value in out.items():
        if value is None and not key.endswith("_null_reason"):
            assert out[f"{key}_null_reason"], key
        assert value != 0 or key.endswith("_reason"), key  # never 0 for what was not measured


def test_mlcommons_fields_follow_the_schema_and_say_why_what_is_null() -> None:
    out = mlcommons_fields(_record(True, ["cpu"]))
    assert out["task_type"] == "llm" and out["scenario"] == "singlestream" and out["measurement_method"] == "rapl"
    assert out["sampling_rate_hz"] == pytest.approx(100.0) and out["batch_size"] == 1
    assert out["prefill_energy_joules"] == 3.0 and out["generation_energy_joules"] == 1.2
    assert out["output_token_count"] == 12 and out["input_sequence_length"] == 11
    # RULE-07: J/token from the generation phase only, within 5 % of generation / output tokens.
    assert out["energy_per_token_joules"]["mean"] == pytest.approx(1.2 / 12)
    assert out["inference_active_power_watts"] == {"mean": 3.0, "peak": 9}
    assert out["static_power_baseline_watts"] is None
    assert "no idle baseline" in out["static_power_baseline_watts_null_reason"]
    _nulls_have_reasons(out)
    mixed = mlcommons_fields(_record(True, ["cpu", "gpu"], concurrency=4))
    assert mixed["measurement_method"] is None and "nvml and rapl" in mixed["measurement_method_null_reason"]
    assert mixed["scenario"] is None and "closed loop of 4" in mixed["scenario_null_reason"]
    none = mlcommons_fields(_record(False, []))
    assert none["total_energy_joules"] is None and none["prefill_energy_joules"] is None
    assert "no RAPL" in none["prefill_energy_joules_null_reason"]
    _nulls_have_reasons(none)


# -- the report's stacked bars ----------------------------------------------------------------


def test_a_stacked_bar_leaves_out_what_was_not_measured_and_carries_the_bound_of_what_was(tmp_path: Path) -> None:
    from controller.report.kinds import EnergyKind
    from controller.report.phases import _stack, stacked_bars

    rows = [
        {"model": "m", "label": "a", "load_variable": "concurrency", "load_value": 1.0, "static": 50.0,
         "static_u": 1.0, "prefill": 10.0, "prefill_u": 2.0, "decode": 20.0, "decode_u": 3.0, "other": 1.0,
         "other_u": 0.5},
        {"model": "m", "label": "b", "load_variable": "concurrency", "load_value": 1.0, "static": None,
         "static_u": None, "prefill": 12.0, "prefill_u": None, "decode": 22.0, "decode_u": 3.0, "other": 1.0,
         "other_u": 0.5},
    ]  # fmt: skip
    frame = pl.DataFrame(rows)
    parts = ["static", "prefill", "decode", "other"]
    heights, missing, bound = _stack(frame.filter(pl.col("label") == "a"), parts)
    assert heights == {"static": 50.0, "prefill": 10.0, "decode": 20.0, "other": 1.0} and not missing
    assert bound == pytest.approx(6.5)  # the parts' bounds added
    heights, missing, bound = _stack(frame.filter(pl.col("label") == "b"), parts)
    assert "static" not in heights and missing == ["static"]  # not a bar of 0
    assert bound is None  # prefill has no bound, so the bar has none
    drawn = stacked_bars(frame, tmp_path, EnergyKind("net", "energies net of idle"))
    assert not isinstance(drawn, str) and (tmp_path / "serving-phases-stacked.png").stat().st_size > 0
