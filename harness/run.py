"""One benchmark run inside the harness: load, warm up, measure, report."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.engines import load_engine_class
from harness.engines.base import EngineError
from harness.inputs import load_inputs
from harness.protocol import Emitter, RunSpec


def measure_loop(
    infer: Callable[[Any], Any],
    inputs: Sequence[Any],
    n_batches: int | None,
    duration_ns: int | None,
) -> tuple[list[int], list[Any]]:
    """Run ``infer`` over the inputs; per-batch latencies in ns and the outputs.

    The loop body is all the harness adds to the engine's own cost: two clock reads and two
    appends per batch (benchmarks/harness_overhead.py compares it with a bare loop).
    """
    clock = time.monotonic_ns
    latencies: list[int] = []
    outputs: list[Any] = []
    lat_append, out_append = latencies.append, outputs.append
    n_inputs = len(inputs)
    if n_batches is not None:
        for i in range(n_batches):
            x = inputs[i % n_inputs]
            t0 = clock()
            y = infer(x)
            lat_append(clock() - t0)
            out_append(y)
    else:
        assert duration_ns is not None
        deadline = clock() + duration_ns
        i = 0
        while True:
            x = inputs[i % n_inputs]
            t0 = clock()
            y = infer(x)
            t1 = clock()
            lat_append(t1 - t0)
            out_append(y)
            i += 1
            if t1 >= deadline:
                break
    return latencies, outputs


def predictions_digest(outputs: list[np.ndarray]) -> tuple[str, list[int]]:
    """sha256 over the predicted class of every sample, and those classes."""
    labels = np.concatenate([np.asarray(o).reshape(len(o), -1).argmax(axis=1) for o in outputs])
    labels = labels.astype(np.int64)
    return hashlib.sha256(labels.tobytes()).hexdigest(), labels.tolist()


def inject_fault(spec: RunSpec, phase: str) -> None:
    """``--option fault_raise=PHASE``: fail there, for tests of how failures are recorded."""
    if spec.options.get("fault_raise") == phase:
        raise EngineError(f"fault injected in phase {phase} (option fault_raise, for tests)")


def run(spec: RunSpec, emit: Emitter) -> dict[str, Any]:
    engine = load_engine_class(spec.engine)(spec)
    n_batches = None if spec.samples is None else math.ceil(spec.samples / spec.batch_size)

    t_load = emit.event("load", "start")
    inject_fault(spec, "load")
    engine.load()
    data = load_inputs(spec, n_batches)
    inputs = [engine.prepare(b) for b in data.batches]
    load_s = (emit.event("load", "end") - t_load) / 1e9

    compile_s = None
    if engine.compile_step is not None and inputs:
        t_compile = emit.event("compile", "start", step=engine.compile_step)
        engine.compile(inputs[0])
        compile_s = (emit.event("compile", "end") - t_compile) / 1e9

    emit.event("warmup", "start", batches=spec.warmup)
    if spec.warmup:
        measure_loop(engine.infer, inputs, spec.warmup, None)
    emit.event("warmup", "end")

    duration_ns = None if spec.duration_s is None else int(spec.duration_s * 1e9)
    emit.event("measure", "start")
    inject_fault(spec, "measure")
    latencies, outputs = measure_loop(engine.infer, inputs, n_batches, duration_ns)
    emit.event("measure", "end")

    digest, labels = predictions_digest([engine.to_numpy(o) for o in outputs])
    return {
        "engine": spec.engine,
        "provider": spec.provider,
        "providers_active": engine.providers_active(),
        "options_used": engine.options_used(),
        "batch_size": spec.batch_size,
        "batches": len(latencies),
        "samples": len(latencies) * spec.batch_size,
        "latencies_ns": latencies,
        "load_s": load_s,
        "compile_s": compile_s,
        "compile_step": engine.compile_step,
        "predictions_digest": digest,
        "predictions_head": labels[:16],
        "dataset": spec.dataset,
        "dataset_info": data.info,
        **data.accuracy_inputs(labels),
        "versions": engine.versions(),
        "timing_scope": engine.timing_scope,
    }
