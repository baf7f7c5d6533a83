"""The goal a recommendation must meet (``--slo``), read from the figures every run record has.

Batch: ``p50``, ``p90``, ``p99``, ``mean`` (latency per batch) and ``throughput`` (samples/s, a
floor). Serving: ``ttft``, ``tpot``, ``itl``, ``e2el`` with a statistic (``ttft_p99``,
``tpot_median``; a bare name is its p99), ``throughput`` (output tokens/s) and ``goodput``
(requests/s that met every per-request goal given: the runs are measured against the ttft, tpot and
e2el values given). Times take ``ms`` or ``s`` (bare: ms). A candidate meets a goal when the median
over its runs of the run's figure does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from controller.errors import UserError

BATCH_LATENCY = {"p50": "p50", "p90": "p90", "p99": "p99", "mean": "mean"}
SERVING_LATENCY = ("ttft", "tpot", "itl", "e2el")
STATISTICS = {"mean": "mean", "median": "median", "p50": "median", "p90": "p90", "p99": "p99"}
_ITEM = re.compile(r"^(?P<key>[a-z0-9_]+)\s*=\s*(?P<num>[0-9.eE+-]+)\s*(?P<unit>ms|s|/s)?$")


@dataclass(frozen=True)
class Goal:
    key: str  # as the user wrote it
    figure: str  # the record's metric: latency_ms_p99, ttft_ms_p99, throughput_sps, goodput_rps ...
    limit: float  # ms for latencies, per second for rates
    higher_is_better: bool = False
    unit: str = "ms"
    what: str = ""  # "p99 latency per batch"

    def met(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value <= self.limit

    def describe(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        return f"{self.what} {sign} {self.limit:g} {self.unit}"


# The latency a front is drawn against when no latency goal is given.
DEFAULT_AXIS = {
    "batch": Goal("p99", "latency_ms_p99", math.inf, what="p99 latency per batch"),
    "serving": Goal("e2el", "e2el_ms_p99", math.inf, what="p99 end-to-end latency per request"),
}


def _time_ms(num: float, unit: str | None, text: str, item: str) -> float:
    if unit == "/s":
        raise UserError(f"--slo {text!r}: {item!r} is a time: give it in ms or s")
    return num * (1000.0 if unit == "s" else 1.0)


def _goal(key: str, num: float, unit: str | None, mode: str, text: str, item: str) -> Goal:
    if key == "throughput":
        what, unit_name = ("throughput", "samples/s") if mode == "batch" else ("output token throughput", "tokens/s")
        figure = "throughput_sps" if mode == "batch" else "output_token_throughput_tps"
        return Goal(key, figure, num, True, unit_name, what)
    if mode == "batch":
        stat = BATCH_LATENCY.get(key.removeprefix("latency_"))
        if stat is None:
            raise UserError(
                f"--slo {text!r}: {item!r}: a batch goal is one of p50, p90, p99, mean (latency per batch, in ms or "
                "s) or throughput (samples/s), e.g. --slo p99=50ms"
            )
        return Goal(key, f"latency_ms_{stat}", _time_ms(num, unit, text, item), what=f"{stat} latency per batch")
    if key == "goodput":
        return Goal(key, "goodput_rps", num, True, "requests/s", "goodput")
    name, _, stat = key.partition("_")
    if name not in SERVING_LATENCY or (stat and stat not in STATISTICS):
        raise UserError(
            f"--slo {text!r}: {item!r}: a serving goal is ttft, tpot, itl or e2el with _mean, _median, _p90 or _p99 "
            "(bare: p99), throughput (output tokens/s) or goodput (requests/s), e.g. --slo ttft_p99=500ms,tpot=50ms"
        )
    stat = STATISTICS[stat or "p99"]
    return Goal(key, f"{name}_ms_{stat}", _time_ms(num, unit, text, item), what=f"{stat} {name.upper()}")


def parse_slo(text: str | None, mode: str) -> list[Goal]:
    """``p99=50ms,throughput=100`` (batch) or ``ttft_p99=500ms,tpot=50ms,goodput=2`` (serving)."""
    if not text:
        return []
    goals: list[Goal] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        m = _ITEM.match(item)
        if m is None:
            raise UserError(f"--slo {text!r}: {item!r} is not KEY=VALUE (e.g. p99=50ms, throughput=100)")
        try:
            num = float(m["num"])
        except ValueError:
            raise UserError(f"--slo {text!r}: {m['num']!r} is not a number") from None
        if not math.isfinite(num) or num <= 0:
            raise UserError(f"--slo {text!r}: {m['key']} must be a positive number")
        goal = _goal(m["key"], num, m["unit"], mode, text, item)
        if any(g.figure == goal.figure for g in goals):
            raise UserError(f"--slo {text!r}: {m['key']} is given twice")
        goals.append(goal)
    if any(g.key == "goodput" for g in goals) and not request_slo(goals):
        raise UserError(
            f"--slo {text!r}: goodput counts requests that met per-request goals: give ttft, tpot or e2el too "
            "(e.g. --slo ttft=500ms,tpot=50ms,goodput=2)"
        )
    return goals


def request_slo(goals: list[Goal]) -> str | None:
    """The per-request SLO serving runs measure goodput against (``serve --slo``'s form), if any."""
    first: dict[str, float] = {}
    for g in goals:
        name = g.figure.split("_")[0]
        if name in ("ttft", "tpot", "e2el"):
            first.setdefault(name, g.limit)
    return ",".join(f"{name}={limit:g}ms" for name, limit in first.items()) or None


def axes(goals: list[Goal], mode: str) -> list[Goal]:
    """The figures beside the objective that a candidate must not be worse on to dominate another:
    every goal's figure, else the mode's default latency."""
    return goals or [DEFAULT_AXIS[mode]]
