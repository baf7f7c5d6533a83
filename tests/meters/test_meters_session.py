"""MeterSession end to end over a fake powercap tree and a fake NVML; idle baselines; checks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from meter_fakes import FakeGpu, FakeNvml, PowercapTree

from controller.meters import (
    IdleBaseline,
    MeterSession,
    check_system,
    load_baseline,
    measure_idle,
    save_baseline,
)
from controller.meters.base import Availability
from controller.meters.sampler import Sampler

FP: dict[str, Any] = {"id": "abc123", "cpu_model": "Xeon", "gpus": [{"uuid": "GPU-aaaa"}]}


def _run(ms: MeterSession, tree: PowercapTree, nvml: FakeNvml | None, pid: int | None = None) -> tuple[int, int]:
    """Counters flat around both edges so the window energy is exact: +30 J package-0, +4 J
    DRAM, +50 J on GPU-aaaa inside the window. ``pid``: a process to attach.

    A counter that reads the same twice shows no power between only if an update fell between
    the reads: each edge has reads on either side held for longer than an update period (RAPL's
    1 ms; NVML's, unknown from four reads, is taken as 100 ms).
    """
    hold = 0.25 if nvml is not None else 0.005
    ms.start()
    if pid is not None:
        assert ms.attach_process(pid).available
    ms.sample_now()
    time.sleep(hold)
    ms.sample_now()
    t0 = time.monotonic_ns()
    ms.sample_now()
    time.sleep(hold)
    ms.sample_now()
    # Longer than the GPU counter's update period (shorter windows are flagged, see test_nvml).
    time.sleep(0.15)
    tree.set("intel-rapl:0", 31_000_000)
    if (tree.root / "intel-rapl:0:2").exists():
        tree.set("intel-rapl:0:2", 6_000_000)
    if nvml is not None:
        nvml.gpus[0].energy_mj += 50_000
    ms.sample_now()
    time.sleep(hold)
    ms.sample_now()
    t1 = time.monotonic_ns()
    ms.sample_now()
    time.sleep(hold)
    ms.sample_now()
    ms.stop()
    return t0, t1


@pytest.fixture
def tree(powercap: PowercapTree) -> PowercapTree:
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    powercap.zone("intel-rapl:0:2", "dram", 2_000_000)
    return powercap


def test_nothing_measurable_is_unavailable_never_zero(tmp_path: Path, no_nvml: FakeNvml) -> None:
    ms = MeterSession(interval_s=0.05, powercap_root=tmp_path / "none", nvml=no_nvml)
    ms.start()
    t0 = time.monotonic_ns()
    ms.sample_now()
    t1 = time.monotonic_ns()
    ms.stop()
    out = ms.summarize(t0, t1)
    json.dumps(out)  # JSON-serialisable as is
    for name, m in out["metrics"].items():
        if name.startswith("system_"):  # the host's own CPU and RAM use, readable anywhere
            assert m["available"] and "host-wide" in m["scope"], name
            continue
        assert m["value"] is None, name
        assert m["available"] is False and m["reason"], name
    assert "no energy domain" in out["metrics"]["total_energy_j"]["reason"]
    assert out["meters"]["rapl"]["available"] is False
    assert "NVML init failed" in out["meters"]["nvml"]["reason"]
    assert out["baseline"]["status"] == "missing"


def test_total_covers_what_was_measured(tree: PowercapTree, fake_nvml: FakeNvml) -> None:
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, nvml=fake_nvml, gpu_uuids=["GPU-aaaa"])
    t0, t1 = _run(ms, tree, fake_nvml)
    out = ms.summarize(t0, t1)
    m = out["metrics"]
    assert m["cpu_energy_j"]["value"] == pytest.approx(30.0)
    assert m["dram_energy_j"]["value"] == pytest.approx(4.0)
    assert m["gpu_energy_j"]["value"] == pytest.approx(50.0)
    total = m["total_energy_j"]
    assert total["covers"] == ["cpu", "dram", "gpu"]
    assert total["value"] == pytest.approx(84.0)
    assert total["net_j"] is None and "no idle baseline" in total["net_reason"]
    assert m["cpu_time_s"]["value"] is None and "attach" in m["cpu_time_s"]["reason"]
    json.dumps(out)


def test_amd_host_total_covers_cpu_only(powercap: PowercapTree, no_nvml: FakeNvml) -> None:
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    ms = MeterSession(interval_s=3600, powercap_root=powercap.root, nvml=no_nvml)
    t0, t1 = _run(ms, powercap, None)
    total = ms.summarize(t0, t1)["metrics"]["total_energy_j"]
    assert total["covers"] == ["cpu"] and total["value"] == pytest.approx(30.0)
    assert set(total["not_covered"]) == {"dram", "gpu"}


def _baseline(measured_at: float, fp: dict[str, Any] = FP) -> IdleBaseline:
    return IdleBaseline(
        fingerprint=fp,
        measured_at_unix=measured_at,
        duration_s=600.0,
        interval_s=0.01,
        domains={
            "cpu": {"available": True, "reason": None, "power_w": 20.0},
            "dram": {"available": True, "reason": None, "power_w": 2.0},
            "gpu": {
                "available": True,
                "reason": None,
                "power_w": 130.0,
                "per_device": {"GPU-aaaa": 60.0, "GPU-bbbb": 70.0},
            },
        },
    )


def test_baseline_statuses(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    p = save_baseline(_baseline(now - 3600), tmp_path / "idle" / "abc123.json")
    st = load_baseline(p, fingerprint=FP, now=now)
    assert st.status == "ok" and st.usable and st.age_s == pytest.approx(3600)
    st = load_baseline(p, fingerprint=FP, now=now + 8 * 86400)
    assert st.status == "stale" and not st.usable and "days old" in (st.reason or "")
    st = load_baseline(p, fingerprint={**FP, "id": "other", "cpu_model": "EPYC"}, now=now)
    assert st.status == "foreign" and "cpu_model" in (st.reason or "")
    st = load_baseline(tmp_path / "idle" / "nope.json", fingerprint=FP, now=now)
    assert st.status == "missing" and "abc123" in (st.reason or "")
    p.write_text("{not json")
    assert load_baseline(p, fingerprint=FP, now=now).status == "invalid"


def test_default_path_is_keyed_by_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = save_baseline(_baseline(time.time()))
    assert p == tmp_path / "cache" / "joulebench" / "idle" / "abc123.json"
    assert load_baseline(fingerprint=FP).status == "ok"


def test_idle_subtraction_keeps_gross_idle_net(tree: PowercapTree, fake_nvml: FakeNvml, tmp_path: Path) -> None:
    p = save_baseline(_baseline(time.time()), tmp_path / "b.json")
    ms = MeterSession(
        interval_s=3600,
        powercap_root=tree.root,
        nvml=fake_nvml,
        gpu_uuids=["GPU-aaaa"],
        baseline=load_baseline(p, fingerprint=FP),
    )
    t0, t1 = _run(ms, tree, fake_nvml)
    out = ms.summarize(t0, t1)
    w = out["window_s"]
    cpu, gpu, total = (out["metrics"][k] for k in ("cpu_energy_j", "gpu_energy_j", "total_energy_j"))
    assert cpu["gross_j"] == pytest.approx(30.0)
    assert cpu["idle_j"] == pytest.approx(20.0 * w)
    assert cpu["net_j"] == pytest.approx(30.0 - 20.0 * w)
    assert gpu["idle_power_w"] == pytest.approx(60.0)  # only the run's GPU, not GPU-bbbb
    assert total["net_j"] == pytest.approx(84.0 - (20.0 + 2.0 + 60.0) * w)
    assert out["baseline"]["status"] == "ok"


def test_stale_baseline_is_reported_not_subtracted(tree: PowercapTree, tmp_path: Path) -> None:
    p = save_baseline(_baseline(time.time() - 30 * 86400), tmp_path / "b.json")
    ms = MeterSession(
        interval_s=3600,
        powercap_root=tree.root,
        gpu_uuids=[],
        baseline=load_baseline(p, fingerprint=FP),
    )
    t0, t1 = _run(ms, tree, None)
    out = ms.summarize(t0, t1)
    cpu = out["metrics"]["cpu_energy_j"]
    assert cpu["value"] == pytest.approx(30.0) and cpu["net_j"] is None
    assert "stale" in cpu["net_reason"]
    assert out["baseline"]["status"] == "stale"
    assert "idle_baseline_not_used" in [f["code"] for f in out["flags"]]


def test_measure_idle_power_is_energy_over_duration(tree: PowercapTree) -> None:
    def fake_sleep(_duration: float) -> None:
        # +12 J while "idle", 1 J every 20 ms (50 W): one step of 12 J between two reads 10 ms
        # apart would be a counter jump no package can draw, and refused as such.
        time.sleep(0.1)
        for k in range(1, 13):
            tree.set("intel-rapl:0", 1_000_000 + k * 1_000_000)
            time.sleep(0.02)
        time.sleep(0.1)

    fake = FakeNvml(gpus=[FakeGpu("GPU-aaaa")])
    b = measure_idle(600, interval_s=0.01, powercap_root=tree.root, nvml=fake, fingerprint=FP, sleep=fake_sleep)
    assert b.domains["cpu"]["power_w"] * b.duration_s == pytest.approx(12.0, rel=1e-6)
    assert b.domains["dram"]["power_w"] == 0.0  # measured: the DRAM counter did not move
    assert "GPU-aaaa" in b.domains["gpu"]["per_device"]
    assert b.fingerprint_id == "abc123"


def test_write_trace_parquet(tree: PowercapTree, tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, gpu_uuids=[], keep_trace=True)
    _run(ms, tree, None)
    p = ms.write_trace(tmp_path / "trace.parquet")
    df = pl.read_parquet(p)
    assert df.columns == ["meter", "t_ns", "field", "value"]
    cpu = df.filter(pl.col("field") == "cpu.package-0.energy_uj")["value"].to_list()
    assert cpu[-1] - cpu[0] == pytest.approx(30_000_000)
    no_keep = MeterSession(interval_s=3600, powercap_root=tree.root, gpu_uuids=[])
    with pytest.raises(RuntimeError, match="keep_trace"):
        no_keep.write_trace(tmp_path / "x.parquet")


def test_reversed_window_is_refused(tree: PowercapTree) -> None:
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, gpu_uuids=[])
    t0, t1 = _run(ms, tree, None)
    with pytest.raises(ValueError, match="reversed"):
        ms.summarize(t1, t0)


class _Counter:
    name = "counter"
    fields = ("n",)
    interval_s = None

    def __init__(self, fail_every: int = 0) -> None:
        self.n = 0
        self.fail_every = fail_every

    def open(self) -> Availability:
        return Availability.ok()

    def read(self) -> tuple[float]:
        self.n += 1
        if self.fail_every and self.n % self.fail_every == 0:
            raise OSError("flaky")
        return (float(self.n),)

    def close(self) -> None:
        pass


def test_sampler_thread_samples_and_survives_meter_errors() -> None:
    s = Sampler(0.005)
    trace = s.add(_Counter(fail_every=3))
    s.start()
    deadline = time.monotonic() + 30
    while len(trace) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    assert len(trace) >= 20
    assert list(trace.t_ns) == sorted(trace.t_ns)
    stats = s.stats()
    assert stats["meter_errors"]["counter"]["errors"] >= 5
    assert stats["thread_cpu_s"] is not None and stats["ticks"] >= 20


def test_check_system(tree: PowercapTree, fake_nvml: FakeNvml, tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    (cpu / "cpu0" / "cpufreq").mkdir(parents=True)
    (cpu / "cpu0" / "cpufreq" / "scaling_governor").write_text("powersave\n")
    (cpu / "intel_pstate").mkdir()
    (cpu / "intel_pstate" / "no_turbo").write_text("1\n")
    fake_nvml.gpus[1].field_supported = False
    checks = {c.name: c for c in check_system(tree.root, fake_nvml, cgroup_root=tmp_path / "cg", cpu_root=cpu)}
    assert checks["nvml"].ok and "550.54.15" in checks["nvml"].detail
    assert checks["gpu_energy_counter[GPU-aaaa]"].ok
    assert checks["gpu_instant_power[GPU-aaaa]"].ok
    assert checks["gpu_instant_power[GPU-bbbb]"].ok is False
    assert checks["rapl_zones"].ok and checks["rapl_permissions"].ok
    assert checks["rapl_dram"].ok
    assert checks["cgroup_version"].ok is False
    assert checks["cpu_governor"].ok is False and "performance" in (checks["cpu_governor"].hint or "")
    assert checks["cpu_turbo"].ok is True


def test_check_system_without_anything(tmp_path: Path, no_nvml: FakeNvml) -> None:
    checks = {c.name: c for c in check_system(tmp_path / "none", no_nvml, cpu_root=tmp_path / "nocpu")}
    assert checks["nvml"].ok is False
    assert checks["rapl_zones"].ok is False and "no powercap" in checks["rapl_zones"].detail
    assert checks["cpu_governor"].ok is None


# The metric names a record's measurements hold, measured or not: the report and old records
# read these.
RECORD_METRICS = {
    "cpu_energy_j",
    "dram_energy_j",
    "cpu_power_w",
    "gpu_energy_j",
    "gpu_power_w",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_bytes",
    "gpu_mem_used_percent",
    "gpu_sm_clock_mhz",
    "gpu_temp_c",
    "wall_energy_j",
    "wall_power_w",
    "cpu_time_s",
    "cpu_percent",
    "ram_peak_bytes",
    "ram_mean_bytes",
    "total_energy_j",
    "system_cpu_percent",
    "system_ram_used_percent",
    "system_ram_used_bytes",
}
MEASUREMENT_KEYS = {"schema", "window", "window_s", "metrics", "meters", "baseline", "sampler", "flags"}


def test_every_figure_is_listed_measured_or_not(tree: PowercapTree, fake_nvml: FakeNvml, tmp_path: Path) -> None:
    nothing = MeterSession(interval_s=3600, powercap_root=tmp_path / "none", gpu_uuids=[])
    t0, t1 = _run(nothing, tree, None)
    empty = nothing.summarize(t0, t1)
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, nvml=fake_nvml, gpu_uuids=["GPU-aaaa"])
    t0, t1 = _run(ms, tree, fake_nvml, pid=os.getpid())
    full = ms.summarize(t0, t1)
    for out in (empty, full):
        assert set(out) == MEASUREMENT_KEYS
        assert set(out["metrics"]) == RECORD_METRICS
        for m in out["metrics"].values():
            assert {"value", "unit", "source", "available", "reason"} <= set(m)
    assert all(not m["available"] for n, m in empty["metrics"].items() if not n.startswith("system_"))
    assert full["metrics"]["cpu_time_s"]["available"] and full["metrics"]["gpu_energy_j"]["available"]
    assert set(empty["meters"]) == {"rapl", "nvml", "wall", "workload", "host"}
    assert set(full["meters"]) == {"rapl", "nvml", "wall", "process", "host"}
    for name in ("cpu_energy_j", "gpu_energy_j", "wall_energy_j", "total_energy_j"):
        assert {"gross_j", "idle_j", "net_j", "net_reason"} <= set(full["metrics"][name]), name


def test_counter_reset_in_a_run_is_flagged_and_integrated(tree: PowercapTree, fake_nvml: FakeNvml) -> None:
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, nvml=fake_nvml, gpu_uuids=["GPU-aaaa"])
    ms.start()
    ms.sample_now()
    t0 = time.monotonic_ns()
    ms.sample_now()
    time.sleep(0.15)
    fake_nvml.gpus[0].energy_mj = 10  # the driver was reloaded: the counter starts again
    ms.sample_now()
    t1 = time.monotonic_ns()
    ms.sample_now()
    ms.stop()
    out = ms.summarize(t0, t1)
    gpu = out["metrics"]["gpu_energy_j"]
    assert gpu["available"] and gpu["value"] == pytest.approx(200.0 * out["window_s"], rel=1e-6)  # 200 W
    assert "integrated power" in gpu["source"]
    assert "gpu_energy_counter_reset" in [f["code"] for f in out["flags"]]
    json.dumps(out)


def test_short_window_flag_reaches_the_record(tree: PowercapTree) -> None:
    ms = MeterSession(interval_s=0.01, powercap_root=tree.root, gpu_uuids=[])
    ms.start()
    t0 = time.monotonic_ns()
    time.sleep(0.03)
    t1 = time.monotonic_ns()
    time.sleep(0.02)
    ms.stop()
    out = ms.summarize(t0, t1)
    short = {f["metric"]: f for f in out["flags"] if f["code"] == "short_window"}
    assert set(short) == {"cpu_energy_j", "dram_energy_j"}
    cpu = short["cpu_energy_j"]
    assert cpu["window_s"] == out["window_s"]
    assert cpu["uncertainty_rel"] == out["metrics"]["cpu_energy_j"]["uncertainty_rel"]


def test_net_below_idle_is_flagged(tree: PowercapTree) -> None:
    high = _baseline(time.time())
    high.domains["cpu"]["power_w"] = 1000.0  # far above the 30 J the run draws in ~0.15 s
    ms = MeterSession(interval_s=3600, powercap_root=tree.root, gpu_uuids=[], baseline=high)
    t0, t1 = _run(ms, tree, None)
    out = ms.summarize(t0, t1)
    cpu = out["metrics"]["cpu_energy_j"]
    assert cpu["value"] == pytest.approx(30.0) and cpu["net_j"] < 0
    (neg,) = [f for f in out["flags"] if f["code"] == "net_energy_negative"]
    assert neg["metric"] == "cpu_energy_j"
