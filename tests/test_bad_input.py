"""Every bad input: one line saying what was wrong and what to do, exit code 2, no traceback, nothing
written. The commands run in-process (the real CLI, argument parsing included) on a fresh results
folder; nothing here needs Docker, and every case is refused before any work starts."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from controller.cli import main

RUN = ["run", "--image", "onnx-cpu", "--model", "resnet50", "--model-size", "tiny", "--runner", "local"]
SERVE = ["serve", "--image", "onnx-cpu", "--model", "{lm}", "--runner", "local"]
CAMPAIGN = """
[campaign]
name = "bad"
model_size = "tiny"
samples = 4
runner = "local"
{extra}

[matrix]
models = ["resnet50"]

[[matrix.configurations]]
image = "onnx-cpu"
"""

# (case id, argv, words the error must contain)
CASES: list[tuple[str, list[str], list[str]]] = [
    # run: what to run
    ("unknown image", ["run", "--image", "onnx-gpu-x", "--model", "resnet50"], ["unknown image", "onnx-cpu"]),
    ("unknown model", [*RUN[:4], "resnet5"], ["unknown model", "mobilenetv2"]),
    ("engine not in image", [*RUN, "--engine", "torch"], ["onnxruntime"]),
    ("unknown model size", [*RUN, "--model-size", "huge"], ["full", "tiny"]),
    ("missing weights file", [*RUN, "--weights", "/no/such.pt"], ["pretrained", "existing file"]),
    (
        "source of a native run",
        ["run", "--image", "torch-cpu", "--model", "resnet50", "--source", "tensorflow"],
        ["natively"],
    ),
    ("unknown source", [*RUN, "--source", "jax"], ["no jax definition", "torch"]),
    ("missing model flag", ["run", "--image", "onnx-cpu"], ["--model"]),
    ("unknown flag", [*RUN, "--bogus"], ["--bogus"]),
    # run: amounts
    ("batch size zero", [*RUN, "--batch-size", "0"], ["at least 1"]),
    ("batch size text", [*RUN, "--batch-size", "abc"], ["batch-size"]),
    ("absurd batch size", [*RUN, "--model-size", "full", "--batch-size", "100000000"], ["GiB", "smaller batch"]),
    ("samples zero", [*RUN, "--samples", "0"], ["at least 1"]),
    ("samples and duration", [*RUN, "--samples", "4", "--duration", "2"], ["not allowed with"]),
    ("negative warm-up", [*RUN, "--warmup", "-1"], ["--warmup", "0 or more"]),
    ("limit zero", [*RUN, "--limit", "0"], ["at least 1"]),
    ("duration nan", [*RUN, "--duration", "nan"], ["--duration", "finite"]),
    ("duration inf", [*RUN, "--duration", "inf"], ["--duration", "finite"]),
    ("duration zero", [*RUN, "--duration", "0"], ["--duration", "positive"]),
    # run: data
    ("unknown dataset", [*RUN, "--dataset", "nosuch"], ["nosuch", "digits"]),
    ("dataset of another shape", [*RUN, "--dataset", "digits"], ["1x8x8", "digits-cnn"]),
    ("dataset without its path", [*RUN, "--dataset", "imagenet-val"], ["--dataset-path"]),
    (
        "dataset path missing",
        [*RUN[:4], "bert-imdb", *RUN[5:], "--dataset", "imdb", "--dataset-path", "/no/such"],
        ["/no/such"],
    ),
    ("dataset of another task", [*RUN, "--dataset", "imdb", "--dataset-path", "{tmp}"], ["text-classification"]),
    # run: where it writes
    ("campaign escapes results", [*RUN, "--campaign", "../../x"], ["plain folder name"]),
    ("campaign empty", [*RUN, "--campaign", ""], ["plain folder name"]),
    ("campaign absolute", [*RUN, "--campaign", "/tmp/x"], ["plain folder name"]),
    ("campaign with separator", [*RUN, "--campaign", "a/b"], ["plain folder name"]),
    ("campaign dot-dot", [*RUN, "--campaign", ".."], ["plain folder name"]),
    ("results is a file", [*RUN, "--results", "{file}"], ["is a file", "folder"]),
    ("results under /proc", [*RUN, "--results", "/proc/joulebench"], ["/proc", "kernel"]),
    ("cache is a file", [*RUN, "--cache", "{file}"], ["cache", "is a file"]),
    # run: limits
    ("memory not a size", [*RUN, "--runner", "docker", "--memory", "lots"], ["--memory", "512m"]),
    ("memory below docker's minimum", [*RUN, "--runner", "docker", "--memory", "1k"], ["minimum"]),
    ("memory with the local runner", [*RUN, "--memory", "2g"], ["local runner", "--runner docker"]),
    ("timeout nan", [*RUN, "--timeout", "nan"], ["--timeout", "finite"]),
    ("timeout inf", [*RUN, "--timeout", "inf"], ["--timeout", "finite"]),
    ("timeout zero", [*RUN, "--timeout", "0"], ["--timeout", "positive"]),
    ("timeout negative", [*RUN, "--timeout", "-5"], ["--timeout", "positive"]),
    ("pids limit tiny", [*RUN, "--pids-limit", "1"], ["--pids-limit"]),
    ("tmp size not a size", [*RUN, "--tmp-size", "big"], ["--tmp-size"]),
    ("unknown runner", [*RUN, "--runner", "k8s"], ["auto", "docker", "local"]),
    # run: meters
    ("interval under 1 ms", [*RUN, "--interval", "0.0001"], ["1 ms"]),
    ("interval nan", [*RUN, "--interval", "nan"], ["--interval", "finite"]),
    ("interval zero", [*RUN, "--interval", "0"], ["--interval", "positive"]),
    ("wall url not http", [*RUN, "--wall-url", "ftp://pdu"], ["http(s)"]),
    ("wall url not a url", [*RUN, "--wall-url", "pdu"], ["http(s)"]),
    ("wall output without url", [*RUN, "--wall-output", "1"], ["--wall-url"]),
    ("baseline file missing", [*RUN, "--baseline", "/no/such.json"], ["no such file", "controller idle"]),
    ("baseline max age negative", [*RUN, "--baseline-max-age", "-1"], ["--baseline-max-age"]),
    ("uncertainty limit zero", [*RUN, "--uncertainty-limit", "0"], ["--uncertainty-limit", "positive"]),
    ("uncertainty limit nan", [*RUN, "--uncertainty-limit", "nan"], ["--uncertainty-limit", "finite"]),
    # run: engine options
    ("option without value", [*RUN, "--option", "threads"], ["KEY=VALUE"]),
    ("option twice", [*RUN, "--option", "intra_op_threads=1", "--option", "intra_op_threads=2"], ["twice"]),
    ("unknown option", [*RUN, "--option", "turbo=1"], ["unknown option", "intra_op_threads"]),
    ("option not a number", [*RUN, "--option", "intra_op_threads=abc"], ["whole number"]),
    ("option below its minimum", [*RUN, "--option", "intra_op_threads=0"], ["at least 1"]),
    ("option not yes/no", [*RUN, "--option", "io_binding=maybe"], ["yes/no"]),
    ("option of another engine", [*RUN, "--option", "model_format=ir"], ["unknown option"]),
    (
        "option not a choice",
        ["run", "--image", "openvino-cpu", "--model", "resnet50", "--option", "performance_hint=FAST"],
        ["LATENCY"],
    ),
    ("option set by the controller", [*RUN, "--option", "trt_cache_dir=/x"], ["unknown option"]),
    # serve
    ("serve unknown image", ["serve", "--image", "nosuch", "--model", "{lm}"], ["unknown image"]),
    ("serve engine cannot serve", ["serve", "--image", "tf-cpu", "--model", "{lm}"], ["cannot serve", "torch"]),
    ("serve model missing", [*SERVE[:4], "/no/such/folder", *SERVE[5:]], ["neither a folder"]),
    ("serve max new tokens zero", [*SERVE, "--max-new-tokens", "0"], ["at least 1"]),
    ("serve concurrency zero", [*SERVE, "--concurrency", "0"], ["at least 1"]),
    ("serve warm-up requests negative", [*SERVE, "--warmup-requests", "-1"], ["--warmup-requests"]),
    ("serve warm-up seconds negative", [*SERVE, "--warmup-s", "-1"], ["--warmup-s"]),
    ("serve request timeout nan", [*SERVE, "--request-timeout", "nan"], ["--request-timeout", "finite"]),
    ("serve ready timeout zero", [*SERVE, "--ready-timeout", "0"], ["--ready-timeout"]),
    ("serve prompts file missing", [*SERVE, "--prompts", "/no/such.jsonl"], ["/no/such.jsonl"]),
    ("serve campaign escapes", [*SERVE, "--campaign", "../x"], ["plain folder name"]),
    ("serve unknown option", [*SERVE, "--option", "bogus=1"], ["unknown option", "threads"]),
    ("serve memory with local runner", [*SERVE, "--memory", "2g"], ["local runner"]),
    ("serve uncertainty limit negative", [*SERVE, "--uncertainty-limit", "-1"], ["--uncertainty-limit", "got -1"]),
    # idle
    ("idle duration zero", ["idle", "--duration", "0"], ["--duration"]),
    ("idle duration nan", ["idle", "--duration", "nan"], ["--duration", "finite"]),
    ("idle interval zero", ["idle", "--duration", "1", "--interval", "0"], ["--interval"]),
    ("idle output under /proc", ["idle", "--duration", "1", "--output", "/proc/x/baseline.json"], ["/proc"]),
    ("idle wall url not http", ["idle", "--duration", "1", "--wall-url", "pdu"], ["http(s)"]),
    # images
    ("images build unknown", ["images", "build", "nosuch"], ["unknown image", "onnx-cpu"]),
    ("images lock unknown", ["images", "lock", "nosuch"], ["unknown image"]),
    ("images without action", ["images"], ["images"]),
    # campaign
    ("campaign file missing", ["campaign", "plan", "/no/such.toml"], ["cannot read"]),
    ("campaign file not TOML", ["campaign", "plan", "{notoml}"], ["not valid TOML"]),
    ("campaign unknown key", ["campaign", "plan", "{campaign:turbo = true}"], ["unknown key", "turbo"]),
    ("campaign memory not a size", ["campaign", "plan", '{campaign:memory = "lots"}'], ["memory", "512m"]),
    ("campaign interval too short", ["campaign", "plan", "{campaign:interval_s = 0.0001}"], ["1 ms"]),
    (
        "campaign uncertainty limit not a number",
        ["campaign", "plan", '{campaign:uncertainty_limit = "2%"}'],
        ["uncertainty_limit", "finite number"],
    ),
    ("campaign timeout inf", ["campaign", "plan", "{campaign:timeout_s = inf}"], ["timeout_s", "finite"]),
    ("campaign name escapes", ["campaign", "run", "{campaign:}", "--set", "campaign.name='../x'"], ["campaign name"]),
    ("campaign override without value", ["campaign", "plan", "{campaign:}", "--set", "repetitions"], ["KEY=VALUE"]),
    ("campaign unknown action", ["campaign", "go", "x.toml"], ["go"]),
    # report
    ("report folder missing", ["report", "/no/such/folder"], ["/no/such/folder"]),
    ("report folder is a file", ["report", "{file}"], ["is not a folder"]),
    ("report unknown format", ["report", "{tmp}", "--format", "pdf"], ["pdf"]),
]


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any existing folder stands in for the model: every serve case is refused before it is read."""
    folder = tmp_path_factory.mktemp("lm")
    (folder / "config.json").write_text("{}")
    return folder


def _expand(arg: str, tmp: Path, lm: Path) -> str:
    if arg == "{file}":
        path = tmp / "a-file"
        path.write_text("x")
        return str(path)
    if arg == "{notoml}":
        path = tmp / "bad.toml"
        path.write_text("[campaign\nname = ")
        return str(path)
    if arg.startswith("{campaign:"):
        path = tmp / "campaign.toml"
        path.write_text(CAMPAIGN.format(extra=arg.removeprefix("{campaign:").removesuffix("}")))
        return str(path)
    return arg.replace("{tmp}", str(tmp)).replace("{lm}", str(lm))


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, argv, words, tmp_path, tiny_lm_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    argv = [_expand(a, tmp_path, tiny_lm_folder) for a in argv]
    if argv[0] in ("run", "serve") and "--results" not in argv:
        argv += ["--results", str(results)]
    if argv[:2] == ["campaign", "run"] or argv[:2] == ["campaign", "plan"]:
        argv += ["--results", str(results)]
    before = sorted(p.name for p in tmp_path.iterdir())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
    text = err.getvalue()
    assert code == 2, f"{case}: exit {code}\n{text}{out.getvalue()}"
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for word in words:
        assert word in lines[0], f"{case}: {word!r} not in {lines[0]!r}"
    assert not results.exists() or not any(results.rglob("*.json")), "a record was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == before or not results.exists()


def test_the_table_covers_every_command():
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands == {"run", "serve", "idle", "images", "campaign", "report"}
    assert len(CASES) >= 60


def test_a_read_only_results_folder_is_refused_before_work(tmp_path):
    if os.getuid() == 0:
        pytest.skip("root writes into read-only folders; the check is for other users")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([*RUN, "--results", str(folder)])
    assert code == 2 and "not writable" in err.getvalue()
