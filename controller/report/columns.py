"""The report's columns: what each shows, in which unit, which direction is better, and which
record figure explains it when it is unmeasured.

Named ``Column`` (not ``Metric``): ``controller.meters.base.Metric`` is a measured figure with its
source; a report column is a way of showing one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    better: str | None  # "low", "high" or None (no "best")
    record_name: str | None  # the name in record["measurements"]["metrics"], for its reason


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("gpu_util_percent", "GPU utilisation", "%", None, "gpu_util_percent"),
        Column("gpu_mem_util_percent", "GPU memory utilisation", "%", None, "gpu_mem_util_percent"),
        # The second paper's "GPU used memory": the average share of the GPU's memory allocated.
        Column("gpu_mem_used_percent", "GPU used memory", "% of total, mean", None, "gpu_mem_used_bytes"),
        Column("gpu_mem_used_peak_percent", "GPU used memory peak", "% of total", None, "gpu_mem_used_percent"),
        Column("gpu_power_w", "GPU power", "W", None, "gpu_power_w"),
        Column("gpu_energy", "GPU energy", "J", "low", "gpu_energy_j"),
        Column("cpu_energy", "CPU energy", "J", "low", "cpu_energy_j"),
        Column("dram_energy", "DRAM energy", "J", "low", "dram_energy_j"),
        Column("total_energy", "Total energy", "J", "low", "total_energy_j"),
        Column("window_s", "Inference time", "s", "low", None),
        # Duration mode: what the window held, per sample and per batch of the samples actually done.
        Column("time_per_sample_ms", "Time per sample", "ms", "low", None),
        Column("time_per_batch_ms", "Time per batch", "ms", "low", None),
        Column("throughput_sps", "Throughput", "samples/s", "high", None),
        Column("latency_ms_p50", "Latency p50", "ms", "low", None),
        # The second paper's CPU and RAM usage: system-wide averages as a share of the host (older
        # records: the run's process tree, with a note).
        Column("cpu_usage_percent", "CPU usage", "% of host", None, "system_cpu_percent"),
        Column("ram_usage_percent", "RAM usage", "% of host", None, "system_ram_used_percent"),
        # Ours, beside them: the run's process tree as a share of the host, one core = 100 %, and
        # the peak resident memory.
        Column("cpu_usage_process_percent", "CPU usage, run's processes", "% of host", None, "cpu_percent"),
        Column("ram_usage_process_percent", "RAM usage, run's processes", "% of host", None, "ram_mean_bytes"),
        Column("cpu_percent", "CPU load", "% of one core", None, "cpu_percent"),
        Column("ram_peak_mib", "RAM peak", "MiB", None, "ram_peak_bytes"),
        # Serving runs (the second paper): per request and per generated token.
        Column("energy_per_request", "Energy per request", "J", "low", "total_energy_j"),
        Column("energy_per_token", "Energy per token", "J", "low", "total_energy_j"),
        Column("time_per_request_s", "Time per request", "s", "low", None),
        Column("tokens_per_s", "Throughput", "tokens/s", "high", None),
        # A serving load point's figures (serve --concurrency / --request-rate): the client's per-request
        # latencies, throughput over the measure window, goodput against the SLO given.
        Column("ttft_ms_median", "TTFT median", "ms", "low", None),
        Column("ttft_ms_p99", "TTFT p99", "ms", "low", None),
        Column("tpot_ms_median", "TPOT median", "ms", "low", None),
        Column("itl_ms_median", "ITL median", "ms", "low", None),
        Column("e2el_ms_median", "E2EL median", "ms", "low", None),
        Column("e2el_ms_p99", "E2EL p99", "ms", "low", None),
        Column("request_throughput_rps", "Request throughput", "requests/s", "high", None),
        Column("output_token_throughput_tps", "Output-token throughput", "tokens/s", "high", None),
        Column("goodput_rps", "Goodput", "requests/s", "high", None),
        # Energy over the steady window (the load at its target) per output token generated inside it.
        Column("energy_per_token_steady", "Energy per output token, steady", "J", "low", None),
        # Derived from Total energy with a grid factor (issue 19): an estimate, never a measurement.
        Column("carbon_g", "Carbon, estimated", "gCO2e", "low", "total_energy_j"),
    )
}
ENERGIES = ("gpu_energy", "cpu_energy", "dram_energy", "total_energy")
ENERGY_DERIVED = ("energy_per_request", "energy_per_token", "energy_per_token_steady", "carbon_g")
# The columns shown ``E ± u``: the frame holds ``<column>_uncertainty`` for each.
BOUNDED = (*ENERGIES, *ENERGY_DERIVED)


def header(key: str) -> str:
    c = COLUMNS[key]
    return f"{c.label} ({c.unit})"
