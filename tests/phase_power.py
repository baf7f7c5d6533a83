"""A fake RAPL package whose power follows what a served request is doing: a fixed idle power, plus
so much per request in prefill and so much per request in decode (the stub server says which,
``tests/openai_stub.py``). The counter updates every millisecond, as RAPL's does; the energy drawn
in each phase is summed exactly beside it, the truth a recorded split is checked against."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.meters.meter_fakes import PowercapTree

ZONE = "intel-rapl:0"


class PhasePower:
    """``idle_w`` always, plus ``prefill_w`` per request in prefill and ``decode_w`` per request in decode.

    :meth:`truth` over a window: energy (J) drawn while only prefill ran (``prefill``), only decode
    (``decode``), both (``mixed``), neither (``other``); the per-request power above idle summed by
    phase (``active_prefill``, ``active_decode``); and the time in each state (``*_s``)."""

    def __init__(self, root: Path, idle_w: float, prefill_w: float, decode_w: float, update_s: float = 0.001) -> None:
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

    def power_w(self, prefill: int, decode: int) -> float:
        return self.idle_w + self.prefill_w * prefill + self.decode_w * decode

    def _advance(self, now: int) -> None:
        self.total_j += self.power_w(self.counts["prefill"], self.counts["decode"]) * (now - self.t_ns) / 1e9
        self.t_ns = now

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
            out["active_prefill"] += self.prefill_w * p * dt
            out["active_decode"] += self.decode_w * d * dt
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
