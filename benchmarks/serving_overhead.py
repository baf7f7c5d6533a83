"""HTTP + server overhead per request: the harness's model server vs direct generation.

Same model, engine, prompts and max new tokens, in one run: ``direct`` calls the engine's
``generate`` in this process; ``http`` sends the same prompts to ``python -m harness serve`` on
127.0.0.1 (FastAPI + uvicorn, a fresh connection per request, as the controller's client does).
Rounds alternate the two. Prints the mean per-request time of each and the ratio http / direct.

    python benchmarks/serving_overhead.py                       # tiny GPT-2 built here, torch
    python benchmarks/serving_overhead.py --engine onnxruntime --model PATH --prompts 20
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

from controller.serving import send_prompt  # noqa: E402
from harness.protocol import Emitter, LmExportSpec, ServeSpec  # noqa: E402
from harness.serving.lm import language_model  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny GPT-2 built here)")
    parser.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="joulebench-serving-bench-"))
    model = args.model
    if model is None:
        from harness.serving.tiny import build_tiny_lm

        model = build_tiny_lm(work / "tiny")
    artifact = None
    if args.engine == "onnxruntime":
        from harness.serving.export import export_lm

        artifact = str(work / "onnx")
        export_lm(LmExportSpec("onnx", str(model), artifact), Emitter(io.StringIO()))
    spec = ServeSpec("bench", args.engine, "cpu", model.name, str(model), artifact_path=artifact)
    prompts = humaneval_prompts(seed=0, limit=args.prompts)

    direct_lm = language_model(spec)
    direct_lm.load()
    proc, port = start_server(spec)
    direct_ms: list[float] = []
    http_ms: list[float] = []
    try:
        for i, p in enumerate(prompts[:2]):  # warm both paths
            direct_lm.generate(p.text, args.max_new_tokens)
            send_prompt("127.0.0.1", port, i, p, args.max_new_tokens, 60)
        for _ in range(args.rounds):
            for p in prompts:
                t0 = time.perf_counter_ns()
                direct_lm.generate(p.text, args.max_new_tokens)
                direct_ms.append((time.perf_counter_ns() - t0) / 1e6)
            for i, p in enumerate(prompts):
                r = send_prompt("127.0.0.1", port, i, p, args.max_new_tokens, 60)
                if not r.ok:
                    raise SystemExit(f"request failed: {r.error}")
                http_ms.append(r.latency_ns / 1e6)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    d, h = statistics.fmean(direct_ms), statistics.fmean(http_ms)
    print(f"engine {args.engine}   model {model}   {len(prompts)} prompts x {args.rounds} rounds")
    print(f"direct generate   {d:8.2f} ms/request   (median {statistics.median(direct_ms):.2f})")
    print(f"http + server     {h:8.2f} ms/request   (median {statistics.median(http_ms):.2f})")
    print(f"overhead          {h - d:8.2f} ms/request")
    print(f"ratio http/direct {h / d:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
