"""RAPL through a powercap tree written in tmp_path; counters advanced between reads.

We run as root, so ``chmod 000`` cannot deny a read: a permission-denied ``energy_uj`` is
simulated with the meter's ``opener`` hook (the file-open boundary), and an unreadable one by
making ``energy_uj`` a directory (EISDIR).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from meter_fakes import MAX_RANGE_UJ, PowercapTree

from controller.meters.base import Trace
from controller.meters.rapl import RaplMeter, discover


def _replay(meter: RaplMeter, tree: PowercapTree, steps: list[dict[str, int]]) -> Trace:
    """One read per step at t = 0, 1, 2 ... s after writing that step's counter values."""
    trace = Trace("rapl", meter.fields)
    for i, values in enumerate(steps):
        for zone_id, v in values.items():
            tree.set(zone_id, v)
        trace.append(i * 1_000_000_000, meter.read())
    return trace


def test_two_sockets_sum_packages_and_dram_never_core_uncore_psys_or_mmio(
    intel_two_sockets: PowercapTree,
) -> None:
    meter = RaplMeter(intel_two_sockets.root)
    assert meter.open().available
    assert sorted((z.domain, z.socket) for z in meter.zones) == [
        ("cpu", "package-0"),
        ("cpu", "package-1"),
        ("dram", "package-0"),
        ("dram", "package-1"),
    ]
    skipped = " ".join(meter.skipped)
    for what in ("psys", "core", "uncore", "intel-rapl-mmio:0"):
        assert what in skipped

    steps = [
        {},
        {
            "intel-rapl:0": 11_000_000,  # +10 J
            "intel-rapl:1": 23_000_000,  # +20 J
            "intel-rapl:0:2": 5_000_000,  # +3 J
            "intel-rapl:1:0": 5_000_000,  # +1 J
            "intel-rapl:0:0": 400_000_000,  # core moves a lot: must not count
            "intel-rapl:2": 900_000_000,  # psys: must not count
            "intel-rapl-mmio:0": 99_000_000,  # duplicate: must not count
        },
    ]
    trace = _replay(meter, intel_two_sockets, steps)
    s = meter.summarize(trace, 0, 1_000_000_000)
    metrics, flags = s.metrics, s.flags
    assert metrics["cpu_energy_j"].value == pytest.approx(30.0)
    assert metrics["cpu_energy_j"].extra["per_socket"] == {
        "package-0": pytest.approx(10.0),
        "package-1": pytest.approx(20.0),
    }
    assert metrics["dram_energy_j"].value == pytest.approx(4.0)
    assert metrics["cpu_power_w"].value == pytest.approx(30.0)
    # Two reads 1 s apart make the window a single interval long: short, and nothing else.
    assert [(f["code"], f["metric"]) for f in flags] == [
        ("short_window", "cpu_energy_j"),
        ("short_window", "dram_energy_j"),
    ]
    meter.close()


def test_window_edges_are_interpolated(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0)
    meter = RaplMeter(powercap.root)
    meter.open()
    trace = _replay(meter, powercap, [{}, {"intel-rapl:0": 100_000_000}])  # 100 J over 1 s
    metrics = meter.summarize(trace, 250_000_000, 750_000_000).metrics
    assert metrics["cpu_energy_j"].value == pytest.approx(50.0)


def test_wraparound_is_unwrapped_with_max_energy_range(powercap: PowercapTree) -> None:
    near_top = MAX_RANGE_UJ - 5_000_000
    powercap.zone("intel-rapl:0", "package-0", near_top)
    meter = RaplMeter(powercap.root)
    meter.open()
    # 5 J up to the top, wrap, 7 J after it; then another 3 J.
    trace = _replay(meter, powercap, [{}, {"intel-rapl:0": 7_000_000}, {"intel-rapl:0": 10_000_000}])
    metrics = meter.summarize(trace, 0, 2_000_000_000).metrics
    # Reads 1 s apart: the counter's update lag (up to 1 ms at each edge) is all that is uncertain.
    assert metrics["cpu_energy_j"].value == pytest.approx(15.0, rel=1e-3)
    assert meter.zones[0].wraps == 1
    # At 1 kW a 262 kJ range wraps in 262 s; the meter wants reads at least twice as often.
    assert meter.max_safe_interval_s == pytest.approx(MAX_RANGE_UJ / 1e9 / 2)


def test_gap_that_may_hide_a_wrap_makes_the_figure_unavailable(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0, max_range_uj=10_000_000)  # wraps at 10 J
    meter = RaplMeter(powercap.root, pessimistic_power_w=100.0)  # 10 J at 100 W: 0.1 s
    meter.open()
    trace = _replay(meter, powercap, [{}, {"intel-rapl:0": 4_000_000}])  # reads 1 s apart
    s = meter.summarize(trace, 0, 1_000_000_000)
    # No two reads are close enough to see the power without a wrap hiding between them: at the
    # pessimistic 100 W the second read could be 4 J, 14 J, 24 J ... on: not a figure.
    assert [f["code"] for f in s.flags] == ["rapl_possible_missed_wrap"]
    cpu = s.metrics["cpu_energy_j"].to_dict()
    assert cpu["value"] is None and "pessimistic" in cpu["reason"] and "more than once" in cpu["reason"]


def test_amd_package_only_has_no_dram(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0)
    powercap.zone("intel-rapl:1", "package-1", 0)
    meter = RaplMeter(powercap.root)
    assert meter.open().available
    assert not meter.dram.available
    assert "AMD" in (meter.dram.reason or "")
    trace = _replay(meter, powercap, [{}, {"intel-rapl:0": 2_000_000, "intel-rapl:1": 1_000_000}])
    metrics = meter.summarize(trace, 0, 1_000_000_000).metrics
    assert metrics["cpu_energy_j"].value == pytest.approx(3.0)
    dram = metrics["dram_energy_j"].to_dict()
    assert dram["value"] is None and dram["available"] is False and dram["reason"]


def test_mmio_only_package_is_used(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl-mmio:0", "package-0", 0)
    found = discover(powercap.root)
    assert [(z.domain, z.socket) for z in found.zones] == [("cpu", "package-0")]


def test_missing_powercap_is_unavailable_with_reason(tmp_path: Path) -> None:
    meter = RaplMeter(tmp_path / "nope")
    avail = meter.open()
    assert not avail.available
    assert "no powercap" in (avail.reason or "") and "bare metal" in (avail.reason or "")
    assert meter.fields == ()


def test_permission_denied_says_root_only(intel_two_sockets: PowercapTree) -> None:
    def denied(path: str) -> int:
        raise PermissionError(13, "Permission denied", path)

    meter = RaplMeter(intel_two_sockets.root, opener=denied)
    avail = meter.open()
    assert not avail.available
    assert "permission denied" in (avail.reason or "")
    assert "root" in (avail.reason or "")
    assert not meter.dram.available


def test_energy_uj_unreadable(powercap: PowercapTree) -> None:
    d = powercap.zone("intel-rapl:0", "package-0", 0)
    (d / "energy_uj").unlink()
    (d / "energy_uj").mkdir()  # reading a directory fails with EISDIR
    meter = RaplMeter(powercap.root)
    avail = meter.open()
    assert not avail.available
    assert "unreadable" in (avail.reason or "")


def test_unreadable_max_range_means_no_zone(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0, max_range_uj="garbage")
    meter = RaplMeter(powercap.root)
    avail = meter.open()
    assert not avail.available
    assert "max_energy_range_uj" in (avail.reason or "")


def test_torn_read_gives_nan_not_zero(powercap: PowercapTree) -> None:
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    meter = RaplMeter(powercap.root)
    meter.open()
    (powercap.root / "intel-rapl:0" / "energy_uj").write_text("")  # caught mid-rewrite
    assert math.isnan(meter.read()[0])
