"""How controller/meters hangs together: no import cycle, and every meter's summary has one shape."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from meter_fakes import FakeNvml, PowercapTree

from controller.meters.base import MeterSummary, Trace
from controller.meters.cgroup import CgroupMeter
from controller.meters.nvml import NvmlMeter
from controller.meters.process import ProcessMeter
from controller.meters.rapl import RaplMeter
from controller.meters.wall import WallMeter

PACKAGE = Path(__file__).resolve().parents[2] / "controller" / "meters"


def _imports(path: Path) -> set[str]:
    """Every controller.meters module a file imports, wherever the import is (functions and
    ``TYPE_CHECKING`` blocks included: a cycle hidden in a function is still a cycle)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("controller.meters."):
            out.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("controller.meters.")}
    return out


def test_no_import_cycle_in_meters() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        assert mod not in path, "import cycle: " + " -> ".join([*path[path.index(mod) :], mod])
        if mod in done:
            return
        for dep in sorted(graph.get(mod, ())):
            visit(dep, [*path, mod])
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, [])
    assert "session" not in graph["baseline"]  # the baseline model stands without the session


def _meters(tmp_path: Path, fake_nvml: FakeNvml) -> list:  # type: ignore[type-arg]
    tree = PowercapTree(tmp_path / "pc")
    tree.zone("intel-rapl:0", "package-0", 0)
    return [
        RaplMeter(tree.root),
        NvmlMeter(nvml=fake_nvml),
        WallMeter("http://127.0.0.1:9", timeout_s=0.2),
        CgroupMeter("0" * 64, tmp_path / "cg"),
        ProcessMeter(os.getpid()),
    ]


@pytest.mark.parametrize("which", range(5))
def test_every_meter_summarizes_to_its_own_names(tmp_path: Path, fake_nvml: FakeNvml, which: int) -> None:
    meter = _meters(tmp_path, fake_nvml)[which]
    before = meter.unavailable()  # not opened yet: every figure says so
    assert isinstance(before, MeterSummary) and set(before.metrics) == set(meter.units)
    assert all(m.reason and m.value is None for m in before.metrics.values())
    assert {m.unit for m in before.metrics.values()} == set(meter.units.values())
    if meter.open().available:
        trace = Trace(meter.name, meter.fields)
        for k in range(3):
            trace.append(k * 10**9, meter.read())
        after = meter.summarize(trace, 0, 2 * 10**9)
        assert isinstance(after, MeterSummary) and set(after.metrics) == set(meter.units)
    meter.close()
