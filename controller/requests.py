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

from controller import inputs
from controller.cache import check_writable_folder
from controller.errors import UserError
from controller.inputs import COUNTS, SECONDS, within
from controller.runners.base import DEFAULT_PIDS_LIMIT, DEFAULT_SHM_SIZE, DEFAULT_TMP_SIZE
from controller.serving.settings import ServingSettings

CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
URL = re.compile(r"^https?://[A-Za-z0-9._~%-]+(:\d{1,5})?(/\S*)?$")


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

    def __post_init__(self) -> None:
        """Each amount within what its flag (and campaign key) takes, checked as the settings are made."""
        for name in ("batch_size", "samples", "limit", "warmup", "seed"):
            value = getattr(self, name)
            if value is not None:
                within(f"--{name.replace('_', '-')}", value, COUNTS[name])
        if self.duration_s is not None:
            within("--duration", self.duration_s, SECONDS["duration_s"])


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

    def __post_init__(self) -> None:
        what, timeout = self.what, self.where.timeout_s
        if isinstance(what, BatchSettings) and what.duration_s is not None and what.duration_s >= timeout:
            raise UserError(
                f"--duration {what.duration_s:g} s does not fit in the run's timeout of {timeout:g} s (the run "
                "would be killed while measuring): raise --timeout above the duration plus loading and warm-up"
            )

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
    return int(within(f"{what} {text!r}", text, inputs.size_bytes))


MAX_QUIET_WAIT_S = 86400.0


def check_quiet_wait(seconds: float, what: str) -> None:
    """A wait for a quiet host is bounded: 0 (check and flag only) up to a day."""
    positive(what, seconds, allow_zero=True)
    if seconds > MAX_QUIET_WAIT_S:
        raise UserError(
            f"{what} {seconds:g} s is more than a day; give at most {MAX_QUIET_WAIT_S:g} (0: check and flag only)"
        )


def check_campaign_name(name: str) -> None:
    if not CAMPAIGN_NAME.match(name or "") or name in (".", "..") or len(name) > inputs.MAX_NAME:
        raise UserError(
            f"campaign name {name!r} must be a plain folder name of at most {inputs.MAX_NAME} characters (letters, "
            "digits, '_', '.', '+', '-'; no separators, no '..'): records go to RESULTS/NAME/"
        )


def check_where(where: Where) -> None:
    """Refuse what would make a run fail to start or to write its record, before any work."""
    from controller.runners.choose import RUNNERS

    if where.runner not in RUNNERS:
        raise UserError(f"unknown runner {where.runner!r}; valid runners: {', '.join(RUNNERS)}")
    check_campaign_name(where.campaign)
    # The records go to RESULTS/CAMPAIGN/: a file in the way is found now, not when the record is written.
    check_writable_folder(Path(where.results) / where.campaign, "the results folder (--results)")
    if where.cache is not None:
        check_writable_folder(Path(where.cache), "the artifact cache (--cache)")
    within("--timeout", where.timeout_s, inputs.SECONDS["timeout_s"])
    if where.memory is not None:
        within(f"--memory {where.memory}", where.memory, inputs.memory_bytes)
        if where.runner == "local":
            raise UserError(
                "--memory limits containers; the local runner cannot apply it: drop --memory or use --runner docker"
            )
    within("--pids-limit", where.pids_limit, inputs.COUNTS["pids_limit"])
    size_bytes(where.tmp_size, "--tmp-size")
    size_bytes(where.shm_size, "--shm-size")


def check_meters(meters: MeterSettings) -> None:
    within("--interval", meters.interval_s, inputs.SECONDS["interval_s"])
    within("--baseline-max-age", meters.baseline_max_age_s / 86400, inputs.Positive(3650, " of days"))
    within("--uncertainty-limit", meters.uncertainty_limit * 100, inputs.Positive(100, " of percent"))
    check_quiet_wait(meters.quiet_wait_s, "--quiet-wait")
    if meters.wall_url is not None and not URL.match(meters.wall_url):
        raise UserError(f"--wall-url {meters.wall_url!r} is not an http(s) URL (e.g. http://pdu.local)")
    if meters.wall_output is not None:
        if meters.wall_url is None:
            raise UserError("--wall-output names a socket of the wall meter: give --wall-url too")
        within("--wall-output", meters.wall_output, inputs.COUNTS["wall_output"])
    if meters.baseline is not None:
        check_baseline_file(Path(meters.baseline))


def check_baseline_file(path: Path) -> None:
    """An idle baseline the user names must be one: a missing or unreadable file is refused, not run without."""
    import json

    from controller.meters.baseline import IdleBaseline

    if not path.is_file():
        raise UserError(f"--baseline {path}: no such file (measure one: python -m controller idle --output {path})")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        IdleBaseline.from_dict(data)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)[:100] or exc.__class__.__name__
        raise UserError(
            f"--baseline {path} is not an idle baseline file ({why}); measure one: python -m controller idle "
            f"--output {path}"
        ) from None
