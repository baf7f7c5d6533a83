"""The kinds of value a user gives joulebench, each with its bounds: one table for the command line
(``cli_args``) and campaign files (``campaigns/file``), so a flag and its key accept the same values.

Every count has an upper bound: an absurd one (``repetitions = 2**63-1``) would otherwise build
cells, allocate or wait until memory or patience runs out, long after the command was accepted.
A checker returns the value or raises :class:`BadValue` with what was expected; callers prefix
the input's name (``--batch-size``, ``[campaign] repetitions``) and turn it into one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from controller.errors import UserError

MAX_SECONDS = 7 * 86400.0  # any time a user gives: a run's duration, a timeout, a pause
MIN_INTERVAL_S = 0.001
MAX_INTERVAL_S = 10.0  # RAPL's 32-bit energy counters wrap within minutes at high power
MAX_CELLS = 100_000  # runs in one campaign's matrix
MAX_NAME = 100  # a campaign name is a folder name, and record names go under it
MIN_MEMORY = 6 * 2**20  # Docker's minimum memory limit
MAX_BYTES = 2**50  # a memory or tmpfs size; Docker takes an int64, and no host has a PiB of RAM
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def within(name: str, value: Any, check: Any) -> Any:
    """``check(value)`` (a checker of this module), its BadValue as a UserError naming ``name`` (the flag)."""
    try:
        return check(value)
    except BadValue as exc:
        raise UserError(f"{name}: {exc}") from None


class BadValue(ValueError):
    """A value outside what its input takes; the message says what was expected, not whose input it is."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(f"expected {expected}; got {_shown(value)}")
        self.expected = expected
        self.value = value


@dataclass(frozen=True)
class Count:
    """A whole number within bounds."""

    lowest: int
    highest: int

    def expected(self) -> str:
        low = "0 or more" if self.lowest == 0 else f"at least {self.lowest}"
        return f"a whole number, {low} and at most {self.highest}"

    def __call__(self, value: Any) -> int:
        number = _whole(value)
        if number is None or not self.lowest <= number <= self.highest:
            raise BadValue(self.expected(), value)
        return number


@dataclass(frozen=True)
class Seconds:
    """A finite time in seconds within bounds (``lowest`` excluded unless ``zero`` allows it)."""

    zero: bool = False
    highest: float = MAX_SECONDS
    lowest: float = 0.0

    def expected(self) -> str:
        if self.lowest:
            return f"a number of seconds from {self.lowest:g} ({self.lowest * 1000:g} ms) to {self.highest:g}"
        low = "0 or more" if self.zero else "positive"
        return f"a finite number of seconds, {low} and at most {self.highest:g} ({self.highest / 86400:g} days)"

    def __call__(self, value: Any) -> float:
        number = _number(value)
        ok = number is not None and math.isfinite(number) and number <= self.highest
        if ok and self.lowest:
            ok = number >= self.lowest  # type: ignore[operator]
        elif ok:
            ok = number > 0 or (self.zero and number == 0)  # type: ignore[operator]
        if not ok:
            raise BadValue(self.expected(), value)
        return float(number)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Positive:
    """A finite number above 0 (no unit of time), at most ``highest``."""

    highest: float = 1e6
    unit: str = ""

    def __call__(self, value: Any) -> float:
        number = _number(value)
        if number is None or not math.isfinite(number) or not 0 < number <= self.highest:
            raise BadValue(f"a finite number{self.unit} above 0 and at most {self.highest:g}", value)
        return float(number)


def size_bytes(value: Any) -> int:
    """``2g``, ``512m``, ``1.5G``, ``1024`` as bytes, within what Docker takes."""
    match = SIZE.match(str(value).strip()) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise BadValue("a size such as 512m, 2g or 1.5g", value)
    number = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if number > MAX_BYTES:
        raise BadValue("a size of at most 1024t", value)
    return number


def memory_bytes(value: Any) -> int:
    number = size_bytes(value)
    if number < MIN_MEMORY:
        raise BadValue("a size of at least Docker's minimum, 6m", value)
    return number


NAME_MAX = 255  # bytes in one name of a path (Linux); a longer one fails every file call with ENAMETOOLONG
PATH_MAX = 4096


def path_text(value: Any) -> str:
    """A path (or a name that may be one) the file system can be asked about."""
    if not isinstance(value, str) or not value.strip():
        raise BadValue("a path (a string)", value)
    if len(value.encode()) >= PATH_MAX or any(len(part.encode()) > NAME_MAX for part in value.split("/")):
        raise BadValue(f"a path whose names are at most {NAME_MAX} bytes each", value)
    return value


# Every count a user gives, by the name its flag and key share (a flag's dashes are underscores).
COUNTS: dict[str, Count] = {
    "batch_size": Count(1, 2**20),
    "samples": Count(1, 10**7),  # the harness keeps one latency per batch
    "limit": Count(1, 10**9),
    "warmup": Count(0, 10**6),
    "seed": Count(0, 2**32 - 1),  # NumPy's and PyTorch's seeds agree on this range
    "repetitions": Count(1, 10_000),
    "retries": Count(0, 100),
    "pids_limit": Count(16, 2**22),  # 16: the harness's own threads; 2**22: Linux's pid_max ceiling
    "wall_output": Count(1, 1024),
    "endpoint_pid": Count(1, 2**22),
    "max_new_tokens": Count(1, 2**20),
    "concurrency": Count(1, 4096),
    "warmup_requests": Count(0, 10**6),
    "bootstrap": Count(1, 10**6),
}
SECONDS: dict[str, Seconds] = {
    "duration_s": Seconds(),
    "timeout_s": Seconds(),
    "interval_s": Seconds(lowest=MIN_INTERVAL_S, highest=MAX_INTERVAL_S),
    "warmup_s": Seconds(zero=True),
    "cooldown_s": Seconds(zero=True),
    "request_timeout_s": Seconds(),
    "ready_timeout_s": Seconds(),
    "quiet_wait_s": Seconds(zero=True, highest=86400.0),  # 0: check and flag only
}


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
