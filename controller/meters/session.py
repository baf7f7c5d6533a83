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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from controller.meters.base import Absent, Availability, Metric, SummarizingMeter, Trace, flag
from controller.meters.baseline import BaselineStatus, IdleBaseline
from controller.meters.cgroup import DEFAULT_CGROUP_ROOT, CgroupMeter
from controller.meters.host import HostMeter
from controller.meters.measurements import refuse_negative_energy, sampling_flags, subtract_idle, total_energy
from controller.meters.nvml import NvmlMeter
from controller.meters.powercap import DEFAULT_POWERCAP_ROOT
from controller.meters.process import ProcessMeter
from controller.meters.rapl import RaplMeter
from controller.meters.sampler import Sampler
from controller.meters.uncertainty import DEFAULT_UNCERTAINTY_LIMIT, uncertainty_flags
from controller.meters.wall import WALL_UNITS, WallMeter
from controller.meters.workload import WORKLOAD_UNITS

if TYPE_CHECKING:
    from typing import Unpack  # 3.11; annotations only, so 3.10 still imports this module

SCHEMA = "joulebench.measurements/1"
#: How long stop() waits, at most, for each NVML energy counter to update once more.
COUNTER_WAIT_S = 0.35

__all__ = ["SCHEMA", "MeterOptions", "MeterSession"]


class MeterOptions(TypedDict, total=False):
    """Where a session's meters read from, and how often; every key may be left out.

    ``powercap_root`` (default ``/sys/class/powercap``), ``cgroup_root`` (``/sys/fs/cgroup``);
    ``nvml``: a pynvml-like module (None: import ``pynvml`` if installed); ``gpu_uuids``: the
    run's GPUs (None: every visible GPU; ``[]``: none); ``wall_*``: a wall-socket meter, only
    with ``wall_url`` (protocol ``netio``, read every ``wall_interval_s``, default 1 s);
    ``workload_interval_s``: how often the run's cgroup or process tree is read (default 50 ms).
    """

    powercap_root: str | os.PathLike[str]
    cgroup_root: str | os.PathLike[str]
    nvml: Any
    gpu_uuids: Sequence[str] | None
    wall_url: str | None
    wall_output: int | None
    wall_protocol: str
    wall_interval_s: float
    wall_auth: tuple[str, str] | None
    workload_interval_s: float


class MeterSession:
    """Host-side meters for one run, sampled in the background from start() to stop().

    ``options``: see :class:`MeterOptions` (idle measurement takes the same).
    ``baseline``: from :func:`controller.meters.baseline.load_baseline`; only an ``ok`` one is
    subtracted. An :class:`IdleBaseline` passed directly is taken as checked by the caller.
    ``keep_trace``: allow :meth:`write_trace`. Traces are kept in memory for :meth:`summarize`
    either way (8 bytes per value: about 30 MB per hour at 10 ms with a GPU).
    ``uncertainty_limit``: an energy figure whose bound exceeds this share of it is flagged
    (``energy_uncertainty_high``; default 2 %).
    """

    def __init__(
        self,
        interval_s: float = 0.01,
        *,
        baseline: BaselineStatus | IdleBaseline | None = None,
        keep_trace: bool = False,
        uncertainty_limit: float = DEFAULT_UNCERTAINTY_LIMIT,
        **options: Unpack[MeterOptions],
    ) -> None:
        if not uncertainty_limit > 0:
            raise ValueError(f"uncertainty_limit must be a positive share (0.02 for 2 %), got {uncertainty_limit!r}")
        self.uncertainty_limit = uncertainty_limit
        self.interval_s = interval_s
        # CPU time and RAM of the run: the kernel accounts CPU time in scheduler ticks (4-10 ms)
        # and RAM changes slowly, so 50 ms loses nothing and keeps the sampler's cost down.
        self.workload_interval_s = max(interval_s, options.get("workload_interval_s", 0.05))
        self.keep_trace = keep_trace
        self.cgroup_root = Path(options.get("cgroup_root", DEFAULT_CGROUP_ROOT))
        if isinstance(baseline, IdleBaseline):
            baseline = BaselineStatus("ok", "given directly to the session", None, baseline)
        self.baseline = baseline
        gpu_uuids = options.get("gpu_uuids")
        self.gpu_uuids = None if gpu_uuids is None else list(gpu_uuids)
        self.rapl = RaplMeter(options.get("powercap_root", DEFAULT_POWERCAP_ROOT))
        self.nvml = NvmlMeter(nvml=options.get("nvml"), gpu_uuids=gpu_uuids)
        self.wall: WallMeter | None = None
        wall_url = options.get("wall_url")
        if wall_url:
            wall_interval_s = options.get("wall_interval_s", 1.0)
            self.wall = WallMeter(
                wall_url,
                output_id=options.get("wall_output"),
                protocol=options.get("wall_protocol", "netio"),
                interval_s=wall_interval_s,
                timeout_s=min(2.0, max(0.2, wall_interval_s)),
                auth=options.get("wall_auth"),
            )
        self.host = HostMeter(interval_s=self.workload_interval_s)
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
        self.meter_status["host"] = self.host.open()
        if self.meter_status["host"].available:
            self.traces["host"] = self.sampler.add(self.host)
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
        self._await_counter_updates()
        self.sampler.stop()
        if self.slow_sampler is not None:
            self.slow_sampler.stop()
        for m in (self.rapl, self.nvml, self.wall, self.workload, self.host):
            if m is not None:
                m.close()

    def _await_counter_updates(self, timeout_s: float = COUNTER_WAIT_S) -> None:
        """NVML's energy counters update only every 20-100 ms: keep reading (at most
        ``timeout_s``) until each has updated once since stop() was called, so that an update
        brackets the end of any window before it, as one brackets its start."""
        trace = self.traces.get("nvml")
        fields = [f"gpu{g.index}.energy_mj" for g in self.nvml.gpus if g.energy_counter.available]
        if trace is None or not fields or not self.sampler.running or self.interval_s > timeout_s / 2:
            return
        n0 = len(trace)
        before = {f: trace.columns[f][n0 - 1] for f in fields} if n0 else {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = len(trace)
            if n > n0 and all(trace.columns[f][n - 1] != before.get(f) for f in fields):
                return
            time.sleep(self.interval_s)

    def __enter__(self) -> MeterSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results ------------------------------------------------------------------------

    def meters(self) -> list[SummarizingMeter]:
        """Every meter a record reports, in order; one not configured or not attached is
        :class:`Absent`, so that its figures are still listed with why they are missing."""
        wall = self.wall or Absent("wall", WALL_UNITS, "no wall meter configured (wall_url)", "wall")
        workload = self.workload or Absent(
            "workload", WORKLOAD_UNITS, self._workload_avail.reason or "no workload meter", "cgroup/process"
        )
        return [self.rapl, self.nvml, wall, workload, self.host]

    def summarize(self, t0_ns: int, t1_ns: int) -> dict[str, Any]:
        """Cut every trace to [t0_ns, t1_ns] (``time.monotonic_ns()``) and return measurements.

        Shape::

            {"schema", "window": {"t0_ns", "t1_ns"}, "window_s",
             "metrics": {name: {"value", "unit", "source", "available", "reason", ...}},
             "meters": {name: {"available", "reason", "source", ...}},
             "baseline": {"status": ok|missing|stale|foreign|invalid, "reason", ...},
             "sampler": {"interval_s", "ticks", "achieved_rate_ratio", ...},
             "flags": [{"code", "message", ...}]}

        Energy metrics carry ``gross_j``, ``idle_j``, ``net_j`` (``value`` is gross), the bound
        ``uncertainty_j`` (with ``uncertainty_rel``, ``uncertainty_components``,
        ``uncertainty_method``) and ``net_uncertainty_j``; ``total_energy_j`` sums cpu, dram and
        gpu where measured and lists them in ``covers``. ``system_*`` figures are host-wide.
        """
        if t1_ns <= t0_ns:
            raise ValueError(
                f"measure window is empty or reversed: t0_ns={t0_ns}, t1_ns={t1_ns} "
                "(both from time.monotonic_ns(), t1 after t0)"
            )
        window_s = (t1_ns - t0_ns) / 1e9
        metrics: dict[str, Metric] = {}
        flags: list[dict[str, Any]] = []
        meters: dict[str, Any] = {}
        for meter in self.meters():
            trace = self.traces.get(meter.name)
            part = meter.unavailable() if trace is None else meter.summarize(trace, t0_ns, t1_ns)
            metrics.update(part.metrics)
            flags.extend(part.flags)
            meters[meter.name] = meter.describe()
            if trace is not None:
                meters[meter.name]["samples_in_window"] = sum(1 for t in trace.t_ns if t0_ns <= t <= t1_ns)
        flags.extend(refuse_negative_energy(metrics))
        gpu_uuids = [g.uuid for g in self.nvml.gpus] if self.nvml.gpus else self.gpu_uuids
        flags.extend(subtract_idle(metrics, window_s, self.baseline, gpu_uuids))
        metrics["total_energy_j"] = total_energy(metrics)
        flags.extend(uncertainty_flags(metrics, self.uncertainty_limit))

        sampler_stats = self.sampler.stats()
        intervals = {name: self.interval_s for name in ("rapl", "nvml")}
        intervals["host"] = self.workload_interval_s
        if self.workload is not None:
            intervals[self.workload.name] = self.workload_interval_s
        flags.extend(sampling_flags(self.traces, intervals, t0_ns, t1_ns))
        if self.baseline is not None and not self.baseline.usable:
            flags.append(
                flag(
                    "idle_baseline_not_used",
                    f"idle baseline {self.baseline.status}: {self.baseline.reason}",
                )
            )
        for name, e in sampler_stats.get("meter_errors", {}).items():
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
