"""How a serving run serves and drives its model, and the constants the serving parts share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.serving.load import LoadPoint

from harness.serving.formats import (
    EXPORT_FORMATS,
    GGUF_QUANT_CHOICES,
    LOADS_MODEL_FOLDER,
    OWN_SERVER_REQUEST,
    export_format,
)

__all__ = ["EXPORT_FORMATS", "LOADS_MODEL_FOLDER", "OWN_SERVER_REQUEST", "export_format"]

EXPORT_IMAGE = "torch-cpu"  # where transformers models are exported
# Exports made from another export, in another image: format -> (source format, image).
DERIVED_EXPORTS: dict[str, tuple[str, str]] = {
    **{f"gguf-{q}": ("gguf-f32", "llamacpp-cpu") for q in GGUF_QUANT_CHOICES if q not in ("f32", "f16")},
    "openvino-genai": ("onnx", "openvino-genai-cpu"),
}
CONTAINER_PORT = 8000
CONTROL_PORT = 8001  # a runtime with its own server on CONTAINER_PORT: our /ready and /shutdown here
MODEL_MOUNT = "/models"
EXPORT_MOUNT = "/exports"
PARITY_PROMPTS = 3
PARITY_NEW_TOKENS = 16  # greedy tokens compared per parity prompt (decoding steps through the cache)
EXPORT_CODE_VERSION = 2  # bump when harness/serving/export.py changes what it writes


@dataclass(frozen=True)
class ServingSettings:
    """How a model is served and driven: the ``serve`` flags and a campaign's [serving] table.

    The one place these defaults live: ``serve``'s flags and campaign files both take them from here.
    """

    prompts: str = "humaneval"  # or a prompt file (JSONL or text, one per line)
    limit: int | None = None  # prompts per run (None: every one, 164 for HumanEval)
    seed: int = 0  # of the HumanEval-derived spans
    max_new_tokens: int = 32
    concurrency: int = 1
    warmup_requests: int = 2
    warmup_s: float = 0.0  # the ready server idles this long before the warm-up requests (paper: 300)
    cooldown_s: float = 0.0  # and this long after the measured window (paper: 300)
    request_timeout_s: float = 120.0
    ready_timeout_s: float = 600.0
    load: tuple[LoadPoint, ...] = ()  # the load points, one record each (none: closed loop at `concurrency`)
    slo: dict[str, float] | None = None  # ms per key (ttft, tpot, e2el), for goodput
    synthetic: dict[str, float] | None = None  # {"input", "output", "range"}: synthetic prompt lengths
    ignore_eos: bool | None = None  # generate max tokens whatever the model says (None: for synthetic prompts)
    extra_inputs: dict[str, Any] | None = None  # more request fields, sent with every request (--extra-input)

    def __post_init__(self) -> None:
        """Each value within what its ``serve`` flag (and [serving] key) takes, checked as the settings are made."""
        from controller.inputs import COUNTS, SECONDS, within

        for name in ("max_new_tokens", "concurrency", "warmup_requests", "limit", "seed"):
            value = getattr(self, name)
            if value is not None:
                within(f"--{name.replace('_', '-')}", value, COUNTS[name])
        for name, flag in _TIME_FLAGS.items():
            within(flag, getattr(self, name), SECONDS[name])

    def points(self) -> list[LoadPoint]:
        from controller.serving.load import LoadPoint

        return list(self.load) or [LoadPoint(concurrency=self.concurrency)]

    def ignores_eos(self) -> bool:
        return self.ignore_eos if self.ignore_eos is not None else self.synthetic is not None


_TIME_FLAGS = {
    "warmup_s": "--warmup-s",
    "cooldown_s": "--cooldown-s",
    "request_timeout_s": "--request-timeout",
    "ready_timeout_s": "--ready-timeout",
}
# Request fields joulebench sets itself: --extra-input may not set them (its own flag says which does).
OWN_REQUEST_FIELDS = {
    "model": "--model",
    "prompt": "--prompts / --synthetic",
    "max_tokens": "--max-new-tokens / --synthetic output=N",
    "stream": "nothing: every request is streamed",
    "stream_options": "nothing: usage is always asked for",
    "ignore_eos": "--ignore-eos",
}


def export_source(fmt: str) -> str | None:
    """The export another export is made from (a quantised GGUF: the f32 one), or None: the model."""
    return DERIVED_EXPORTS[fmt][0] if fmt in DERIVED_EXPORTS else None


def export_image(fmt: str) -> str:
    """The image that makes an export."""
    return DERIVED_EXPORTS[fmt][1] if fmt in DERIVED_EXPORTS else EXPORT_IMAGE


def export_images(fmt: str | None) -> list[str]:
    """Every image an export needs, its source's included."""
    if fmt is None:
        return []
    source = export_source(fmt)
    return [*export_images(source), export_image(fmt)] if source else [export_image(fmt)]


SERVE_TIMEOUT_S = 7200.0  # the whole server's life, export excluded


class ServingFailed(Exception):
    """A serving run that cannot go on: the phase it stopped in and why."""

    def __init__(self, phase: str, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason
        self.code = code  # the record's failure code, when the phase does not say it
