"""Inputs prepared before any timed window."""

from __future__ import annotations

import numpy as np

from harness.protocol import RunSpec
from suite.models import get_model

# Distinct synthetic batches cycled through the window: enough to defeat trivial caching, few
# enough that batch 64 of 224x224 images stays well under a gigabyte.
SYNTHETIC_POOL = 4


def synthetic_batches(spec: RunSpec, n_batches: int | None) -> list[np.ndarray]:
    shape = get_model(spec.model).size(spec.model_size).input_shape
    count = SYNTHETIC_POOL if n_batches is None else max(1, min(SYNTHETIC_POOL, n_batches))
    rng = np.random.default_rng(spec.seed)
    return [rng.standard_normal((spec.batch_size, *shape), dtype=np.float32) for _ in range(count)]
