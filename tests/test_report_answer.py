"""The report's answer, first: per model, the configurations ranked by energy per unit of work with
their bounds, and what the runs could and could not separate (issue 30, item 4)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.report import answer_render, build_report
from controller.report.answer import ENERGY, Config, against, ranked_answer
from controller.report.data import load_runs
from controller.report.work import fixed_work

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "records"
ENERGY_RECORDS = FIXTURES / "fixture-energy"  # resnet50 (tiny), batch 2: torch2onnx, torch, torchscript × 5
REAL = FIXTURES / "fixture-real"  # the same runs as measured: no RAPL, no GPU, so no energy


def copy_records(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.glob("*.json"):
        rec = json.loads(p.read_text())
        rec["trace_path"] = None
        (dst / p.name).write_text(json.dumps(rec))
    return dst


def edit(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    for p in sorted(folder.glob("*.json")):
        rec = json.loads(p.read_text())
        if rec["status"] == "ok":
            change(rec)
            p.write_text(json.dumps(rec))


def set_energy(rec: dict[str, Any], total: float, rel: float | None) -> None:
    """Total energy ``total`` J (CPU 90 %, DRAM 10 %), each with a bound of ``rel`` of itself
    (the meters' fields, issue 24), or none stated (``rel`` None: a record before bounds)."""
    m = rec["measurements"]["metrics"]
    for name, share in (("cpu_energy_j", 0.9), ("dram_energy_j", 0.1), ("total_energy_j", 1.0)):
        value = total * share
        m[name] |= {"value": value, "gross_j": value, "available": True, "reason": None}
        if rel is not None:
            m[name] |= {
                "uncertainty_j": rel * value,
                "uncertainty_rel": rel,
                "uncertainty_components": {"resolution": rel * value},
                "net_uncertainty_j": None,
            }


def energies(table: dict[str, list[float]], rel: float | None):  # type: ignore[no-untyped-def]
    """Set each configuration's runs' total energies (in repetition order) from ``table``."""

    def change(rec: dict[str, Any]) -> None:
        values = table[rec["cell"]["configuration"]]
        set_energy(rec, values[(rec["cell"]["repetition"] - 1) % len(values)], rel)

    return change


def build(folder: Path, out: Path) -> Path:
    assert build_report(folder, output=out, with_plots=False) == 0
    return out


def answer_rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "answer.csv").read_text())))


def answer_md(out: Path) -> str:
    return (out / "answer.md").read_text()


def answer_only(folder: Path, out: Path) -> Path:
    """The answer's files alone, from the frame the report builds them from (the whole report's
    statistics are not needed to check it, and take seconds)."""
    out.mkdir()
    ok, _ = fixed_work(load_runs(folder).ok)
    answer_render.write_files(ranked_answer(ok), out)
    return out


SEPARATE = {
    "torch2onnx": [11.3, 12.0, 10.9, 11.6, 11.4],
    "torchscript": [22.2, 23.7, 21.9, 22.8, 22.7],
    "torch": [27.9, 26.5, 28.5, 28.6, 27.6],
}


@pytest.fixture(scope="module")
def separate(tmp_path_factory) -> tuple[Path, Path]:
    """Three configurations whose energies per sample are far apart, each run's bound 1 %: (records, report)."""
    root = tmp_path_factory.mktemp("separate")
    folder = copy_records(ENERGY_RECORDS, root / "records")
    edit(folder, energies(SEPARATE, 0.01))
    return folder, build(folder, root / "report")


def test_the_answer_comes_first_in_every_format(separate):
    folder, out = separate
    md = (out / "report.md").read_text()
    heading = "## Which configuration for your model, and how sure"
    assert md.index(heading) < md.index("Energies are gross") < md.index("### Table 1")
    page = (out / "report.html").read_text()
    assert page.index("<h1>") < page.index('<section id="answer">') < page.index("Generated ")
    assert page.index('<section id="answer">') < page.index('id="sec-papers"')
    tex = (out / "report.tex").read_text()
    assert tex.index("ranked by energy per sample") < tex.index("Table 1")
    assert {"answer.md", "answer.tex", "answer.csv", "answer.html"} <= {p.name for p in out.iterdir()}
    from controller.report import Sections, render

    runs = load_runs(folder)
    text = render.term(runs, Sections(answer=ranked_answer(runs.ok)))
    assert text.index("WHICH CONFIGURATION FOR YOUR MODEL") < text.index(render.AGGREGATES)
    assert "used the least energy per sample" in text


def test_configurations_are_ranked_by_energy_per_sample_with_the_medians_bound(separate):
    _, out = separate
    rows = answer_rows(out)
    assert [r["Configuration"].split(" ")[0] for r in rows] == ["torch2onnx", "torchscript", "torch"]
    assert [r["Rank"] for r in rows] == ["1", "2", "3"]
    best = rows[0]
    per_sample = [e / 16 for e in SEPARATE["torch2onnx"]]  # 16 samples a run
    assert float(best["Energy (J)"]) == pytest.approx(statistics.median(per_sample))
    # The median's bound: how far the median moves with every run within its 1 % bound.
    assert float(best["Energy (J) uncertainty"]) == pytest.approx(0.01 * statistics.median(per_sample), rel=0.05)
    assert best["Configuration"] == "torch2onnx (ONNX Runtime / CPU)" and best["Unit of work"] == "sample"
    assert best["Separated from the best"] == "–"
    md = answer_md(out)
    # One sentence answers, claiming the separated savings: 1 − 11.4 / 22.7 ≈ 49 % less than torchscript.
    sentence = next(line for line in md.splitlines() if line.startswith("For resnet50 (tiny) at batch 2"))
    assert "torch2onnx (ONNX Runtime / CPU) used the least energy per sample, 0.713 ± 0.008 J" in sentence
    assert re.search(r"49 % less than torchscript and 59 % less than torch \(each separated\)", sentence)
    assert "not separated" not in sentence


def test_overlapping_runs_are_not_separated_and_say_how_many_runs_would(tmp_path):
    close = {
        "torch2onnx": [10.0, 10.4, 9.8, 10.2, 10.1],
        "torchscript": [10.1, 10.5, 9.9, 10.3, 10.2],  # within the spread of torch2onnx's runs
        "torch": [27.9, 26.5, 28.5, 28.6, 27.6],
    }
    folder = copy_records(ENERGY_RECORDS, tmp_path / "close")
    edit(folder, energies(close, 0.001))
    out = answer_only(folder, tmp_path / "answer")
    rows = {r["Configuration"].split(" ")[0]: r for r in answer_rows(out)}
    assert rows["torch"]["Separated from the best"] == "yes"
    runner = rows["torchscript"]
    assert runner["Separated from the best"].startswith("no: ~")
    low, high = float(runner["Interval low"]), float(runner["Interval high"])
    assert low < 1 < high  # the ratio's interval holds 1: the runs do not say which is lower
    needed = int(float(runner["Runs a side to separate"]))
    assert needed > 5 and f"more runs would be needed: about {needed} a side" in runner["footnotes"].lower()
    sentence = next(line for line in answer_md(out).splitlines() if line.startswith("For resnet50"))
    assert "torchscript is not separated from it (the runs do not say which of the two uses less" in sentence
    assert f"more runs would be needed to tell: about {needed} a side at the spread seen" in sentence
    assert re.search(r"\d+ % less than torch \(separated\)", sentence)
    assert "less than torchscript" not in sentence  # no saving claimed where the runs do not separate


def test_bounds_wider_than_the_difference_keep_two_configurations_apart_from_any_claim(tmp_path):
    # Runs 3 % apart with almost no spread: separated when the meters' bounds are 0.1 %, not when
    # they are 5 % (each configuration's figures may share that bias), and no number of runs helps.
    tight = {
        "torch2onnx": [10.0, 10.01, 10.02, 10.01, 10.0],
        "torchscript": [10.3, 10.31, 10.3, 10.32, 10.31],
        "torch": [27.9, 26.5, 28.5, 28.6, 27.6],
    }
    verdicts = {}
    for rel in (0.001, 0.05):
        folder = copy_records(ENERGY_RECORDS, tmp_path / f"b{rel}")
        edit(folder, energies(tight, rel))
        out = answer_only(folder, tmp_path / f"answer{rel}")
        verdicts[rel] = next(r for r in answer_rows(out) if r["Configuration"].startswith("torchscript"))
    assert verdicts[0.001]["Separated from the best"] == "yes"
    wide = verdicts[0.05]
    assert wide["Separated from the best"] == "no" and wide["Runs a side to separate"] == "n/a"
    assert "no number of runs: the energy figures' own bounds" in wide["footnotes"].lower()
    assert float(wide["Interval low"]) < 1 < float(wide["Interval high"])


def test_without_energy_the_ranking_is_by_time_and_says_why(tmp_path):
    out = answer_only(copy_records(REAL, tmp_path / "real"), tmp_path / "answer")
    rows = answer_rows(out)
    assert {r["Ranked by"] for r in rows} == {"time"}
    times = [float(r["Time (ms)"]) for r in rows]
    assert times == sorted(times)
    recs = [json.loads(p.read_text()) for p in REAL.glob("*.json")]
    onnx = [
        r["metrics"]["window_s"] / r["metrics"]["samples"] for r in recs if r["cell"]["configuration"] == "torch2onnx"
    ]
    assert rows[0]["Configuration"].startswith("torch2onnx") and times[0] == pytest.approx(
        1000 * statistics.median(onnx)
    )
    md = answer_md(out)
    assert "Energy was not measured in these records (CPU: no powercap on this host" in md
    assert "For resnet50 (tiny) at batch 2, ranked by time (energy was not measured): torch2onnx" in md
    assert "took the least time per sample" in md and "Energy per sample" not in md
    assert all(r["Energy (J)"] == "n/a" for r in rows)


def duration_mode(throughput: dict[str, float], total: dict[str, float]):  # type: ignore[no-untyped-def]
    """Each run given a 2 s window: as many samples as its throughput allows, and ``total`` J."""

    def change(rec: dict[str, Any]) -> None:
        conf, rep = rec["cell"]["configuration"], rec["cell"]["repetition"]
        window = 2.0 + 0.001 * rep
        samples = 2 * int(throughput[conf] * window / 2)
        rec["spec"] |= {"duration_s": 2.0, "samples": None}
        rec["cell"] |= {"duration_s": 2.0, "samples": None}
        rec["metrics"] |= {"window_s": window, "samples": samples, "batches": samples // 2}
        rec["metrics"]["throughput_sps"] = samples / window
        rec["measurements"]["window_s"] = window
        set_energy(rec, total[conf] * (1 + 0.01 * rep), 0.01)

    return change


def test_a_duration_mode_campaign_is_ranked_per_sample_done_not_per_window(tmp_path):
    # Every run has the same window; torch2onnx used the most energy in it but did 170 times the work.
    folder = copy_records(ENERGY_RECORDS, tmp_path / "duration")
    edit(
        folder,
        duration_mode(
            {"torch": 34.0, "torch2onnx": 5747.0, "torchscript": 40.0},
            {"torch": 50, "torch2onnx": 90, "torchscript": 60},
        ),
    )
    out = answer_only(folder, tmp_path / "answer")
    rows = answer_rows(out)
    assert [r["Configuration"].split(" ")[0] for r in rows] == ["torch2onnx", "torch", "torchscript"]
    runs = load_runs(folder).ok
    onnx = runs.filter(runs["configuration"] == "torch2onnx")
    per_sample = [e / n for e, n in onnx.select("total_energy", "samples").iter_rows()]
    assert float(rows[0]["Energy (J)"]) == pytest.approx(statistics.median(per_sample))
    assert float(rows[0]["Throughput"]) == pytest.approx(5747.0, rel=0.01)
    assert float(rows[0]["Time (ms)"]) == pytest.approx(1000 / 5747.0, rel=0.01)
    assert all(r["Unit of work"] == "sample" for r in rows)


def test_a_configuration_without_energy_is_listed_not_ranked_and_flagged_energy_is_not_judged(tmp_path):
    folder = copy_records(ENERGY_RECORDS, tmp_path / "mixed")
    edit(folder, energies(SEPARATE, 0.01))

    def no_energy(rec: dict[str, Any]) -> None:
        if rec["cell"]["configuration"] == "torch":
            for name in ("cpu_energy_j", "dram_energy_j", "total_energy_j"):
                rec["measurements"]["metrics"][name] |= {
                    "value": None,
                    "available": False,
                    "reason": "RAPL read failed",
                }

    def flagged(rec: dict[str, Any]) -> None:
        if rec["cell"]["configuration"] == "torchscript" and rec["cell"]["repetition"] == 2:
            rec["measurements"]["flags"].append(
                {"code": "rapl_possible_missed_wrap", "message": "RAPL was not read for 90 s", "meter": "rapl"}
            )

    edit(folder, no_energy)
    edit(folder, flagged)
    out = answer_only(folder, tmp_path / "answer")
    rows = {r["Configuration"].split(" ")[0]: r for r in answer_rows(out)}
    assert rows["torch"]["Rank"] == "–" and rows["torch"]["Separated from the best"] == "not ranked: no energy"
    assert "RAPL read failed" in rows["torch"]["footnotes"]
    assert rows["torchscript"]["Separated from the best"] == "not judged"
    assert "rapl_possible_missed_wrap" in rows["torchscript"]["footnotes"]
    sentence = next(line for line in answer_md(out).splitlines() if line.startswith("For resnet50"))
    assert "torchscript: not judged" in sentence and "torch measured no energy: not ranked" in sentence
    assert "less than" not in sentence


def test_three_runs_a_side_allow_no_interval_and_say_so():
    best = Config("a", "a", 3, energy=[1.0, 1.01, 0.99], bounds=[0.001] * 3)
    other = Config("b", "b", 3, energy=[1.5, 1.52, 1.49], bounds=[0.0015] * 3)
    a = against(best, other, ENERGY, 0.05)
    assert a.separated is False and a.low is None
    assert a.why.startswith("3 and 3 runs allow no 95 % interval (at least 4 a side)")
    assert a.needed == 4  # one more a side, at a spread this small
    more = against(
        Config("a", "a", 4, energy=[1.0, 1.01, 0.99, 1.0], bounds=[0.001] * 4),
        Config("b", "b", 4, energy=[1.5, 1.52, 1.49, 1.5], bounds=[0.0015] * 4),
        ENERGY,
        0.05,
    )
    assert more.separated is True and more.low is not None and more.low > 1


def test_serving_runs_are_ranked_per_output_token_per_model(tmp_path):
    answer = ranked_answer(load_runs(FIXTURES / "fixture-serving").ok)
    assert [g.title for g in answer.groups] == ["tiny-lm-a (category-1) serving", "tiny-lm-b (category-2) serving"]
    g = answer.groups[0]
    assert g.unit.noun == "output token" and g.by == ENERGY
    medians = [c.median(ENERGY) for c in g.ranked]
    assert medians == sorted(medians) and len(medians) == 3
    recs = [json.loads(p.read_text()) for p in (FIXTURES / "fixture-serving").glob("*.json")]
    onnx = [
        r["measurements"]["metrics"]["total_energy_j"]["value"] / r["metrics"]["new_tokens_total"]
        for r in recs
        if r["status"] == "ok" and r["model"] == "tiny-lm-a" and r["cell"]["configuration"] == "onnx-cpu"
    ]
    assert g.ranked[0].name == "onnx-cpu" and g.ranked[0].median(ENERGY) == pytest.approx(statistics.median(onnx))
    assert all(a is not None and a.separated is False for a in g.against[1:])  # 3 runs a side: no interval


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_first_screen_of_report_html_holds_the_answer(separate, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    _, out = separate
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    page = (out / "report.html").as_uri()
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.index("used the least energy per sample") < dom.stdout.index("Table 1")
    shot = tmp_path / "first-screen.png"
    subprocess.run(
        [*common, "--window-size=1400,900", f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True
    )
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text and a table, not a blank page
    # The answer's box and the best's highlighted cell are on the first screen.
    assert any(abs(r - 0xF6) < 3 and abs(g - 0xF9) < 3 and abs(b - 0xFD) < 3 for _, (r, g, b) in colours)
    assert any(abs(r - 0xDF) < 3 and abs(g - 0xF5) < 3 and abs(b - 0xDF) < 3 for _, (r, g, b) in colours)
    print(f"screenshot: {shot}")
