"""What streaming over HTTP adds to time per output token: the model server vs direct generation.

Same model, engine, prompts and token counts, in one run: ``direct`` calls the engine's
``generate`` in this process and stamps each token as the engine hands it out; ``stream`` sends
the same prompts to ``python -m harness serve`` on 127.0.0.1 as streamed OpenAI completions
(``/v1/completions``, one server-sent event per token, read by the controller's client as a run
reads them). Every request generates exactly ``--max-new-tokens`` (ignore_eos). TPOT = (last
token - first) / (tokens - 1) per request, as the run records compute it; the streaming
overhead is stream TPOT / direct TPOT - 1 (the target: under 2 %), per pair of requests
(one direct, one streamed, back to back); and, within the same streamed
requests, the TPOT the client sees against the one the server measured while generating them.

    python benchmarks/serving_overhead.py                          # GPT-2 4 x 256 built here, torch
    python benchmarks/serving_overhead.py --engine onnxruntime --embd 32 --layers 2
    python benchmarks/serving_overhead.py --arch llama --engine torch,onnxruntime,ortgenai,openvino-genai,llamacpp

With several engines, each is measured in turn on the same model and prompts, and a last table puts
their tokens/s and TPOT side by side (llamacpp needs llama-cpp-python installed here).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.serving.client import Endpoint, WorkItem, stream_completion  # noqa: E402
from controller.serving.settings import export_source  # noqa: E402
from harness.protocol import Emitter, LmExportSpec, ServeSpec  # noqa: E402
from harness.serving.formats import EXPORT_FORMATS, export_format  # noqa: E402
from harness.serving.registry import language_model  # noqa: E402
from suite.prompts import humaneval_prompts  # noqa: E402


def start_server(spec: ServeSpec) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--spec", spec.to_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"joulebench"' in line:
            event = json.loads(line)
            if event.get("phase") == "load" and event.get("edge") == "end":
                return proc, int(event["port"])
    raise SystemExit(f"the server exited with code {proc.wait()} before it was ready")


def direct(lm: object, text: str, n: int) -> tuple[float, float, float]:
    """(TTFT, TPOT, E2E) in ms of one in-process generation."""
    stamps: list[int] = []
    t0 = time.monotonic_ns()
    lm.generate(text, n, on_token=lambda _: stamps.append(time.monotonic_ns()), ignore_eos=True)  # type: ignore[attr-defined]
    end = time.monotonic_ns()
    return (stamps[0] - t0) / 1e6, (stamps[-1] - stamps[0]) / (len(stamps) - 1) / 1e6, (end - t0) / 1e6


def make_artifact(fmt: str | None, model: Path, work: Path, prompt: str) -> str | None:
    """The export an engine serves, made here (an export of an export: its source first)."""
    if fmt is None:
        return None
    from harness.serving.export import export_lm

    out = work / fmt
    if not out.exists():
        source = export_source(fmt)
        origin = make_artifact(source, model, work, prompt) if source else str(model)
        export_lm(LmExportSpec(fmt, str(origin), str(out), parity_prompts=[prompt]), Emitter(io.StringIO()))
    return str(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a GPT-2 with random weights built here)")
    parser.add_argument(
        "--engine", default="torch", help=f"one or several, comma-separated: {', '.join(EXPORT_FORMATS)}"
    )
    parser.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2", help="of the model built here")
    parser.add_argument("--embd", type=int, default=256, help="width of the model built here (default 256)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    engines = args.engine.split(",")
    unknown = [e for e in engines if e not in EXPORT_FORMATS]
    if unknown:
        parser.error(f"unknown engine {', '.join(unknown)}; valid: {', '.join(EXPORT_FORMATS)}")
    work = Path(tempfile.mkdtemp(prefix="joulebench-serving-bench-"))
    model = args.model
    if model is None:
        from harness.serving.tiny import build_tiny_lm

        heads = max(2, args.embd // 64)
        model = build_tiny_lm(work / "lm", n_embd=args.embd, n_layer=args.layers, n_head=heads, arch=args.arch)
    prompts = humaneval_prompts(seed=0, limit=args.prompts)
    summary = []
    try:
        for engine in engines:
            summary.append(measure(engine, model, work, prompts, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(summary) > 1:
        print(
            f"\nside by side: {model.name}, the same {len(prompts)} prompts x {args.rounds} rounds x "
            f"{args.max_new_tokens} tokens, {args.threads} thread(s)"
        )
        print(
            f"{'engine':16} {'tokens/s':>9} {'TPOT median':>12} {'TTFT median':>12} {'direct TPOT':>12} {'overhead':>9}"
        )
        for row in summary:
            print(
                f"{row['engine']:16} {row['tokens_per_s']:9.1f} {row['tpot_ms']:12.3f} {row['ttft_ms']:12.3f} "
                f"{row['direct_tpot_ms']:12.3f} {row['overhead_pct']:+8.2f}%"
            )
    return 0


def measure(engine: str, model: Path, work: Path, prompts: list, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """One engine: direct generation and streamed HTTP, in pairs; prints its table, returns its figures."""
    options = {"threads": args.threads}
    artifact = make_artifact(export_format(engine, options), model, work, prompts[0].text)
    spec = ServeSpec("bench", engine, "cpu", model.name, str(model), artifact_path=artifact, options=options)
    direct_lm = language_model(spec)
    direct_lm.load()
    proc, port = start_server(spec)
    ep = Endpoint("http", "127.0.0.1", port, "/v1", spec.model)
    n = args.max_new_tokens
    d: list[tuple[float, float, float]] = []
    s: list[tuple[float, float, float]] = []
    server_tpot: list[float] = []
    try:
        for i, p in enumerate(prompts[:2]):  # warm both paths
            direct(direct_lm, p.text, n)
            stream_completion(ep, WorkItem(i, p, n, ignore_eos=True), 120)
        for _ in range(args.rounds):
            for i, p in enumerate(prompts):  # pairs: a busy moment of the host hits both alike
                d.append(direct(direct_lm, p.text, n))
                r = stream_completion(ep, WorkItem(i, p, n, ignore_eos=True), 120)
                if not r.ok or r.tpot_ns is None or r.ttft_ns is None or not r.server_ms:
                    raise SystemExit(f"request failed: {r.error}")
                s.append((r.ttft_ns / 1e6, r.tpot_ns / 1e6, r.latency_ns / 1e6))
                server_tpot.append((r.server_ms["generate"] - r.server_ms["first_token"]) / (n - 1))
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    print(f"engine {engine}   model {model.name}   {len(prompts)} prompts x {args.rounds} rounds x {n} tokens")
    print(f"{'':34} {'TTFT mean':>10} {'TPOT mean':>10} {'TPOT median':>12} {'E2E mean':>10}   (ms)")
    for name, rows in (("direct generate (this process)", d), ("streamed HTTP (client's clock)", s)):
        ttft, tpot, e2e = zip(*rows, strict=True)
        print(
            f"{name:34} {statistics.fmean(ttft):10.3f} {statistics.fmean(tpot):10.3f} "
            f"{statistics.median(tpot):12.3f} {statistics.fmean(e2e):10.3f}"
        )
    print(
        f"{'  the server generating them':34} {'':10} {statistics.fmean(server_tpot):10.3f} "
        f"{statistics.median(server_tpot):12.3f}"
    )
    pair = [b[1] / a[1] - 1 for a, b in zip(d, s, strict=True)]
    same = [c[1] / g - 1 for c, g in zip(s, server_tpot, strict=True)]
    print(
        f"TPOT overhead of streaming vs direct generation: median of pairs {100 * statistics.median(pair):+.2f} %   "
        f"ratio of means {100 * (statistics.fmean(r[1] for r in s) / statistics.fmean(r[1] for r in d) - 1):+.2f} %"
    )
    print(
        "TPOT the client sees vs the server's own generation of the same requests: "
        f"median {100 * statistics.median(same):+.2f} %"
    )
    return {
        "engine": engine,
        "tokens_per_s": n * len(s) / (sum(r[2] for r in s) / 1e3),
        "tpot_ms": statistics.median(r[1] for r in s),
        "ttft_ms": statistics.median(r[0] for r in s),
        "direct_tpot_ms": statistics.median(r[1] for r in d),
        "overhead_pct": 100 * statistics.median(pair),
    }


if __name__ == "__main__":
    sys.exit(main())
