"""Pauses between runs: fixed, or until the GPU is back near its idle temperature (with a cap)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from controller.campaigns.spec import Cooldown


def gpu_temperatures(nvml: Any | None = None) -> tuple[list[float] | None, str | None]:
    """(temperatures in °C of every visible GPU, None) or (None, why not), read through NVML."""
    from controller.meters.nvml import NvmlMeter

    meter = NvmlMeter(nvml=nvml)
    avail = meter.open()
    try:
        if not avail.available:
            return None, avail.reason or "NVML unavailable"
        values = dict(zip(meter.fields, meter.read(), strict=True))
        temps = [values[f] for f in meter.fields if f.endswith(".temp_c")]
        if not temps or any(math.isnan(t) for t in temps):
            return None, "NVML gives no GPU temperature on this host"
        return temps, None
    finally:
        meter.close()


class CoolDown:
    """Called between runs. The idle reference temperature is read once, before the first run."""

    def __init__(
        self,
        policy: Cooldown,
        say: Callable[[str], None],
        *,
        nvml: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.say = say
        self.nvml = nvml
        self.sleep = sleep
        self.clock = clock
        self.idle_c: list[float] | None = None
        self.unavailable: str | None = None
        if policy.mode == "gpu-temperature":
            self.idle_c, self.unavailable = gpu_temperatures(nvml)
            if self.idle_c is None:
                say(
                    f"cool-down: GPU temperature unavailable ({self.unavailable}); "
                    f"pausing the fixed cap of {policy.max_s:g} s between runs instead"
                )
            else:
                shown = ", ".join(f"{t:.0f}" for t in self.idle_c)
                say(f"cool-down: idle GPU temperature {shown} °C; waiting for ±{policy.tolerance_c:g} °C between runs")

    def __call__(self) -> dict[str, Any]:
        """Pause; returns what was done (recorded nowhere, shown on stderr)."""
        p = self.policy
        if p.mode == "none":
            return {"mode": "none", "waited_s": 0.0}
        if p.mode == "fixed" or self.idle_c is None:
            wait = p.seconds if p.mode == "fixed" else p.max_s
            if wait > 0:
                self.say(f"cool-down {wait:g} s")
                self.sleep(wait)
            return {"mode": "fixed", "waited_s": wait}
        start = self.clock()
        target = [t + p.tolerance_c for t in self.idle_c]
        while True:
            temps, why = gpu_temperatures(self.nvml)
            waited = self.clock() - start
            if temps is None:
                self.say(f"cool-down: temperature no longer readable ({why}); stopping the wait")
                return {"mode": "gpu-temperature", "waited_s": waited, "reached": False}
            if all(t <= g for t, g in zip(temps, target, strict=False)):
                return {"mode": "gpu-temperature", "waited_s": waited, "reached": True}
            if waited >= p.max_s:
                self.say(f"cool-down: GPU still at {max(temps):.0f} °C after the {p.max_s:g} s cap; going on")
                return {"mode": "gpu-temperature", "waited_s": waited, "reached": False}
            self.sleep(min(p.poll_s, max(0.0, p.max_s - waited)))
