"""`advise`: the space, the search and the answer.

The selection is tested on record folders built here from a real record (energy measured, as on a host
with RAPL: none here), so the energy path runs through the same report frame as a user's; the whole
command runs once end to end on a tiny model with the local runner (ONNX Runtime, FP32 and INT8).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from controller.advise.answer import build_answer, render
from controller.advise.candidate import Candidate
from controller.advise.observe import observe
from controller.advise.quality import Quality
from controller.advise.race import axes_of, standings
from controller.advise.request import AdviseRequest, parse_duration
from controller.advise.search import Outcome, Progress
from controller.advise.slo import parse_slo
from controller.advise.space import Space
from controller.campaigns import load_campaign_file
from controller.errors import UserError

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((REPO / "tests/fixtures/records/fixture-energy/20261124T053750-b7435b.json").read_text())
CAMPAIGN = "advise-test"
SAMPLES = 16


def cli(*args: str) -> tuple[int, str, str]:
    """`python -m controller ARGS` in this process: exit code, stdout, stderr."""
    from controller.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# --- the campaign file's own repetitions and concurrency per configuration ---------------------------


def test_a_configuration_can_be_measured_more_often_than_the_rest_and_the_order_keeps_whole_rounds(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text(
        '[campaign]\nname = "x"\nrepetitions = 2\nseed = 3\n[matrix]\nmodels = ["resnet50"]\n'
        '[[matrix.configurations]]\nname = "a"\nimage = "onnx-cpu"\nrepetitions = 5\n'
        '[[matrix.configurations]]\nname = "b"\nimage = "torch-cpu"\n'
    )
    campaign = load_campaign_file(file)
    reps = {(c.configuration, c.repetition) for c in campaign.matrix()}
    assert reps == {("a", r) for r in range(1, 6)} | {("b", 1), ("b", 2)}
    ordered = campaign.ordered(3)
    assert len(ordered) == 7 and [c.repetition for c in ordered] == sorted(c.repetition for c in ordered)


def test_a_serving_configuration_sets_its_own_concurrency_and_a_batch_one_is_refused(tmp_path):
    file = tmp_path / "s.toml"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    head = '[campaign]\nname = "s"\nmode = "serving"\n[matrix]\nmodels = ["./m"]\n[serving]\nconcurrency = 1\n'
    file.write_text(head + '[[matrix.configurations]]\nname = "c4"\nimage = "onnx-cpu"\nconcurrency = 4\n')
    cells = load_campaign_file(file).matrix()
    assert cells[0].serving is not None and cells[0].serving["concurrency"] == 4
    file.write_text('[campaign]\nname = "b"\n[matrix]\nmodels = ["resnet50"]\n[[matrix.configurations]]\n'
                    'name = "c"\nimage = "onnx-cpu"\nconcurrency = 4\n')  # fmt: skip
    with pytest.raises(UserError, match="concurrency applies to serving campaigns"):
        load_campaign_file(file)


# --- goals and bad input ----------------------------------------------------------------------------


def test_goals_read_as_the_records_name_their_figures():
    batch = parse_slo("p99=0.05s,throughput=100", "batch")
    assert [(g.figure, g.limit, g.higher_is_better) for g in batch] == [
        ("latency_ms_p99", 50.0, False),
        ("throughput_sps", 100.0, True),
    ]
    serving = parse_slo("ttft_p99=500ms,tpot=50ms,goodput=2", "serving")
    assert [g.figure for g in serving] == ["ttft_ms_p99", "tpot_ms_p99", "goodput_rps"]
    assert parse_duration("30m") == 1800 and parse_duration("1h") == 3600 and parse_duration("90") == 90


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--slo", "p95=50ms"], "a batch goal is one of p50, p90, p99, mean"),
        (["--slo", "goodput=2", "--mode", "serving"], "give ttft, tpot or e2el too"),
        (["--budget", "soon"], "--budget 'soon' is not a duration"),
        (["--vary", "no_such_option=1,2"], "no engine of the space takes it"),
        (["--threads", "0"], "--threads '0'"),
        (["--images", "no-such-image"], "unknown image(s) no-such-image"),
        (["--min-agreement", "120%"], "give a share"),
    ],
)
def test_what_a_user_can_get_wrong_is_one_line_and_exit_2_before_any_work(tmp_path, args, expected):
    code, out, err = cli(
        "advise", "--model", "resnet50", "--model-size", "tiny", "--images", "onnx-cpu", "--runner", "local",
        "--results", str(tmp_path), "--plan", *args,
    )  # fmt: skip
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


# --- the plan -------------------------------------------------------------------------------------


def test_the_plan_lists_the_space_and_why_candidates_were_left_out_and_runs_nothing(tmp_path):
    code, out, _ = cli(
        "advise", "--model", "resnet50", "--model-size", "tiny", "--images", "onnx-cpu,llamacpp-cpu,tf-cpu",
        "--threads", "1,2", "--batch-sizes", "1,8", "--runner", "local", "--results", str(tmp_path), "--plan",
    )  # fmt: skip
    assert code == 0
    # onnx-cpu: 2 threads x 2 graph levels x {fp32, int8} x 2 batch sizes
    assert "16 candidates" in out and "onnx-cpu.t2.graph-all.int8.b8" in out
    assert "llamacpp-cpu/llamacpp" in out and "cannot run resnet50" in out
    assert "energy       not measurable on this host" in out or "energy       measured here" in out
    assert "GPU power limit" in out and "screening 16 candidates" in out
    assert not (tmp_path / "advise-resnet50").exists()


# --- the selection, on record folders with energy (a host with RAPL, as none is here) -----------------


def candidate(name: str, precision: str = "fp32", batch: int = 1, reference: str | None = None) -> Candidate:
    return Candidate(
        name=name,
        image="onnx-cpu",
        engine="onnxruntime",
        provider="cpu",
        precision=precision,
        reduced=precision != "fp32",
        options={"quantization": "int8"} if precision == "int8" else {},
        batch_size=batch,
        reference=reference,
    )


def write_runs(
    folder: Path, c: Candidate, energies: list[float | None], p99_ms: float, campaign: str = CAMPAIGN, **extra: Any
) -> None:
    """Runs of candidate ``c`` re-dressed from a real record: its cell, window, p99 latency and total
    energy per run (``None``: no energy domain measured, as on this host), an energy bound of 1 %."""
    folder.mkdir(parents=True, exist_ok=True)
    for rep, joules in enumerate(energies, start=1):
        rec = json.loads(json.dumps(TEMPLATE))
        cell_id = f"resnet50.tiny.{c.name}.b{c.batch_size}.r{rep}"
        rec["run_id"] = f"20270101T{rep:06d}-{abs(hash(cell_id)) % 16**6:06x}"
        rec["campaign"] = campaign
        rec["cell"].update(
            id=cell_id, campaign=campaign, configuration=c.name, repetition=rep, batch_size=c.batch_size,
            options=c.options, samples=SAMPLES,
        )  # fmt: skip
        rec["spec"]["batch_size"] = c.batch_size
        window = 0.5 * (joules or 10.0) / 10.0
        rec["metrics"].update(window_s=window, samples=SAMPLES, throughput_sps=SAMPLES / window, latency_ms_p99=p99_ms)
        rec["measurements"]["window_s"] = window
        metrics = rec["measurements"]["metrics"]
        if joules is None:
            for name in ("cpu_energy_j", "dram_energy_j", "total_energy_j"):
                metrics[name].update(value=None, available=False, reason="no powercap on this host", gross_j=None)
        else:
            metrics["total_energy_j"].update(value=joules, gross_j=joules, uncertainty_j=0.01 * joules)
        if "agreement" in extra:
            rec["artifact"] = {
                "conversion": "onnx2int8",
                "parity": {"argmax_agreement": extra["agreement"], "gated": False, "samples": 32, "ok": False},
            }
        (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))


def decide(tmp_path: Path, candidates: list[Candidate], slo: str | None, min_agreement: float = 0.99) -> Any:
    req = AdviseRequest(
        model="resnet50", mode="batch", goals=parse_slo(slo, "batch"), campaign=CAMPAIGN, results=tmp_path,
        min_agreement=min_agreement,
    )  # fmt: skip
    obs, basis = observe(candidates, tmp_path, CAMPAIGN, req.goals, serving=False)
    table = standings(obs, basis, req.goals, axes_of(req.goals, basis, "batch"), 0.05, min_agreement, 0.01)
    outcome = Outcome(Space(req, candidates, [], "local", "local"), obs, basis, table, {}, Progress(), "test")
    return build_answer(outcome)


SPREAD = [1.00, 1.02, 0.99, 1.01, 0.98]


def quantised_case(tmp_path: Path, agreement: float) -> Any:
    full = candidate("fp32-b1")
    int8 = candidate("int8-b1", "int8", reference="fp32-b1")
    big = candidate("fp32-b8", batch=8)
    other = candidate("fp32-t2")
    folder = tmp_path / CAMPAIGN
    write_runs(folder, full, [10.0 * s for s in SPREAD], p99_ms=20)
    write_runs(folder, int8, [6.0 * s for s in SPREAD], p99_ms=15, agreement=agreement)
    write_runs(folder, big, [4.0 * s for s in SPREAD], p99_ms=90)  # least energy, but too slow per batch
    write_runs(folder, other, [12.0 * s for s in SPREAD], p99_ms=25)
    return decide(tmp_path, [full, int8, big, other], "p99=50ms")


def test_a_quantised_candidate_below_the_agreement_goal_is_never_recommended(tmp_path):
    answer = quantised_case(tmp_path, agreement=0.969)
    assert answer.outcome.basis.energy and answer.outcome.basis.unit == "J/sample"
    assert answer.recommended == "fp32-b1"  # int8 uses less energy, fp32-b8 less still: neither qualifies
    rows = {r["name"]: r for r in answer.rows}
    assert not rows["int8-b1"]["admissible"] and "96.9% < 99.0%" in rows["int8-b1"]["status"]
    assert rows["fp32-b8"]["feasible"] is False and "misses" in rows["fp32-b8"]["status"]
    # The margin over the next candidate that qualifies: 10 J against 12 J, five runs a side.
    m = answer.runner_up
    assert m is not None and m.other == "fp32-t2"
    assert m.change == pytest.approx(10 / 12 - 1, abs=0.02) and m.separated and m.confidence > 0.99
    assert m.widen == pytest.approx((2 * 0.01**2) ** 0.5, rel=0.05)  # each side's 1 % bound, in quadrature


def test_a_quantised_candidate_that_agrees_is_recommended_for_its_energy(tmp_path):
    answer = quantised_case(tmp_path, agreement=0.995)
    assert answer.recommended == "int8-b1"
    assert answer.runner_up is not None and answer.runner_up.other == "fp32-b1" and answer.runner_up.separated


def test_an_agreement_measured_on_too_few_inputs_is_shown_with_its_lower_bound_and_said_undecided(tmp_path):
    answer = quantised_case(tmp_path, agreement=1.0)  # all 32 fixed inputs agree
    text = render(answer, {})
    assert answer.recommended == "int8-b1"
    quality = {r["name"]: r for r in answer.rows}["int8-b1"]["quality"]
    assert quality["agreement_lower_95"] == pytest.approx(0.911, abs=1e-3)
    assert "warning: 32 inputs cannot show agreement ≥ 99.0%" in text and "is 91.1%" in text
    assert "at least 299 inputs, all agreeing, would decide" in text
    assert Quality(1.0, 299, "x").undecided(0.99) == ""  # enough inputs: nothing to warn about


def test_a_candidate_surely_worse_on_energy_and_latency_leaves_the_race_and_says_by_whom(tmp_path):
    a, b, c = candidate("a"), candidate("b"), candidate("c", batch=8)
    folder = tmp_path / CAMPAIGN
    write_runs(folder, a, [10.0 * s for s in SPREAD], p99_ms=20)
    write_runs(folder, b, [14.0 * s for s in SPREAD], p99_ms=30)
    write_runs(folder, c, [7.0 * s for s in SPREAD], p99_ms=60)  # a trade-off: on the front
    answer = decide(tmp_path, [a, b, c], None)
    rows = {r["name"]: r for r in answer.rows}
    assert rows["b"]["dominated_by"] == "a" and rows["b"]["status"] == "dominated by a"
    assert rows["c"]["front"] and rows["a"]["front"]
    assert answer.recommended == "c"  # no goal: the least energy on the front


def test_without_energy_it_ranks_on_time_and_says_why(tmp_path):
    a, b = candidate("a"), candidate("b")
    write_runs(tmp_path / CAMPAIGN, a, [None] * 4, p99_ms=20)
    write_runs(tmp_path / CAMPAIGN, b, [None] * 4, p99_ms=20)
    answer = decide(tmp_path, [a, b], None)
    basis = answer.outcome.basis
    assert not basis.energy and basis.unit == "s/sample" and "ranked on time only" in basis.label
    assert "no powercap on this host" in basis.reason


def test_too_few_runs_for_an_interval_give_a_confidence_and_say_how_many_would_decide(tmp_path):
    a, b = candidate("a"), candidate("b")
    write_runs(tmp_path / CAMPAIGN, a, [10.0, 10.2], p99_ms=20)
    write_runs(tmp_path / CAMPAIGN, b, [11.0, 11.1], p99_ms=20)
    m = decide(tmp_path, [a, b], None).runner_up
    assert m is not None and m.low is None and "4 a side are needed" in m.note
    assert m.confidence == pytest.approx(1 - 1 / 6)  # 2 against 2, every pair in its favour: P = 1/C(4,2)


def test_compare_matches_two_advise_folders_candidate_by_candidate(tmp_path):
    """Candidates differ in engine options only, so they share a cell: compare pairs them by name."""
    from controller.compare import run_compare
    from controller.compare.options import parse_options

    fast, slow = candidate("t2"), candidate("t1")
    for name, factor in (("before", 1.0), ("after", 1.3)):
        write_runs(tmp_path / name, fast, [10.0 * s for s in SPREAD], p99_ms=20, campaign=name)
        write_runs(tmp_path / name, slow, [factor * 14.0 * s for s in SPREAD], p99_ms=30, campaign=name)
    opts = parse_options(
        metric="energy", threshold="5%", alpha="0.05", fmt="json", require_energy=False, allow_undecided=False,
        duplicates="refuse", grid_intensity=None, country=None, pue=None,
    )  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_compare(tmp_path / "before", tmp_path / "after", opts)
    results = {r["cell"].split("[")[-1].rstrip("]"): r["verdict"] for r in json.loads(out.getvalue())["results"]}
    assert results == {"t1": "regression", "t2": "equivalent"} and code == 1


# --- the quality of a reduced precision, from records ---------------------------------------------


def test_agreement_comes_from_labelled_predictions_before_a_conversions_fixed_inputs():
    from controller.advise.quality import quality_of

    c = candidate("int8", "int8", reference="fp32")
    rec = {"mode": "batch", "spec": {"dataset": "digits"}, "result": {"predictions": [1, 2, 3, 4]},
           "artifact": {"conversion": "onnx2int8", "parity": {"argmax_agreement": 0.5, "gated": False, "samples": 32}},
           "metrics": {"accuracy": {"available": True, "meaningful": True, "value": 0.5}}}  # fmt: skip
    ref = {"mode": "batch", "result": {"predictions": [1, 2, 3, 0]},
           "metrics": {"accuracy": {"available": True, "meaningful": True, "value": 0.75}}}  # fmt: skip
    q = quality_of(c, rec, ref)
    assert (q.agreement, q.n) == (0.75, 4) and "digits" in q.basis
    ok, why = q.verdict(0.7, 0.01)
    assert not ok and "25.00 points below" in why  # agreement enough, but it lost accuracy
    rec["result"] = {"predictions_head": [1, 2, 3, 4]}
    q = quality_of(c, rec, ref)
    assert (q.agreement, q.n) == (0.5, 32) and "onnx2int8" in q.basis
    assert quality_of(c, rec, None).agreement == 0.5
    unknown = quality_of(c, {"mode": "batch", "result": {}}, None)
    assert unknown.agreement is None and not unknown.verdict(0.9, 1.0)[0]


def test_a_language_models_agreement_is_its_greedy_tokens_at_load():
    from controller.advise.quality import quality_of

    c = Candidate("q4", "llamacpp-cpu", "llamacpp", "cpu", "q4_k_m", True, concurrency=1, reference="f32")
    parity = {"token_agreement": 0.8, "gated": False, "prompts": 5}
    rec = {"mode": "serving", "engine": "llamacpp", "result": {"generation": {"load_parity": parity}}}
    q = quality_of(c, rec, None)
    assert (q.agreement, q.n) == (0.8, 5) and "greedy tokens" in q.basis


# --- the settings advise varies, on a single run --------------------------------------------------


def test_onnx_runtime_int8_is_a_cached_conversion_with_its_agreement_recorded_and_the_graph_level_applied(cli):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from tests.test_engines_cpu import TINY, run_ok

    args = ["--image", "onnx-cpu", "--model", "resnet50", *TINY, "--runner", "local"]  # the end-to-end test's model
    rec = run_ok(cli, *args, "--option", "quantization=int8", "--option", "graph_optimization_level=basic")
    artifact = rec["artifact"]
    assert artifact["conversion"] == "onnx2int8" and artifact["source_artifact"]["conversion"] == "torch2onnx"
    parity = artifact["parity"]
    assert parity["gated"] is False and parity["samples"] == 32 and 0.0 <= parity["argmax_agreement"] <= 1.0
    assert artifact["quantization"]["weights"] == "uint8"  # a convolutional graph: ConvInteger's uint8
    assert rec["result"]["options_used"]["graph_optimization_level"] == "basic"
    proc = cli("run", *args, "--option", "quantization=int8")  # the cached artifact, said as recorded
    assert proc.returncode == 0 and "top-1 agreement with the source" in proc.stdout and "not a gate" in proc.stdout
    refused = cli("run", "--image", "onnx-openvino", "--model", "resnet50", *TINY, "--option", "quantization=int8")
    assert refused.returncode == 2 and "runs on ONNX Runtime's CPU provider" in refused.stderr


# --- end to end, with the local runner ------------------------------------------------------------


def test_advise_on_a_tiny_model_runs_campaign_records_answers_and_resumes_without_running_again(
    tmp_path, artifact_cache
):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from controller.report import build_report

    results = tmp_path / "results"
    args = (
        "advise", "--model", "resnet50", "--model-size", "tiny", "--images", "onnx-cpu", "--threads", "1",
        "--batch-sizes", "1,4", "--fix", "graph_optimization_level=all", "--samples", "8", "--warmup", "1",
        "--runner", "local", "--results", str(results), "--cache", str(artifact_cache), "--budget", "10m",
        "--max-repetitions", "3", "--slo", "p99=10s", "--quiet-wait", "0",
    )  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, out + err
    folder = results / "advise-resnet50"
    answer = json.loads((folder / "advise" / "advise.json").read_text())
    assert "recommendation  onnx-cpu/onnxruntime" in out and answer["recommended"]
    assert "ranked on  time per sample" in out or "ranked on  energy per sample" in out
    rows = {r["name"]: r for r in answer["candidates"]}
    assert len(rows) == 4 and all(r["runs"] >= 2 for r in rows.values())  # everything screened
    for name, row in rows.items():
        if row["reduced"] and row["quality"]["agreement"] < 0.99:
            assert name != answer["recommended"] and not row["admissible"]
    best = min((r for r in rows.values() if r["admissible"] and r["feasible"]), key=lambda r: r["objective_median"])
    assert answer["recommended"] == best["name"]
    # Every run is an ordinary campaign record of a candidate, and the file written reruns them all.
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert len(records) == answer["runs_used"] and all(r["cell"]["configuration"] in rows for r in records)
    rerun = load_campaign_file(folder / "advise" / "campaign.toml")
    assert {c.id for c in rerun.matrix()} == {r["cell"]["id"] for r in records}
    assert (folder / "advise" / "front.png").stat().st_size > 10_000
    with contextlib.redirect_stdout(io.StringIO()):
        assert build_report(folder, fmt="term") == 0
    # The same command again decides from the records: nothing more to run.
    code, out2, _ = cli(*args)
    assert code == 0 and len(list(folder.glob("*.json"))) == len(records)
    assert f"recommendation  {out.split('recommendation  ')[1].splitlines()[0]}" in out2
