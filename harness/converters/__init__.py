"""Converters: one module per source framework, each exporting functions named after conversions.

A converter takes the ConvertSpec and the output file, writes the artifact, and returns the source
model's outputs and the artifact's outputs on the same fixed inputs, for the parity check.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.protocol import ConvertSpec


@dataclass
class Converted:
    reference: np.ndarray  # the source model's output on the fixed inputs
    candidate: np.ndarray  # the artifact's output on the same inputs
    versions: dict[str, str]  # exporter and runtime versions that produced and checked it
    details: dict[str, Any] | None = None
    # False where the conversion changes the outputs by design (quantisation): parity is recorded
    # (top-1 agreement above all), not a gate the artifact must pass.
    gated: bool = True


# conversion -> (module under harness.converters, artifact file name)
CONVERTERS: dict[str, tuple[str, str]] = {
    "torch2onnx": ("torch_export", "model.onnx"),
    "torch2torchscript": ("torch_export", "model.pt"),
    "tf2onnx": ("tf_export", "model.onnx"),
    "mx2onnx": ("mx_export", "model.onnx"),
    "onnx2openvino": ("openvino_export", "model.xml"),  # and model.bin beside it
    "onnx2int8": ("ort_quantize", "model.onnx"),
}


def get_converter(name: str) -> tuple[Callable[[ConvertSpec, str], Converted], str]:
    if name not in CONVERTERS:
        raise KeyError(f"unknown conversion {name!r}; valid: {', '.join(sorted(CONVERTERS))}")
    module, filename = CONVERTERS[name]
    return getattr(importlib.import_module(f"harness.converters.{module}"), name), filename


def fixed_inputs(spec: ConvertSpec) -> np.ndarray:
    """The same inputs for every conversion of a model: seeded, independent of the run's seed."""
    from suite.models import get_model

    shape = get_model(spec.model).size(spec.model_size).input_shape
    return np.random.default_rng(1234).standard_normal((spec.batch_size, *shape), dtype=np.float32)


def fixed_source_inputs(spec: ConvertSpec) -> dict[str, np.ndarray]:
    """A model source's fixed inputs by name, at the batch its graph fixes or the conversion's."""
    from harness.inputs import source_batch

    assert spec.model_source is not None
    inputs = spec.model_source["inputs"]
    fixed = next((s["dims"][0] for s in inputs if s.get("dims") and isinstance(s["dims"][0], int)), None)
    batch = source_batch(inputs, fixed or spec.batch_size, np.random.default_rng(1234))
    mask = batch.get("attention_mask")
    if mask is not None and mask.ndim == 2 and len(mask) > 1:
        mask[-1, mask.shape[1] // 2 :] = 0  # a padded sequence, as real batches have
    return batch


def fixed_model_inputs(spec: ConvertSpec) -> Any:
    """The fixed inputs: one array, or for a model with several inputs a dict of token ids and masks."""
    from suite.models import get_model

    if spec.model_source is not None:
        return fixed_source_inputs(spec)

    size = get_model(spec.model).size(spec.model_size)
    if not size.input_names:
        return fixed_inputs(spec)
    assert size.vocab_size is not None
    vocab, length = size.vocab_size, size.input_shape[0]
    config = os.path.join(spec.weights_path or "", "config.json")
    if spec.weights == "path" and os.path.isfile(config):
        # A model folder (save_pretrained): its own vocabulary and positions bound the token ids.
        with open(config, encoding="utf-8") as fh:
            found = json.load(fh)
        vocab = min(vocab, int(found.get("vocab_size", vocab)))
        length = min(length, int(found.get("max_position_embeddings", length)))
    shape = (spec.batch_size, length)
    rng = np.random.default_rng(1234)
    mask = np.ones(shape, np.int64)
    mask[-1, shape[1] // 2 :] = 0  # a padded sequence, as real batches have
    first, *rest = size.input_names
    return {first: rng.integers(0, vocab, shape), **{name: mask for name in rest}}
