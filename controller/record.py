"""Run records: one typed record per run, built once (``controller/pipeline.py``), checked when
built, on write and on load.

A record is written as one JSON file, atomically, with a schema version. Version 1 records
(before failure codes and ``mode`` were always present) are migrated when loaded.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("ok", "failed")
MODES = ("batch", "serving")


class Failure:
    """Why a run failed: one named code per kind of failure (the reason is its sentence)."""

    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, SIGHUP: not a fault of the configuration
    SETUP = "setup"  # could not even start (validation, runner, image)
    CONVERSION = "conversion"  # a conversion or export failed or missed parity
    START = "start"  # the harness (or server) could not start
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out-of-memory"
    KILLED = "killed"  # a signal from outside the controller (docker kill, kill -9)
    HARNESS_ERROR = "harness-error"  # the harness reported an error
    EXIT_CODE = "exit-code"  # it exited non-zero without saying why
    NO_RESULT = "no-result"
    PROTOCOL = "protocol"  # it spoke something other than the protocol
    SERVER = "server"  # serving: the server died, hung or answered an error
    REQUEST = "request"  # serving: a request failed
    NODE_LOST = "node-lost"  # a cluster node (or its Ray worker) died during the run

    CODES = (
        INTERRUPTED,
        SETUP,
        CONVERSION,
        START,
        TIMEOUT,
        OUT_OF_MEMORY,
        KILLED,
        HARNESS_ERROR,
        EXIT_CODE,
        NO_RESULT,
        PROTOCOL,
        SERVER,
        REQUEST,
        NODE_LOST,
    )


INTERRUPTED_REASON = "interrupted by the user"


class RecordError(ValueError):
    """A file that is not a run record this joulebench can read, or a record that breaks the schema."""


@dataclass
class FailureInfo:
    """Why a run failed: its code (:class:`Failure`), the sentence, where, and what it said last."""

    code: str
    reason: str
    phase: str | None = None
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.code not in Failure.CODES:
            raise ValueError(f"unknown failure code {self.code!r}")

    @classmethod
    def interrupted(cls, phase: str | None, reason: str = INTERRUPTED_REASON) -> FailureInfo:
        return cls(Failure.INTERRUPTED, reason, phase)


@dataclass
class RunRecord:
    """One run, ok or failed, built once from its parts and checked as it is built (RecordError: a
    record this code should never make). Nested blocks (host, spec, measurements ...) stay plain
    dicts: their own modules own their shape (harness/protocol.py, controller/meters)."""

    run_id: str
    campaign: str
    started_at: str
    mode: str
    image: str
    engine: str | None
    provider: str | None
    model: str
    model_size: str
    weights: str
    status: str = "failed"
    schema_version: int = SCHEMA_VERSION
    protocol_version: int | None = None
    cell: dict[str, Any] | None = None
    conversion: str | None = None
    weights_label: str | None = None
    # The user's own model: kind, location, label, sha256 of its files (None for registry models).
    model_source: dict[str, Any] | None = None
    host: dict[str, Any] = field(default_factory=dict)
    gpus: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    artifact: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float | None = None
    failure: FailureInfo | None = None
    result: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    measurements: dict[str, Any] | None = None
    trace_path: str | None = None
    # Where a campaign run on a Ray cluster ran: node_id, node_ip, hostname (None for a local run).
    cluster: dict[str, Any] | None = None
    # Foreign load seen as the window was about to open, and how long the run waited for quiet
    # (controller/quiet.py); None in records made before this check.
    host_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check(self.to_dict(), f"record {self.run_id}")

    def to_dict(self) -> dict[str, Any]:
        """The record as written: blocks a run never reached are left out, not written as null."""
        data = asdict(self)
        for key in _LEFT_OUT_WHEN_NONE:
            if data[key] is None:
                del data[key]
        return data


# What a failed run never got to (and serving blocks of batch runs): absent rather than null, so
# that nothing unmeasured looks like a figure.
_LEFT_OUT_WHEN_NONE = (
    "serving",
    "model_source",
    "result",
    "metrics",
    "measurements",
    "trace_path",
    "failure",
    "cluster",
    "host_state",
)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def record_path(results: Path, campaign: str, run_id: str) -> Path:
    return results / campaign / f"{run_id}.json"


# --- the schema, checked on write and on load ------------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "campaign": str,
    "mode": str,
    "image": str,
    "model": str,
    "status": str,
}
_OPTIONAL_DICTS = (
    "cell",
    "host",
    "gpus",
    "runner",
    "spec",
    "artifact",
    "result",
    "metrics",
    "measurements",
    "cluster",
    "host_state",
)


def check(data: Any, where: str = "record") -> None:
    """RecordError naming the first thing that is not a run record of this schema."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: not a run record (a JSON {type(data).__name__}, not an object)")
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise RecordError(f"{where}: not a run record ({key} missing or not a {getattr(kind, '__name__', kind)})")
    if data["status"] not in STATUSES:
        raise RecordError(f"{where}: status {data['status']!r} is not one of {', '.join(STATUSES)}")
    if data["mode"] not in MODES:
        raise RecordError(f"{where}: mode {data['mode']!r} is not one of {', '.join(MODES)}")
    for key in _OPTIONAL_DICTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise RecordError(f"{where}: {key} must be an object")
    if data["status"] == "failed":
        failure = data.get("failure")
        if not isinstance(failure, dict) or not isinstance(failure.get("reason"), str):
            raise RecordError(f"{where}: a failed record needs failure.reason")
        if failure.get("code") not in Failure.CODES:
            raise RecordError(f"{where}: failure.code {failure.get('code')!r} is not a known code")
    elif not isinstance(data.get("metrics"), dict):
        raise RecordError(f"{where}: an ok record needs metrics")
    _check_finite(data, where)


def _check_finite(value: Any, where: str, path: str = "") -> None:
    """NaN and infinity are not JSON; a record holding one would not load anywhere else."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{where}: {path or 'value'} is {value!r}, which a record cannot hold")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, where, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, where, f"{path}[{i}]")


# Serving figures a record once wrote under a second name, and the one name each has now.
RENAMED_FIGURES = {"tokens_per_s": "output_token_throughput_tps", "http_errors": "requests_failed"}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A record in this version's shape: a version-1 record gets ``mode`` and failure codes; a serving
    figure written under an old second name is read under its one name."""
    data = _renamed_figures(data)
    if data.get("schema_version") != 1:
        return data
    out = dict(data)
    out.setdefault("mode", "batch")
    failure = out.get("failure")
    if isinstance(failure, dict) and "code" not in failure:
        out["failure"] = {**failure, "code": legacy_failure_code(failure)}
    out["schema_version"] = SCHEMA_VERSION
    out["migrated_from"] = 1
    return out


def _renamed_figures(data: dict[str, Any]) -> dict[str, Any]:
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not any(old in metrics for old in RENAMED_FIGURES):
        return data
    kept = {k: v for k, v in metrics.items() if k not in RENAMED_FIGURES}
    for old, new in RENAMED_FIGURES.items():
        if old in metrics:
            kept.setdefault(new, metrics[old])
    return {**data, "metrics": kept}


def legacy_failure_code(failure: dict[str, Any]) -> str:
    """The code of a version-1 failure, read from its sentence (only old records need this)."""
    reason = str(failure.get("reason") or "")
    for code, starts in (
        (Failure.INTERRUPTED, (INTERRUPTED_REASON,)),
        (Failure.TIMEOUT, ("timed out",)),
        (Failure.OUT_OF_MEMORY, ("killed: out of memory",)),
        (Failure.PROTOCOL, ("protocol:",)),
        (Failure.START, ("the harness could not start",)),
        (Failure.EXIT_CODE, ("harness exited with code",)),
        (Failure.NO_RESULT, ("harness exited without a result",)),
    ):
        if reason.startswith(starts):
            return code
    if failure.get("phase") == "convert" or failure.get("phase") == "export":
        return Failure.CONVERSION
    if failure.get("phase") == "setup":
        return Failure.SETUP
    return Failure.HARNESS_ERROR


def load_record(path: Path) -> dict[str, Any]:
    """A record file as a dict (migrated to this schema), or RecordError saying why not."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable run record ({exc})") from None
    if isinstance(data, dict) and data.get("schema_version") not in READABLE_VERSIONS:
        raise RecordError(
            f"{path}: schema version {data.get('schema_version')!r}, this joulebench reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; use the joulebench version that wrote it"
        )
    data = migrate(data) if isinstance(data, dict) else data
    check(data, str(path))
    return data


def write_record(path: Path, record: RunRecord | dict[str, Any]) -> None:
    """Check the record against the schema, then write it atomically."""
    data = record.to_dict() if isinstance(record, RunRecord) else record
    check(data, str(path))
    write_atomic(path, data)


def write_atomic(path: Path, data: Any) -> None:
    """Write JSON (or bytes as they are) so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                fh.write(json.dumps(data, indent=1, sort_keys=False, allow_nan=False).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


# --- timing figures shared by batch and serving ------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def timing_metrics(result: dict[str, Any], window_ns: tuple[int, int] | None) -> dict[str, Any]:
    """Throughput over the measure window and per-batch latency percentiles."""
    lat_ms = sorted(v / 1e6 for v in result["latencies_ns"])
    metrics: dict[str, Any] = {
        "batches": result["batches"],
        "samples": result["samples"],
        "latency_ms_mean": statistics.fmean(lat_ms),
        "latency_ms_p50": percentile(lat_ms, 0.50),
        "latency_ms_p90": percentile(lat_ms, 0.90),
        "latency_ms_p99": percentile(lat_ms, 0.99),
        "window_s": None,
        "throughput_sps": None,
    }
    if window_ns is not None:
        window_s = (window_ns[1] - window_ns[0]) / 1e9
        metrics["window_s"] = window_s
        metrics["throughput_sps"] = result["samples"] / window_s if window_s > 0 else None
    return metrics
