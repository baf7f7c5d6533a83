"""Fixtures over the fakes in meter_fakes.py (the lowest hardware boundary only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from meter_fakes import FakeGpu, FakeNvml, PowercapTree


@pytest.fixture
def powercap(tmp_path: Path) -> PowercapTree:
    return PowercapTree(tmp_path / "powercap")


@pytest.fixture
def intel_two_sockets(powercap: PowercapTree) -> PowercapTree:
    """Two Intel sockets with DRAM, core/uncore subzones, psys and an MMIO duplicate."""
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    powercap.zone("intel-rapl:0:0", "core", 500_000)
    powercap.zone("intel-rapl:0:1", "uncore", 100_000)
    powercap.zone("intel-rapl:0:2", "dram", 2_000_000)
    powercap.zone("intel-rapl:1", "package-1", 3_000_000)
    powercap.zone("intel-rapl:1:0", "dram", 4_000_000)
    powercap.zone("intel-rapl:2", "psys", 9_000_000)
    powercap.zone("intel-rapl-mmio:0", "package-0", 1_000_000)
    return powercap


@pytest.fixture
def fake_nvml() -> FakeNvml:
    return FakeNvml(gpus=[FakeGpu("GPU-aaaa"), FakeGpu("GPU-bbbb", name="NVIDIA A100")])


@pytest.fixture
def no_nvml() -> FakeNvml:
    """An NVML whose library is missing (nvmlInit raises LIBRARY_NOT_FOUND)."""
    return FakeNvml(init_error=12)
