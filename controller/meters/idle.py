"""Measuring the idle baseline: a run's meters (the same :class:`MeterSession`) on an idle host."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.meters.baseline import DOMAINS, DOMAINS_WALL, IdleBaseline
from controller.meters.session import MeterSession
from controller.meters.system import host_fingerprint

if TYPE_CHECKING:
    from typing import Unpack

    from controller.meters.session import MeterOptions

DEFAULT_IDLE_DURATION_S = 600.0


def measure_idle(
    duration_s: float = DEFAULT_IDLE_DURATION_S,
    *,
    interval_s: float = 0.01,
    fingerprint: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Unpack[MeterOptions],
) -> IdleBaseline:
    """Measure idle power per domain for ``duration_s`` with every meter available here.

    ``options`` are a run's (:class:`MeterOptions`); ``gpu_uuids`` left out measures every GPU,
    stored per UUID. Nothing else should run meanwhile. ``sleep`` is how the wait is done (tests
    pass one that advances fake counters).
    """
    if fingerprint is None:
        fingerprint = host_fingerprint(options.get("nvml"))
    with MeterSession(interval_s, **options) as ms:
        t0 = time.monotonic_ns()
        sleep(duration_s)
        t1 = time.monotonic_ns()
    summary = ms.summarize(t0, t1)
    window_s = summary["window_s"]
    domains: dict[str, dict[str, Any]] = {}
    for domain, metric_name in {**DOMAINS, **DOMAINS_WALL}.items():
        m = summary["metrics"].get(metric_name)
        if m is not None:
            domains[domain] = _idle_power(domain, m, window_s)
    return IdleBaseline(
        fingerprint=fingerprint,
        measured_at_unix=time.time(),
        duration_s=window_s,
        interval_s=interval_s,
        domains=domains,
        flags=summary["flags"],
    )


def _idle_power(domain: str, m: dict[str, Any], window_s: float) -> dict[str, Any]:
    """A baseline's entry for one domain from its metric over the idle window."""
    if not m["available"] or m["value"] is None:
        return {"available": False, "reason": m["reason"], "power_w": None}
    entry: dict[str, Any] = {
        "available": True,
        "reason": None,
        "power_w": m["value"] / window_s,
        "energy_j": m["value"],
        "source": m["source"],
    }
    if domain == "gpu":
        entry["per_device"] = {
            d["uuid"]: (None if d["energy_j"] is None else d["energy_j"] / window_s) for d in m.get("per_device", [])
        }
    return entry
