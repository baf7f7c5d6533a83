"""Host-side meters: what a run cost in energy, CPU and RAM, measured while it runs.

The runner uses :class:`MeterSession`; ``controller system`` uses :func:`check_system`;
``controller idle`` uses :func:`measure_idle` / :func:`save_baseline`, and each run
:func:`load_baseline`. One module per source: ``rapl`` (powercap, zones found by ``powercap``),
``nvml`` (NVIDIA GPUs; window figures in ``nvml_window``), ``cgroup`` (Docker containers),
``process`` (local process trees), ``wall`` (socket meters), ``host`` (the whole host's CPU and
RAM). Shared parts: ``base`` (metrics, summaries, traces), ``sampler`` (the thread), ``window``
(arithmetic on traces), ``edges`` (energy counters at a window's edges: when they really updated),
``uncertainty`` (each energy figure's bound, how bounds add, the limit's flag), ``baseline`` (the
idle model), ``measurements`` (net, total and checks over all meters).
"""

from controller.meters.base import Availability, MeterSummary, Metric, Sample, Trace
from controller.meters.baseline import (
    BaselineStatus,
    IdleBaseline,
    default_baseline_path,
    load_baseline,
    net_energy,
    save_baseline,
)
from controller.meters.idle import measure_idle
from controller.meters.sampler import Sampler
from controller.meters.session import SCHEMA, MeterOptions, MeterSession
from controller.meters.system import Check, check_system, host_fingerprint

__all__ = [
    "SCHEMA",
    "Availability",
    "BaselineStatus",
    "Check",
    "IdleBaseline",
    "MeterOptions",
    "MeterSession",
    "MeterSummary",
    "Metric",
    "Sample",
    "Sampler",
    "Trace",
    "check_system",
    "default_baseline_path",
    "host_fingerprint",
    "load_baseline",
    "measure_idle",
    "net_energy",
    "save_baseline",
]
