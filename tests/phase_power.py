"""A fake RAPL package (and, if asked, a fake GPU) whose power follows what a served request is doing:
a fixed idle power, plus so much per request in prefill and so much per request in decode (the stub
server says which, ``tests/openai_stub.py``). The package's counter updates every millisecond, as
RAPL's does; the GPU's total-energy counter every 20 ms, as NVML's do, beside its instant power. The
energy drawn in each phase is known exactly from the log of phase changes: the truth a recorded
split is checked against."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.meters.meter_fakes import FakeGpu, PowercapTree

ZONE = "intel-rapl:0"


class PhasePower:
    """``idle_w`` always, plus ``prefill_w`` per request in prefill and ``decode_w`` per request in decode.

    :meth:`truth` over a window: energy (J) drawn while only prefill ran (``prefill``), only decode
    (``decode``), both (``mixed``), neither (``other``); the per-request power above idle summed by
    phase (``active_prefill``, ``active_decode``); and the time in each state (``*_s``)."""

    def __init__(
        self,
        root: Path,
        idle_w: float,
        prefill_w: float,
        decode_w: float,
        update_s: float = 0.001,
        gpu: FakeGpu | None = None,
        gpu_w: tuple[float, float, float] = (0.0, 0.0, 0.0),
        gpu_period_s: float = 0.02,
    ) -> None:
        """``gpu_w``: the GPU's idle power and its power per request in prefill and in decode."""
        self.gpu, self.gpu_w, self.gpu_period_s = gpu, gpu_w, gpu_period_s
        self.gpu_j = 0.0
        self.gpu_updated_ns = 0
        self.tree = PowercapTree(root)
        self.tree.zone(ZONE, "package-0", 0)
        self.idle_w, self.prefill_w, self.decode_w, self.update_s = idle_w, prefill_w, decode_w, update_s
        self.counts = {"prefill": 0, "decode": 0}
        self.total_j = 0.0
        self.lock = threading.Lock()
        self.t_ns = time.monotonic_ns()
        self.log: list[tuple[int, int, int]] = [(self.t_ns, 0, 0)]  # (from t_ns, in prefill, in decode)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def cpu_w(self, prefill: int, decode: int) -> float:
        return self.idle_w + self.prefill_w * prefill + self.decode_w * decode

    def gpu_power_w(self, prefill: int, decode: int) -> float:
        idle, per_prefill, per_decode = self.gpu_w
        return idle + per_prefill * prefill + per_decode * decode if self.gpu is not None else 0.0

    def power_w(self, prefill: int, decode: int) -> float:
        """Every fake domain's power together."""
        return self.cpu_w(prefill, decode) + self.gpu_power_w(prefill, decode)

    def _advance(self, now: int) -> None:
        p, d = self.counts["prefill"], self.counts["decode"]
        self.total_j += self.cpu_w(p, d) * (now - self.t_ns) / 1e9
        self.gpu_j += self.gpu_power_w(p, d) * (now - self.t_ns) / 1e9
        self.t_ns = now
        if self.gpu is not None:
            self.gpu.power_mw = round(self.gpu_power_w(p, d) * 1e3)
            if now - self.gpu_updated_ns >= self.gpu_period_s * 1e9:
                self.gpu.energy_mj = round(self.gpu.counter_base_mj + self.gpu_j * 1e3)
                self.gpu_updated_ns = now

    def on_phase(self, counts: dict[str, int]) -> None:
        with self.lock:
            now = time.monotonic_ns()
            self._advance(now)
            self.counts = dict(counts)
            self.log.append((now, counts["prefill"], counts["decode"]))

    def truth(self, t0: int, t1: int) -> dict[str, float]:
        """What was drawn over [t0, t1] (ns), by state and phase (see the class docstring)."""
        out = dict.fromkeys(("prefill", "decode", "mixed", "other", "active_prefill", "active_decode"), 0.0)
        out |= {f"{k}_s": 0.0 for k in ("prefill", "decode", "mixed", "other")}
        ends = [t for t, _, _ in self.log[1:]] + [max(t1, self.log[-1][0])]
        for (start, p, d), end in zip(self.log, ends, strict=True):
            dt = (min(end, t1) - max(start, t0)) / 1e9
            if dt <= 0:
                continue
            state = "mixed" if p and d else "prefill" if p else "decode" if d else "other"
            out[state] += self.power_w(p, d) * dt
            out[f"{state}_s"] += dt
            out["active_prefill"] += (self.prefill_w + self.gpu_power_w(1, 0) - self.gpu_power_w(0, 0)) * p * dt
            out["active_decode"] += (self.decode_w + self.gpu_power_w(0, 1) - self.gpu_power_w(0, 0)) * d * dt
        return out

    def _run(self) -> None:
        while not self.stop_event.is_set():
            with self.lock:
                self._advance(time.monotonic_ns())
                self.tree.set(ZONE, round(self.total_j * 1e6))
            time.sleep(self.update_s)

    def __enter__(self) -> PhasePower:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
