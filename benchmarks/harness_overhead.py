"""Does the harness slow the engine it measures? Ratios measured side by side in one run.

1. In one process: the harness's measure loop vs a bare hand-written loop over the same ONNX
   Runtime session and inputs (ResNet-50, batch 1 and 64), interleaved rounds. Goal >= 0.98.
2. docker over local: the same run through `python -m controller run` with each runner
   (skipped, with the reason, when no engine answers or the images are not built). Goal >= 0.97.

    python benchmarks/harness_overhead.py [--model-size full|tiny] [--rounds 5] [--samples 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from controller.artifacts import default_cache, ensure_artifact
from controller.errors import UserError
from controller.runners.local import LocalRunner
from harness.inputs import synthetic_batches
from harness.protocol import RunSpec
from harness.run import measure_loop

REPO = Path(__file__).resolve().parent.parent


def in_process(model_size: str, batch: int, n_batches: int, rounds: int) -> tuple[float, float]:
    art = ensure_artifact(
        LocalRunner(),
        default_cache(),
        "torch2onnx",
        "torch-cpu",
        "resnet50",
        model_size,
        "random",
        None,
        0,
        1800,
        say=lambda _: None,
    )
    session = ort.InferenceSession(str(default_cache() / art.relpath), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    spec = RunSpec(
        run_id="b",
        engine="onnxruntime",
        provider="cpu",
        model="resnet50",
        model_size=model_size,
        batch_size=batch,
        samples=n_batches * batch,
    )
    inputs = synthetic_batches(spec, n_batches)

    def bare() -> float:
        t0 = time.perf_counter()
        for i in range(n_batches):
            session.run(None, {name: inputs[i % len(inputs)]})
        return n_batches * batch / (time.perf_counter() - t0)

    def harness() -> float:
        infer = lambda x: session.run(None, {name: x})[0]  # noqa: E731 - the adapter's infer
        t0 = time.perf_counter()
        measure_loop(infer, inputs, n_batches, None)
        return n_batches * batch / (time.perf_counter() - t0)

    bare(), harness()  # warm-up
    ratios, bare_tp = [], []
    for r in range(rounds):
        # Alternate the order so drift (thermal, turbo) does not favour one side.
        a, b = (bare(), harness()) if r % 2 == 0 else tuple(reversed((harness(), bare())))
        bare_tp.append(a)
        ratios.append(b / a)
    return statistics.median(ratios), statistics.median(bare_tp)


def through_cli(runner: str, model_size: str, batch: int, samples: int, results: Path) -> float:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "run",
            "--image",
            "onnx-cpu",
            "--model",
            "resnet50",
            "--model-size",
            model_size,
            "--batch-size",
            str(batch),
            "--samples",
            str(samples),
            "--runner",
            runner,
            "--results",
            str(results),
            "--campaign",
            runner,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    (record,) = [json.loads(p.read_text()) for p in (results / runner).glob("*.json")][-1:]
    for p in (results / runner).glob("*.json"):
        p.unlink()
    return float(record["metrics"]["throughput_sps"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-size", default="full")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=128, help="samples per measurement")
    args = parser.parse_args()
    print(f"ResNet-50 ({args.model_size}) on ONNX Runtime CPU; medians of {args.rounds} rounds")
    for batch in (1, 64):
        n = max(8, args.samples // batch)  # at least 8 batches: a ratio of two is noise
        ratio, tp = in_process(args.model_size, batch, n, args.rounds)
        print(
            f"  batch {batch:>2}: harness / bare loop = {ratio:.3f}  (bare {tp:.1f} samples/s)  "
            f"goal >= 0.98 {'ok' if ratio >= 0.98 else 'MISSED'}"
        )
    try:
        from controller.runners.docker_runner import DockerRunner

        DockerRunner().image("onnx-cpu")
    except UserError as exc:
        print(f"  docker / local: skipped ({str(exc).splitlines()[0]})")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 64):
            samples = max(args.samples, 8 * batch)
            ratios = []
            for r in range(args.rounds):
                order = ("docker", "local") if r % 2 == 0 else ("local", "docker")
                tp = {k: through_cli(k, args.model_size, batch, samples, Path(tmp)) for k in order}
                ratios.append(tp["docker"] / tp["local"])
            ratio = statistics.median(ratios)
            print(
                f"  batch {batch:>2}: docker / local = {ratio:.3f}  goal >= 0.97 {'ok' if ratio >= 0.97 else 'MISSED'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
