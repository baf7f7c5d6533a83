"""What a run is asked to do, typed: the workload's settings, where it runs and writes, its meters.

The CLI, campaign cells and tests build these; the pipeline takes them. :func:`check_where` and
:func:`check_meters` refuse bad input before any work starts, each with one clear line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.cache import check_writable_folder
from controller.errors import UserError
from controller.runners.base import DEFAULT_PIDS_LIMIT, DEFAULT_SHM_SIZE, DEFAULT_TMP_SIZE
from controller.serving.settings import ServingSettings

CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
MIN_INTERVAL_S = 0.001


@dataclass
class BatchSettings:
    """What a batch run does (the harness's measure loop). Campaign cells carry the same fields."""

    image: str
    model: str
    engine: str | None = None
    source: str | None = None  # framework whose model definition is converted (converted runs)
    model_size: str = "full"
    weights: str = "random"
    dataset: str = "synthetic"
    dataset_path: str | None = None  # file or folder of a dataset that needs one (suite/datasets)
    limit: int | None = None  # a seeded subset of the dataset
    batch_size: int = 1
    samples: int | None = None
    duration_s: float | None = None
    warmup: int = 5
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    input_shapes: list[str] = field(default_factory=list)  # NAME=DIMS for a user's own model


@dataclass
class ServeSettings:
    """What a serving run does: which model on which engine, and how it is served and driven."""

    image: str  # "" with an endpoint: nothing of ours is started
    model: str
    engine: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    serving: ServingSettings = field(default_factory=ServingSettings)
    endpoint: str | None = None  # an OpenAI-compatible API root already serving on this host
    endpoint_pid: int | None = None  # its process, for its CPU time and RAM


@dataclass
class Where:
    """Where a run executes and writes, and the limits it runs under."""

    runner: str = "auto"
    results: Path = Path("results")
    campaign: str = "default"
    cache: Path | None = None  # the artifact cache (default ~/.cache/joulebench/artifacts)
    timeout_s: float = 1800.0
    memory: str | None = None  # container memory limit
    pids_limit: int = DEFAULT_PIDS_LIMIT
    tmp_size: str = DEFAULT_TMP_SIZE
    shm_size: str = DEFAULT_SHM_SIZE


@dataclass
class MeterSettings:
    interval_s: float = 0.01
    keep_trace: bool = False
    wall_url: str | None = None
    wall_output: int | None = None
    baseline: Path | None = None  # idle baseline file (default: the one for this host)
    baseline_max_age_s: float = 7 * 86400
    uncertainty_limit: float = 0.02  # an energy figure whose bound exceeds this share is flagged
    # Seconds a run waits for a quiet host (no other joulebench run, CPU idle) before its window;
    # after that it runs, flagged foreign_load (controller/quiet.py).
    quiet_wait_s: float = 0.0


@dataclass
class RunRequest:
    what: BatchSettings | ServeSettings
    where: Where = field(default_factory=Where)
    meters: MeterSettings = field(default_factory=MeterSettings)
    # A campaign's cell identity (matrix coordinates + repetition), recorded for resume.
    cell: dict[str, Any] | None = None

    @property
    def mode(self) -> str:
        return "serving" if isinstance(self.what, ServeSettings) else "batch"


def from_fields(cls: type, source: Any, **extra: Any) -> Any:
    """An instance of dataclass ``cls`` from the same-named attributes (or keys) of ``source``."""
    get = source.get if isinstance(source, dict) else lambda name, default=None: getattr(source, name, default)
    values = {f.name: get(f.name) for f in fields(cls) if get(f.name) is not None}
    return cls(**(values | extra))


# --- checks before any work starts ---------------------------------------------------------------


def positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "positive"
        raise UserError(f"{name} must be a finite number, {bound}; got {value!r}")


def size_bytes(text: str, what: str) -> int:
    """``2g``, ``512m``, ``1.5G``, ``1024`` as bytes, or UserError saying what is expected."""
    match = SIZE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"{what} {text!r} is not a size; write e.g. 512m, 2g or 1.5g")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


MAX_QUIET_WAIT_S = 86400.0


def check_quiet_wait(seconds: float, what: str) -> None:
    """A wait for a quiet host is bounded: 0 (check and flag only) up to a day."""
    positive(what, seconds, allow_zero=True)
    if seconds > MAX_QUIET_WAIT_S:
        raise UserError(
            f"{what} {seconds:g} s is more than a day; give at most {MAX_QUIET_WAIT_S:g} (0: check and flag only)"
        )


def check_campaign_name(name: str) -> None:
    if not CAMPAIGN_NAME.match(name or "") or name in (".", ".."):
        raise UserError(
            f"campaign name {name!r} must be a plain folder name (letters, digits, '_', '.', '+', '-'; "
            "no separators, no '..'): records go to RESULTS/NAME/"
        )


def check_where(where: Where) -> None:
    """Refuse what would make a run fail to start or to write its record, before any work."""
    from controller.runners.choose import RUNNERS

    if where.runner not in RUNNERS:
        raise UserError(f"unknown runner {where.runner!r}; valid runners: {', '.join(RUNNERS)}")
    check_campaign_name(where.campaign)
    check_writable_folder(Path(where.results), "the results folder (--results)")
    if where.cache is not None:
        check_writable_folder(Path(where.cache), "the artifact cache (--cache)")
    positive("--timeout", where.timeout_s)
    if where.memory is not None:
        if size_bytes(where.memory, "--memory") < 6 * 2**20:
            raise UserError(f"--memory {where.memory} is below Docker's minimum of 6m")
        if where.runner == "local":
            raise UserError(
                "--memory limits containers; the local runner cannot apply it: drop --memory or use --runner docker"
            )
    if where.pids_limit < 16:
        raise UserError(f"--pids-limit must be at least 16 (the harness's own threads), got {where.pids_limit}")
    size_bytes(where.tmp_size, "--tmp-size")
    size_bytes(where.shm_size, "--shm-size")


def check_meters(meters: MeterSettings) -> None:
    positive("--interval", meters.interval_s)
    if meters.interval_s < MIN_INTERVAL_S:
        raise UserError(f"--interval {meters.interval_s:g} s is under 1 ms: the meters cannot sample that often")
    positive("--baseline-max-age", meters.baseline_max_age_s)
    positive("--uncertainty-limit", meters.uncertainty_limit * 100)  # given in %
    check_quiet_wait(meters.quiet_wait_s, "--quiet-wait")
    if meters.wall_url is not None and not re.match(r"^https?://[^/\s]+", meters.wall_url):
        raise UserError(f"--wall-url {meters.wall_url!r} is not an http(s) URL (e.g. http://pdu.local)")
    if meters.wall_output is not None and meters.wall_url is None:
        raise UserError("--wall-output names a socket of the wall meter: give --wall-url too")
    if meters.baseline is not None and not Path(meters.baseline).is_file():
        raise UserError(f"--baseline {meters.baseline}: no such file (measure one: python -m controller idle)")
