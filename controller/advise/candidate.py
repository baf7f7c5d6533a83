"""One point of the space: an image and engine with its settings; one campaign configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Candidate:
    name: str  # the campaign configuration's name (unique, readable)
    image: str
    engine: str
    provider: str
    precision: str  # fp32, int8, bf16, q4_k_m ...
    reduced: bool  # below the engine's full precision: the quality constraint applies
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    threads: int | None = None
    knobs: dict[str, str] = field(default_factory=dict, hash=False)
    batch_size: int = 1
    concurrency: int | None = None  # serving: requests in flight
    reference: str | None = None  # the full-precision sibling a reduced candidate is compared with

    @property
    def runtime(self) -> str:
        """The image and engine, whatever the settings: "the best of torch-cpu/torchscript"."""
        return f"{self.image}/{self.engine}"

    def settings(self) -> str:
        """Its settings in words: "2 threads, graph all, int8, batch 8"."""
        parts = [] if self.threads is None else [f"{self.threads} thread{'s' if self.threads != 1 else ''}"]
        parts += [f"{_short(k)} {v}" for k, v in self.knobs.items()]
        parts.append(self.precision)
        parts.append(f"batch {self.batch_size}" if self.concurrency is None else f"concurrency {self.concurrency}")
        return ", ".join(parts)

    def describe(self) -> str:
        return f"{self.runtime} ({self.settings()})"


_SHORT = {
    "graph_optimization_level": "graph",
    "performance_hint": "hint",
    "compile_mode": "compile",
    "jit_compile": "xla",
}


def _short(knob: str) -> str:
    return _SHORT.get(knob, knob)


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]+", "-", str(text)).strip("-").lower() or "x"


def candidate_name(
    image: str,
    engine: str,
    single_engine: bool,
    threads: int | None,
    knobs: dict[str, str],
    precision: str,
    amount: str,
) -> str:
    """``onnx-cpu.t2.graph-all.int8.b8``: readable, unique within a space, a valid configuration name."""
    parts = [image] + ([] if single_engine else [_token(engine)])
    if threads is not None:
        parts.append(f"t{threads}")
    parts += [f"{_short(k)}-{_token(v)}" for k, v in knobs.items()]
    parts += [_token(precision), amount]
    return ".".join(parts)
