"""One record as one row of the report's frame: configuration, energies net and gross with their
bounds, the second paper's resource metrics, a serving load point's figures, the meters' flags,
identity, and why each unmeasured figure is unmeasured (``notes``). What one report decides for all
its rows (net or gross, which usage definition) is in ``controller/report/kinds.py``."""

from __future__ import annotations

import json
import math
from typing import Any

from controller.report.columns import COLUMNS
from controller.report.flags import run_flags
from controller.report.identity import extra_identity

ENERGY_RECORD = {
    "gpu_energy": "gpu_energy_j",
    "cpu_energy": "cpu_energy_j",
    "dram_energy": "dram_energy_j",
    "total_energy": "total_energy_j",
}


def _short_reason(name: str, reason: str | None) -> str:
    reason = reason or "not measured (no reason recorded)"
    if name == "total_energy_j" and reason.startswith("no energy domain could be measured"):
        return "no energy domain could be measured (see the CPU and GPU energy notes)"
    return reason


def framework_of(record: dict[str, Any]) -> str:
    """torch, tensorflow, ... for native runs; the conversion (torch2onnx, ...) for converted ones;
    a converted model on another runtime than ONNX Runtime names it (torch2onnx→openvino)."""
    conversion = record.get("conversion")
    engine = record.get("engine") or "?"
    if not conversion:
        return engine
    target = conversion.split("2", 1)[1]
    runtime = {"onnx": "onnxruntime"}.get(target, target)
    return conversion if engine == runtime else f"{conversion}→{engine}"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    m = metrics.get(name) or {}
    v = m.get("value") if m.get("available", True) else None
    return float(v) if isinstance(v, (int, float)) else None


def _process_shares(record: dict[str, Any], metrics: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """The run's own process tree as a share of the host: CPU time over all logical cores, and its
    mean resident memory over the host's RAM."""
    host = record.get("host") or {}
    cores, cpu = host.get("logical_cores"), _value(metrics, "cpu_percent")
    out: dict[str, Any] = {"cpu_usage_process_percent": cpu / cores if cpu is not None and cores else None}
    if cpu is not None and not cores:
        notes["cpu_usage_process_percent"] = "the record does not give the host's logical cores"
    ram_total, ram_mean = host.get("ram_bytes"), _value(metrics, "ram_mean_bytes")
    out["ram_usage_process_percent"] = 100.0 * ram_mean / ram_total if ram_mean is not None and ram_total else None
    if ram_mean is not None and not ram_total:
        notes["ram_usage_process_percent"] = "the record does not give the host's RAM"
    elif "ram_mean_bytes" not in metrics and (record.get("measurements") or {}):
        notes["ram_usage_process_percent"] = "the record has no mean RAM figure (written before joulebench measured it)"
    return out


# paper column: (system-wide record metric, the run's own column, its record metric, what, how)
SYSTEM_WIDE = {
    "cpu_usage_percent": (
        "system_cpu_percent",
        "cpu_usage_process_percent",
        "cpu_percent",
        "CPU",
        "CPU time over the host's logical cores",
    ),
    "ram_usage_percent": (
        "system_ram_used_percent",
        "ram_usage_process_percent",
        "ram_mean_bytes",
        "RAM",
        "mean resident memory over the host's RAM",
    ),
}


def _paper_usage(metrics: dict[str, Any], shares: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """The second paper's CPU and RAM usage: the host's, system-wide (as EnergiBridge measures it);
    a record without the system-wide figure falls back on the run's process tree, and says so."""
    out: dict[str, Any] = {}
    for col, (name, own, own_metric, what, how) in SYSTEM_WIDE.items():
        system = _value(metrics, name)
        out[col] = out[f"{col}_system"] = system
        if system is not None:
            continue
        m = metrics.get(name)
        why = (
            "the record has no system-wide figure (written before joulebench measured it)"
            if m is None
            else f"the system-wide figure is unavailable ({(m or {}).get('reason') or 'no reason recorded'})"
        )
        out[col] = shares[own]
        if shares[own] is not None:
            notes[col] = f"{what} usage of the run's own process tree ({how}), not system-wide: {why}"
        else:
            own_why = notes.get(own) or _short_reason(own_metric, (metrics.get(own_metric) or {}).get("reason"))
            notes[col] = f"{why}; the run's own figure is unavailable too ({own_why})"
    return out


def _resources(record: dict[str, Any], metrics: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """The second paper's resource metrics as it defines them, from what the record holds, and the
    run's own process-tree shares beside them."""
    out = _process_shares(record, metrics, notes)
    out.update(_paper_usage(metrics, out, notes))
    out["gpu_mem_used_peak_percent"] = _value(metrics, "gpu_mem_used_percent")
    out["gpu_mem_used_percent"] = None
    used = metrics.get("gpu_mem_used_bytes") or {}
    gpus = (((record.get("measurements") or {}).get("meters") or {}).get("nvml") or {}).get("gpus") or []
    means = [d.get("mean") for d in used.get("per_device") or []]
    totals = [g.get("mem_total_bytes") for g in gpus]
    if used.get("available") and means and all(isinstance(m, (int, float)) for m in means):
        if totals and all(isinstance(t, (int, float)) and t > 0 for t in totals):
            out["gpu_mem_used_percent"] = 100.0 * sum(means) / sum(totals)
        else:
            notes["gpu_mem_used_percent"] = "NVML did not report the GPUs' total memory"
    return out


LOAD_FIGURES = (
    "ttft_ms_median",
    "ttft_ms_p99",
    "tpot_ms_median",
    "itl_ms_median",
    "e2el_ms_median",
    "e2el_ms_p99",
    "request_throughput_rps",
    "output_token_throughput_tps",
    "steady_output_token_throughput_tps",
    "goodput_rps",
)
LOAD_COLUMNS = ("load_variable", "load_value", "sweep_group", "sweep_points", *LOAD_FIGURES)
STEADY = "energy_per_output_token_steady_j"


def _number(v: Any) -> float | None:
    """A record's number; the load value "inf" (all requests at once) as infinity."""
    if v == "inf":
        return math.inf
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _load_reason(name: str, metrics: dict[str, Any]) -> str:
    if name not in metrics:
        return f"the record has no {name} (written before joulebench measured serving load points)"
    if name == "goodput_rps" and not metrics.get("slo_ms"):
        return "goodput needs an SLO: none was given (serve --slo ttft=500ms,tpot=50ms)"
    if name.startswith("steady_"):
        return f"no steady window: {(metrics.get('steady_window') or {}).get('reason') or 'not computed'}"
    if "_ms_" not in name:
        return "the measure window is empty"
    what = name.split("_")[0].upper()
    needs = " (it needs two tokens or more)" if what in ("TPOT", "ITL") else ""
    return f"no successful request gave a {what}{needs}"


def kv_cache_of(record: dict[str, Any]) -> tuple[bool | None, str | None]:
    """Whether the serving engine kept a KV cache (result.generation.kv_cache), and why not / why unknown."""
    result = record.get("result") or {}
    generation = result.get("generation") or {}
    if isinstance(generation.get("kv_cache"), bool):
        on = generation["kv_cache"]
        return on, None if on else (generation.get("kv_cache_reason") or "off (no reason recorded)")
    if result.get("external") or record.get("engine") == "external":
        return None, "not reported: an external server (serve --endpoint) does not say whether it keeps a KV cache"
    return None, "the record does not say (written before joulebench recorded the KV cache)"


def parity_of(record: dict[str, Any]) -> tuple[float | None, bool | None, str | None, str | None]:
    """Share of transformers' greedy tokens the engine gave on the reference prompts at load
    (result.generation.load_parity), whether that was a gate, why it is unknown, and what was
    compared: "tokens", or "text" (a runtime's own server: the share of prompts whose text matched)."""
    generation = (record.get("result") or {}).get("generation") or {}
    parity = generation.get("load_parity")
    if isinstance(parity, dict) and isinstance(parity.get("token_agreement"), (int, float)):
        return float(parity["token_agreement"]), parity.get("gated", True) is not False, None, "tokens"
    if isinstance(parity, dict) and isinstance(parity.get("greedy_text_agreement"), (int, float)):
        return float(parity["greedy_text_agreement"]), False, None, "text"
    if isinstance(parity, dict) and isinstance(parity.get("greedy_token_agreement"), (int, float)):
        return float(parity["greedy_token_agreement"]), True, None, "tokens"  # gated: agreed on every prompt
    if record.get("engine") == "torch":
        why = "the reference itself: transformers generates the tokens the others are checked against"
    elif record.get("engine") == "external":
        why = "not checked: an external server (serve --endpoint)"
    else:
        why = "the record does not say (written before joulebench recorded load parity)"
    return None, None, why, None


def serving_load_row(record: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """A serving load point's fields: the swept variable and value, the sweep, latencies,
    throughputs, goodput, steady energy per output token (gross and net), the KV cache. What
    the record lacks is null with its reason in ``notes``, never 0."""
    serving = record.get("serving") or {}
    metrics = record.get("metrics") or {}
    sweep = serving.get("sweep") or {}
    row: dict[str, Any] = {
        "load_variable": metrics.get("load_variable") or sweep.get("variable"),
        "load_value": _number(metrics.get("load_value", sweep.get("value"))),
        "sweep_group": sweep.get("group"),
        "sweep_points": len(sweep.get("values") or []) or None,
    }
    for name in LOAD_FIGURES:
        row[name] = _number(metrics.get(name))
        if row[name] is None:
            notes[name] = _load_reason(name, metrics)
    steady = metrics.get(STEADY) or {}
    ok = bool(steady.get("available")) and isinstance(steady.get("value"), (int, float))
    row["energy_per_token_steady_gross"] = float(steady["value"]) if ok else None
    row["energy_per_token_steady_net"] = _number(steady.get("net_j")) if ok else None
    row["energy_per_token_steady_uncertainty_gross"] = _number(steady.get("uncertainty_j")) if ok else None
    row["energy_per_token_steady_uncertainty_net"] = _number(steady.get("net_uncertainty_j")) if ok else None
    if ok:
        why_gross, why_net = bound_reasons(steady)
        if "uncertainty_j" not in steady:
            # Not among the figures the meters bound (they bound the window's energies): say only what is known.
            why_gross = why_net = "the record states no bound for the steady window's energy per token: shown without ±"
        if why_gross:
            notes["energy_per_token_steady_uncertainty_gross"] = why_gross
        if why_net:
            notes["energy_per_token_steady_uncertainty_net"] = why_net
    if not ok:
        notes["energy_per_token_steady"] = (
            f"the record has no {STEADY} (written before joulebench measured the steady window)"
            if not steady
            else _short_reason("total_energy_j", steady.get("reason"))
        )
    row["kv_cache"], row["kv_cache_reason"] = kv_cache_of(record)
    if row["kv_cache_reason"]:
        notes["kv_cache"] = row["kv_cache_reason"]
    row["parity"], row["parity_gated"], why, row["parity_basis"] = parity_of(record)
    if why:
        notes["parity"] = why
    return row


def work_row(record: dict[str, Any]) -> dict[str, Any]:
    """How much work a batch run's window held: ``duration_mode`` (the window was a requested
    duration, so its length is no result) and the time per sample and per batch measured over it."""
    spec = record.get("spec") or {}
    metrics = record.get("metrics") or {}
    samples, window = _number(metrics.get("samples")), _number(metrics.get("window_s"))
    batches = _number(metrics.get("batches"))
    per_sample = window / samples if window is not None and samples else None
    per_batch = window / batches if window is not None and batches else None
    return {
        "duration_mode": record.get("mode") != "serving" and spec.get("duration_s") is not None,
        "requested_duration_s": _number(spec.get("duration_s")),
        "time_per_sample_s": per_sample,
        "time_per_sample_ms": None if per_sample is None else 1000.0 * per_sample,
        "time_per_batch_ms": None if per_batch is None else 1000.0 * per_batch,
    }


OLD_BOUND = "written before joulebench stated bounds on its energy figures: shown without ±"


def bound_reasons(m: dict[str, Any]) -> tuple[str | None, str | None]:
    """Why an available energy figure has no bound: (gross, net); None where it has one."""
    if "uncertainty_j" not in m:
        return OLD_BOUND, OLD_BOUND
    gross = (
        None
        if isinstance(m.get("uncertainty_j"), (int, float))
        else (m.get("uncertainty_reason") or "the meter stated no bound for this figure")
    )
    net = None
    if not isinstance(m.get("net_uncertainty_j"), (int, float)):
        net = m.get("net_uncertainty_reason") or (
            "no bound on the net figure: the idle baseline records no spread to bound what it subtracts"
        )
    return gross, net


def extra_row(record: dict[str, Any]) -> dict[str, Any]:
    cell = record.get("cell") or {}
    measurements = record.get("measurements") or {}
    metrics = measurements.get("metrics") or {}
    row: dict[str, Any] = {"run_id": record["run_id"]}
    row["cell_id"] = cell.get("id")
    row["repetition"] = cell.get("repetition")
    framework = framework_of(record)
    row["framework"] = framework
    row["converted"] = bool(record.get("conversion"))
    row["configuration"] = cell.get("configuration") or f"{record.get('image')}:{framework}"
    row["conversion"] = record.get("conversion")
    row["options"] = json.dumps(cell.get("options") or (record.get("spec") or {}).get("options") or {}, sort_keys=True)
    row["dataset"] = (record.get("spec") or {}).get("dataset")
    # Accuracy is computed by the controller (controller/accuracy.py); with random weights it is
    # recorded but meaningless, so the tables leave it out.
    accuracy = (record.get("metrics") or {}).get("accuracy") or {}
    acc = accuracy.get("value") if accuracy.get("meaningful") else None
    row["accuracy"] = float(acc) if isinstance(acc, (int, float)) else None
    serving = record.get("mode") == "serving"
    row["serving"] = serving
    run_metrics = record.get("metrics") or {}
    row["requests_ok"] = run_metrics.get("requests_ok") if serving else None
    row["new_tokens"] = run_metrics.get("new_tokens_total") if serving else None
    row["prompts"] = ((record.get("serving") or {}).get("prompts") or {}).get("count") if serving else None
    row["time_per_request_s"] = run_metrics.get("time_per_request_s") if serving else None
    row["tokens_per_s"] = run_metrics.get("output_token_throughput_tps") if serving else None
    row["trace_path"] = record.get("trace_path")
    row["elapsed_s"] = record.get("elapsed_s")
    row["gpu_mem_util_percent"] = _value(metrics, "gpu_mem_util_percent")
    ram = _value(metrics, "ram_peak_bytes")
    row["ram_peak_mib"] = None if ram is None else ram / 2**20
    notes: dict[str, str] = {}
    row.update(_resources(record, metrics, notes))
    if serving:
        row.update(serving_load_row(record, notes))
    for col, name in ENERGY_RECORD.items():
        m = metrics.get(name) or {}
        ok = bool(m.get("available")) and isinstance(m.get("value"), (int, float))
        gross = m.get("gross_j") if isinstance(m.get("gross_j"), (int, float)) else m.get("value")
        row[f"{col}_gross"] = float(gross) if ok and isinstance(gross, (int, float)) else None
        row[f"{col}_net"] = float(m["net_j"]) if ok and isinstance(m.get("net_j"), (int, float)) else None
        # The figure's own bound (None in records written before joulebench stated one).
        row[f"{col}_uncertainty_gross"] = _number(m.get("uncertainty_j")) if ok else None
        row[f"{col}_uncertainty_net"] = _number(m.get("net_uncertainty_j")) if ok else None
        if ok:
            why_gross, why_net = bound_reasons(m)
            if why_gross:
                notes[f"{col}_uncertainty_gross"] = why_gross
            if why_net:
                notes[f"{col}_uncertainty_net"] = why_net
    row.update(work_row(record))
    row["gpu_idle_power_w"] = (metrics.get("gpu_energy_j") or {}).get("idle_power_w")
    row["gpu_power_gross"] = _value(metrics, "gpu_power_w")
    row["net_reason"] = "; ".join(
        f"{col.split('_')[0].upper()}: {(metrics.get(name) or {}).get('net_reason')}"
        for col, name in ENERGY_RECORD.items()
        if row[f"{col}_gross"] is not None and row[f"{col}_net"] is None and col != "total_energy"
    )
    for col, c in COLUMNS.items():
        if c.record_name is None:
            continue
        m = metrics.get(c.record_name)
        if not measurements:
            notes.setdefault(col, "the record has no measurements (the run measured no window)")
        elif not m or not m.get("available"):
            notes.setdefault(col, _short_reason(c.record_name, (m or {}).get("reason")))
    row["notes"] = json.dumps(notes)
    row["flags"] = json.dumps(run_flags(record))
    row.update(extra_identity(record))
    return row
