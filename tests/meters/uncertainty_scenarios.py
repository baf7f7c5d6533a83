"""Fakes of known truth driven through the real meters, for the bound's coverage and tightness.

Each scenario is one trace (a power profile, a counter's update period and phase, read times with
the sampler's jitter and delays) and many windows cut from it; every window's figure is compared
with the profile's exact energy.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meter_fakes import FakeGpu, FakeNvml, PowercapTree, PowerProfile

from controller.meters.base import Trace
from controller.meters.nvml import NvmlMeter
from controller.meters.rapl import RaplMeter

S = 1_000_000_000


def read_times(
    rng: random.Random, end_s: float, dt_s: float = 0.01, jitter_s: float = 0.0, delays: float = 0.0
) -> list[float]:
    """A sampler's read instants: every ``dt_s``, each off by up to ``jitter_s``, and a share
    ``delays`` of them late by 33-91 ms (a busy host)."""
    out: list[float] = []
    k = 0
    t = 0.0
    while t < end_s:
        t = k * dt_s + rng.uniform(-jitter_s, jitter_s)
        if delays and rng.random() < delays:
            late = rng.uniform(0.033, 0.091)
            t += late
            k += int(late / dt_s)
        if not out or t > out[-1]:
            out.append(t)
        k += 1
    return out


def staircase(rng: random.Random, end_s: float, low: float = 20.0, high: float = 250.0) -> PowerProfile:
    """Power stepping to a new level every 0.2-0.6 s (workloads starting and stopping)."""
    steps = []
    t = 0.0
    while t < end_s:
        steps.append((t, rng.uniform(low, high)))
        t += rng.uniform(0.2, 0.6)
    return PowerProfile(tuple(steps))


def random_trace(rng: random.Random, end_s: float, mean_segment_s: float) -> PowerProfile:
    """Power jumping to a random level after exponentially distributed times."""
    steps = []
    t = 0.0
    while t < end_s:
        steps.append((t, rng.uniform(10.0, 300.0)))
        t += rng.expovariate(1.0 / mean_segment_s)
    return PowerProfile(tuple(steps))


def random_windows(rng: random.Random, n: int, start_s: float, end_s: float, shortest: float, longest: float):
    out = []
    for _ in range(n):
        length = shortest * (longest / shortest) ** rng.random()
        t0 = rng.uniform(start_s, end_s - length)
        out.append((t0, t0 + length))
    return out


def step_windows(rng: random.Random, n: int, profile: PowerProfile, start_s: float, end_s: float):
    """Windows whose both edges are where power steps (a workload starting and stopping)."""
    edges = [t for t, _ in profile.steps if start_s <= t <= end_s]
    out = []
    for _ in range(n):
        a, b = sorted(rng.sample(range(len(edges)), 2))
        out.append((edges[a], edges[b]))
    return out


@dataclass
class Outcome:
    """Per window: relative error of the figure and its relative bound."""

    errors: list[float]
    bounds: list[float]

    @property
    def coverage(self) -> float:
        return sum(abs(e) <= b for e, b in zip(self.errors, self.bounds, strict=True)) / len(self.errors)

    def p95_error(self) -> float:
        return sorted(abs(e) for e in self.errors)[int(0.95 * len(self.errors))]

    def median_bound(self) -> float:
        return statistics.median(self.bounds)

    def __str__(self) -> str:
        return (
            f"coverage {self.coverage:.3f}, p95 |error| {100 * self.p95_error():.3f} %, "
            f"max {100 * max(map(abs, self.errors)):.3f} %, median bound {100 * self.median_bound():.3f} %, "
            f"p95 bound {100 * sorted(self.bounds)[int(0.95 * len(self.bounds))]:.3f} %"
        )


def rapl_trace(root: Path, profile: PowerProfile, times: Sequence[float], period_s: float, phase_s: float):
    tree = PowercapTree(root)
    tree.zone("intel-rapl:0", "package-0", 0)
    meter = RaplMeter(root)
    meter.open()
    trace = Trace("rapl", meter.fields)
    for t in times:
        tree.follow("intel-rapl:0", profile, t, period_s, phase_s)
        trace.append(round(t * S), meter.read())
    return meter, trace


def nvml_trace(
    profile: PowerProfile,
    times: Sequence[float],
    period_s: float,
    phase_s: float,
    *,
    counter: bool = True,
    instant: bool = True,
    average_s: float = 0.0,
):
    gpu = FakeGpu("GPU-a", counter_supported=counter, field_supported=instant)
    meter = NvmlMeter(nvml=FakeNvml(gpus=[gpu]))
    meter.open()
    trace = Trace("nvml", meter.fields)
    for t in times:
        gpu.follow(profile, t, period_s, phase_s, average_s)
        trace.append(round(t * S), meter.read())
    return meter, trace


def outcome(summarize: Callable, metric: str, profile: PowerProfile, windows) -> Outcome:
    errors, bounds = [], []
    for t0, t1 in windows:
        m = summarize(round(t0 * S), round(t1 * S)).metrics[metric]
        truth = profile.joules(t1, t0)
        assert m.available, m.reason
        errors.append((m.value - truth) / truth)
        bounds.append(m.extra["uncertainty_j"] / truth)
    return Outcome(errors, bounds)
