"""Every bad input: one line saying what was wrong and what to do, exit code 2, no traceback, nothing
written, no work started. The commands run in-process (the real CLI, argument parsing included) on a
fresh results folder; nothing here needs Docker, and every case is refused before any work starts: a
runner, the meters or an idle measurement starting fails the test.

The table is by class (how an input can be wrong), each with the examples that found it; a new option
or campaign key belongs in its class's rows.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.cli import main

RUN = ["run", "--image", "onnx-cpu", "--model", "resnet50", "--model-size", "tiny", "--runner", "local"]
OWN = ["run", "--image", "onnx-cpu", "--runner", "local", "--model"]  # + a model of the user's own
SERVE = ["serve", "--image", "onnx-cpu", "--model", "{lm}", "--runner", "local"]
ENDPOINT = ["serve", "--model", "m", "--endpoint", "http://127.0.0.1:9/v1"]
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


def toml(campaign: str = "", matrix: str = "", conf: str = 'image = "onnx-cpu"', rest: str = "") -> str:
    """A campaign file whose tables take these lines (written by the test, named by a token)."""
    text = (
        f'[campaign]\nname = "bad"\nmodel_size = "tiny"\nrunner = "local"\n{campaign}\n'
        f'[matrix]\nmodels = ["resnet50"]\n{matrix}\n[[matrix.configurations]]\n{conf}\n{rest}\n'
    )
    return "{toml:" + text + "}"


def config(body: str, weights: bool = True) -> str:
    """A transformers folder with this config.json (and a weights file unless asked not to)."""
    return "{cfg:" + ("w" if weights else "-") + body + "}"


SERVING = 'mode = "serving"\nname = "bad"\nrunner = "local"'


def serving(serving_lines: str = "", conf: str = 'image = "torch-cpu"', campaign: str = "") -> str:
    text = f'[campaign]\n{SERVING}\n{campaign}\n[matrix]\nmodels = ["{{lm}}"]\n[[matrix.configurations]]\n{conf}\n'
    return "{toml:" + text + f"[serving]\n{serving_lines}\n" + "}"


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
    ("absurd batch size", [*RUN, "--model-size", "full", "--batch-size", "200000"], ["GiB", "smaller batch"]),
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
    ("campaign empty", [*RUN, "--campaign", ""], ["--campaign", "empty"]),
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
    ("interval nan", [*RUN, "--interval", "nan"], ["--interval", "1 ms"]),
    ("interval zero", [*RUN, "--interval", "0"], ["--interval", "1 ms"]),
    ("wall url not http", [*RUN, "--wall-url", "ftp://pdu"], ["http(s)"]),
    ("wall url not a url", [*RUN, "--wall-url", "pdu"], ["http(s)"]),
    ("wall output without url", [*RUN, "--wall-output", "1"], ["--wall-url"]),
    ("baseline file missing", [*RUN, "--baseline", "/no/such.json"], ["no such file", "controller idle"]),
    ("baseline max age negative", [*RUN, "--baseline-max-age", "-1"], ["--baseline-max-age"]),
    ("uncertainty limit zero", [*RUN, "--uncertainty-limit", "0"], ["--uncertainty-limit", "above 0"]),
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
    ("serve uncertainty limit negative", [*SERVE, "--uncertainty-limit", "-1"], ["--uncertainty-limit", "got '-1'"]),
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
    ("campaign name escapes", ["campaign", "run", "{campaign:}", "--set", "campaign.name='../x'"], ["[campaign] name"]),
    ("campaign override without value", ["campaign", "plan", "{campaign:}", "--set", "repetitions"], ["KEY=VALUE"]),
    ("campaign unknown action", ["campaign", "go", "x.toml"], ["go"]),
    # report
    ("report folder missing", ["report", "/no/such/folder"], ["/no/such/folder"]),
    ("report folder is a file", ["report", "{file}"], ["is not a folder"]),
    ("report unknown format", ["report", "{tmp}", "--format", "pdf"], ["pdf"]),
]


# Values that start with '-' reach their own check (not argparse's "expected one argument").
CASES += [
    ("rate list starting with '-'", [*SERVE, "--request-rate", "-1,abc"], ["--request-rate", "above 0"]),
    ("concurrency list starting with '-'", [*SERVE, "--concurrency", "-1,abc"], ["--concurrency"]),
    ("threshold starting with '-'", ["compare", "{tmp}", "{tmp}", "--threshold", "-5%"], ["--threshold", "-5%"]),
    ("timeout -inf", [*RUN, "--timeout", "-inf"], ["--timeout", "finite"]),
    ("memory starting with '-'", [*RUN, "--runner", "docker", "--memory", "-2g"], ["--memory", "512m"]),
    ("tmp size starting with '-'", [*RUN, "--tmp-size", "-1g"], ["--tmp-size", "512m"]),
    ("seed negative", [*RUN, "--seed", "-1"], ["--seed", "0 or more"]),
    ("unknown single-dash option", [*RUN, "-x", "3"], ["-x"]),
]
# An empty value is refused, whichever option or argument it is.
CASES += [
    ("engine empty", [*RUN, "--engine", ""], ["--engine", "empty"]),
    ("model empty", ["run", "--image", "onnx-cpu", "--model", ""], ["--model", "empty"]),
    ("report folder empty", ["report", ""], ["FOLDER", "empty"]),
    ("serve prompts empty", [*SERVE, "--prompts", ""], ["--prompts", "empty"]),
    ("images network empty", ["images", "build", "onnx-cpu", "--network", ""], ["--network", "empty"]),
]
# Every count and time has an upper bound, on the command line and in a campaign file.
CASES += [
    ("samples absurd", [*RUN, "--samples", "10000000000000"], ["--samples", "at most"]),
    ("warm-up absurd", [*RUN, "--warmup", "10000000000000"], ["--warmup", "at most"]),
    ("seed beyond 2**32", [*RUN, "--seed", "99999999999999999999"], ["--seed", "at most"]),
    ("limit absurd", [*RUN, "--limit", "99999999999999"], ["--limit", "at most"]),
    ("duration absurd", [*RUN, "--duration", "1e300"], ["--duration", "at most"]),
    ("timeout absurd", [*RUN, "--timeout", "1e300"], ["--timeout", "at most"]),
    ("interval absurd", [*RUN, "--interval", "1e9"], ["--interval", "10"]),
    ("pids limit absurd", [*RUN, "--runner", "docker", "--pids-limit", "99999999999999999999"], ["--pids-limit"]),
    ("tmp size absurd", [*RUN, "--runner", "docker", "--tmp-size", "99999999t"], ["--tmp-size", "1024t"]),
    ("memory absurd", [*RUN, "--runner", "docker", "--memory", "99999999t"], ["--memory", "1024t"]),
    ("wall output zero", [*RUN, "--wall-url", "http://pdu", "--wall-output", "0"], ["--wall-output", "at least 1"]),
    ("wall url with a space", [*RUN, "--wall-url", "http://a b"], ["--wall-url"]),
    ("option absurd", [*RUN, "--option", "intra_op_threads=99999999999"], ["intra_op_threads", "at most"]),
    ("duration past the timeout", [*RUN, "--duration", "100", "--timeout", "60"], ["--duration", "--timeout"]),
    ("serve tokens absurd", [*SERVE, "--max-new-tokens", "99999999999"], ["--max-new-tokens", "at most"]),
    ("serve concurrency absurd", [*SERVE, "--concurrency", "99999999"], ["--concurrency", "4096"]),
    ("serve sweep absurd", [*SERVE, "--concurrency", ",".join(["1"] * 100)], ["load points"]),
    ("serve sweep point twice", [*SERVE, "--concurrency", "1,4,1"], ["--concurrency", "twice"]),
    ("serve rate twice", [*SERVE, "--request-rate", "2,2.0"], ["--request-rate", "twice"]),
    ("serve warm-up requests absurd", [*SERVE, "--warmup-requests", "99999999999"], ["--warmup-requests"]),
    ("serve warm-up seconds absurd", [*SERVE, "--warmup-s", "1e300"], ["--warmup-s", "at most"]),
    ("serve synthetic absurd", [*SERVE, "--synthetic", "input=99999999999,output=5"], ["--synthetic", "input"]),
    ("serve burstiness absurd", [*SERVE, "--request-rate", "2", "--burstiness", "1e300"], ["--burstiness"]),
    ("idle duration absurd", ["idle", "--duration", "1e300"], ["--duration", "at most"]),
    ("idle interval absurd", ["idle", "--duration", "1", "--interval", "1e9"], ["--interval"]),
    ("own model shape absurd", [*OWN, "{file}", "--input-shape", "x=99999999999"], ["--input-shape"]),
]
# An option that needs another, or means nothing beside another, is refused.
CASES += [
    ("burstiness without a rate", [*SERVE, "--burstiness", "0.5"], ["--burstiness", "--request-rate"]),
    ("endpoint pid without an endpoint", [*SERVE, "--endpoint-pid", "1"], ["--endpoint-pid", "--endpoint"]),
    ("endpoint with an engine option", [*ENDPOINT, "--option", "threads=2"], ["--option", "--endpoint"]),
    ("endpoint with a runner", [*ENDPOINT, "--runner", "docker"], ["--runner", "--endpoint"]),
    ("endpoint with a cache", [*ENDPOINT, "--cache", "{tmp}/c"], ["--cache", "--endpoint"]),
    ("endpoint with a ready timeout", [*ENDPOINT, "--ready-timeout", "5"], ["--ready-timeout", "--endpoint"]),
    ("pids limit with the local runner", [*RUN, "--pids-limit", "100"], ["--pids-limit", "local runner"]),
    ("tmp size with the local runner", [*SERVE, "--tmp-size", "1g"], ["--tmp-size", "local runner"]),
    (
        "max new tokens with synthetic",
        [*SERVE, "--synthetic", "input=4,output=4", "--max-new-tokens", "8"],
        ["--max-new-tokens", "--synthetic"],
    ),
    (
        "campaign memory with --runner local",
        ["campaign", "run", toml('memory = "2g"'), "--set", "campaign.runner=auto", "--runner", "local"],
        ["memory", "local runner"],
    ),
    ("input shape of a registered model", [*RUN, "--input-shape", "x=3x8x8"], ["--input-shape", "registered"]),
    ("report output of a term report", ["report", "{tmp}", "--format", "term", "--output", "{tmp}/o"], ["--output"]),
]
# Paths: their kind, existence and writability, before any work, for every command that takes one.
CASES += [
    ("campaign run results is a file", ["campaign", "run", "{campaign:}", "--results", "{file}"], ["is a file"]),
    ("run records folder is a file", [*RUN, "--results", "{blocked:default}"], ["default", "is a file"]),
    ("serve records folder is a file", [*SERVE, "--campaign", "c", "--results", "{blocked:c}"], ["is a file"]),
    (
        "campaign state folder is a file",
        ["campaign", "run", "{campaign:}", "--results", "{blocked:bad/campaign}"],
        ["campaign", "is a file"],
    ),
    ("model name too long", [*RUN[:4], "./" + "a" * 300, *RUN[5:]], ["--model", "255 bytes"]),
    ("results name too long", [*RUN, "--results", "{tmp}/" + "a" * 300], ["--results", "255 bytes"]),
    ("serve model name too long", [*SERVE[:4], "./" + "a" * 300, *SERVE[5:]], ["--model", "255 bytes"]),
    ("campaign file name too long", ["campaign", "plan", "{tmp}/" + "a" * 300], ["FILE", "255 bytes"]),
    ("report folder name too long", ["report", "{tmp}/" + "a" * 300], ["FOLDER", "255 bytes"]),
    ("inspect model name too long", ["models", "inspect", "./" + "a" * 300], ["MODEL", "255 bytes"]),
    ("idle output name too long", ["idle", "--output", "{tmp}/" + "a" * 300], ["--output", "255 bytes"]),
    (
        "campaign model path too long",
        ["campaign", "plan", toml(), "--set", f"matrix.models=['./{'a' * 300}']"],
        ["models", "255"],
    ),
    ("campaign run cache is a file", ["campaign", "run", "{campaign:}", "--cache", "{file}"], ["cache", "is a file"]),
    ("campaign plan results is a file", ["campaign", "plan", "{campaign:}", "--results", "{file}"], ["is a file"]),
    ("report output is a file", ["report", "{rep:truncated}", "--output", "{file}"], ["--output", "is a file"]),
    ("idle output is a folder", ["idle", "--duration", "1", "--output", "{tmp}"], ["--output", "is a folder"]),
    ("baseline not JSON", [*RUN, "--baseline", "{file}"], ["--baseline", "not an idle baseline"]),
    ("baseline a JSON list", [*RUN, "--baseline", "{data:[1]}"], ["--baseline", "not an idle baseline"]),
    ("ca bundle missing", ["images", "build", "onnx-cpu", "--ca-bundle", "/no/such.pem"], ["--ca-bundle"]),
    ("ca bundle a folder", ["images", "build", "onnx-cpu", "--ca-bundle", "{tmp}"], ["--ca-bundle", "folder"]),
    ("ca bundle not PEM", ["images", "build", "onnx-cpu", "--ca-bundle", "{file}"], ["--ca-bundle", "PEM"]),
    ("base image not a reference", ["images", "build", "onnx-cpu", "--base-image", "not a ref!"], ["--base-image"]),
    ("weights not a weights file", [*RUN, "--weights", "{file}"], ["--weights", "not a weights file"]),
    ("weights empty", [*RUN, "--weights", "{data:}"], ["--weights", "empty"]),
    ("weights a folder for a vision model", [*RUN, "--weights", "{tmp}"], ["--weights", "folder"]),
]
# A campaign file: every key's kind, one schema; what its values name must exist.
CASES += [
    ("campaign image a number", ["campaign", "plan", toml(conf="image = 7")], ["image", "string", "7"]),
    ("campaign engine a number", ["campaign", "plan", toml(conf='image = "onnx-cpu"\nengine = 5')], ["engine"]),
    ("campaign source a number", ["campaign", "plan", toml(conf='image = "onnx-cpu"\nsource = 5')], ["source"]),
    ("campaign note a number", ["campaign", "plan", toml(conf='image = "onnx-cpu"\nnote = 5')], ["note"]),
    ("campaign description a number", ["campaign", "plan", toml("description = 5")], ["description"]),
    ("campaign keep_trace a string", ["campaign", "plan", toml('keep_trace = "no"')], ["keep_trace", "true or false"]),
    ("campaign options a list", ["campaign", "plan", toml("options = [1]")], ["options", "table"]),
    ("campaign option a table", ["campaign", "plan", toml("options = {intra_op_threads = {a = 1}}")], ["options"]),
    ("campaign option unknown", ["campaign", "plan", toml("options = {turbo = 1}")], ["unknown option", "turbo"]),
    ("campaign memory a number", ["campaign", "plan", toml("memory = 2")], ["memory", "size"]),
    ("campaign memory absurd", ["campaign", "plan", toml('memory = "99999999t"')], ["memory", "1024t"]),
    ("campaign memory with local", ["campaign", "plan", toml('memory = "2g"')], ["memory", "local"]),
    ("campaign model_size a number", ["campaign", "plan", toml(), "--set", "campaign.model_size=5"], ["model_size"]),
    ("campaign model_size unknown", ["campaign", "plan", toml(), "--set", "campaign.model_size=huge"], ["huge"]),
    ("campaign weights a number", ["campaign", "plan", toml("weights = 5")], ["weights", "string"]),
    ("campaign repetitions 10**9", ["campaign", "run", toml("repetitions = 1000000000")], ["repetitions", "at most"]),
    ("campaign repetitions 2**63-1", ["campaign", "plan", toml("repetitions = 9223372036854775807")], ["repetitions"]),
    ("campaign samples 2**63-1", ["campaign", "plan", toml("samples = 9223372036854775807")], ["samples", "at most"]),
    ("campaign warmup absurd", ["campaign", "plan", toml("warmup = 9223372036854775807")], ["warmup", "at most"]),
    ("campaign seed negative", ["campaign", "plan", toml("seed = -1")], ["seed", "0 or more"]),
    ("campaign retries absurd", ["campaign", "plan", toml("retries = 9223372036854775807")], ["retries"]),
    ("campaign timeout absurd", ["campaign", "plan", toml("timeout_s = 1e300")], ["timeout_s", "at most"]),
    ("campaign interval absurd", ["campaign", "plan", toml("interval_s = 1e9")], ["interval_s"]),
    ("campaign duration past timeout", ["campaign", "plan", toml("duration_s = 100\ntimeout_s = 60")], ["timeout_s"]),
    ("campaign name too long", ["campaign", "run", toml(), "--set", "campaign.name=" + "a" * 300], ["name"]),
    (
        "campaign matrix too large",
        ["campaign", "plan", toml("repetitions = 10000", f"batch_sizes = {list(range(1, 12))}")],
        ["runs", "split"],
    ),
    (
        "campaign batch size absurd",
        ["campaign", "plan", toml(matrix="batch_sizes = [9223372036854775807]")],
        ["batch_sizes"],
    ),
    (
        "campaign model twice",
        ["campaign", "plan", toml(), "--set", "matrix.models=['resnet50', 'resnet50']"],
        ["twice"],
    ),
    ("campaign model empty", ["campaign", "plan", toml(), "--set", "matrix.models=['']"], ["models"]),
    (
        "campaign batch_sizes empty",
        ["campaign", "plan", toml(conf='image = "onnx-cpu"\nbatch_sizes = []')],
        ["batch_sizes"],
    ),
    ("campaign image unknown", ["campaign", "plan", toml(conf='image = "nosuch"')], ["nosuch", "onnx-cpu"]),
    (
        "campaign engine unknown",
        ["campaign", "plan", toml(conf='image = "onnx-cpu"\nengine = "nope"')],
        ["nope", "onnxruntime"],
    ),
    (
        "campaign source unknown",
        ["campaign", "plan", toml(conf='image = "onnx-cpu"\nsource = "jax"')],
        ["jax", "torch"],
    ),
    (
        "campaign source natively",
        ["campaign", "plan", toml(conf='image = "torch-cpu"\nsource = "torch"')],
        ["natively"],
    ),
    (
        "campaign conf model not in matrix",
        ["campaign", "plan", toml(conf='image = "onnx-cpu"\nmodels = ["mobilenetv2"]')],
        ["mobilenetv2", "[matrix] models"],
    ),
    (
        "campaign input_shapes dangling",
        ["campaign", "plan", toml(rest='[input_shapes]\n"./x.onnx" = ["x=1"]')],
        ["[input_shapes]", "not in [matrix] models"],
    ),
    (
        "campaign input_shapes registered",
        ["campaign", "plan", toml(rest='[input_shapes]\nresnet50 = ["x=1"]')],
        ["registered"],
    ),
    (
        "campaign datasets dangling",
        ["campaign", "plan", toml(rest='[datasets.bert-imdb]\ndataset = "digits"')],
        ["[datasets.bert-imdb]", "not in [matrix] models"],
    ),
    (
        "campaign dataset_path of synthetic",
        ["campaign", "plan", toml('dataset_path = "/tmp"')],
        ["dataset_path", "no path"],
    ),
    ("campaign limit of synthetic", ["campaign", "plan", toml("limit = 5")], ["limit", "labelled"]),
    (
        "campaign dataset without its path",
        ["campaign", "plan", toml('dataset = "imagenet-val"')],
        ["needs dataset_path"],
    ),
    (
        "campaign serving concurrency absurd",
        ["campaign", "plan", serving("concurrency = 999999999")],
        ["concurrency", "at most"],
    ),
    (
        "campaign serving synthetic absurd",
        ["campaign", "plan", serving('synthetic = "input=99999999999,output=4"')],
        ["synthetic"],
    ),
    (
        "campaign serving prompts with synthetic",
        ["campaign", "plan", serving('prompts = "p.txt"\nsynthetic = "input=4,output=4"')],
        ["prompts", "synthetic"],
    ),
    (
        "campaign serving source",
        ["campaign", "plan", serving(conf='image = "torch-cpu"\nsource = "torch"')],
        ["source"],
    ),
]
# A model of the user's own: the real problem is named, not a flag beside it.
CASES += [
    ("own model typo with a size", [*RUN[:4], "resnet5", *RUN[5:]], ["unknown model", "resnet5"]),
    ("own model missing with a size", [*RUN[:4], "./nope.onnx", *RUN[5:]], ["unknown model", "nope.onnx"]),
    ("own model hub id malformed", [*RUN[:4], "hf:a/b/c", *RUN[5:]], ["not a hub id"]),
    ("config.json a list", ["models", "inspect", config("[1, 2]")], ["config.json", "list", "{cfgdir}"]),
    ("config.json a list, run", [*OWN, config("[1, 2]")], ["config.json", "list", "{cfgdir}"]),
    ("config.json a list, serve", [*SERVE[:4], config("[1, 2]"), *SERVE[5:]], ["config.json", "list", "{cfgdir}"]),
    (
        "architectures a number",
        ["models", "inspect", config('{"model_type": "bert", "architectures": 5}')],
        ["architectures"],
    ),
    (
        "vocab_size a string",
        ["models", "inspect", config('{"model_type": "bert", "vocab_size": "x"}')],
        ["vocab_size", "{cfgdir}"],
    ),
    (
        "num_channels a string",
        [
            "models",
            "inspect",
            config('{"model_type": "vit", "architectures": ["ViTForImageClassification"], "num_channels": "x"}'),
        ],
        ["num_channels"],
    ),
    (
        "positions negative",
        ["models", "inspect", config('{"model_type": "bert", "vocab_size": 9, "max_position_embeddings": -5}')],
        ["max_position_embeddings"],
    ),
    ("model_type a number, serve", [*SERVE[:4], config('{"model_type": 5}'), *SERVE[5:]], ["model_type"]),
    (
        "serve folder without weights",
        [*SERVE[:4], config('{"model_type": "gpt2"}', weights=False), *SERVE[5:]],
        ["weights"],
    ),
]
# What the local runner lacks is said before a conversion starts, and says "local".
if "tensorflow" not in sys.modules and not __import__("importlib.util").util.find_spec("tensorflow"):
    CASES += [
        ("source tensorflow without tensorflow", [*RUN, "--source", "tensorflow"], ["tensorflow", "local runner"])
    ]
# A folder of records none of which can be read names them.
CASES += [
    ("report of a truncated record", ["report", "{rep:truncated}"], ["r1.json", "truncated"]),
    ("report of a JSON list", ["report", "{rep:list}"], ["r1.json", "list"]),
]


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that passes serve's look at a model (a config transformers loads, a weights file): every
    serve case is refused before the model is read further."""
    folder = tmp_path_factory.mktemp("lm")
    (folder / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture(autouse=True)
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refusal comes before any work: starting a runner, the meters or an idle measurement fails the
    test; HOME is an empty folder that must stay empty (no cache, no baseline written)."""
    from controller.meters import MeterSession
    from controller.runners.docker_runner import DockerRunner
    from controller.runners.local import LocalRunner

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the refusal")

    for owner, name in ((LocalRunner, "start"), (DockerRunner, "start"), (MeterSession, "start")):
        monkeypatch.setattr(owner, name, started)
    monkeypatch.setattr("controller.meters.measure_idle", started)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JOULEBENCH_CACHE", str(home / "cache"))
    return home


def _expand(arg: str, tmp: Path, lm: Path, made: dict[str, Path]) -> str:
    """A token of the table as a path the case needs: {file}, {data:TEXT}, {toml:TEXT}, {cfg:...}, {rep:KIND}."""
    if arg == "{file}":
        path = tmp / "a-file"
        path.write_text("x")
        return str(path)
    if arg.startswith("{blocked:"):  # a results folder where a file takes the place of a folder a run needs
        folder = tmp / "blocked"
        (folder / arg[len("{blocked:") : -1]).parent.mkdir(parents=True, exist_ok=True)
        (folder / arg[len("{blocked:") : -1]).write_text("x")
        return str(folder)
    if arg.startswith("{data:"):
        path = tmp / "data.json"
        path.write_text(arg[len("{data:") : -1])
        return str(path)
    if arg == "{notoml}":
        path = tmp / "bad.toml"
        path.write_text("[campaign\nname = ")
        return str(path)
    if arg.startswith("{campaign:"):
        path = tmp / "campaign.toml"
        path.write_text(CAMPAIGN.format(extra=arg.removeprefix("{campaign:").removesuffix("}")))
        return str(path)
    if arg.startswith("{toml:"):
        path = tmp / "campaign.toml"
        path.write_text(arg[len("{toml:") : -1].replace("{lm}", str(lm)))
        return str(path)
    if arg.startswith("{cfg:"):
        folder = made["cfgdir"] = tmp / "my-model"
        folder.mkdir()
        (folder / "config.json").write_text(arg[len("{cfg:") + 1 : -1])
        if arg[len("{cfg:")] == "w":  # an empty safetensors file: its header's length, then "{}"
            (folder / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
        return str(folder)
    if arg.startswith("{rep:"):
        folder = tmp / "records"
        folder.mkdir()
        body = {"truncated": '{"run_id": "r1", "status": "ok", "metr', "list": "[1]"}[arg[len("{rep:") : -1]]
        (folder / "r1.json").write_text(body)
        return str(folder)
    return arg.replace("{tmp}", str(tmp)).replace("{lm}", str(lm))


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    case, argv, words, tmp_path, tiny_lm_folder, no_work, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    results = work / "results"
    made: dict[str, Path] = {}
    argv = [_expand(a, work, tiny_lm_folder, made) for a in argv]
    if argv[0] in ("run", "serve") and "--results" not in argv:
        argv += ["--results", str(results)]
    if argv[:2] in (["campaign", "run"], ["campaign", "plan"]) and "--results" not in argv:
        argv += ["--results", str(results)]
    before = sorted(str(p) for p in work.rglob("*"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)  # a usage error is returned too, not raised
    text = err.getvalue()
    assert code == 2, f"{case}: exit {code}\n{text}{out.getvalue()}"
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for word in words:
        word = word.replace("{tmp}", str(work)).replace("{cfgdir}", str(made.get("cfgdir", "")))
        assert word in lines[0], f"{case}: {word!r} not in {lines[0]!r}"
    assert sorted(str(p) for p in work.rglob("*")) == before, "something was written"
    assert not any(no_work.iterdir()), "something was written in HOME"


def test_the_table_covers_every_command():
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands == {"run", "serve", "idle", "images", "campaign", "report", "compare", "models"}
    assert len(CASES) >= 200


READ_ONLY_CASES = [
    ("run results", [*RUN, "--results", "{ro}"]),
    ("run cache", [*RUN, "--results", "{tmp}/results", "--cache", "{ro}/cache"]),
    ("serve results", [*SERVE, "--results", "{ro}"]),
    ("campaign run results", ["campaign", "run", "{campaign:}", "--results", "{ro}"]),
    ("campaign run cache", ["campaign", "run", "{campaign:}", "--results", "{tmp}/results", "--cache", "{ro}"]),
    ("report output", ["report", "{rep:truncated}", "--output", "{ro}/report"]),
    ("report beside its records", ["report", "{ro}"]),
    ("idle output", ["idle", "--duration", "1", "--output", "{ro}/baseline.json"]),
]


@pytest.mark.parametrize("case, argv", READ_ONLY_CASES, ids=[c[0] for c in READ_ONLY_CASES])
def test_a_folder_this_user_cannot_write_is_refused_before_work(case, argv, tmp_path, tiny_lm_folder, monkeypatch):
    """Every path a command writes into, checked up front; os.access stands in for permissions (root
    may write anywhere, so a chmod proves nothing when the tests run as root)."""
    work = tmp_path / "work"
    read_only = work / "ro"
    read_only.mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if Path(p).is_relative_to(read_only) else real_access(p, mode, **kw)
    )
    monkeypatch.chdir(work)
    argv = [_expand(a, work, tiny_lm_folder, {}).replace("{ro}", str(read_only)) for a in argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not writable" in lines[0] and str(read_only) in lines[0], lines


def test_a_config_without_vocab_size_takes_transformers_default_or_names_the_folder(tmp_path, monkeypatch):
    """transformers fills a missing vocab_size with its model type's default: so do we; where it has none,
    the refusal names the folder and what to add."""
    from suite.hf_config import read_hf_config
    from suite.source_spec import SourceError

    defaults = {"bert": lambda: SimpleNamespace(vocab_size=30522), "odd": lambda: SimpleNamespace()}
    monkeypatch.setitem(sys.modules, "transformers", SimpleNamespace(CONFIG_MAPPING=defaults))
    config = {"model_type": "bert", "architectures": ["BertForSequenceClassification"]}
    _, _, inputs, _ = read_hf_config(tmp_path, config)
    assert inputs[0].name == "input_ids" and inputs[0].vocab_size == 30522
    for model_type in ("odd", "nosuch"):
        with pytest.raises(SourceError) as refused:
            read_hf_config(tmp_path, {**config, "model_type": model_type})
        assert str(tmp_path) in str(refused.value) and '"vocab_size": N' in str(refused.value)
    monkeypatch.setitem(sys.modules, "transformers", None)  # not installed: import fails
    with pytest.raises(SourceError, match="not installed"):
        read_hf_config(tmp_path, config)


def test_a_local_conversion_says_it_runs_locally(tmp_path):
    """The conversion's progress line names where it runs: an image with Docker, "locally" without."""
    from controller.artifacts import Conversion, ConversionFailed, _convert
    from controller.cache import ArtifactCache
    from controller.runners.local import LocalRunner

    said: list[str] = []
    runner = LocalRunner()
    runner.start = lambda inv: (_ for _ in ()).throw(ConversionFailed("stop here", []))  # type: ignore[method-assign]
    conv = Conversion("tf2onnx", "tf-cpu", "resnet50", "tiny", "random", None, 0, None, None)
    with pytest.raises(ConversionFailed):
        _convert(runner, ArtifactCache(tmp_path, False, said.append), conv, tmp_path / "stage", 60, said.append, None)
    assert said and "locally" in said[0] and "tf-cpu" not in said[0]


def test_every_count_and_time_has_a_ceiling():
    """Bounds are one table: every count and time a flag or a campaign key takes has an upper bound."""
    from controller.campaigns.schema import SCHEMA
    from controller.inputs import COUNTS, SECONDS, Count, Seconds

    assert all(c.highest < 2**63 for c in COUNTS.values()) and all(t.highest < 1e9 for t in SECONDS.values())
    for table in SCHEMA.values():
        for _key, check in table.items():
            if isinstance(check, (Count, Seconds)):
                with pytest.raises(ValueError):
                    check(2**63 - 1)


def test_images_build_names_a_network_docker_does_not_have():
    from controller.commands import _check_network
    from controller.errors import UserError

    engine = SimpleNamespace(networks=SimpleNamespace(list=lambda names: [SimpleNamespace(name="lab")]))
    _check_network(engine, "lab")
    _check_network(engine, "host")
    with pytest.raises(UserError, match="--network 'lan' is no network"):
        _check_network(SimpleNamespace(networks=SimpleNamespace(list=lambda names: [])), "lan")
