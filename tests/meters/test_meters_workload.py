"""Container CPU/RAM from cgroup files (fake v1/v2 trees: no Docker here), and the process meter
for real on a child process that burns CPU and allocates memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.meters.base import Trace
from controller.meters.cgroup import CgroupMeter, cgroup_version
from controller.meters.session import MeterSession

CID = "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
S = 1_000_000_000


def _v2_tree(root: Path, systemd: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory io\n")
    d = root / ("system.slice/docker-" + CID + ".scope" if systemd else "docker/" + CID)
    d.mkdir(parents=True)
    return d


def _write_v2(d: Path, usage_usec: int, current: int, inactive: int, peak: int) -> None:
    (d / "cpu.stat").write_text(
        f"usage_usec {usage_usec}\nuser_usec {usage_usec // 2}\nsystem_usec {usage_usec // 2}\nnr_periods 0\n"
    )
    (d / "memory.current").write_text(f"{current}\n")
    (d / "memory.stat").write_text(f"anon {current - inactive}\nfile 0\ninactive_file {inactive}\n")
    (d / "memory.peak").write_text(f"{peak}\n")


@pytest.mark.parametrize("systemd", [True, False])
def test_cgroup_v2(tmp_path: Path, systemd: bool) -> None:
    d = _v2_tree(tmp_path / "cg", systemd)
    _write_v2(d, 1_000_000, 500 << 20, 100 << 20, 600 << 20)
    meter = CgroupMeter(CID, tmp_path / "cg")
    assert meter.open().available and meter.version == 2
    trace = Trace("cgroup", meter.fields)
    trace.append(0, meter.read())
    _write_v2(d, 3_500_000, 900 << 20, 100 << 20, 950 << 20)  # +2.5 s CPU in 2 s
    trace.append(1 * S, meter.read())
    _write_v2(d, 5_000_000, 700 << 20, 200 << 20, 950 << 20)
    trace.append(2 * S, meter.read())
    m = meter.summarize(trace, 0, 2 * S).metrics
    assert m["cpu_time_s"].value == pytest.approx(4.0)
    assert m["cpu_percent"].value == pytest.approx(200.0)  # two cores busy
    assert m["ram_peak_bytes"].value == 800 << 20  # usage minus inactive page cache
    assert m["ram_mean_bytes"].value == pytest.approx(((400 + 800 + 500) << 20) / 3)
    assert m["ram_peak_bytes"].extra["kernel_peak_since_start_bytes"] == 950 << 20


@pytest.mark.parametrize("layout", ["docker/{id}", "system.slice/docker-{id}.scope"])
def test_cgroup_v1(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "cg"
    cpu = root / "cpuacct" / layout.format(id=CID)
    mem = root / "memory" / layout.format(id=CID)
    cpu.mkdir(parents=True)
    mem.mkdir(parents=True)

    def write(ns: int, usage: int, inactive: int) -> None:
        (cpu / "cpuacct.usage").write_text(f"{ns}\n")
        (mem / "memory.usage_in_bytes").write_text(f"{usage}\n")
        (mem / "memory.stat").write_text(f"cache 0\nrss {usage}\ntotal_inactive_file {inactive}\n")

    write(10 * S, 300 << 20, 50 << 20)
    meter = CgroupMeter(CID, root)
    assert cgroup_version(root) == 1
    assert meter.open().available and meter.version == 1
    trace = Trace("cgroup", meter.fields)
    trace.append(0, meter.read())
    write(10 * S + S // 2, 400 << 20, 50 << 20)
    trace.append(S, meter.read())
    m = meter.summarize(trace, 0, S).metrics
    assert m["cpu_time_s"].value == pytest.approx(0.5)
    assert m["cpu_percent"].value == pytest.approx(50.0)
    assert m["ram_peak_bytes"].value == 350 << 20


def test_unknown_container_is_unavailable(tmp_path: Path) -> None:
    _v2_tree(tmp_path / "cg")
    avail = CgroupMeter("deadbeef" * 8, tmp_path / "cg").open()
    assert not avail.available and "not found" in (avail.reason or "")


def test_cgroup_gone_gives_nan_and_window_after_it_is_unavailable(tmp_path: Path) -> None:
    d = _v2_tree(tmp_path / "cg")
    _write_v2(d, 1_000_000, 100, 0, 100)
    meter = CgroupMeter(CID, tmp_path / "cg")
    meter.open()
    trace = Trace("cgroup", meter.fields)
    trace.append(0, meter.read())
    (d / "cpu.stat").write_text("")  # what a vanished cgroup file reads like to us
    trace.append(S, meter.read())
    m = meter.summarize(trace, 0, S).metrics
    assert m["cpu_time_s"].to_dict()["value"] is None
    assert "last valid sample" in (m["cpu_time_s"].reason or "")


CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    sys.stdin.readline()                      # wait for "go"
    t = time.process_time()
    while time.process_time() - t < 0.5:      # 0.5 s of CPU in this process
        pass
    subprocess.run([sys.executable, "-c",     # and 0.3 s in a reaped grandchild
        "import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.3: pass"])
    block = bytearray(300 * 1024 * 1024)      # 300 MiB, touched
    for i in range(0, len(block), 4096):
        block[i] = 1
    print("done", flush=True)
    sys.stdin.readline()
    """
)


def test_process_meter_on_a_real_child(tmp_path: Path) -> None:
    import time

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        ms = MeterSession(interval_s=0.01, powercap_root=tmp_path / "none", gpu_uuids=[])
        ms.start()
        assert ms.attach_process(child.pid).available
        ms.sample_now()
        t0 = time.monotonic_ns()
        ms.sample_now()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        ms.sample_now()
        t1 = time.monotonic_ns()
        ms.sample_now()
        child.stdin.write("bye\n")
        child.stdin.flush()
        child.wait(timeout=30)
        ms.stop()
    finally:
        child.kill()
        child.wait()
    out = ms.summarize(t0, t1)
    m = out["metrics"]
    assert m["cpu_time_s"]["available"]
    assert m["cpu_time_s"]["value"] >= 0.8  # child + reaped grandchild
    assert m["cpu_time_s"]["value"] < 5.0
    assert m["cpu_percent"]["value"] > 0
    assert m["ram_peak_bytes"]["value"] >= 300 * 1024 * 1024
    assert m["ram_mean_bytes"]["value"] <= m["ram_peak_bytes"]["value"]
    assert out["meters"]["process"]["available"]
    assert m["cpu_energy_j"]["value"] is None and m["cpu_energy_j"]["reason"]


def test_attach_to_missing_pid_is_unavailable(tmp_path: Path) -> None:
    ms = MeterSession(interval_s=0.05, powercap_root=tmp_path / "none", gpu_uuids=[])
    ms.start()
    avail = ms.attach_process(2**22 + 12345)
    ms.stop()
    assert not avail.available and "not found" in (avail.reason or "")
