"""The one contract between the controller and the harness (stdlib only, versioned).

The controller hands the harness a :class:`RunSpec` as JSON on its command line. The harness
prints JSON lines on stdout: phase **events** stamped with ``time.monotonic_ns()`` (the host and
its containers share that clock), then exactly one **result** or one **error**. Long work before a
measured window (a conversion, an export, a model load) may also print **progress** lines (the step
it is in, and how far it got: ``harness/progress.py``), which the controller shows live and keeps
no further. Every protocol line carries ``"joulebench": PROTOCOL_VERSION``; any other stdout line is
framework chatter and is kept as log, never parsed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TextIO

PROTOCOL_VERSION = 1
PHASES = ("load", "compile", "warmup", "measure")
EDGES = ("start", "end")
KINDS = ("event", "result", "error", "progress")


class ProtocolError(ValueError):
    """A payload that does not follow this protocol (wrong version, shape or field)."""


@dataclass(frozen=True)
class RunSpec:
    """What one run does. Validated by the controller, executed by the harness."""

    run_id: str
    engine: str
    provider: str
    model: str
    model_size: str = "full"
    weights: str = "random"
    dataset: str = "synthetic"
    # The dataset's file or folder as seen from inside the harness (mounted read-only), and a
    # seeded subset size (suite/datasets). Labelled datasets make the result carry predictions.
    dataset_path: str | None = None
    limit: int | None = None
    # Framework whose model definition runs (natively or converted): picks the preprocessing.
    source: str | None = None
    batch_size: int = 1
    samples: int | None = 64
    duration_s: float | None = None
    warmup: int = 5
    seed: int = 0
    # Artifact produced by a conversion, relative to the artifact root the runner mounts.
    artifact: str | None = None
    artifact_root: str | None = None
    # Local weights file (weights == "path"), as seen from inside the harness.
    weights_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # A model given as a file, folder or hub id rather than a registered name (suite/sources.py,
    # ModelSource.harness_fields): kind, path as seen by the harness, label, task, digest, and inputs
    # with concrete shapes ({name, dtype, shape, fill, vocab_size, ...}); ``model`` is then its label.
    # A converted run also sets ``artifact``: the engine loads that, and inputs still come from here.
    model_source: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps({"joulebench": PROTOCOL_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = _load_versioned(text, "run spec")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ProtocolError(
                f"run spec has unknown fields {sorted(unknown)}: this harness is older than the "
                "controller; rebuild the image (`python -m controller images build NAME`)"
            )
        try:
            spec = cls(**data)
        except TypeError as exc:
            raise ProtocolError(f"run spec is incomplete: {exc}") from None
        spec.check()
        return spec

    def check(self) -> None:
        """Raise ProtocolError on values no engine could run."""
        if self.batch_size < 1:
            raise ProtocolError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.warmup < 0:
            raise ProtocolError(f"warmup must be >= 0, got {self.warmup}")
        if (self.samples is None) == (self.duration_s is None):
            raise ProtocolError("give exactly one of samples or duration_s")
        if self.samples is not None and self.samples < 1:
            raise ProtocolError(f"samples must be >= 1, got {self.samples}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ProtocolError(f"duration_s must be > 0, got {self.duration_s}")
        if self.limit is not None and self.limit < 1:
            raise ProtocolError(f"limit must be >= 1, got {self.limit}")


def _load_versioned(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    version = data.pop("joulebench", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"{what} speaks protocol version {version!r}, this side speaks {PROTOCOL_VERSION}: "
            "rebuild the image (`python -m controller images build NAME`) so both sides match"
        )
    return data


# --- harness side: writing -------------------------------------------------------------------


class Emitter:
    """Writes protocol lines to a stream, one flush per line so the host sees them live."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _write(self, payload: dict[str, Any]) -> None:
        self._stream.write(json.dumps({"joulebench": PROTOCOL_VERSION, **payload}) + "\n")
        self._stream.flush()

    def event(self, phase: str, edge: str, **info: Any) -> int:
        t_ns = time.monotonic_ns()
        self._write({"kind": "event", "phase": phase, "edge": edge, "t_ns": t_ns, **info})
        return t_ns

    def result(self, result: dict[str, Any]) -> None:
        self._write({"kind": "result", "result": result})

    def progress(self, payload: dict[str, Any]) -> None:
        """Where long work stands (harness/progress.py): shown live by the controller, not recorded."""
        self._write({"kind": "progress", **payload})

    def error(self, error_type: str, message: str) -> None:
        self._write({"kind": "error", "error_type": error_type, "message": message})


# --- controller side: reading ----------------------------------------------------------------

RESULT_FIELDS: dict[str, type] = {
    "engine": str,
    "provider": str,
    "providers_active": list,
    "batch_size": int,
    "samples": int,
    "batches": int,
    "latencies_ns": list,
    "predictions_digest": str,
    "versions": dict,
    "timing_scope": str,
}


@dataclass
class HarnessOutput:
    """Everything parsed from one harness's stdout."""

    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    log: list[str] = field(default_factory=list)
    progress: dict[str, Any] | None = None  # the latest progress line (only the latest is kept)
    progress_lines: int = 0

    def window_ns(self, phase: str = "measure") -> tuple[int, int] | None:
        """(start, end) monotonic stamps of a phase, when both edges were seen."""
        edges = {e["edge"]: e["t_ns"] for e in self.events if e["phase"] == phase}
        if "start" in edges and "end" in edges:
            return edges["start"], edges["end"]
        return None


CONVERT_FIELDS: dict[str, type] = {
    "conversion": str,
    "artifact_file": str,
    "parity": dict,
    "versions": dict,
}


def parse_line(line: str, out: HarnessOutput, required: Mapping[str, type] = RESULT_FIELDS) -> None:
    """Fold one stdout line into ``out``; raise ProtocolError on a malformed protocol line."""
    stripped = line.strip()
    if not stripped.startswith("{") or '"joulebench"' not in stripped:
        if stripped:
            out.log.append(line.rstrip("\n"))
        return
    data = _load_versioned(stripped, "harness line")
    kind = data.get("kind")
    if kind == "event":
        out.events.append(_event(data, stripped))
    elif kind == "result":
        if out.result is not None:
            raise ProtocolError("harness sent more than one result")
        out.result = _result(data, required)
    elif kind == "error":
        if not isinstance(data.get("message"), str):
            raise ProtocolError("error payload without a message")
        out.error = data
    elif kind == "progress":
        if not isinstance(data.get("step"), str):
            raise ProtocolError("progress line without a step")
        out.progress = data
        out.progress_lines += 1
    else:
        raise ProtocolError(f"unknown line kind {kind!r}; expected one of {KINDS}")


def _event(data: dict[str, Any], line: str) -> dict[str, Any]:
    if data.get("phase") not in PHASES or data.get("edge") not in EDGES:
        raise ProtocolError(f"event with unknown phase/edge: {line[:200]}")
    if not isinstance(data.get("t_ns"), int):
        raise ProtocolError(f"event without integer t_ns: {line[:200]}")
    return data


def _result(data: dict[str, Any], required: Mapping[str, type]) -> dict[str, Any]:
    result = data.get("result")
    if not isinstance(result, dict):
        raise ProtocolError("result payload must be an object")
    for name, typ in required.items():
        if not isinstance(result.get(name), typ):
            raise ProtocolError(f"result field {name!r} missing or not {typ.__name__}: {result.get(name)!r}")
    return result


def progress_text(payload: dict[str, Any]) -> str:
    """A progress line as words: the step, and ``(3/9 prompts)`` where it counts."""
    text = str(payload["step"])
    done, total = payload.get("done"), payload.get("total")
    if isinstance(done, int):
        unit = f" {payload['unit']}" if payload.get("unit") else ""
        text += f" ({done}/{total}{unit})" if isinstance(total, int) else f" ({done}{unit})"
    return text


def parse_stream(text: str, required: Mapping[str, type] = RESULT_FIELDS) -> HarnessOutput:
    out = HarnessOutput()
    for line in text.splitlines():
        parse_line(line, out, required)
    return out


@dataclass(frozen=True)
class ConvertSpec:
    """One conversion: build the source model, export it, check parity, write into out_dir."""

    conversion: str
    model: str
    model_size: str = "full"
    weights: str = "random"
    weights_path: str | None = None
    seed: int = 0
    opset: int = 18
    out_dir: str = "/out"
    batch_size: int = 2
    atol: float = 1e-3
    rtol: float = 1e-2
    source_artifact: str | None = None  # a conversion of an artifact (onnx2openvino): its file
    # The model as a source (RunSpec.model_source's fields): the converter loads it from its path
    # and traces and checks parity on inputs built from its input specs; ``model`` is its label.
    model_source: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps({"joulebench": PROTOCOL_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConvertSpec:
        data = _load_versioned(text, "convert spec")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ProtocolError(f"convert spec is malformed: {exc}") from None


# --- serving mode ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeSpec:
    """One model server (``python -m harness serve``): load through the engine, then serve HTTP.

    The server emits the ``load`` phase (its ``end`` event carries ``host`` and the bound ``port``),
    serves until ``POST /shutdown``, then sends one result (SERVE_RESULT_FIELDS). The measure window
    is the client's (controller side), not the server's.
    """

    run_id: str
    engine: str
    provider: str
    model: str  # registry name, hub id or folder name (a label)
    model_path: str  # what the engine loads: a folder as seen by the harness, or a hub id (torch)
    artifact_path: str | None = None  # exported model folder (onnxruntime, openvino, torchscript)
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port, reported in the load end event
    control_port: int = 0  # a runtime with its own server: where /ready and /shutdown are (0: ephemeral)
    max_new_tokens_limit: int = 1024
    seed: int = 0
    mode: str = "serving"
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"joulebench": PROTOCOL_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        data = _load_versioned(text, "serve spec")
        try:
            spec = cls(**data)
        except TypeError as exc:
            raise ProtocolError(f"serve spec is malformed: {exc}") from None
        if not 0 <= spec.port < 65536:
            raise ProtocolError(f"port must be 0..65535, got {spec.port}")
        return spec


@dataclass(frozen=True)
class LmExportSpec:
    """Export a causal LM for an engine that cannot load transformers' folders (serving mode).

    Writes into ``out_dir`` the artifact (``model.onnx`` or ``model.pt``), the tokenizer and the
    config, and checks that greedy tokens of the export match transformers' on ``parity_prompts``.
    """

    format: str  # onnx | torchscript
    model_path: str
    out_dir: str
    opset: int = 18
    parity_prompts: list[str] = field(default_factory=list)
    parity_new_tokens: int = 8

    def to_json(self) -> str:
        return json.dumps({"joulebench": PROTOCOL_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LmExportSpec:
        data = _load_versioned(text, "export spec")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ProtocolError(f"export spec is malformed: {exc}") from None


SERVE_RESULT_FIELDS: dict[str, type] = {
    "engine": str,
    "provider": str,
    "providers_active": list,
    "load_s": float,
    "versions": dict,
}
LM_EXPORT_FIELDS: dict[str, type] = {"format": str, "artifact_file": str, "parity": dict, "versions": dict}
