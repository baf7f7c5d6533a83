"""Building blocks shared by every meter: availability, metrics, summaries, traces.

A meter reads one hardware or kernel source and returns a fixed tuple of floats per read
(``NaN`` where one value could not be read). The sampler thread (``sampler``) appends each read
to the meter's :class:`Trace`; afterwards the meter cuts its window figures from the trace
(arithmetic in ``window``) and returns them as a :class:`MeterSummary`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

NAN = math.nan


@dataclass(frozen=True)
class Availability:
    """Whether a meter (or one of its figures) can be measured here, and if not, why."""

    available: bool
    reason: str | None = None

    @classmethod
    def ok(cls) -> Availability:
        return cls(True, None)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason}


@dataclass
class Metric:
    """One figure of a run. The unit is in the name (``gpu_energy_j``) and in ``unit``.

    An unmeasured figure has ``value=None`` and ``available=False`` with a ``reason`` — never 0.
    ``extra`` carries figure-specific context (gross/idle/net, cross-checks, scope, ...).
    """

    name: str
    value: float | None
    unit: str
    source: str | None
    available: bool = True
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, name: str, unit: str, reason: str, source: str | None = None, **extra: Any) -> Metric:
        return cls(name, None, unit, source, False, reason, dict(extra))

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        if value is not None and not math.isfinite(value):
            # A NaN/inf leaking to here is a bug upstream; refuse to pass it off as a number.
            return {
                "value": None,
                "unit": self.unit,
                "source": self.source,
                "available": False,
                "reason": f"non-finite value {value!r} computed; this is a joulebench bug",
                **self.extra,
            }
        out: dict[str, Any] = {
            "value": value if self.available else None,
            "unit": self.unit,
            "source": self.source,
            "available": self.available,
            "reason": self.reason,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Sample:
    """One read of one meter: ``t_ns`` from ``time.monotonic_ns()`` and the values by field name."""

    t_ns: int
    values: dict[str, float | None]


class Trace:
    """Column store of one meter's reads. Appends are cheap; memory is 8 bytes per value.

    Columns are appended before the timestamp, so a reader that takes ``len(t_ns)`` first sees
    only complete rows while the sampler thread is still appending.
    """

    def __init__(self, meter: str, fields: Sequence[str]) -> None:
        self.meter = meter
        self.fields: tuple[str, ...] = tuple(fields)
        self.t_ns: array[int] = array("q")
        self.columns: dict[str, array[float]] = {f: array("d") for f in self.fields}
        self._cols: tuple[array[float], ...] = tuple(self.columns[f] for f in self.fields)

    def append(self, t_ns: int, values: Sequence[float]) -> None:
        for col, v in zip(self._cols, values, strict=True):
            col.append(v)
        self.t_ns.append(t_ns)

    def __len__(self) -> int:
        return len(self.t_ns)

    def samples(self) -> list[Sample]:
        """All complete rows as :class:`Sample` objects (NaN becomes None)."""
        n = len(self.t_ns)
        out: list[Sample] = []
        for i in range(n):
            vals = {f: _none_if_nan(self.columns[f][i]) for f in self.fields}
            out.append(Sample(self.t_ns[i], vals))
        return out

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """Timestamps and values of one field, rows with NaN dropped."""
        n = len(self.t_ns)
        col = self.columns[name]
        ts: list[int] = []
        vs: list[float] = []
        for i in range(n):
            v = col[i]
            if not math.isnan(v):
                ts.append(self.t_ns[i])
                vs.append(v)
        return ts, vs


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else v


@runtime_checkable
class Meter(Protocol):
    """What the sampler needs from a meter.

    ``open()`` probes the source once and fixes ``fields``; ``read()`` returns one float per field
    (NaN when a value could not be read this time) and must be cheap and must not block long.
    """

    name: str
    fields: tuple[str, ...]
    interval_s: float | None  # None: the sampler's interval

    def open(self) -> Availability: ...

    def read(self) -> Sequence[float]: ...

    def close(self) -> None: ...


@dataclass
class MeterSummary:
    """What every meter's ``summarize`` returns: its metrics over a window, and its flags."""

    metrics: dict[str, Metric]
    flags: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def unavailable(
        cls, units: Mapping[str, str], reason: str, source: str | None, **reasons: str | None
    ) -> MeterSummary:
        """Every metric in ``units`` (name -> unit) unavailable with ``reason``; ``reasons``
        overrides it per metric name where one figure has its own."""
        return cls({n: Metric.unavailable(n, u, reasons.get(n) or reason, source) for n, u in units.items()})


class SummarizingMeter(Protocol):
    """What a session needs from a meter after sampling: its figures over a window.

    ``units`` names every metric the meter reports (name -> unit); ``summarize`` and
    ``unavailable`` both return exactly those names, so a record has the same keys either way.
    """

    name: str

    @property
    def units(self) -> Mapping[str, str]: ...

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary: ...

    def unavailable(self) -> MeterSummary: ...

    def describe(self) -> dict[str, Any]: ...


def flag(code: str, message: str, **context: Any) -> dict[str, Any]:
    """A warning attached to a run's measurements: a stable ``code`` and a sentence for people."""
    return {"code": code, "message": message, **context}


def seconds(s: float) -> str:
    """A duration for people, to three figures: ``40 ms``, ``1.5 s``, ``131 s``."""
    if abs(s) < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s" if abs(s) < 100 else f"{s:.0f} s"


class Absent:
    """A meter that is not there (none configured, nothing attached): its figures, all unavailable."""

    def __init__(self, name: str, units: Mapping[str, str], reason: str, source: str | None) -> None:
        self.name = name
        self.units = units
        self.reason = reason
        self.source = source

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        return self.unavailable()

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.reason, self.source)

    def describe(self) -> dict[str, Any]:
        return Availability.no(self.reason).to_dict()
