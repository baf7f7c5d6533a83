"""The LLM runtimes people deploy (llama.cpp, ONNX Runtime GenAI, OpenVINO GenAI), each in its own image, served
through `python -m controller serve` like every other engine: the same prompts, the same streamed
OpenAI API and serving metrics, greedy parity with transformers stated in the record (a gate for
full-precision artifacts, an agreement rate for quantised ones), and a campaign over them that the
report turns into its tables.

The model is a tiny Llama built here (every runtime loads Llama); a tiny GPT-2 shows the refusal of
an architecture a runtime's converter does not take, before any work. llama.cpp runs only in its
image (llama-cpp-python compiles llama.cpp: not in the test environment); the two GenAI runtimes run
with the local runner too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, REQUIRE_DOCKER, containers_labelled, own_label

pytest.importorskip("fastapi")
pytest.importorskip("transformers")

from controller.cli import main  # noqa: E402

LIMIT = 4
NEW_TOKENS = 8
CAMPAIGN = REPO / "suite" / "campaigns" / "llm-runtimes.toml"


def _readable(path: Path) -> Path:
    for file in path.iterdir():
        file.chmod(0o644)  # safetensors writes 0600; containers read the folder as another user
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.serving.tiny import build_tiny_lm

    return _readable(build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-llama", arch="llama"))


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.serving.tiny import build_tiny_lm

    return _readable(build_tiny_lm(tmp_path_factory.mktemp("models") / "tiny-gpt2"))


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
            "--results", str(results),
            "--cache", str(cache),
            "--campaign", "llm-runtimes-test",
            "--option", "threads=1",
            *extra,
        ]
    )  # fmt: skip
    new = set(results.rglob("*.json")) - before
    assert len(new) == 1, f"expected one new record, got {new}"
    return code, json.loads(new.pop().read_text())


def tokens_by_prompt(record: dict[str, Any]) -> dict[str, list[int]]:
    return {r["prompt_id"]: r["token_ids"] for r in record["serving"]["requests"]}


def check_served(rec: dict[str, Any], engine: str) -> None:
    assert rec["status"] == "ok", rec.get("failure")
    assert rec["engine"] == engine and rec["mode"] == "serving"
    requests = rec["serving"]["requests"]
    assert len(requests) == LIMIT and all(r["ok"] and r["status"] == 200 for r in requests)
    for r in requests:  # streamed: one event per token, each timed
        assert r["output_tokens_source"] == "usage" and len(r["token_times_us"]) == r["new_tokens"]
    m = rec["metrics"]
    assert m["requests_ok"] == LIMIT and m["output_token_throughput_tps"] > 0
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert m[f"{name}_ms_median"] > 0, name
    assert rec["result"]["generation"]["kv_cache"] is True


@pytest.fixture(scope="module")
def torch_record(tmp_path_factory: pytest.TempPathFactory, cache: Path, tiny_llama: Path) -> dict[str, Any]:
    code, rec = serve(tmp_path_factory.mktemp("results"), cache, tiny_llama, "torch-cpu", "--runner", "local")
    assert code == 0, rec.get("failure")
    return rec


# --- ONNX Runtime GenAI, with the local runner ----------------------------------------------------


@pytest.mark.slow
def test_ortgenai_serves_transformers_greedy_tokens(tmp_path: Path, cache: Path, tiny_llama: Path, torch_record):
    pytest.importorskip("onnxruntime_genai")
    code, rec = serve(tmp_path, cache, tiny_llama, "ortgenai-cpu", "--runner", "local")
    assert code == 0
    check_served(rec, "ortgenai")
    assert rec["conversion"] == "lm2ortgenai-fp32"
    assert rec["artifact"]["exporter"].startswith("onnxruntime_genai.models.builder")
    parity = rec["result"]["generation"]["load_parity"]
    assert parity["gated"] is True and parity["token_agreement"] == 1.0 and parity["prompts"] == 4
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)
    assert rec["result"]["versions"]["onnxruntime-genai"]


@pytest.mark.slow
def test_ortgenai_int4_serves_and_records_its_agreement_without_a_gate(
    tmp_path: Path, cache: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
):
    pytest.importorskip("onnxruntime_genai")
    code, rec = serve(tmp_path, cache, tiny_llama, "ortgenai-cpu", "--runner", "local", "--option", "precision=int4")
    assert code == 0
    check_served(rec, "ortgenai")
    assert rec["conversion"] == "lm2ortgenai-int4"
    parity = rec["result"]["generation"]["load_parity"]
    assert parity["gated"] is False and parity["prompts"] == 4 and isinstance(parity["token_agreement"], float)
    assert "recorded, not a gate" in capsys.readouterr().out  # and said so in the summary


@pytest.mark.slow
def test_an_export_of_a_hub_model_builds_from_the_loaded_model_not_a_folder(tmp_path: Path, tiny_llama: Path):
    """A hub id is no folder: the GGUF writer reads the tokenizer saved beside the export, and ONNX
    Runtime GenAI's builder gets the loaded model saved into a scratch folder of the export."""
    pytest.importorskip("gguf")
    pytest.importorskip("onnxruntime_genai")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.protocol import LmExportSpec
    from harness.serving import export

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    for fmt in ("gguf-f32", "ortgenai-fp32"):
        out = tmp_path / fmt
        AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(out)  # as export_lm does first
        spec = LmExportSpec(format=fmt, model_path="someone/tiny-llama", out_dir=str(out))
        written = export.EXPORT_WRITERS[fmt](spec, model, [])
        assert (out / written["artifact_file"]).is_file()
        assert not any(p.name.startswith(".builder-") for p in out.iterdir())  # the scratch folder is gone


@pytest.mark.slow
def test_openvino_genai_serves_transformers_greedy_tokens_from_the_onnx_export_made_stateful(
    tmp_path: Path, cache: Path, tiny_llama: Path, torch_record: dict[str, Any]
) -> None:
    pytest.importorskip("openvino_genai")
    code, rec = serve(tmp_path, cache, tiny_llama, "openvino-genai-cpu", "--runner", "local")
    assert code == 0
    check_served(rec, "openvino-genai")
    assert rec["conversion"] == "lm2openvino-genai" and "beam_idx" in rec["artifact"]["exporter"]
    assert rec["artifact"]["key_inputs"]["source_export"]  # made from the ONNX export, which is cached too
    parity = rec["result"]["generation"]["load_parity"]
    assert parity["gated"] is True and parity["token_agreement"] == 1.0
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)


# --- refusals before any work ---------------------------------------------------------------------


def test_an_architecture_the_runtime_cannot_convert_is_refused_before_any_work(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    code = main(["serve", "--image", "ortgenai-cpu", "--model", str(tiny_gpt2), "--results", str(tmp_path / "r"),
                 "--cache", str(cache), "--runner", "local"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "engine ortgenai cannot serve tiny-gpt2" in err and "GPT2LMHeadModel" in err and "model builder" in err
    assert not list((tmp_path / "r").rglob("*.json")) and not any(cache.rglob("*.onnx"))


def test_a_quantisation_llama_cpp_does_not_offer_is_refused_with_the_valid_ones(
    tmp_path: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--image", "llamacpp-cpu", "--model", str(tiny_llama), "--option", "quant=q5",
                 "--results", str(tmp_path), "--runner", "local"])  # fmt: skip
    assert code == 2
    assert "f32, f16, q8_0, q4_k_m" in capsys.readouterr().err


def test_ignore_eos_on_llama_cpps_own_server_is_refused_it_would_be_dropped(
    tmp_path: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--image", "llamacpp-cpu", "--engine", "llamacpp-server", "--model", str(tiny_llama),
                 "--ignore-eos", "--results", str(tmp_path), "--runner", "local"])  # fmt: skip
    assert code == 2 and "has no ignore_eos" in capsys.readouterr().err


def test_the_plan_says_per_cell_which_runtime_cannot_serve_which_model_and_why() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller", "campaign", "plan", str(CAMPAIGN)],
        capture_output=True, text=True, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    assert "9 configurations × 12 models" in out
    assert "engine llamacpp cannot serve pythia-410m: GPTNeoXForCausalLM" in out
    assert "engine llamacpp cannot serve tinyllama: a SentencePiece tokenizer" in out
    assert "engine ortgenai cannot serve codeparrot-small: GPT2LMHeadModel" in out
    assert "-> tinyllama on ortgenai-cpu" not in out.split("cannot serve")[-1]  # Llama: the builder takes it


def test_the_gguf_writer_writes_what_llama_cpp_reads(tmp_path: Path, tiny_llama: Path) -> None:
    """f16 weights, f32 norms, llama.cpp's tensor names and the whole vocabulary (its own load is in Docker)."""
    gguf = pytest.importorskip("gguf")
    pytest.importorskip("torch")
    import io

    from harness.protocol import Emitter, LmExportSpec
    from harness.serving.export import export_lm

    out = tmp_path / "gguf"
    spec = LmExportSpec(format="gguf-f16", model_path=str(tiny_llama), out_dir=str(out), parity_prompts=["def f(x):"])
    meta = export_lm(spec, Emitter(io.StringIO()))
    assert meta["gguf"]["architecture"] == "llama" and meta["parity"]["gated"] is False  # f16: recorded
    reader = gguf.GGUFReader(out / "model.gguf")
    tensors = {t.name: t for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_gate.weight", "output_norm.weight"} <= set(tensors)
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    config = json.loads((tiny_llama / "config.json").read_text())
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]
    assert json.loads((out / "reference.json").read_text())[0]["reference_tokens"]


# --- in their own images ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_images(docker_client: Any) -> Any:
    from controller.images import get_manifest

    for name in ("llamacpp-cpu", "ortgenai-cpu", "openvino-genai-cpu"):
        tag = get_manifest(name).tag
        if not docker_client.images.list(name=tag):
            why = f"image {tag} is not built (python -m controller images build {name})"
            if REQUIRE_DOCKER:
                pytest.fail(f"JOULEBENCH_REQUIRE_DOCKER=1 but {why}")
            pytest.skip(f"SKIPPING DOCKER TEST: {why}")
    return docker_client


@pytest.mark.docker
def test_llama_cpp_in_its_image_serves_transformers_tokens_and_quantised_gguf_records_its_agreement(
    tmp_path: Path, cache: Path, tiny_llama: Path, torch_record: dict[str, Any], llm_images: Any
) -> None:
    code, f32 = serve(tmp_path, cache, tiny_llama, "llamacpp-cpu", "--runner", "docker", "--option", "quant=f32")
    assert code == 0
    check_served(f32, "llamacpp")
    assert f32["runner"]["kind"] == "docker" and f32["conversion"] == "lm2gguf-f32"
    parity = f32["result"]["generation"]["load_parity"]
    assert parity["gated"] is True and parity["token_agreement"] == 1.0  # exact: a gate
    assert f32["result"]["generation"]["quantization"] == "f32"
    assert tokens_by_prompt(f32) == tokens_by_prompt(torch_record)
    assert f32["result"]["versions"]["llama_cpp_python"]

    code, q8 = serve(tmp_path, cache, tiny_llama, "llamacpp-cpu", "--runner", "docker", "--option", "quant=q8_0")
    assert code == 0
    check_served(q8, "llamacpp")
    assert q8["conversion"] == "lm2gguf-q8_0"
    assert "llama_model_quantize" in q8["artifact"]["exporter"]  # by llama.cpp, in its image
    assert q8["artifact"]["exported_by"]["kind"] == "docker"
    parity = q8["result"]["generation"]["load_parity"]
    assert parity["gated"] is False and parity["prompts"] == 4 and isinstance(parity["token_agreement"], float)
    assert containers_labelled(llm_images, own_label(), "joulebench.mode=serving") == []


@pytest.mark.docker
@pytest.mark.parametrize(("image", "engine"), [("ortgenai-cpu", "ortgenai"), ("openvino-genai-cpu", "openvino-genai")])
def test_the_genai_runtimes_serve_transformers_tokens_in_their_images(
    image: str,
    engine: str,
    tmp_path: Path,
    cache: Path,
    tiny_llama: Path,
    torch_record: dict[str, Any],
    llm_images: Any,
) -> None:
    code, rec = serve(tmp_path, cache, tiny_llama, image, "--runner", "docker")
    assert code == 0
    check_served(rec, engine)
    assert rec["runner"]["kind"] == "docker" and rec["artifact"]["exported_by"]["kind"] == "docker"
    assert rec["result"]["generation"]["load_parity"]["token_agreement"] == 1.0
    assert tokens_by_prompt(rec) == tokens_by_prompt(torch_record)
    assert containers_labelled(llm_images, own_label(), "joulebench.mode=serving") == []


@pytest.mark.docker
def test_llama_cpps_own_server_serves_in_its_image_and_our_control_port_stops_it(
    tmp_path: Path, cache: Path, tiny_llama: Path, llm_images: Any
) -> None:
    # Under concurrent load, as it is deployed for a benchmark: no stream is cut for the one waiting.
    code, rec = serve(
        tmp_path, cache, tiny_llama, "llamacpp-cpu", "--engine", "llamacpp-server", "--runner", "docker",
        "--concurrency", "2",
    )  # fmt: skip
    assert code == 0 and rec["status"] == "ok", rec.get("failure")
    assert rec["engine"] == "llamacpp-server" and rec["conversion"] == "lm2gguf-f16"
    requests = rec["serving"]["requests"]
    assert len(requests) == LIMIT and all(r["ok"] and r["finish_reason"] in ("stop", "length") for r in requests)
    # Its server sends no usage: the count is its events, or max_tokens where it said it stopped there.
    assert all(r["output_tokens_source"] in ("events", "finish_reason") for r in requests)
    m = rec["metrics"]
    assert m["requests_truncated"] == 0 and m["serving_flags"] == []
    assert m["tpot_ms_median"] > 0 and m["output_token_throughput_tps"] > 0
    assert m["engine_concurrency"]["requests"] == 1 and m["token_timing"]["engine_reports"] is False
    server = rec["result"]["server"]
    assert server["own"] is True and "llama_cpp.server" in server["command"]
    assert server["command"][server["command"].index("--interrupt_requests") + 1] == "false"
    assert "unavailable" in server["requests_served"]  # not counted by us, not invented
    parity = rec["result"]["generation"]["load_parity"]
    assert parity["gated"] is False and parity["prompts"] == 4 and parity["token_agreement"] is None
    assert isinstance(parity["greedy_text_agreement"], float) and "text" in parity["checked"]
    assert rec["result"]["generation"]["quantization"] == "f16"
    assert containers_labelled(llm_images, own_label(), "joulebench.mode=serving") == []


@pytest.mark.docker
def test_a_campaign_over_the_runtimes_in_docker_gives_the_reports_tables(
    tmp_path: Path, cache: Path, tiny_llama: Path, llm_images: Any
) -> None:
    sets = [
        f'matrix.models=["{tiny_llama}"]',
        f"serving.limit={LIMIT}",
        f"serving.max_new_tokens={NEW_TOKENS}",
        "serving.warmup_requests=1",
        "serving.warmup_s=0",
        "serving.cooldown_s=0",
        "campaign.repetitions=1",
        "cooldown.mode=none",
        "idle.policy=stored",
    ]
    # The module's cache: the exports the tests above made are found, not made again (CI's time).
    args = ["--results", str(tmp_path / "results"), "--cache", str(cache), "--runner", "docker"]
    run = subprocess.run(
        [sys.executable, "-m", "controller", "campaign", "run", str(CAMPAIGN), *args,
         *[a for s in sets for a in ("--set", s)]],
        capture_output=True, text=True, cwd=REPO, timeout=1800, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "9 of 9 runs ok" in run.stdout
    folder = tmp_path / "results" / "llm-runtimes"
    recs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    engines = {r["cell"]["configuration"]: r["engine"] for r in recs}
    assert engines["llamacpp-q4km-cpu"] == "llamacpp" and engines["ortgenai-int4-cpu"] == "ortgenai"
    full_precision = ("torch-cpu", "onnx-cpu", "ortgenai-cpu", "ovgenai-cpu")
    full = [r for r in recs if r["cell"]["configuration"] in full_precision]
    assert len({json.dumps(tokens_by_prompt(r), sort_keys=True) for r in full}) == 1  # one greedy answer

    # A load sweep on one runtime joins the campaign's records: the report draws its curve.
    code = main(["serve", "--image", "llamacpp-cpu", "--model", str(tiny_llama), "--concurrency", "1,2",
                 "--limit", str(LIMIT), "--max-new-tokens", str(NEW_TOKENS), "--warmup-requests", "1",
                 "--runner", "docker", "--results", str(tmp_path / "results"), "--cache", str(cache),
                 "--campaign", "llm-runtimes", "--option", "threads=1"])  # fmt: skip
    assert code == 0
    report = subprocess.run(
        [sys.executable, "-m", "controller", "report", str(folder), "--output", str(tmp_path / "report")],
        capture_output=True, text=True, cwd=REPO, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    import csv

    with open(tmp_path / "report" / "serving.csv", newline="") as fh:
        rows = {r["Serving configuration"]: r for r in csv.DictReader(fh)}
    assert "<LLAMA.CPP, CPU> llamacpp-q8-cpu" in rows and "<ORT-GENAI, CPU> ortgenai-int4-cpu" in rows
    # The CSV holds the share (0-1); the Markdown says what it is and whether it was a gate.
    assert 0.0 <= float(rows["<LLAMA.CPP, CPU> llamacpp-f16-cpu"]["Greedy parity"]) <= 1.0  # f16 rounds
    assert 0.0 <= float(rows["<LLAMA.CPP, CPU> llamacpp-q4km-cpu"]["Greedy parity"]) <= 1.0
    torch_row = rows["<TORCH, CPU>"]
    assert torch_row["Greedy parity"] == "n/a" and "the reference itself" in torch_row["footnotes"]
    assert float(rows["<OV-GENAI, CPU>"]["Greedy parity"]) == 1.0
    md = "".join(p.read_text() for p in (tmp_path / "report").glob("*.md"))
    assert "(not gated)" in md and "of prompts' text (not gated)" in md  # quantised, f16, its own server
    assert all(float(r["Throughput (tokens/s)"]) > 0 for r in rows.values())
    assert (tmp_path / "report" / "table4.csv").is_file()
    from controller.report.curves import LATENCY_KEY

    assert (tmp_path / "report" / "plots" / f"{LATENCY_KEY}.png").is_file()
