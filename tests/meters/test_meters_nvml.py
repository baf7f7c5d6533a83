"""NVML arithmetic against a fake pynvml module; real-GPU checks are marked ``gpu``."""

from __future__ import annotations

import pytest
from meter_fakes import FakeGpu, FakeNvml

from controller.meters import nvml as nvml_mod
from controller.meters.base import Trace
from controller.meters.nvml import NvmlMeter

MS = 1_000_000


def _replay(meter: NvmlMeter, fake: FakeNvml, steps: int, dt_ms: int, step_fn) -> Trace:  # type: ignore[no-untyped-def]
    """Read every ``dt_ms`` of synthetic time; ``step_fn(i, t_s)`` moves the fake GPUs first."""
    trace = Trace("nvml", meter.fields)
    for i in range(steps):
        step_fn(i, i * dt_ms / 1e3)
        trace.append(i * dt_ms * MS, meter.read())
    return trace


def _steady(fake: FakeNvml, watts: float, counter_period_ms: int, counter_scale: float = 1.0):  # type: ignore[no-untyped-def]
    """Constant power; the energy counter only moves every ``counter_period_ms`` (like NVML)."""
    base = {g.uuid: g.energy_mj for g in fake.gpus}

    def step(i: int, t_s: float) -> None:
        for g in fake.gpus:
            g.power_mw = int(watts * 1e3)
            g.avg_power_mw = int(watts * 1e3)
            t_q = (int(t_s * 1e3) // counter_period_ms) * counter_period_ms / 1e3
            g.energy_mj = base[g.uuid] + int(round(watts * t_q * 1e3 * counter_scale))

    return step


def test_selects_gpus_by_uuid_and_reads_instant_power(fake_nvml: FakeNvml) -> None:
    meter = NvmlMeter(nvml=fake_nvml, gpu_uuids=["GPU-bbbb"])
    assert meter.open().available
    assert [g.uuid for g in meter.gpus] == ["GPU-bbbb"]
    assert meter.gpus[0].power_source == nvml_mod.POWER_SOURCE_INSTANT
    values = dict(zip(meter.fields, meter.read(), strict=True))
    assert values["gpu0.power_w"] == 200.0  # 200000 mW
    assert values["gpu0.energy_mj"] == 1_000_000
    assert values["gpu0.util_gpu_percent"] == 50 and values["gpu0.mem_used_bytes"] == 4 * 1024**3
    assert values["gpu0.sm_clock_mhz"] == 1980 and values["gpu0.temp_c"] == 45
    meter.close()
    assert "shutdown" in fake_nvml.calls


def test_counter_and_integrated_power_agree(fake_nvml: FakeNvml) -> None:
    meter = NvmlMeter(nvml=fake_nvml)
    meter.open()
    trace = _replay(meter, fake_nvml, 201, 10, _steady(fake_nvml, 250.0, 100))  # 2 s
    s = meter.summarize(trace, 0, 2000 * MS)
    metrics, flags = s.metrics, s.flags
    gpu = metrics["gpu_energy_j"]
    assert gpu.value == pytest.approx(2 * 250.0 * 2.0)  # two GPUs, 250 W, 2 s
    assert "total-energy counter" in (gpu.source or "")
    per = gpu.extra["per_device"]
    assert per[0]["integrated_power_j"] == pytest.approx(500.0)
    assert per[0]["counter_update_period_s"] == pytest.approx(0.1)
    assert flags == []
    assert metrics["gpu_power_w"].value == pytest.approx(500.0)
    assert metrics["gpu_util_percent"].value == pytest.approx(50.0)
    assert metrics["gpu_mem_used_bytes"].value == 8 * 1024**3
    # The papers' "GPU used memory %": 8 GiB used of two 80 GiB GPUs.
    assert metrics["gpu_mem_used_percent"].value == pytest.approx(100 * 8 / 160)
    assert meter.gpus[0].to_dict()["mem_total_bytes"] == 80 * 1024**3


def test_disagreement_over_5_percent_is_flagged(fake_nvml: FakeNvml) -> None:
    fake_nvml.gpus = fake_nvml.gpus[:1]
    meter = NvmlMeter(nvml=fake_nvml)
    meter.open()
    trace = _replay(meter, fake_nvml, 201, 10, _steady(fake_nvml, 200.0, 100, counter_scale=1.1))
    s = meter.summarize(trace, 0, 2000 * MS)
    metrics, flags = s.metrics, s.flags
    assert metrics["gpu_energy_j"].value == pytest.approx(440.0)  # the counter stays primary
    assert [f["code"] for f in flags] == ["gpu_energy_disagreement"]
    assert flags[0]["relative_difference"] == pytest.approx(40 / 440)


def test_window_shorter_than_counter_period_is_flagged_not_zero(fake_nvml: FakeNvml) -> None:
    fake_nvml.gpus = fake_nvml.gpus[:1]
    meter = NvmlMeter(nvml=fake_nvml)
    meter.open()
    trace = _replay(meter, fake_nvml, 201, 10, _steady(fake_nvml, 300.0, 100))
    s = meter.summarize(trace, 110 * MS, 140 * MS)  # 30 ms, no counter step inside
    metrics, flags = s.metrics, s.flags
    gpu = metrics["gpu_energy_j"]
    assert gpu.value == pytest.approx(300.0 * 0.03)
    assert "integrated power" in (gpu.source or "")
    assert "gpu_energy_short_window" in [f["code"] for f in flags]


def test_field_api_unsupported_falls_back_to_power_usage(fake_nvml: FakeNvml) -> None:
    for g in fake_nvml.gpus:
        g.field_supported = False
    meter = NvmlMeter(nvml=fake_nvml, gpu_uuids=["GPU-aaaa"])
    meter.open()
    assert meter.gpus[0].power_source == nvml_mod.POWER_SOURCE_AVERAGE
    values = dict(zip(meter.fields, meter.read(), strict=True))
    assert values["gpu0.power_w"] == 190.0  # the averaged reading, not the instant one
    trace = _replay(meter, fake_nvml, 101, 10, _steady(fake_nvml, 100.0, 100))
    metrics = meter.summarize(trace, 0, 1000 * MS).metrics
    assert "1 s" in str(metrics["gpu_power_w"].extra["averaging"])
    assert "nvmlDeviceGetPowerUsage" in (metrics["gpu_power_w"].source or "")


def test_no_energy_counter_uses_integration(fake_nvml: FakeNvml) -> None:
    fake_nvml.gpus = [FakeGpu("GPU-old", name="Tesla P100", counter_supported=False)]
    meter = NvmlMeter(nvml=fake_nvml)
    meter.open()
    assert not meter.gpus[0].energy_counter.available
    trace = _replay(meter, fake_nvml, 101, 10, _steady(fake_nvml, 150.0, 100))
    metrics = meter.summarize(trace, 0, 1000 * MS).metrics
    assert metrics["gpu_energy_j"].value == pytest.approx(150.0)
    assert "integrated power" in (metrics["gpu_energy_j"].source or "")


def test_missing_library_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_module() -> None:
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(nvml_mod, "load_pynvml", no_module)
    meter = NvmlMeter()
    avail = meter.open()
    assert not avail.available and "nvidia-ml-py" in (avail.reason or "")


def test_no_driver_no_gpu_unknown_uuid(no_nvml: FakeNvml) -> None:
    avail = NvmlMeter(nvml=no_nvml).open()
    assert not avail.available and "NVML init failed" in (avail.reason or "")
    avail = NvmlMeter(nvml=FakeNvml()).open()
    assert not avail.available and "no NVIDIA GPU" in (avail.reason or "")
    avail = NvmlMeter(nvml=FakeNvml(gpus=[FakeGpu("GPU-x")]), gpu_uuids=["GPU-y"]).open()
    assert not avail.available and "GPU-y" in (avail.reason or "") and "GPU-x" in (avail.reason or "")
    avail = NvmlMeter(nvml=FakeNvml(gpus=[FakeGpu("GPU-x")]), gpu_uuids=[]).open()
    assert not avail.available and "no GPU selected" in (avail.reason or "")


@pytest.mark.gpu
def test_real_gpu_counter_advances() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVML here: {exc}")
    from controller.meters.session import MeterSession

    with MeterSession(interval_s=0.01) as ms:
        import time

        t0 = time.monotonic_ns()
        time.sleep(1.0)
        t1 = time.monotonic_ns()
    out = ms.summarize(t0, t1)
    gpu = out["metrics"]["gpu_energy_j"]
    assert gpu["available"] and gpu["value"] > 0
    assert out["metrics"]["gpu_power_w"]["value"] > 0
