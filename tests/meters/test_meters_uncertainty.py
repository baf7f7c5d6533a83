"""Every energy figure's bound, checked against fakes of known truth.

Each scenario drives the real meters through the lowest fakes (a powercap tree, the NVML module)
with a known power profile, a counter that updates on its own clock (RAPL every 1 ms, NVML every
20 or 100 ms) and a sampler's read times (jitter, late ticks), then cuts many windows from the
trace: short and long, placed at random or with both edges where power steps. The truth must lie
within the stated bound in at least 95 % of windows, and the bound must stay within a few times
the real error (plus 0.2 % of the figure, where the estimate is nearly exact).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from meter_fakes import FakeGpu, FakeNvml, PowercapTree, PowerProfile
from uncertainty_scenarios import (
    Outcome,
    S,
    nvml_trace,
    outcome,
    random_trace,
    random_windows,
    rapl_trace,
    read_times,
    staircase,
    step_windows,
)

from controller.meters import IdleBaseline, MeterSession, load_baseline, measure_idle, save_baseline
from controller.meters.base import Trace
from controller.meters.baseline import BaselineStatus, net_energy
from controller.meters.host import HostMeter
from controller.meters.wall import WallMeter
from controller.serving.metrics import _energy_per
from controller.summary import energy_lines

END_S = 12.0


def assert_covers_and_tight(o: Outcome, floor: float = 0.002) -> None:
    assert o.coverage >= 0.95, str(o)
    assert o.median_bound() <= 4 * o.p95_error() + floor, str(o)


def _profile(kind: str, rng: random.Random):
    if kind == "constant":
        return PowerProfile.constant(rng.uniform(20.0, 300.0))
    if kind == "stepping":
        return staircase(rng, END_S + 1)
    return random_trace(rng, END_S + 1, mean_segment_s=0.03)


# (meter, counter update period, power, read jitter, late reads)
COUNTER_SCENARIOS = [
    ("rapl", 0.001, "constant", 0.002, 0.0),
    ("rapl", 0.001, "stepping", 0.002, 0.0),
    ("rapl", 0.001, "random", 0.002, 0.03),
    ("nvml", 0.02, "constant", 0.0, 0.0),
    ("nvml", 0.02, "stepping", 0.002, 0.0),
    ("nvml", 0.02, "random", 0.002, 0.03),
    ("nvml", 0.1, "constant", 0.002, 0.0),
    ("nvml", 0.1, "stepping", 0.0, 0.0),
    ("nvml", 0.1, "random", 0.002, 0.03),
]


@pytest.mark.parametrize(("meter", "period_s", "power", "jitter_s", "delays"), COUNTER_SCENARIOS)
def test_counter_figures_lie_within_a_tight_bound(
    tmp_path: Path, meter: str, period_s: float, power: str, jitter_s: float, delays: float
) -> None:
    rng = random.Random(f"{meter}{period_s}{power}")
    profile = _profile(power, rng)
    times = read_times(rng, END_S, 0.01, jitter_s, delays)
    phase = rng.uniform(0.0, period_s)
    if meter == "rapl":
        m, trace = rapl_trace(tmp_path / "powercap", profile, times, period_s, phase)
        metric = "cpu_energy_j"
    else:
        m, trace = nvml_trace(profile, times, period_s, phase)
        metric = "gpu_energy_j"

    def summarize(t0: int, t1: int):  # type: ignore[no-untyped-def]
        return m.summarize(trace, t0, t1)

    random_placed = outcome(summarize, metric, profile, random_windows(rng, 60, 1.0, END_S - 0.5, 0.05, 4.0))
    assert_covers_and_tight(random_placed)
    # The counter's update period, as the meter found it, is in its description.
    described = m.describe()
    seen = described["update_period_s"] if meter == "rapl" else described["gpus"][0]["counter_update_period_s"]
    assert seen == pytest.approx(period_s, rel=0.05)
    if power == "constant":
        long = outcome(summarize, metric, profile, random_windows(rng, 20, 1.0, END_S - 0.5, 1.0, 4.0))
        assert max(long.bounds) < 0.005, str(long)  # small, and no energy_uncertainty_high
    if power == "stepping":
        assert_covers_and_tight(outcome(summarize, metric, profile, step_windows(rng, 40, profile, 1.0, END_S - 0.5)))


@pytest.mark.parametrize("power", ["stepping", "random"])
@pytest.mark.parametrize("source", ["instant", "averaged"])
def test_integrated_gpu_power_lies_within_a_tight_bound(power: str, source: str) -> None:
    """No energy counter (before Volta): instant power, or nvmlDeviceGetPowerUsage's 1 s average."""
    rng = random.Random(f"{power}{source}")
    profile = _profile(power, rng)
    times = read_times(rng, END_S, 0.01, 0.002)
    average = 1.0 if source == "averaged" else 0.0
    m, trace = nvml_trace(profile, times, 0.1, 0.0, counter=False, instant=not average, average_s=average)
    windows = random_windows(rng, 60, 1.5, END_S - 0.5, 2.0 if average else 0.05, 4.0)
    o = outcome(lambda a, b: m.summarize(trace, a, b), "gpu_energy_j", profile, windows)
    assert_covers_and_tight(o)


def test_wall_meter_load_lies_within_a_tight_bound() -> None:
    """A socket meter refreshing its load (the mean of the last second) once a second, polled
    once a second with up to 50 ms jitter."""
    rng = random.Random(3)
    profile = staircase(rng, 121.0, 80.0, 300.0)
    meter = WallMeter("http://pdu.invalid", output_id=1)
    trace = Trace("wall", meter.fields)
    for t in read_times(rng, 120.0, 1.0, 0.05):
        refreshed = max(1.0, float(int(t)))  # the device's last refresh, on the second
        load = round(profile.joules(refreshed) - profile.joules(refreshed - 1.0))
        trace.append(round(t * S), (float(load), float("nan")))
    windows = random_windows(rng, 60, 5.0, 115.0, 10.0, 60.0)
    o = outcome(lambda a, b: meter.summarize(trace, a, b), "wall_energy_j", profile, windows)
    assert_covers_and_tight(o)


# -- The cases -----------------------------------------------------------------------


def test_nvml_100ms_counter_at_constant_power_is_right_on_half_second_windows() -> None:
    """A counter updating every 100 ms read +2.9 % on a 0.5 s window at constant power: the
    held value was taken as the counter at the read. Now every placement is right, within a
    bound well under the 2 % limit."""
    rng = random.Random(29)
    profile = PowerProfile.constant(250.0)
    m, trace = nvml_trace(profile, read_times(rng, END_S), 0.1, 0.0)
    windows = [(t0, t0 + 0.5) for t0 in (1.0 + k * 0.0137 for k in range(60))]
    o = outcome(lambda a, b: m.summarize(trace, a, b), "gpu_energy_j", profile, windows)
    assert o.coverage == 1.0 and max(map(abs, o.errors)) < 0.001 and max(o.bounds) < 0.01, str(o)


def test_rapl_ten_interval_windows_around_a_burst_carry_no_edge_bias(tmp_path: Path) -> None:
    """A workload of 10 sampling intervals (100 ms at 10 ms reads) that starts and stops at the
    window's edges, RAPL updating every ms: linear interpolation across the edges read -3.7 % on
    average (-5 % worst), mostly unflagged."""
    rng = random.Random(37)
    errors, bounds = [], []
    for k in range(40):
        t0 = 1.0 + k * 0.01 / 40 + rng.uniform(0.0, 0.5)
        profile = PowerProfile.burst(15.0, 120.0, t0, t0 + 0.1)
        times = read_times(rng, t0 + 0.5, 0.01, 0.002)
        m, trace = rapl_trace(tmp_path / f"p{k}", profile, times, 0.001, rng.uniform(0.0, 0.001))
        cpu = m.summarize(trace, round(t0 * S), round((t0 + 0.1) * S)).metrics["cpu_energy_j"]
        truth = profile.joules(t0 + 0.1, t0)
        errors.append((cpu.value - truth) / truth)  # type: ignore[operator]
        bounds.append(cpu.extra["uncertainty_rel"])
    o = Outcome(errors, bounds)
    assert abs(sum(errors) / len(errors)) < 0.005, str(o)
    assert_covers_and_tight(o)


def test_ordinary_sampler_delays_never_flag_a_missed_wrap(tmp_path: Path) -> None:
    """A busy host's 33-91 ms late ticks on a 60 J counter at 20-250 W: every window stays
    measured (a wrap would need a gap of 120 ms at twice the highest power seen)."""
    rng = random.Random(91)
    profile = staircase(rng, END_S + 1)
    tree = PowercapTree(tmp_path / "powercap")
    tree.zone("intel-rapl:0", "package-0", 0, max_range_uj=60_000_000)
    from controller.meters.rapl import RaplMeter

    meter = RaplMeter(tree.root)
    meter.open()
    trace = Trace("rapl", meter.fields)
    for t in read_times(rng, END_S, 0.01, 0.002, delays=0.05):
        tree.follow("intel-rapl:0", profile, t, 0.001)
        trace.append(round(t * S), meter.read())
    assert meter.zones[0].wraps > 10
    for t0, t1 in random_windows(rng, 40, 1.0, END_S - 0.5, 0.5, 4.0):
        out = meter.summarize(trace, round(t0 * S), round(t1 * S))
        assert "rapl_possible_missed_wrap" not in [f["code"] for f in out.flags]
        cpu = out.metrics["cpu_energy_j"]
        assert abs(cpu.value - profile.joules(t1, t0)) <= cpu.extra["uncertainty_j"]  # type: ignore[operator]


# -- Net of idle, totals, flags ----------------------------------------------------------------

SPREAD = {
    "method": "test",
    "windows": [
        {"window_s": 0.1, "std_power_w": 4.0, "count": 6000},
        {"window_s": 1.0, "std_power_w": 2.0, "count": 600},
        {"window_s": 10.0, "std_power_w": 1.0, "count": 60},
    ],
}


def _baseline(domains: dict[str, Any]) -> BaselineStatus:
    b = IdleBaseline({"id": "x"}, time.time(), 600.0, 0.01, domains)
    return BaselineStatus("ok", None, None, b)


def test_net_bound_adds_the_idle_spread_over_the_window() -> None:
    baseline = _baseline({"cpu": {"available": True, "power_w": 20.0, "spread": SPREAD, "power_uncertainty_w": 0.05}})
    for window_s, std in ((0.5, 4.0), (3.0, 2.0), (30.0, 1.0), (0.025, 8.0)):
        out = net_energy(100.0, "cpu", window_s, baseline, gross_uncertainty_j=0.7)
        assert out["net_j"] == pytest.approx(100.0 - 20.0 * window_s)
        parts = out["net_uncertainty_components"]
        assert parts == {
            "gross": 0.7,
            "idle_power_spread": pytest.approx(2 * std * window_s),
            "idle_power_estimate": pytest.approx(0.05 * window_s),
        }
        assert out["net_uncertainty_j"] == pytest.approx(sum(parts.values()))


def test_old_baseline_files_load_subtract_and_say_to_measure_again(tmp_path: Path) -> None:
    """A baseline written before the spread was recorded (the previous file format, verbatim)."""
    fp = {"id": "abc123", "cpu_model": "Xeon"}
    old = {
        "schema": "joulebench.idle/1",
        "fingerprint": fp,
        "fingerprint_id": "abc123",
        "measured_at": "2026-01-01T00:00:00+00:00",
        "measured_at_unix": time.time() - 60,
        "duration_s": 600.0,
        "interval_s": 0.01,
        "domains": {
            "cpu": {"available": True, "reason": None, "power_w": 20.0, "energy_j": 12000.0, "source": "RAPL"},
            "gpu": {"available": False, "reason": "no GPU", "power_w": None},
        },
        "flags": [],
    }
    path = tmp_path / "abc123.json"
    path.write_text(json.dumps(old))
    status = load_baseline(path, fingerprint=fp)
    assert status.usable
    out = net_energy(50.0, "cpu", 1.0, status, gross_uncertainty_j=0.2)
    assert out["net_j"] == pytest.approx(30.0)
    assert out["net_uncertainty_j"] is None and "measure it again" in out["net_uncertainty_reason"]
    gone = net_energy(None, "cpu", 1.0, status)
    assert gone["net_j"] is None and gone["net_uncertainty_j"] is None


def _session_run(tree: PowercapTree, nvml: FakeNvml | None, **kw: Any) -> dict[str, Any]:
    """A session over 0.6 s of 100 W on package-0 and 10 W on DRAM (counters following a
    profile in real time), read every 10 ms; the window is the middle 0.4 s."""
    ms = MeterSession(interval_s=0.01, powercap_root=tree.root, nvml=nvml, gpu_uuids=None if nvml else [], **kw)
    start = time.monotonic()

    def now() -> float:
        return time.monotonic() - start

    ms.start()
    t0 = t1 = 0
    while now() < 0.6:
        t = now()
        tree.follow("intel-rapl:0", PowerProfile.constant(100.0), t)
        tree.follow("intel-rapl:0:2", PowerProfile.constant(10.0), t)
        if not t0 and t > 0.1:
            t0 = time.monotonic_ns()
        if not t1 and t > 0.5:
            t1 = time.monotonic_ns()
        time.sleep(0.001)
    ms.stop()
    return ms.summarize(t0, t1)


@pytest.fixture
def tree(powercap: PowercapTree) -> PowercapTree:
    powercap.zone("intel-rapl:0", "package-0", 0)
    powercap.zone("intel-rapl:0:2", "dram", 0)
    return powercap


def test_a_record_carries_the_bounds_and_totals_add_them(tree: PowercapTree) -> None:
    baseline = _baseline(
        {
            "cpu": {"available": True, "power_w": 20.0, "spread": SPREAD, "power_uncertainty_w": 0.05},
            "dram": {"available": True, "power_w": 2.0},  # an old entry: no spread
        }
    )
    out = _session_run(tree, None, baseline=baseline)
    json.dumps(out)
    cpu, dram, total = (out["metrics"][k] for k in ("cpu_energy_j", "dram_energy_j", "total_energy_j"))
    w = out["window_s"]
    for m, watts in ((cpu, 100.0), (dram, 10.0)):
        # Loosely: this test writes the counters from its own thread, as late as it is scheduled
        # (coverage is checked above, in synthetic time).
        assert m["value"] == pytest.approx(watts * w, rel=0.05)
        assert m["uncertainty_rel"] == pytest.approx(m["uncertainty_j"] / m["value"])
        assert sum(m["uncertainty_components"].values()) == pytest.approx(m["uncertainty_j"])
        assert {"edge_interpolation", "update_timing", "counter_resolution", "wrap_risk"} <= set(
            m["uncertainty_components"]
        )
        assert "95 %" in m["uncertainty_method"]
    # A 0.4 s window: the spread of 0.1 s sub-windows (the longest recorded that is no longer).
    assert cpu["net_uncertainty_j"] == pytest.approx(cpu["uncertainty_j"] + (2 * 4.0 + 0.05) * w)
    assert dram["net_uncertainty_j"] is None and "measure it again" in dram["net_uncertainty_reason"]
    assert total["uncertainty_j"] == pytest.approx(cpu["uncertainty_j"] + dram["uncertainty_j"])
    assert total["uncertainty_components"] == {
        "cpu": pytest.approx(cpu["uncertainty_j"]),
        "dram": pytest.approx(dram["uncertainty_j"]),
    }
    assert total["net_uncertainty_j"] is None and "dram" in total["net_uncertainty_reason"]
    assert "linear" in total["uncertainty_method"]
    for name in ("gpu_energy_j", "wall_energy_j"):  # unavailable: no bound
        assert out["metrics"][name].get("uncertainty_j") is None


def test_a_bound_over_the_limit_is_flagged_and_the_limit_is_the_sessions(tree: PowerProfile) -> None:
    out = _session_run(tree, None, uncertainty_limit=1e-6)  # type: ignore[arg-type]
    high = {f["metric"]: f for f in out["flags"] if f["code"] == "energy_uncertainty_high"}
    assert set(high) == {"cpu_energy_j", "dram_energy_j", "total_energy_j"}
    cpu = high["cpu_energy_j"]
    assert cpu["limit"] == 1e-6 and cpu["uncertainty_rel"] == out["metrics"]["cpu_energy_j"]["uncertainty_rel"]
    assert f"+- {cpu['uncertainty_j']:.3g} J" in cpu["message"]
    relaxed = _session_run(tree, None, uncertainty_limit=0.5)  # type: ignore[arg-type]
    assert "energy_uncertainty_high" not in [f["code"] for f in relaxed["flags"]]
    shown = "\n".join(energy_lines(out))
    assert f"± {out['metrics']['cpu_energy_j']['uncertainty_j']:.3g} J" in shown
    assert "bound over the 0.0% limit" in shown


def test_measure_idle_records_the_spread_a_run_then_uses(tree: PowercapTree, tmp_path: Path) -> None:
    fp = {"id": "abc123"}
    profile = PowerProfile(tuple((k * 0.05, 20.0 + 6.0 * (k % 3)) for k in range(40)))

    def idle(duration: float) -> None:
        start = time.monotonic()
        while (t := time.monotonic() - start) < 0.9:
            tree.follow("intel-rapl:0", profile, t)
            tree.follow("intel-rapl:0:2", PowerProfile.constant(3.0), t)
            time.sleep(0.002)

    fake = FakeNvml(gpus=[FakeGpu("GPU-aaaa")])
    b = measure_idle(600, interval_s=0.01, powercap_root=tree.root, nvml=fake, fingerprint=fp, sleep=idle)
    cpu = b.domains["cpu"]
    (row,) = cpu["spread"]["windows"]  # 0.9 s: only 0.1 s sub-windows, 8 of them
    assert row["window_s"] == 0.1 and row["count"] >= 5 and row["std_power_w"] > 1.0
    assert cpu["power_uncertainty_w"] > 0
    assert "GPU-aaaa" in b.domains["gpu"]["per_device_spread"]
    run = net_energy(50.0, "cpu", 2.0, BaselineStatus("ok", None, None, b), gross_uncertainty_j=0.1)
    assert run["net_uncertainty_components"]["idle_power_spread"] == pytest.approx(2 * row["std_power_w"] * 2.0)
    saved = load_baseline(save_baseline(b, tmp_path / "b.json"), fingerprint=fp)
    assert saved.baseline is not None and saved.baseline.domains["cpu"]["spread"] == cpu["spread"]


# -- Host-wide CPU and RAM -----------------------------------------------------------------------


def _proc(root: Path, busy: int, idle: int, available_kb: int) -> None:
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n")
    (root / "meminfo").write_text(
        f"MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   {available_kb} kB\n"
    )


def test_host_meter_gives_system_wide_cpu_and_ram(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, 1000, 1000, 12_000_000)
    meter = HostMeter(str(proc))
    assert meter.open().available
    trace = Trace("host", meter.fields)
    # 4 reads 1 s apart: 300 busy and 100 idle ticks each second; RAM use 25 %, then 50 %.
    for k, (busy, idle, avail) in enumerate(
        [(1000, 1000, 12_000_000), (1300, 1100, 12_000_000), (1600, 1200, 8_000_000), (1900, 1300, 8_000_000)]
    ):
        _proc(proc, busy, idle, avail)
        trace.append(k * S, meter.read())
    m = meter.summarize(trace, 0, 3 * S).metrics
    assert m["system_cpu_percent"].value == pytest.approx(75.0)
    assert "host-wide" in m["system_cpu_percent"].extra["scope"]
    assert m["system_ram_used_percent"].value == pytest.approx(37.5)
    assert m["system_ram_used_bytes"].value == pytest.approx(6_000_000 * 1024)
    meter.close()


def test_host_meter_unreadable_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    class NoPsutil:
        def cpu_times(self) -> None:
            raise OSError("not supported here")

    meter = HostMeter(str(tmp_path / "none"), psutil=NoPsutil())
    avail = meter.open()
    assert not avail.available and "unreadable" in (avail.reason or "") and "psutil" in (avail.reason or "")
    for m in meter.unavailable().metrics.values():
        assert m.value is None and m.reason


# -- Per-token serving figures ---------------------------------------------------------------------


def test_energy_per_token_carries_the_windows_bound_per_token() -> None:
    measurements = {
        "metrics": {
            "total_energy_j": {
                "available": True,
                "value": 200.0,
                "net_j": 120.0,
                "uncertainty_j": 4.0,
                "uncertainty_rel": 0.02,
                "net_uncertainty_j": 6.0,
                "covers": ["cpu", "gpu"],
            }
        }
    }
    e = _energy_per(measurements, 400, "output token", "energy_per_output_token_steady_j")
    assert e["value"] == pytest.approx(0.5) and e["uncertainty_j"] == pytest.approx(0.01)
    assert e["net_j"] == pytest.approx(0.3) and e["net_uncertainty_j"] == pytest.approx(0.015)
    older = _energy_per({"metrics": {"total_energy_j": {"available": True, "value": 2.0}}}, 4, "token", "x")
    assert older["uncertainty_j"] is None and older["net_uncertainty_j"] is None


# -- Where the limit comes from ----------------------------------------------------------------------


def test_the_limit_reaches_the_session_from_the_cli_and_a_campaign_file(tmp_path: Path) -> None:
    from controller.campaigns.file import load_campaign_file
    from controller.campaigns.session import run_settings
    from controller.cli import _request, build_parser
    from controller.requests import MeterSettings

    for argv, share in (([], 0.02), (["--uncertainty-limit", "5"], 0.05)):
        args = build_parser().parse_args(["run", "--image", "onnx-cpu", "--model", "resnet50", *argv])
        assert _request(args, None).meters.uncertainty_limit == pytest.approx(share)
        serve = build_parser().parse_args(["serve", "--image", "onnx-cpu", "--model", "m", *argv])
        assert _request(serve, None).meters.uncertainty_limit == pytest.approx(share)
    assert MeterSettings().uncertainty_limit == 0.02
    path = tmp_path / "c.toml"
    body = '[matrix]\nmodels = ["resnet50"]\n\n[[matrix.configurations]]\nimage = "onnx-cpu"\n'
    for line, share in (("", 0.02), ("uncertainty_limit = 0.5\n", 0.005)):
        path.write_text(f'[campaign]\nname = "c"\n{line}\n{body}')
        _, meters = run_settings(load_campaign_file(path), "local", tmp_path, None)
        assert meters.uncertainty_limit == pytest.approx(share)


def test_stop_reads_on_until_each_gpu_counter_updates_after_the_window() -> None:
    """NVML's counter updates every 20-100 ms: a window ending just before stop() needs one more
    update after its end to be bracketed, so stop() reads on (a bounded time) until it comes."""
    import threading

    gpu = FakeGpu("GPU-a")
    profile = PowerProfile.constant(200.0)
    done = threading.Event()
    start = time.monotonic()

    def drive() -> None:  # the fake GPU's counter, updating every 80 ms in real time
        while not done.is_set():
            gpu.follow(profile, time.monotonic() - start, 0.08)
            time.sleep(0.002)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    ms = MeterSession(interval_s=0.01, powercap_root="/nonexistent", nvml=FakeNvml(gpus=[gpu]))
    ms.start()
    time.sleep(0.5)
    t0 = time.monotonic_ns()
    time.sleep(0.4)
    t1 = time.monotonic_ns()
    at_stop = gpu.energy_mj
    ms.stop()
    done.set()
    driver.join()
    trace = ms.traces["nvml"]
    assert trace.columns["gpu0.energy_mj"][len(trace) - 1] != at_stop
    gpu_j = ms.summarize(t0, t1)["metrics"]["gpu_energy_j"]
    assert gpu_j["source"] == "nvml: total-energy counter"
    # Loosely: this fake's values appear as late as its thread is scheduled (on a busy host, ms
    # after the instant they count to), which the bound, built from the read times, cannot see.
    assert gpu_j["value"] == pytest.approx(200.0 * (t1 - t0) / S, rel=0.05)
