"""Host-side meters: what a run cost in energy, CPU and RAM, measured while it runs.

The runner uses :class:`MeterSession`; ``controller system`` uses :func:`check_system`;
``controller idle`` uses :func:`measure_idle` / :func:`save_baseline`, and each run
:func:`load_baseline`. One module per source: ``rapl`` (powercap), ``nvml`` (NVIDIA GPUs),
``cgroup`` (Docker containers), ``process`` (local process trees), ``wall`` (socket meters).
"""

from controller.meters.base import Availability, Metric, Sample, Sampler, Trace
from controller.meters.idle import (
    BaselineStatus,
    IdleBaseline,
    default_baseline_path,
    load_baseline,
    measure_idle,
    net_energy,
    save_baseline,
)
from controller.meters.session import SCHEMA, MeterSession
from controller.meters.system import Check, check_system, host_fingerprint

__all__ = [
    "SCHEMA",
    "Availability",
    "BaselineStatus",
    "Check",
    "IdleBaseline",
    "MeterSession",
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
