"""The meters' flags (``record["measurements"]["flags"]``) mapped to the report columns they put in
doubt, so that a table cell built from a flagged run is marked, never averaged silently.

A flag is ``{"code", "message", ...context}``; the context names what it concerns: ``metric`` (a
record metric name), ``meter`` (rapl, nvml, process, cgroup, wall) or ``uuid`` (a GPU). A code
this module does not know still shows in the report's list of flags; if it speaks of energy it
marks every energy column, since it cannot say which.
"""

from __future__ import annotations

from typing import Any

from controller.report.columns import COLUMNS, ENERGY_DERIVED

_GPU_ENERGY = {"gpu_energy", "total_energy", *ENERGY_DERIVED}
_RAPL = {"cpu_energy", "dram_energy", "total_energy", *ENERGY_DERIVED}
_WORKLOAD = {"cpu_percent", "cpu_usage_percent", "ram_peak_mib", "ram_usage_percent"}

BY_METRIC: dict[str, set[str]] = {
    "cpu_energy_j": {"cpu_energy", "total_energy", *ENERGY_DERIVED},
    "dram_energy_j": {"dram_energy", "total_energy", *ENERGY_DERIVED},
    "gpu_energy_j": _GPU_ENERGY,
    "total_energy_j": {"total_energy", *ENERGY_DERIVED},
    "wall_energy_j": set(),  # the report does not show wall energy in its tables
    "cpu_time_s": {"cpu_percent", "cpu_usage_percent"},
    "cpu_percent": {"cpu_percent", "cpu_usage_percent"},
}
BY_METER: dict[str, set[str]] = {
    "rapl": _RAPL,
    "nvml": {*_GPU_ENERGY, "gpu_power_w", "gpu_util_percent", "gpu_mem_util_percent", "gpu_mem_used_percent"},
    "process": _WORKLOAD,
    "cgroup": _WORKLOAD,
    "wall": set(),
}
# Informative only: how the energies are shown (net or gross) already says it.
NOT_A_DOUBT = {"idle_baseline_not_used"}
ALL_ENERGY = {"gpu_energy", "cpu_energy", "dram_energy", "total_energy", *ENERGY_DERIVED}
# Every time, latency and throughput column: what a CPU shared with another load slows down.
ALL_TIME = {c.key for c in COLUMNS.values() if c.unit in ("s", "ms") or c.unit.endswith("/s")}
# Flags about the run's conditions rather than a meter: the columns each puts in doubt.
BY_CODE: dict[str, set[str]] = {
    # Another joulebench run, or a busy or stolen CPU, beside the window (controller/quiet.py).
    "foreign_load": ALL_ENERGY | ALL_TIME,
}


def columns_in_doubt(flag: dict[str, Any]) -> set[str]:
    """The report columns this flag puts in doubt (empty: shown in the list of flags only)."""
    code = str(flag.get("code") or "")
    if code in NOT_A_DOUBT:
        return set()
    if code in BY_CODE:
        return set(BY_CODE[code])
    metric = flag.get("metric")
    if isinstance(metric, str) and metric in BY_METRIC:
        return set(BY_METRIC[metric])
    if code.startswith("gpu_energy") or (flag.get("uuid") and "energy" in code):
        return set(_GPU_ENERGY)
    if code.startswith("rapl"):
        return set(_RAPL)
    meter = flag.get("meter")
    if isinstance(meter, str) and meter in BY_METER:
        return set(BY_METER[meter])
    if "energy" in code or "counter" in code or "wrap" in code:
        return set(ALL_ENERGY)
    return set()


# A serving point's flags (record["metrics"]["serving_flags"], controller/serving/checks.py): what
# the server did that was not asked, or token times the client could not trust.
_COUNTED = {"tokens_per_s", "request_throughput_rps", "output_token_throughput_tps", "goodput_rps"}
_PER_TOKEN = {"energy_per_request", "energy_per_token", "energy_per_token_steady"}
BY_SERVING_FLAG: dict[str, set[str]] = {
    "truncated_streams": _COUNTED | _PER_TOKEN,
    "requests_failed": _COUNTED | _PER_TOKEN,
    "over_long_outputs": _COUNTED | _PER_TOKEN | {"time_per_request_s", "e2el_ms_median", "e2el_ms_p99"},
    "ignore_eos_not_honoured": _COUNTED | _PER_TOKEN | {"time_per_request_s", "e2el_ms_median", "e2el_ms_p99"},
    "min_tokens_not_honoured": _COUNTED | _PER_TOKEN | {"time_per_request_s", "e2el_ms_median", "e2el_ms_p99"},
    "short_outputs": _COUNTED | _PER_TOKEN | {"time_per_request_s", "e2el_ms_median", "e2el_ms_p99"},
    "token_times_disagree": {"tpot_ms_median", "itl_ms_median"},
}


def serving_flags(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A serving record's own flags as ``{"code", "message", "columns"}``."""
    out = []
    for f in (record.get("metrics") or {}).get("serving_flags") or []:
        if isinstance(f, dict):
            code = str(f.get("code") or "?")
            columns = sorted(BY_SERVING_FLAG.get(code, ()))
            out.append({"code": code, "message": str(f.get("message")), "columns": columns})
    return out


def run_flags(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's flags as ``{"code", "message", "columns"}``, in record order (a serving point's last)."""
    measurements = record.get("measurements") or {}
    out = []
    for f in measurements.get("flags") or []:
        if not isinstance(f, dict):
            continue
        out.append(
            {
                "code": str(f.get("code") or "?"),
                "message": str(f.get("message") or ""),
                "columns": sorted(columns_in_doubt(f)),
            }
        )
    return out + serving_flags(record)
