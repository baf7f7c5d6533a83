"""Does the harness slow the engine it measures? Ratios measured side by side in one run.

1. Every CPU engine: the harness's measure loop over the engine adapter vs a bare loop over the
   framework's own call, same loaded model, same inputs, interleaved rounds (engine_loop.py),
   ResNet-50 at batch 1 and 64. Engines installed here run in a local process each; TensorFlow,
   MXNet and ONNX Runtime's OpenVINO EP run inside their images (skipped, with the reason, when
   no Docker engine answers or the image is not built). Goal >= 0.98.
2. docker over local: the same run through `python -m controller run` with each runner
   (skipped, with the reason, when no engine answers or the images are not built). Goal >= 0.97.

    python benchmarks/harness_overhead.py [--model-size full|tiny] [--rounds 5] [--samples 128]
                                          [--engines onnxruntime,torch,...]

With ``--model FILE`` (an ONNX file, e.g. one another tool exported; ``--input-shape NAME=DIMS`` for
its dynamic axes) part 1 runs on that file instead of ResNet-50, on the engines that load it as it
is (onnxruntime, openvino, onnxruntime-openvino), and part 2 is skipped.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from controller import interrupts
from controller.artifacts import ARTIFACT_MOUNT, Conversion, default_cache, ensure_artifact
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.interrupts import interrupted_reason, signals_deferred
from controller.runners.base import Invocation, Mount, execute
from controller.runners.local import LocalRunner
from harness.protocol import RunSpec
from suite.sources import MODEL_MOUNT, ModelSource, SourceError, parse_input_shapes, resolve_source

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
# engine -> (image, provider, conversion or None); the image runs it when this Python cannot.
ENGINES = {
    "onnxruntime": ("onnx-cpu", "cpu", "torch2onnx"),
    "torch": ("torch-cpu", "cpu", None),
    "torchscript": ("torch-cpu", "cpu", "torch2torchscript"),
    "openvino": ("openvino-cpu", "cpu", "torch2onnx"),
    "onnxruntime-openvino": ("onnx-openvino", "openvino", "torch2onnx"),
    "tensorflow": ("tf-cpu", "cpu", None),
    "mxnet": ("mxnet-cpu", "cpu", None),
}
LOCAL = {"onnxruntime", "torch", "torchscript", "openvino"}
LOOP_TIMEOUT_S = 3600.0  # one engine's rounds in its image
CHILD_STOP_S = 120.0  # an interrupted child's time to clean up before it is killed


def engine_ratio(
    key: str, model_size: str, batch: int, n_batches: int, rounds: int, source: ModelSource | None = None
) -> dict[str, Any]:
    """Run engine_loop.py for one engine, locally or in its image; its JSON answer."""
    image, provider, conversion = ENGINES[key]
    engine = key.split("-")[0]
    artifact = None
    if source is not None:
        if engine not in source.engines() or source.route(engine).conversions:
            raise UserError(f"{source.label} does not run on {engine} as it is")
        conversion = None
    if conversion:
        cache = ArtifactCache(default_cache(), container_writes=False, warn=print)
        conv = Conversion(conversion, "torch-cpu", "resnet50", model_size, "random", None, 0)
        artifact = ensure_artifact(LocalRunner(), cache, conv, 1800, lambda _: None)
    spec = RunSpec(
        run_id="bench",
        engine=engine,
        provider=provider,
        model="resnet50",
        model_size=model_size,
        source="torch" if conversion else None,
        batch_size=batch,
        samples=n_batches * batch,
        artifact=artifact.relpath if artifact else None,
        artifact_root=(str(default_cache()) if key in LOCAL else ARTIFACT_MOUNT) if artifact else None,
    )
    if source is not None:
        inside = source.location if key in LOCAL else f"{MODEL_MOUNT}/{source.entry}"
        spec = replace(spec, model=source.label, source=None, model_source=source.harness_fields(inside, batch))
    argv = ["--spec", json.dumps(asdict(spec)), "--rounds", str(rounds), "--batches", str(n_batches)]
    if key in LOCAL:
        proc = run_child([sys.executable, str(BENCH / "engine_loop.py"), *argv])
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-1500:])
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    runner = docker_runner()
    runner.image(image)  # UserError when it is not built
    mounts = [Mount(str(BENCH), "/opt/bench")]
    if artifact:
        mounts.append(Mount(str(default_cache() / artifact.key), f"{ARTIFACT_MOUNT}/{artifact.key}"))
    mounts += [Mount(host, f"{MODEL_MOUNT}/{rel}") for host, rel in (source.mounts() if source is not None else [])]
    # The container a run gets (labelled, hardened, removed whatever happens; one left by a kill -9
    # is reaped by the next start), running the loop script instead of the harness.
    execution = execute(
        runner,
        Invocation(
            image=image,
            argv=["/opt/bench/engine_loop.py", *argv],
            entrypoint=["python3"],
            timeout_s=LOOP_TIMEOUT_S,
            mounts=mounts,
            labels={"joulebench.campaign": "bench-harness-overhead", "joulebench.run": f"{key}-b{batch}"},
        ),
    )
    if execution.start_error:
        raise RuntimeError(execution.start_error)
    if execution.timed_out or execution.exit_code != 0:
        raise RuntimeError("\n".join(execution.log_tail()) or f"exited with code {execution.exit_code}")
    return dict(json.loads(execution.stdout.strip().splitlines()[-1]))


_DOCKER: list[Any] = []


def docker_runner() -> Any:
    """One Docker runner for the whole benchmark (its start reaps what a killed benchmark left)."""
    if not _DOCKER:
        from controller.runners.docker_runner import DockerRunner

        _DOCKER.append(DockerRunner())
    return _DOCKER[0]


def run_child(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A child process to its end; interrupted, it is asked to stop (SIGTERM: a controller removes
    its containers and writes its record) before it is killed."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO
    ) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:
            with signals_deferred():
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.communicate(timeout=CHILD_STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def through_cli(runner: str, model_size: str, batch: int, samples: int, results: Path) -> float:
    proc = run_child(
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
        ]
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    (record,) = [json.loads(p.read_text()) for p in (results / runner).glob("*.json")][-1:]
    for p in (results / runner).glob("*.json"):
        p.unlink()
    return float(record["metrics"]["throughput_sps"])


def main() -> int:
    interrupts.install()  # Ctrl-C, SIGTERM, SIGHUP: containers removed, exit 130, no traceback
    try:
        return measure()
    except KeyboardInterrupt as exc:
        print(f"{interrupted_reason(exc)}: its containers and processes were removed", file=sys.stderr)
        return 130
    finally:
        interrupts.ignore()


def measure() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-size", default="full")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=128, help="samples per measurement")
    parser.add_argument("--engines", help=f"comma-separated subset of {', '.join(ENGINES)} (skips docker/local)")
    parser.add_argument("--model", help="a model file to measure instead of ResNet-50 (e.g. an ONNX file)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS")
    args = parser.parse_args()
    chosen = args.engines.split(",") if args.engines else list(ENGINES)
    source = None
    if args.model:
        try:
            source = resolve_source(args.model, parse_input_shapes(args.input_shape))
        except SourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        chosen = [k for k in chosen if k.split("-")[0] in source.engines()]
    name = source.label if source else f"ResNet-50 ({args.model_size})"
    print(f"{name}, harness loop / bare loop, medians of {args.rounds} rounds")
    for key in chosen:
        for batch in (1, 64):
            n = max(8, args.samples // batch)  # at least 8 batches: a ratio of two is noise
            where = "local" if key in LOCAL else f"in {ENGINES[key][0]}"
            try:
                found = engine_ratio(key, args.model_size, batch, n, args.rounds, source)
            except (UserError, RuntimeError, SourceError) as exc:
                print(f"  {key:<21} batch {batch:>2}: skipped ({str(exc).strip().splitlines()[-1][:150]})")
                continue
            ratio = found["ratio"]
            print(
                f"  {key:<21} batch {batch:>2}: {ratio:.3f}  (bare {found['bare_sps']:.1f} samples/s, {where}; "
                f"rounds {', '.join(f'{r:.3f}' for r in found['ratios'])})  goal >= 0.98 "
                f"{'ok' if ratio >= 0.98 else 'MISSED'}"
            )
    if args.engines or source is not None:
        return 0
    try:
        docker_runner().image("onnx-cpu")
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
