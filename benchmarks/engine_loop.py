"""Harness loop vs a bare loop on one engine, in one process. Imports only harness and suite, so
it also runs inside an image (harness_overhead.py mounts this folder and runs it there).

The bare loop calls the framework's own API the way a user's hand-written benchmark would
(``session.run``, ``model(x)``, ``request.infer``, ``fn(x)``, ``net(*x).wait_to_read()``); the
harness side is ``measure_loop`` over the engine adapter's ``infer``, as a real run times it.
Both use the same loaded model and the same prepared inputs; rounds alternate their order.

    python benchmarks/engine_loop.py --spec '<RunSpec JSON>' [--rounds 5] [--batches 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # harness, suite (outside an image)

from harness.engines import load_engine_class  # noqa: E402
from harness.inputs import load_inputs  # noqa: E402
from harness.protocol import RunSpec  # noqa: E402
from harness.run import measure_loop  # noqa: E402


def bare_call(engine: Any, named: bool) -> Callable[[Any], Any]:
    """The framework's own inference call behind an engine adapter.

    ``named``: the prepared inputs are a dict by input name (a model source, or a text model), as a
    user's own loop over a model file would feed them.
    """
    name = engine.name
    if name == "onnxruntime":
        session = engine.session
        return lambda feed: session.run(None, feed)  # prepare() built the feed dict, as a user's loop would
    if name in ("torch", "torchscript", "torch-compile"):
        model = engine.model
        return (lambda x: model(**x)) if named else (lambda x: model(x))
    if name == "openvino":
        request = engine.request
        return lambda x: request.infer(x, share_inputs=True, share_outputs=False)
    if name == "tensorflow":
        fn = engine._fn
        return lambda x: fn(x)
    if name == "mxnet":
        net = engine.net
        return lambda x: net(*x).wait_to_read()  # prepare() gives the positional inputs
    raise SystemExit(f"no bare loop for engine {name}")


def compare(spec: RunSpec, rounds: int, n_batches: int) -> dict[str, Any]:
    engine = load_engine_class(spec.engine)(spec)
    engine.load()
    data = load_inputs(spec, n_batches)
    inputs = [engine.prepare(b) for b in data.batches]
    if engine.compile_step is not None:
        engine.compile(inputs[0])
    bare = bare_call(engine, isinstance(data.batches[0], dict))

    def bare_loop() -> float:
        count = len(inputs)
        t0 = time.perf_counter()
        for i in range(n_batches):
            bare(inputs[i % count])
        return n_batches * spec.batch_size / (time.perf_counter() - t0)

    def harness_loop() -> float:
        t0 = time.perf_counter()
        measure_loop(engine.infer, inputs, n_batches, None)
        return n_batches * spec.batch_size / (time.perf_counter() - t0)

    bare_loop(), harness_loop()  # warm-up
    ratios, bare_tp = [], []
    for r in range(rounds):
        # Alternate the order so drift (thermal, turbo, neighbours) does not favour one side.
        if r % 2 == 0:
            b, h = bare_loop(), harness_loop()
        else:
            h, b = harness_loop(), bare_loop()
        bare_tp.append(b)
        ratios.append(h / b)
    return {
        "engine": spec.engine,
        "batch_size": spec.batch_size,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "bare_sps": statistics.median(bare_tp),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=16)
    args = parser.parse_args()
    fields = json.loads(args.spec)
    fields.pop("joulebench", None)
    print(json.dumps(compare(RunSpec(**fields), args.rounds, args.batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
