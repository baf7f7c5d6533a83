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
from harness.protocol import Emitter, LmExportSpec, ServeSpec  # noqa: E402
from harness.serving.formats import EXPORT_FORMATS  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a GPT-2 with random weights built here)")
    parser.add_argument("--engine", choices=sorted(EXPORT_FORMATS), default="torch")
    parser.add_argument("--embd", type=int, default=256, help="width of the GPT-2 built here (default 256)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="joulebench-serving-bench-"))
    model = args.model
    if model is None:
        from harness.serving.tiny import build_tiny_lm

        model = build_tiny_lm(work / "lm", n_embd=args.embd, n_layer=args.layers, n_head=max(2, args.embd // 64))
    artifact = None
    prompts = humaneval_prompts(seed=0, limit=args.prompts)
    fmt = EXPORT_FORMATS[args.engine]
    if fmt is not None:
        from harness.serving.export import export_lm

        artifact = str(work / fmt)
        export_lm(LmExportSpec(fmt, str(model), artifact, parity_prompts=[prompts[0].text]), Emitter(io.StringIO()))
    spec = ServeSpec(
        "bench", args.engine, "cpu", model.name, str(model), artifact_path=artifact, options={"threads": args.threads}
    )
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
        shutil.rmtree(work, ignore_errors=True)
    print(f"engine {args.engine}   model {model.name}   {len(prompts)} prompts x {args.rounds} rounds x {n} tokens")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
