"""MeterSession: everything the runner needs to measure one run.

::

    ms = MeterSession(interval_s=0.01, gpu_uuids=[...], baseline=load_baseline())
    ms.start()                      # before the container / process starts
    ms.attach_container(cid)        # or ms.attach_process(pid), once known
    ...                             # the run
    ms.stop()                       # after it exited, before `docker rm`
    measurements = ms.summarize(t0_ns, t1_ns)   # the harness's measure window
    ms.write_trace(path)            # Parquet, only with keep_trace=True

Fast meters (RAPL, NVML, cgroup/process) share one sampler thread at ``interval_s``; the wall
meter, which blocks on HTTP, has its own thread at its own (1 s) interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.meters.base import Availability, Metric, Sampler, Trace, flag, max_gap_ns
from controller.meters.cgroup import DEFAULT_CGROUP_ROOT, CgroupMeter
from controller.meters.idle import DOMAINS, BaselineStatus, IdleBaseline, net_energy
from controller.meters.nvml import NvmlMeter
from controller.meters.process import ProcessMeter
from controller.meters.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter
from controller.meters.system import Check, check_system, host_fingerprint
from controller.meters.wall import WallMeter

SCHEMA = "joulebench.measurements/1"
#: Below this share of the requested sample rate a window is flagged.
MIN_SAMPLE_RATE_RATIO = 0.95

__all__ = ["SCHEMA", "Check", "MeterSession", "check_system", "host_fingerprint"]


class MeterSession:
    """Host-side meters for one run, sampled in the background from start() to stop().

    ``nvml``: a pynvml-like module (None: import ``pynvml`` if installed).
    ``gpu_uuids``: the run's GPUs (None: every visible GPU; ``[]``: none).
    ``baseline``: from :func:`controller.meters.idle.load_baseline`; only an ``ok`` one is
    subtracted. An :class:`IdleBaseline` passed directly is taken as checked by the caller.
    ``workload_interval_s``: how often the run's cgroup or process tree is read (default 50 ms).
    ``keep_trace``: allow :meth:`write_trace`. Traces are kept in memory for :meth:`summarize`
    either way (8 bytes per value: about 30 MB per hour at 10 ms with a GPU).
    """

    def __init__(
        self,
        interval_s: float = 0.01,
        *,
        powercap_root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT,
        nvml: Any | None = None,
        gpu_uuids: Sequence[str] | None = None,
        wall_url: str | None = None,
        wall_output: int | None = None,
        wall_protocol: str = "netio",
        wall_interval_s: float = 1.0,
        wall_auth: tuple[str, str] | None = None,
        cgroup_root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT,
        baseline: BaselineStatus | IdleBaseline | None = None,
        keep_trace: bool = False,
        workload_interval_s: float = 0.05,
    ) -> None:
        self.interval_s = interval_s
        # CPU time and RAM of the run: the kernel accounts CPU time in scheduler ticks (4-10 ms)
        # and RAM changes slowly, so 50 ms loses nothing and keeps the sampler's cost down.
        self.workload_interval_s = max(interval_s, workload_interval_s)
        self.keep_trace = keep_trace
        self.cgroup_root = Path(cgroup_root)
        if isinstance(baseline, IdleBaseline):
            baseline = BaselineStatus("ok", "given directly to the session", None, baseline)
        self.baseline = baseline
        self.gpu_uuids = None if gpu_uuids is None else list(gpu_uuids)
        self.rapl = RaplMeter(powercap_root)
        self.nvml = NvmlMeter(nvml=nvml, gpu_uuids=gpu_uuids)
        self.wall: WallMeter | None = None
        if wall_url:
            self.wall = WallMeter(
                wall_url,
                output_id=wall_output,
                protocol=wall_protocol,
                interval_s=wall_interval_s,
                timeout_s=min(2.0, max(0.2, wall_interval_s)),
                auth=wall_auth,
            )
        self.workload: CgroupMeter | ProcessMeter | None = None
        self._workload_avail: Availability = Availability.no(
            "no container or process attached to the session (attach_container/attach_process)"
        )
        self.sampler = Sampler(interval_s, name="joulebench-meters")
        self.slow_sampler: Sampler | None = None
        self.traces: dict[str, Trace] = {}
        self.meter_status: dict[str, Availability] = {}
        self._started = False
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Open the meters and start sampling; returns after every meter was read once."""
        if self._started:
            raise RuntimeError("MeterSession already started")
        self._started = True
        self.meter_status["rapl"] = self.rapl.open()
        if self.rapl.zones:  # DRAM alone may be readable
            self.traces["rapl"] = self.sampler.add(self.rapl)
        self.meter_status["nvml"] = self.nvml.open()
        if self.meter_status["nvml"].available:
            self.traces["nvml"] = self.sampler.add(self.nvml)
        if self.wall is not None:
            self.meter_status["wall"] = self.wall.open()
            if self.meter_status["wall"].available:
                self.slow_sampler = Sampler(self.wall.interval_s or 1.0, name="joulebench-wall")
                self.traces["wall"] = self.slow_sampler.add(self.wall)
                self.slow_sampler.start()
        self.sampler.start()

    def attach_container(self, container_id: str) -> Availability:
        """Start sampling the container's cgroup (CPU, RAM). Returns whether that works."""
        return self._attach(CgroupMeter(container_id, self.cgroup_root, interval_s=self.workload_interval_s))

    def attach_process(self, pid: int) -> Availability:
        """Start sampling a local process tree (pid and descendants) through psutil."""
        return self._attach(ProcessMeter(pid, interval_s=self.workload_interval_s))

    def _attach(self, meter: CgroupMeter | ProcessMeter) -> Availability:
        if self.workload is not None:
            raise RuntimeError(f"a {self.workload.name} meter is already attached")
        self.workload = meter
        avail = meter.open()
        self._workload_avail = avail
        self.meter_status[meter.name] = avail
        if avail.available:
            self.traces[meter.name] = self.sampler.add(meter)
        return avail

    def sample_now(self) -> None:
        """Read every meter once, synchronously (tests drive fake counters with this)."""
        self.sampler.tick(force=True)
        if self.slow_sampler is not None:
            self.slow_sampler.tick(force=True)

    def stop(self) -> None:
        """Stop sampling (a last read of every meter first) and release the meters."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self.sampler.stop()
        if self.slow_sampler is not None:
            self.slow_sampler.stop()
        for m in (self.rapl, self.nvml, self.wall, self.workload):
            if m is not None:
                m.close()

    def __enter__(self) -> MeterSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results ------------------------------------------------------------------------

    def summarize(self, t0_ns: int, t1_ns: int) -> dict[str, Any]:
        """Cut every trace to [t0_ns, t1_ns] (``time.monotonic_ns()``) and return measurements.

        Shape::

            {"schema", "window": {"t0_ns", "t1_ns"}, "window_s",
             "metrics": {name: {"value", "unit", "source", "available", "reason", ...}},
             "meters": {name: {"available", "reason", "source", ...}},
             "baseline": {"status": ok|missing|stale|foreign|invalid, "reason", ...},
             "sampler": {"interval_s", "ticks", "achieved_rate_ratio", ...},
             "flags": [{"code", "message", ...}]}

        Energy metrics carry ``gross_j``, ``idle_j``, ``net_j`` (``value`` is gross);
        ``total_energy_j`` sums cpu, dram and gpu where measured and lists them in ``covers``.
        """
        if t1_ns <= t0_ns:
            raise ValueError(
                f"measure window is empty or reversed: t0_ns={t0_ns}, t1_ns={t1_ns} "
                "(both from time.monotonic_ns(), t1 after t0)"
            )
        window_s = (t1_ns - t0_ns) / 1e9
        metrics: dict[str, Metric] = {}
        flags: list[dict[str, Any]] = []

        # RAPL
        if "rapl" in self.traces:
            m, f = self.rapl.summarize(self.traces["rapl"], t0_ns, t1_ns)
            metrics.update(m)
            flags.extend(f)
        else:
            why = self.rapl.availability.reason or "RAPL not started"
            src = f"RAPL powercap {self.rapl.root}"
            metrics["cpu_energy_j"] = Metric.unavailable("cpu_energy_j", "J", why, src)
            metrics["cpu_power_w"] = Metric.unavailable("cpu_power_w", "W", why, src)
            metrics["dram_energy_j"] = Metric.unavailable("dram_energy_j", "J", self.rapl.dram.reason or why, src)

        # NVML
        if "nvml" in self.traces:
            m, f = self.nvml.summarize(self.traces["nvml"], t0_ns, t1_ns)
            metrics.update(m)
            flags.extend(f)
        else:
            why = self.nvml.availability.reason or "NVML not started"
            for name, unit in (
                ("gpu_energy_j", "J"),
                ("gpu_power_w", "W"),
                ("gpu_util_percent", "%"),
                ("gpu_mem_util_percent", "%"),
                ("gpu_mem_used_bytes", "B"),
                ("gpu_mem_used_percent", "%"),
                ("gpu_sm_clock_mhz", "MHz"),
                ("gpu_temp_c", "C"),
            ):
                metrics[name] = Metric.unavailable(name, unit, why, "nvml")

        # Wall socket
        if self.wall is not None and "wall" in self.traces:
            metrics.update(self.wall.summarize(self.traces["wall"], t0_ns, t1_ns))
        else:
            why = (
                self.wall.availability.reason or "wall meter not started"
                if self.wall is not None
                else "no wall meter configured (wall_url)"
            )
            metrics["wall_energy_j"] = Metric.unavailable("wall_energy_j", "J", why, "wall")
            metrics["wall_power_w"] = Metric.unavailable("wall_power_w", "W", why, "wall")

        # Container / process
        wl = self.workload
        if wl is not None and wl.name in self.traces:
            metrics.update(wl.summarize(self.traces[wl.name], t0_ns, t1_ns))
        else:
            why = self._workload_avail.reason or "no workload meter"
            for name, unit in (
                ("cpu_time_s", "s"),
                ("cpu_percent", "%"),
                ("ram_peak_bytes", "B"),
                ("ram_mean_bytes", "B"),
            ):
                metrics[name] = Metric.unavailable(name, unit, why, "cgroup/process")

        # Gross / idle / net, then the total.
        gpu_uuids = [g.uuid for g in self.nvml.gpus] if self.nvml.gpus else self.gpu_uuids
        for domain, name in (*DOMAINS.items(), ("wall", "wall_energy_j")):
            met = metrics[name]
            gross = met.value if met.available else None
            met.extra.update(net_energy(gross, domain, window_s, self.baseline, gpu_uuids=gpu_uuids))
        metrics["total_energy_j"] = self._total(metrics, window_s)

        sampler_stats = self.sampler.stats()
        flags.extend(self._sampling_flags(t0_ns, t1_ns, window_s))
        if self.baseline is not None and not self.baseline.usable:
            flags.append(
                flag(
                    "idle_baseline_not_used",
                    f"idle baseline {self.baseline.status}: {self.baseline.reason}",
                )
            )

        meters: dict[str, Any] = {
            "rapl": self.rapl.describe(),
            "nvml": self.nvml.describe(),
            "wall": self.wall.describe()
            if self.wall is not None
            else Availability.no("no wall meter configured").to_dict(),
        }
        if wl is not None:
            meters[wl.name] = wl.describe()
        else:
            meters["workload"] = self._workload_avail.to_dict()
        for name, trace in self.traces.items():
            n = sum(1 for t in trace.t_ns if t0_ns <= t <= t1_ns)
            meters[name]["samples_in_window"] = n
        errs = sampler_stats.get("meter_errors", {})
        for name, e in errs.items():
            if name in meters:
                meters[name]["read_errors"] = e

        return {
            "schema": SCHEMA,
            "window": {"t0_ns": t0_ns, "t1_ns": t1_ns},
            "window_s": window_s,
            "metrics": {k: v.to_dict() for k, v in metrics.items()},
            "meters": meters,
            "baseline": self.baseline.to_dict()
            if self.baseline is not None
            else {
                "status": "missing",
                "reason": "no idle baseline given to the session; net energy not computed",
            },
            "sampler": sampler_stats,
            "flags": flags,
        }

    def _total(self, metrics: dict[str, Metric], window_s: float) -> Metric:
        covers = [d for d, name in DOMAINS.items() if metrics[name].available and metrics[name].value is not None]
        not_covered = {d: metrics[name].reason for d, name in DOMAINS.items() if d not in covers}
        if not covers:
            return Metric.unavailable(
                "total_energy_j",
                "J",
                "no energy domain could be measured: " + "; ".join(f"{d}: {r}" for d, r in not_covered.items()),
                None,
                covers=[],
                not_covered=not_covered,
            )
        gross = sum(float(metrics[DOMAINS[d]].value or 0.0) for d in covers)
        nets = [metrics[DOMAINS[d]].extra.get("net_j") for d in covers]
        idles = [metrics[DOMAINS[d]].extra.get("idle_j") for d in covers]
        net_ok = all(n is not None for n in nets)
        reasons = [
            f"{d}: {metrics[DOMAINS[d]].extra.get('net_reason')}"
            for d in covers
            if metrics[DOMAINS[d]].extra.get("net_j") is None
        ]
        return Metric(
            "total_energy_j",
            gross,
            "J",
            " + ".join(str(metrics[DOMAINS[d]].source) for d in covers),
            extra={
                "covers": covers,
                "not_covered": not_covered,
                "gross_j": gross,
                "idle_j": sum(i for i in idles if i is not None) if net_ok else None,
                "net_j": sum(n for n in nets if n is not None) if net_ok else None,
                "net_reason": None if net_ok else "; ".join(reasons),
                "note": "wall-socket energy is reported apart (it already includes all of these)",
            },
        )

    def _sampling_flags(self, t0: int, t1: int, window_s: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, trace in self.traces.items():
            if name == "wall":
                continue
            n = sum(1 for t in trace.t_ns if t0 <= t <= t1)
            interval = self.workload_interval_s if name in ("process", "cgroup") else self.interval_s
            expected = window_s / interval
            if expected >= 10 and n < MIN_SAMPLE_RATE_RATIO * math.floor(expected):
                out.append(
                    flag(
                        "sample_rate_low",
                        f"{name}: {n} samples in the window, {expected:.0f} requested "
                        f"({n / expected:.0%}); the host was too busy for the sampler",
                        meter=name,
                        ratio=n / expected,
                    )
                )
            gap = max_gap_ns(trace, t0, t1) / 1e9
            if gap > max(5 * interval, 0.05) and n:
                out.append(
                    flag(
                        "sample_gap",
                        f"{name}: {gap * 1e3:.0f} ms without a sample inside the window",
                        meter=name,
                        gap_s=gap,
                    )
                )
        return out

    def write_trace(self, path: str | os.PathLike[str]) -> Path:
        """Write every trace as one long Parquet table (meter, t_ns, field, value).

        Needs ``keep_trace=True`` and polars or pyarrow.
        """
        if not self.keep_trace:
            raise RuntimeError("write_trace needs MeterSession(keep_trace=True)")
        meter_col: list[str] = []
        t_col: list[int] = []
        field_col: list[str] = []
        value_col: list[float | None] = []
        for name, trace in self.traces.items():
            n = len(trace.t_ns)
            ts = trace.t_ns[:n].tolist()
            for fname in trace.fields:
                vals = trace.columns[fname][:n].tolist()
                meter_col.extend([name] * n)
                t_col.extend(ts)
                field_col.extend([fname] * n)
                value_col.extend(None if math.isnan(v) else v for v in vals)
        data = {"meter": meter_col, "t_ns": t_col, "field": field_col, "value": value_col}
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            import polars as pl

            pl.DataFrame(
                data,
                schema={"meter": pl.Utf8, "t_ns": pl.Int64, "field": pl.Utf8, "value": pl.Float64},
            ).write_parquet(p)
            return p
        except ImportError:
            pass
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("writing a Parquet trace needs polars or pyarrow: `pip install polars`") from exc
        pq.write_table(pa.table(data), p)
        return p
