"""A conversion, run in the source framework's environment: convert, check parity, report meta."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.converters import get_converter
from harness.progress import report
from harness.protocol import ConvertSpec, Emitter


def parity(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Max abs/rel difference and agreement of predicted classes between two outputs."""
    if reference.shape != candidate.shape:
        return {
            "ok": False,
            "reason": f"shape {candidate.shape} != source {reference.shape}",
            "max_abs_diff": float("inf"),
            "max_rel_diff": float("inf"),
            "argmax_agreement": 0.0,
            "atol": atol,
            "rtol": rtol,
        }
    diff = np.abs(reference - candidate)
    scale = np.maximum(np.abs(reference), 1e-6)
    return {
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff / scale).max()),
        "argmax_agreement": float((reference.argmax(axis=-1) == candidate.argmax(axis=-1)).mean()),
        "atol": atol,
        "rtol": rtol,
        "ok": bool(np.allclose(candidate, reference, atol=atol, rtol=rtol)),
    }


def convert(spec: ConvertSpec, emit: Emitter) -> dict[str, Any]:
    report(f"{spec.conversion}: importing the frameworks")  # torch or TensorFlow alone: seconds
    converter, filename = get_converter(spec.conversion)
    out_file = os.path.join(spec.out_dir, filename)
    t0 = emit.event("load", "start", conversion=spec.conversion)
    converted = converter(spec, out_file)
    conversion_s = (emit.event("load", "end") - t0) / 1e9
    meta = {
        "conversion": spec.conversion,
        "artifact_file": filename,
        "model": spec.model,
        "model_size": spec.model_size,
        "weights": spec.weights,
        "opset": spec.opset if filename.endswith(".onnx") else None,
        "conversion_s": conversion_s,
        "parity": parity(converted.reference, converted.candidate, spec.atol, spec.rtol)
        | ({} if converted.gated else {"gated": False, "samples": int(len(converted.reference))}),
        "versions": converted.versions,
        **(converted.details or {}),
    }
    return meta
