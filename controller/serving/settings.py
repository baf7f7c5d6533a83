"""What a serving run is asked to do, and the constants its parts share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.serving.load import LoadPoint

# engine -> exported format it serves (None: loads the transformers folder itself)
EXPORT_FORMATS: dict[str, str | None] = {
    "torch": None,
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "torchscript": "torchscript",
}
EXPORT_IMAGE = "torch-cpu"  # where transformers models are exported
CONTAINER_PORT = 8000
MODEL_MOUNT = "/models"
EXPORT_MOUNT = "/exports"
PARITY_PROMPTS = 3
PARITY_NEW_TOKENS = 16  # greedy tokens compared per parity prompt (decoding steps through the cache)
EXPORT_CODE_VERSION = 2  # bump when harness/serving/export.py changes what it writes


@dataclass
class ServeRequest:
    image: str
    model: str
    engine: str | None = None
    prompts: Path | None = None
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 32
    concurrency: int = 1
    warmup_requests: int = 2
    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    request_timeout_s: float = 120.0
    ready_timeout_s: float = 600.0
    timeout_s: float = 7200.0  # the whole server's life, export excluded
    options: dict[str, Any] = field(default_factory=dict)
    runner: str = "auto"
    results: Path = Path("results")
    campaign: str = "default"
    memory: str | None = None
    cache: Path | None = None
    interval_s: float = 0.01
    keep_trace: bool = False
    wall_url: str | None = None
    wall_output: int | None = None
    baseline: Path | None = None
    baseline_max_age_s: float = 7 * 86400
    cell: dict[str, Any] | None = None
    load: list[LoadPoint] | None = None  # load points, one record each (None: closed loop at `concurrency`)
    slo: dict[str, float] | None = None  # ms per key (ttft, tpot, e2el), for goodput
    synthetic: dict[str, float] | None = None  # {"input", "output", "range"}: synthetic prompt lengths
    ignore_eos: bool | None = None  # generate max tokens whatever the model says (None: for synthetic prompts)
    endpoint: str | None = None  # an OpenAI-compatible API root already serving on this host (not started here)
    endpoint_pid: int | None = None  # its process, for its CPU and RAM


class ServingFailed(Exception):
    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason
