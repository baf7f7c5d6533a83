"""Serving mode end to end: a tiny causal LM built here, served over real HTTP on 127.0.0.1 by the
real harness (FastAPI + uvicorn) through the real CLI, driven by the controller's streaming client
(OpenAI-compatible /v1/completions); every engine keeps greedy parity with transformers with its
KV cache."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from controller.cli import main  # noqa: E402
from suite.prompts import SPAN_TOKENS, file_prompts, humaneval_prompts, load_prompts, pieces  # noqa: E402
from suite.slm_models import CODE_SLMS, resolve_model  # noqa: E402
from tests.conftest import containers_labelled, own_label  # noqa: E402

LIMIT = 5
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.serving.tiny import build_tiny_lm

    path = build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-gpt2")
    # safetensors writes its file 0600; a folder shared with containers must be readable by them.
    for file in path.iterdir():
        file.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def serve(results: Path, cache: Path, model: Path, image: str, *extra: str) -> tuple[int, dict[str, Any]]:
    before = set(results.rglob("*.json"))
    code = main(
        [
            "serve",
            "--image", image,
            "--model", str(model),
            "--limit", str(LIMIT),
            "--max-new-tokens", str(NEW_TOKENS),
            "--warmup-requests", "1",
            "--runner", "local",
            "--results", str(results),
            "--cache", str(cache),
            "--campaign", "serving-test",
            "--option", "threads=1",  # two shared cores: spinning thread pools only slow this down
            *extra,
        ]
    )  # fmt: skip
    new = set(results.rglob("*.json")) - before
    assert len(new) == 1, f"expected one new record, got {new}"
    return code, json.loads(new.pop().read_text())


def assert_server_gone(record: dict[str, Any]) -> None:
    pid = record["runner"]["pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    leftovers = [p for p in psutil.Process().children(recursive=True) if "harness" in " ".join(p.cmdline())]
    assert leftovers == []
    port = int(record["serving"]["address"].rsplit(":", 1)[1]) if "address" in record["serving"] else None
    if port is not None:
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(1)
            s.connect(("127.0.0.1", port))


def tokens_by_prompt(record: dict[str, Any]) -> dict[str, list[int]]:
    return {r["prompt_id"]: r["token_ids"] for r in record["serving"]["requests"]}


@pytest.fixture(scope="module")
def torch_record(tmp_path_factory: pytest.TempPathFactory, cache: Path, tiny_lm: Path) -> dict[str, Any]:
    code, rec = serve(tmp_path_factory.mktemp("results"), cache, tiny_lm, "torch-cpu")
    assert code == 0, rec.get("failure")
    return rec


def check_serving_record(rec: dict[str, Any], engine: str) -> None:
    assert rec["status"] == "ok", rec.get("failure")
    assert rec["mode"] == "serving" and rec["spec"]["mode"] == "serving" and rec["engine"] == engine
    assert rec["spec"]["host"] == "127.0.0.1"
    requests = rec["serving"]["requests"]
    assert len(requests) == LIMIT and all(r["ok"] and r["status"] == 200 for r in requests)
    assert all(1 <= r["new_tokens"] <= NEW_TOKENS and r["prompt_tokens"] > 0 for r in requests)
    assert all(set(r["server_ms"]) >= {"tokenize", "generate", "decode"} for r in requests)
    # Streamed: one event per token, the count from the server's usage, each token timed.
    for r in requests:
        assert r["output_tokens_source"] == "usage" and len(r["token_times_us"]) == r["new_tokens"]
        assert len(r["token_ids"]) == r["new_tokens"] and r["finish_reason"] in ("stop", "length")
        assert 0 < r["ttft_ms"] <= r["e2el_ms"] and r["token_times_us"] == sorted(r["token_times_us"])
        # When the engine made each token (its process's clock, the host's): before the client got it.
        engine = r["engine_token_times_us"]
        assert len(engine) == r["new_tokens"]
        assert all(0 < e <= c for e, c in zip(engine, r["token_times_us"], strict=True))
    m = rec["metrics"]
    assert m["requests_ok"] == LIMIT and m["new_tokens_total"] == sum(r["new_tokens"] for r in requests)
    assert m["output_token_throughput_tps"] > 0 and m["time_per_request_s"] > 0
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert all(m[f"{name}_ms_{q}"] > 0 for q in ("mean", "median", "p90", "p99")), name
    assert rec["serving"]["sweep"]["variable"] == "concurrency" and m["steady_window"]["available"]
    for name in ("energy_per_request_j", "energy_per_token_j"):
        e = m[name]
        # Measured (and then positive) or unavailable with the reason; never a silent 0.
        assert (e["available"] and e["value"] > 0) or (not e["available"] and e["value"] is None and e["reason"])
    phases = {(e["phase"], e["edge"]) for e in rec["events"]}
    assert {("load", "start"), ("load", "end"), ("measure", "start"), ("measure", "end")} <= phases
    window = rec["measurements"]["window"]
    first = min(r["t_start_ns"] for r in requests)
    assert window["t0_ns"] <= first and window["t1_ns"] > first
    assert rec["result"]["requests_served"] == LIMIT + 1  # the warm-up request too
    assert rec["result"]["load_s"] > 0
    assert rec["result"]["generation"]["kv_cache"] is True
    assert_server_gone(rec)


@pytest.mark.slow
def test_torch_serves_over_http(torch_record: dict[str, Any]) -> None:
    check_serving_record(torch_record, "torch")
    assert torch_record["result"]["generation"]["kv_cache"] is True
    assert len({tuple(t) for t in tokens_by_prompt(torch_record).values()}) > 1  # the model's output varies


@pytest.fixture(scope="module")
def onnx_record(tmp_path_factory: pytest.TempPathFactory, cache: Path, tiny_lm: Path) -> dict[str, Any]:
    return serve(tmp_path_factory.mktemp("results"), cache, tiny_lm, "onnx-cpu")[1]


@pytest.fixture(scope="module")
def jit_record(tmp_path_factory: pytest.TempPathFactory, cache: Path, tiny_lm: Path) -> dict[str, Any]:
    return serve(tmp_path_factory.mktemp("results"), cache, tiny_lm, "torch-cpu", "--engine", "torchscript")[1]


@pytest.mark.slow
def test_onnxruntime_serves_the_same_greedy_tokens_as_torch(
    tmp_path: Path, cache: Path, tiny_lm: Path, torch_record: dict[str, Any], onnx_record: dict[str, Any]
) -> None:
    rec = onnx_record
    check_serving_record(rec, "onnxruntime")
    art = rec["artifact"]
    assert art["format"] == "onnx" and art["parity"]["ok"] and art["kv_cache"] and not art["reused"]
    assert art["parity"]["greedy_token_agreement_cached"] == 1.0 and art["parity"]["new_tokens"] == 16
    assert rec["result"]["generation"]["load_parity"]["greedy_token_agreement"] == 1.0
    assert rec["result"]["providers_active"][0] == "CPUExecutionProvider"
    # The prompts are the same seeded set; greedy decoding must give the same tokens.
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)

    # A second run reuses the export, here with two requests in flight.
    code, again = serve(tmp_path, cache, tiny_lm, "onnx-cpu", "--concurrency", "2")
    assert code == 0 and again["artifact"]["reused"] and again["serving"]["concurrency"] == 2
    assert tokens_by_prompt(again) == tokens_by_prompt(torch_record)


@pytest.mark.slow
def test_torchscript_serves_the_same_greedy_tokens_as_torch(
    torch_record: dict[str, Any], jit_record: dict[str, Any]
) -> None:
    rec = jit_record
    check_serving_record(rec, "torchscript")
    assert rec["artifact"]["format"] == "torchscript"
    assert rec["artifact"]["parity"]["ok"] and rec["artifact"]["kv_cache"]
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)


@pytest.mark.slow
def test_openvino_serves_the_same_greedy_tokens_as_torch(
    tmp_path: Path, cache: Path, tiny_lm: Path, torch_record: dict[str, Any], onnx_record: dict[str, Any]
) -> None:
    pytest.importorskip("openvino")
    code, rec = serve(tmp_path, cache, tiny_lm, "openvino-cpu", "--engine", "openvino")
    check_serving_record(rec, "openvino")
    assert rec["artifact"]["reused"]  # the ONNX export onnxruntime serves
    assert rec["result"]["generation"]["cache_io"].startswith("stateful")
    assert rec["artifact"]["parity"]["ok"] and rec["artifact"]["kv_cache"]
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)


def _reference_tokens(model: Path, prompts: list[str], n: int) -> list[list[int]]:
    """transformers' greedy tokens, n of them whatever the model says (no end-of-sequence stop)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model).eval()
    config = lm.generation_config
    config.update(max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    out = []
    for text in prompts:
        x = torch.tensor([tok(text)["input_ids"]])
        out.append(
            lm.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=config)[
                0, x.shape[1] :
            ].tolist()
        )
    return out


@pytest.mark.parametrize(
    ("engine", "options", "kv_cache"),
    [
        ("torch", {}, True),
        ("torch", {"kv_cache": "false"}, False),
        ("onnxruntime", {}, True),
        ("onnxruntime", {"kv_cache": "false"}, False),
        ("openvino", {}, True),
        ("openvino", {"stateful": "false"}, True),
        ("openvino", {"kv_cache": "false"}, False),
        ("torchscript", {}, True),
        ("torchscript", {"kv_cache": "false"}, False),
    ],
)
def test_every_engine_keeps_greedy_parity_with_and_without_its_kv_cache(
    request: pytest.FixtureRequest, tiny_lm: Path, engine: str, options: dict[str, str], kv_cache: bool
) -> None:
    """48 tokens (far past the 16 of the export's check) through the cache, token by token, streamed."""
    from harness.protocol import ServeSpec
    from harness.serving.registry import language_model

    if engine == "openvino":
        pytest.importorskip("openvino")
    artifact = None
    if engine != "torch":
        rec = request.getfixturevalue("jit_record" if engine == "torchscript" else "onnx_record")
        artifact = rec["artifact"]["path"]
    prompts = [p.text for p in humaneval_prompts(seed=3, limit=3)]
    reference = _reference_tokens(tiny_lm, prompts, 48)
    lm = language_model(
        ServeSpec("t", engine, "cpu", "tiny", str(tiny_lm), artifact_path=artifact, options={"threads": 1, **options})
    )
    lm.load()  # the exported engines replay the export's reference prompts here, and refuse on a mismatch
    assert lm.describe()["kv_cache"] is kv_cache
    for text, ref in zip(prompts, reference, strict=True):
        streamed: list[int] = []
        gen = lm.generate(text, 48, on_token=streamed.append, ignore_eos=True)
        assert gen.token_ids == streamed == ref


@pytest.mark.slow
def test_a_server_that_dies_mid_run_gives_a_failed_record(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    # The warm-up request and two measured ones succeed; the process exits on the next.
    code, rec = serve(tmp_path, cache, tiny_lm, "torch-cpu", "--option", "fault_exit_after=3")
    assert code == 1 and rec["status"] == "failed"
    failure = rec["failure"]
    assert failure["phase"] == "measure"
    assert "request 2" in failure["reason"] and "exited with code 70" in failure["reason"]
    assert failure["exit_code"] == 70
    # Sending stops once the server is seen gone; what was sent before that failed too.
    ok = [r["ok"] for r in rec["serving"]["requests"]]
    assert ok[:3] == [True, True, False] and not any(ok[3:])
    assert "measurements" not in rec
    assert_server_gone(rec)


@pytest.mark.slow
def test_a_concurrency_sweep_on_our_server_is_one_record_per_point(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    before = set(tmp_path.rglob("*.json"))
    code = main(
        [
            "serve", "--image", "torch-cpu", "--model", str(tiny_lm), "--limit", "4",
            "--max-new-tokens", "4", "--concurrency", "1,2", "--slo", "ttft=10s,tpot=5s",
            "--runner", "local", "--results", str(tmp_path), "--cache", str(cache), "--campaign", "sweep",
            "--option", "threads=1",
        ]
    )  # fmt: skip
    assert code == 0
    recs = sorted(
        (json.loads(p.read_text()) for p in set(tmp_path.rglob("*.json")) - before),
        key=lambda r: r["serving"]["sweep"]["index"],
    )
    assert [r["serving"]["load"]["concurrency"] for r in recs] == [1, 2]
    assert all(r["status"] == "ok" and r["mode"] == "serving" for r in recs)
    assert len({r["run_id"] for r in recs}) == 2
    assert {r["serving"]["sweep"]["group"] for r in recs} == {recs[0]["run_id"]}
    for rec in recs:
        m = rec["metrics"]
        assert m["requests_ok"] == 4 and m["load_variable"] == "concurrency"
        assert m["ttft_ms_median"] is not None and m["requests_meeting_slo"] == 4
        assert len(rec["serving"]["requests"]) == 4
        assert m["engine_concurrency"]["requests"] == 1 and m["token_timing"]["engine_reports"] is True
        assert m["engine_tpot_ms_median"] > 0 and m["queue_ms_mean"] is not None
    # One in flight never waits for the engine (the hand-over to it is overhead, not queueing); two in
    # flight on an engine that generates one at a time: the second waits, and that is queueing.
    assert recs[0]["metrics"]["queue_ms_mean"] == 0.0 and recs[1]["metrics"]["queue_ms_mean"] > 0.0
    # The warm-up belongs to the first point only; each point's window is its own.
    assert recs[0]["serving"]["warmup"] and recs[1]["serving"]["warmup"] == []
    assert recs[0]["metrics"]["window_s"] != recs[1]["metrics"]["window_s"]
    assert_server_gone(recs[1])


@pytest.mark.slow
def test_a_hung_request_times_out_and_the_server_is_killed(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    code, rec = serve(tmp_path, cache, tiny_lm, "torch-cpu", "--option", "fault_hang_after=1", "--request-timeout", "2")
    assert code == 1 and rec["status"] == "failed"
    assert rec["failure"]["phase"] == "measure"
    assert "request 0" in rec["failure"]["reason"] and "no answer within 2 s" in rec["failure"]["reason"]
    assert_server_gone(rec)


@pytest.mark.slow
def test_a_model_that_cannot_load_fails_before_ready(tmp_path: Path, cache: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 10}')  # no tokenizer
    (broken / "model.safetensors").write_bytes(b"not weights")  # a folder without weights is refused up front
    code, rec = serve(tmp_path / "results", cache, broken, "torch-cpu", "--ready-timeout", "120")
    assert code == 1 and rec["failure"]["phase"] == "load"
    assert "exited before it was ready" in rec["failure"]["reason"]
    assert_server_gone(rec)


def test_unknown_model_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--image", "torch-cpu", "--model", "no-such-model", "--results", str(tmp_path)])
    assert code == 2
    assert "codeparrot-small" in capsys.readouterr().err  # names what is valid
    assert not list(tmp_path.rglob("*.json"))


def test_humaneval_prompts_are_seeded_spans_of_10_to_15_tokens() -> None:
    a, b = humaneval_prompts(seed=0), humaneval_prompts(seed=0)
    assert a == b and len(a) == 164
    assert a != humaneval_prompts(seed=1)
    assert a[0].id == "HumanEval/0"
    from suite.prompts import humaneval_problems

    problems = {p["task_id"]: p["prompt"] for p in humaneval_problems()}
    for p in a:
        assert SPAN_TOKENS[0] <= len(pieces(p.text)) <= SPAN_TOKENS[1] + 1  # a leading space may split off
        assert p.text in problems[p.id]
    assert humaneval_prompts(seed=0, limit=3) == a[:3]


def test_prompt_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "x", "prompt": "def f("}\n"import os"\n\n')
    assert [(p.id, p.text) for p in file_prompts(jsonl)] == [("x", "def f("), ("p/2", "import os")]
    text = tmp_path / "p.txt"
    text.write_text("def a(\n\nclass B:\n")
    prompts, info = load_prompts(text, limit=1)
    assert [p.text for p in prompts] == ["def a("] and info["source"] == "file" and info["count"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        file_prompts(bad)


def test_registry_has_the_papers_twelve_models(tmp_path: Path) -> None:
    assert len(CODE_SLMS) == 12
    by_category = [sum(m.size_category == c for m in CODE_SLMS.values()) for c in (1, 2, 3)]
    assert by_category == [4, 4, 4]
    assert resolve_model("phi2").location == "microsoft/phi-2"
    assert resolve_model("bigcode/tiny_starcoder_py").size_category == 1
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        resolve_model(str(folder))
    (folder / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no model_type"):  # a config transformers cannot load
        resolve_model(str(folder))
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="no weights"):
        resolve_model(str(folder))
    (folder / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(folder)).source == "folder"
    assert os.path.isabs(resolve_model(str(folder)).location)


@pytest.mark.docker
def test_docker_serving_gives_torchs_tokens_and_leaves_no_container(
    tmp_path: Path, cache: Path, tiny_lm: Path, torch_record: dict[str, Any], docker_client: Any
) -> None:
    code, rec = serve(tmp_path, cache, tiny_lm, "onnx-cpu", "--runner", "docker")
    assert code == 0, rec.get("failure")
    assert rec["runner"]["kind"] == "docker" and rec["status"] == "ok"
    assert all(r["ok"] for r in rec["serving"]["requests"])
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)
    assert rec["artifact"]["exported_by"]["kind"] == "docker"
    assert containers_labelled(docker_client, own_label(), "joulebench.mode=serving") == []
