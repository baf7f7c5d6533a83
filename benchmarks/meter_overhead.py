"""What the meter sampler costs: CPU time of its thread per second, and achieved sample rate.

Runs a MeterSession with whatever meters this host has (NVML, RAPL), plus the process meter on
this process, for ~10 s at 10 ms. Without real RAPL it samples a fake powercap tree (two
sockets with DRAM) so the RAPL read path is still exercised, and says so.

    python benchmarks/meter_overhead.py [--seconds 10] [--interval 0.01]

Goals: thread CPU < 1 % of one core; achieved sample rate >= 95 % of requested. Printed beside it:
the same thread with no meters, i.e. the cost of the host's timer wake-ups alone, which on a
nested VM is most of the total and which no sampler at this interval can avoid.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.meters.powercap import DEFAULT_POWERCAP_ROOT, discover  # noqa: E402
from controller.meters.sampler import Sampler  # noqa: E402
from controller.meters.session import MeterSession  # noqa: E402


def fake_powercap(root: Path) -> Path:
    """Two sockets with DRAM, laid out like the kernel does."""
    for zone, name in (
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0/intel-rapl:0:0", "dram"),
        ("intel-rapl:1", "package-1"),
        ("intel-rapl:1/intel-rapl:1:0", "dram"),
    ):
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text("123456789\n")
        (d / "max_energy_range_uj").write_text("262143328850\n")
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root: str | Path = DEFAULT_POWERCAP_ROOT
        rapl_note = f"real RAPL ({DEFAULT_POWERCAP_ROOT})"
        if not discover(DEFAULT_POWERCAP_ROOT).zones:
            root = fake_powercap(Path(tmp) / "powercap")
            rapl_note = "FAKE powercap tree (no RAPL on this host): 2 packages + 2 DRAM zones"
        ms = MeterSession(interval_s=args.interval, powercap_root=root)
        ms.start()
        ms.attach_process(os.getpid())
        t0 = time.monotonic_ns()
        time.sleep(args.seconds)
        t1 = time.monotonic_ns()
        ms.stop()
        out = ms.summarize(t0, t1)

    st = ms.sampler.stats()
    meters = {k: v.available for k, v in ms.meter_status.items()}
    print(f"meters: {meters}")
    print(f"rapl:   {rapl_note}")
    if not meters.get("nvml"):
        print(f"nvml:   unavailable ({out['meters']['nvml']['reason']})")
    else:
        print(f"nvml:   {[g['name'] for g in out['meters']['nvml']['gpus']]}")
    cpu_pct = st["thread_cpu_percent_of_core"]
    rate = st["achieved_rate_ratio"]
    per_tick_us = 1e6 * st["thread_cpu_s"] / max(1, st["ticks"])
    print(f"interval {args.interval * 1e3:.1f} ms over {st['wall_s']:.2f} s")
    print(
        f"ticks {st['ticks']} of {st['requested_ticks']} requested; "
        f"missed deadlines {st['missed_deadlines']}; max lateness {st['max_lateness_ms']:.2f} ms"
    )
    print(
        f"sampler thread CPU: {cpu_pct:.3f} % of one core ({per_tick_us:.0f} us per tick)"
        f"  [goal < 1 %: {'ok' if cpu_pct < 1 else 'MISSED'}]"
    )
    print(
        f"achieved sample rate: {100 * rate:.1f} % of requested  [goal >= 95 %: {'ok' if rate >= 0.95 else 'MISSED'}]"
    )
    # Side by side: the same thread with no meters at all (a sleep on absolute deadlines). What
    # it costs is the host's timer wake-up, the floor any sampler at this interval pays.
    floor = Sampler(args.interval, name="floor")
    floor.start()
    time.sleep(args.seconds)
    floor.stop()
    floor_pct = floor.stats()["thread_cpu_percent_of_core"]
    print(
        f"same thread without meters (this host's wake-up floor): {floor_pct:.3f} % of one core "
        f"({1e6 * floor.thread_cpu_s / max(1, floor.ticks):.0f} us per tick); "
        f"meters add {cpu_pct - floor_pct:.3f} % (ratio {cpu_pct / floor_pct:.2f})"
    )
    if out["flags"]:
        print("flags:", [f["code"] for f in out["flags"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
