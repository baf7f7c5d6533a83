"""Counters that reset, jump or are read too rarely for their window, driven at known power.

The fakes are the lowest boundary only (a powercap tree, the NVML module); every read goes
through the real meters and the real window arithmetic, at synthetic read times.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from meter_fakes import FakeGpu, FakeNvml, PowercapTree, PowerProfile

from controller.meters.base import Metric, Trace
from controller.meters.measurements import refuse_negative_energy
from controller.meters.nvml import NvmlMeter
from controller.meters.rapl import RaplMeter

S = 1_000_000_000
DT = 0.01  # the default sampling interval


def ns(t_s: float) -> int:
    return round(t_s * S)


def codes(flags: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [f["code"] for f in flags]


def nvml_trace(
    meter: NvmlMeter,
    gpu: FakeGpu,
    profile: PowerProfile,
    end_s: float,
    period_s: float = 0.0,
    events: dict[float, Callable[[], None]] | None = None,
) -> Trace:
    """Read every 10 ms from 0 to ``end_s``; ``events[t]`` runs just before the read at t."""
    trace = Trace("nvml", meter.fields)
    at = {round(t / DT): fn for t, fn in (events or {}).items()}
    for i in range(round(end_s / DT) + 1):
        if i in at:
            at[i]()
        gpu.follow(profile, i * DT, period_s)
        trace.append(ns(i * DT), meter.read())
    return trace


def rapl_trace(
    meter: RaplMeter,
    tree: PowercapTree,
    profile: PowerProfile,
    end_s: float,
    dt_s: float = DT,
    events: dict[float, Callable[[], None]] | None = None,
    start_s: float = 0.0,
) -> Trace:
    trace = Trace("rapl", meter.fields)
    at = {round(t / dt_s): fn for t, fn in (events or {}).items()}
    for i in range(round(start_s / dt_s), round(end_s / dt_s) + 1):
        if i in at:
            at[i]()
        tree.follow("intel-rapl:0", profile, i * dt_s)
        trace.append(ns(i * dt_s), meter.read())
    return trace


@pytest.fixture
def gpu() -> FakeGpu:
    return FakeGpu("GPU-aaaa")


@pytest.fixture
def nvml_meter(gpu: FakeGpu) -> NvmlMeter:
    meter = NvmlMeter(nvml=FakeNvml(gpus=[gpu]))
    assert meter.open().available
    return meter


@pytest.fixture
def package(powercap: PowercapTree) -> PowercapTree:
    powercap.zone("intel-rapl:0", "package-0", 5_000_000)
    return powercap


# A workload at 300 W over [0.5, 1.5) s on a GPU idling at 60 W; the window is [0.2, 1.8] s.
BURST = PowerProfile.burst(60.0, 300.0, 0.5, 1.5)
KNOWN_J = BURST.joules(1.8, 0.2)  # 336 J


# -- GPU energy counter resets ---------------------------------------------------------------


def test_gpu_counter_reset_in_window_falls_back_to_integrated_power(nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    trace = nvml_trace(nvml_meter, gpu, BURST, 2.0, period_s=0.02, events={1.0: gpu.reset_counter})
    out = nvml_meter.summarize(trace, ns(0.2), ns(1.8))
    energy = out.metrics["gpu_energy_j"]
    assert energy.available and energy.value is not None and energy.value > 0
    assert energy.value == pytest.approx(KNOWN_J, rel=1e-3)
    assert "integrated power" in (energy.source or "")
    assert "went backwards" in energy.extra["fallback"]["GPU-aaaa"]
    reset = [f for f in out.flags if f["code"] == "gpu_energy_counter_reset"]
    assert len(reset) == 1 and reset[0]["uuid"] == "GPU-aaaa"
    assert "integrated power is reported instead" in reset[0]["message"]
    dev = energy.extra["per_device"][0]
    assert dev["counter_j"] is None and "backwards" in dev["counter_reason"]


def test_gpu_counter_reset_without_power_is_unavailable_never_negative(gpu: FakeGpu) -> None:
    gpu.power_readable = False
    meter = NvmlMeter(nvml=FakeNvml(gpus=[gpu]))
    meter.open()
    trace = nvml_trace(meter, gpu, BURST, 2.0, events={1.0: gpu.reset_counter})
    out = meter.summarize(trace, ns(0.2), ns(1.8))
    energy = out.metrics["gpu_energy_j"].to_dict()
    assert energy["available"] is False and energy["value"] is None
    assert "went backwards" in energy["reason"] and "power integration" in energy["reason"]
    assert "gpu_energy_counter_reset" in codes(out.flags)


def test_gpu_counter_reset_outside_the_window_changes_nothing(nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    trace = nvml_trace(nvml_meter, gpu, BURST, 2.0, events={0.1: gpu.reset_counter})
    out = nvml_meter.summarize(trace, ns(0.2), ns(1.8))
    energy = out.metrics["gpu_energy_j"]
    assert energy.value == pytest.approx(KNOWN_J, rel=1e-6)
    assert energy.source == "nvml: total-energy counter"
    assert out.flags == []


def test_gpu_counter_jump_beyond_any_gpu_falls_back(nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    def jump() -> None:
        gpu.counter_base_mj += 100_000_000  # +100 kJ between two reads 10 ms apart

    trace = nvml_trace(nvml_meter, gpu, BURST, 2.0, events={1.0: jump})
    out = nvml_meter.summarize(trace, ns(0.2), ns(1.8))
    energy = out.metrics["gpu_energy_j"]
    assert energy.value == pytest.approx(KNOWN_J, rel=1e-3)
    assert "integrated power" in (energy.source or "")
    assert "gpu_energy_counter_jump" in codes(out.flags)


def test_gpu_counter_catching_up_after_a_pause_is_no_jump(nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    """700 W; the counter updates every 20 ms but pauses for 300 ms, then steps by all of it
    (210 J in one read): that is energy, not a fault."""
    profile = PowerProfile.constant(700.0)
    trace = Trace("nvml", nvml_meter.fields)
    for i in range(201):
        t = i * DT
        if 1.0 <= t < 1.3:
            gpu.power_mw = 700_000  # power is read, the counter holds
        else:
            gpu.follow(profile, t, 0.02)
        trace.append(ns(t), nvml_meter.read())
    out = nvml_meter.summarize(trace, ns(0.2), ns(1.8))
    assert out.metrics["gpu_energy_j"].source == "nvml: total-energy counter"
    assert out.metrics["gpu_energy_j"].value == pytest.approx(700.0 * 1.6, rel=1e-3)
    assert out.flags == []


# -- RAPL counters that go backwards or jump -------------------------------------------------


def test_rapl_counter_reset_is_flagged_not_read_as_a_wrap(package: PowercapTree) -> None:
    meter = RaplMeter(package.root)
    meter.open()
    trace = rapl_trace(meter, package, BURST, 2.0, events={1.0: lambda: package.reset_counter("intel-rapl:0")})
    out = meter.summarize(trace, ns(0.2), ns(1.8))
    cpu = out.metrics["cpu_energy_j"].to_dict()
    assert cpu["available"] is False and cpu["value"] is None
    assert "went backwards" in cpu["reason"]
    assert out.metrics["cpu_power_w"].value is None
    (reset,) = [f for f in out.flags if f["code"] == "rapl_counter_reset"]
    assert "package-0" in reset["message"]


def test_rapl_counter_jump_is_flagged(package: PowercapTree) -> None:
    meter = RaplMeter(package.root)
    meter.open()

    def jump() -> None:
        package._base_uj["intel-rapl:0"] += 50_000_000  # 50 J in 10 ms: 5 kW from one package

    trace = rapl_trace(meter, package, BURST, 2.0, events={1.0: jump})
    out = meter.summarize(trace, ns(0.2), ns(1.8))
    assert out.metrics["cpu_energy_j"].value is None
    assert "rapl_counter_jump" in codes(out.flags)
    # Outside the jump the same counter still measures, within its bound (the counter's update
    # lag, up to 1 ms at each edge, is the bound's main part).
    cpu = meter.summarize(trace, ns(1.1), ns(1.8)).metrics["cpu_energy_j"]
    assert cpu.value == pytest.approx(BURST.joules(1.8, 1.1), abs=cpu.extra["uncertainty_j"])
    assert cpu.extra["uncertainty_rel"] < 0.005


def test_rapl_real_wraps_over_a_long_window_stay_exact_and_unflagged(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 900_000_000, max_range_uj=1_000_000_000)  # wraps at 1 kJ
    meter = RaplMeter(powercap.root)
    meter.open()
    profile = PowerProfile.burst(100.0, 250.0, 0.5, 1.5)
    trace = rapl_trace(meter, powercap, profile, 2.0)
    out = meter.summarize(trace, ns(0.2), ns(1.8))
    assert meter.zones[0].wraps == 1
    assert out.metrics["cpu_energy_j"].value == pytest.approx(profile.joules(1.8, 0.2), rel=1e-6)
    assert out.flags == []


def test_ordinary_sampler_delays_do_not_flag_a_missed_wrap(powercap: PowercapTree) -> None:
    """A 60 J counter read every 40-90 ms at 20 W: the old check (a wrap possible at 1 kW in
    30 ms) flagged these accurate windows; at the power actually drawn a gap would need 3 s."""
    powercap.zone("intel-rapl:0", "package-0", 0, max_range_uj=60_000_000)
    meter = RaplMeter(powercap.root)
    meter.open()
    trace = rapl_trace(meter, powercap, PowerProfile.constant(20.0), 1.0, dt_s=0.04)
    out = meter.summarize(trace, ns(0.2), ns(0.8))
    assert "rapl_possible_missed_wrap" not in codes(out.flags)
    cpu = out.metrics["cpu_energy_j"]
    assert cpu.value == pytest.approx(12.0, abs=cpu.extra["uncertainty_j"])
    assert cpu.extra["wrap_check"]["package-0"]["power_bound_w"] == pytest.approx(40.0, rel=0.01)


def test_a_counter_that_may_have_wrapped_twice_is_unavailable(powercap: PowercapTree) -> None:
    """100 W on a 20 J counter read every 10 ms, then not for 360 ms (36 J: a wrap more than
    unwrapping can see): the figure is unavailable with both figures, never 55 % short."""
    powercap.zone("intel-rapl:0", "package-0", 0, max_range_uj=20_000_000)
    meter = RaplMeter(powercap.root)
    meter.open()
    profile = PowerProfile.constant(100.0)
    trace = Trace("rapl", meter.fields)
    for t in [*(i * DT for i in range(60)), *(0.95 + i * DT for i in range(60))]:
        powercap.follow("intel-rapl:0", profile, t)
        trace.append(ns(t), meter.read())
    out = meter.summarize(trace, ns(0.2), ns(1.3))
    cpu = out.metrics["cpu_energy_j"].to_dict()
    assert cpu["available"] is False and cpu["value"] is None
    assert "360 ms" in cpu["reason"] and "more than once" in cpu["reason"] and "20 J" in cpu["reason"]
    (missed,) = [f for f in out.flags if f["code"] == "rapl_possible_missed_wrap"]
    assert missed["largest_gap_s"] == pytest.approx(0.36) and missed["power_bound_w"] == pytest.approx(200, rel=0.01)
    # The same counter read without the gap measures the window.
    assert meter.summarize(trace, ns(0.1), ns(0.5)).metrics["cpu_energy_j"].value == pytest.approx(40.0, rel=0.01)


# -- Short windows ---------------------------------------------------------------------------


def test_a_short_window_has_no_edge_bias_and_is_flagged_with_its_bound(powercap: PowercapTree) -> None:
    """100 W stepping on and off around a 20 ms window read every 10 ms, over every phase of the
    edges against the reads. Interpolating linearly across each edge came out low by
    interval / (3 x window) = 16.7 % on average; splitting the edge intervals with the power on
    either side leaves no such bias, and every window lies within its bound."""
    powercap.zone("intel-rapl:0", "package-0", 0)
    meter = RaplMeter(powercap.root)
    meter.open()
    window_s = 0.02
    errors = []
    flags: list[dict] = []  # type: ignore[type-arg]
    for k in range(50):
        t0 = 0.5 + k * DT / 50
        profile = PowerProfile.burst(0.0, 100.0, t0, t0 + window_s)
        trace = rapl_trace(meter, powercap, profile, 0.6, start_s=0.45)
        out = meter.summarize(trace, ns(t0), ns(t0 + window_s))
        cpu = out.metrics["cpu_energy_j"]
        assert abs(cpu.value - profile.joules(1.0)) <= cpu.extra["uncertainty_j"]  # type: ignore[operator]
        assert cpu.extra["uncertainty_rel"] < 0.15
        errors.append(cpu.value / profile.joules(1.0) - 1)  # type: ignore[operator]
        flags = out.flags
    assert abs(sum(errors) / len(errors)) < 0.02
    (short,) = flags
    assert short["code"] == "short_window" and short["metric"] == "cpu_energy_j"
    assert short["window_s"] == pytest.approx(window_s) and short["interval_s"] == pytest.approx(DT)
    assert f"+-{100 * short['uncertainty_rel']:.1f} %" in short["message"]


def test_long_windows_carry_no_short_window_flag(package: PowercapTree, nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    meter = RaplMeter(package.root)
    meter.open()
    rapl = meter.summarize(rapl_trace(meter, package, BURST, 2.0), ns(0.2), ns(1.8))
    gpus = nvml_meter.summarize(nvml_trace(nvml_meter, gpu, BURST, 2.0), ns(0.2), ns(1.8))
    assert rapl.flags == [] and gpus.flags == []
    # Ten intervals exactly is not short either.
    assert "short_window" not in codes(meter.summarize(rapl_trace(meter, package, BURST, 2.0), ns(0.5), ns(0.6)).flags)


def test_short_gpu_window_flags_the_interval_of_the_source_used(nvml_meter: NvmlMeter, gpu: FakeGpu) -> None:
    trace = nvml_trace(nvml_meter, gpu, BURST, 2.0, period_s=0.1)
    # 0.5 s on the counter, which moves every 100 ms: the update period sets the edge error.
    out = nvml_meter.summarize(trace, ns(0.7), ns(1.2))
    assert out.metrics["gpu_energy_j"].source == "nvml: total-energy counter"
    (short,) = [f for f in out.flags if f["code"] == "short_window"]
    assert short["interval_s"] == pytest.approx(0.1) and "update period" in short["message"]
    assert short["uncertainty_rel"] == out.metrics["gpu_energy_j"].extra["uncertainty_rel"]
    # 30 ms: below the counter's period, so integrated power, whose reads are 10 ms apart.
    out = nvml_meter.summarize(trace, ns(0.71), ns(0.74))
    assert "integrated power" in (out.metrics["gpu_energy_j"].source or "")
    (short,) = [f for f in out.flags if f["code"] == "short_window"]
    assert short["interval_s"] == pytest.approx(DT) and short["uncertainty_rel"] is not None
    assert "gpu_energy_short_window" in codes(out.flags)


# -- The last line ---------------------------------------------------------------------------


def test_a_negative_energy_never_leaves_the_session() -> None:
    metrics = {
        "cpu_energy_j": Metric("cpu_energy_j", -3.0, "J", "a buggy meter"),
        "cpu_power_w": Metric("cpu_power_w", 10.0, "W", "a meter"),
        "gpu_energy_j": Metric("gpu_energy_j", 4.0, "J", "a meter"),
    }
    flags = refuse_negative_energy(metrics)
    assert codes(flags) == ["negative_energy_refused"]
    cpu = metrics["cpu_energy_j"].to_dict()
    assert cpu["value"] is None and cpu["available"] is False and "negative" in cpu["reason"]
    assert metrics["gpu_energy_j"].value == 4.0 and metrics["cpu_power_w"].value == 10.0
