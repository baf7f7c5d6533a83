"""A campaign's records as one Polars DataFrame for the report: the store's columns, plus what the
report needs from each record (configuration, energies net and gross, the second paper's resource
metrics, the meters' flags, identity, why each unmeasured figure is unmeasured).

Energies: one kind for every run of a report. Net of idle when every run that measured energy has
an idle-subtracted figure; otherwise gross for all, and the report says why (a mean of net and
gross figures means nothing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from controller.carbon import CarbonFactor
from controller.errors import UserError
from controller.report.columns import COLUMNS, ENERGIES
from controller.report.flags import run_flags
from controller.report.identity import extra_identity
from controller.report.records import read_folder
from controller.store import COLUMNS as STORE_COLUMNS
from controller.store import flatten

ENERGY_RECORD = {
    "gpu_energy": "gpu_energy_j",
    "cpu_energy": "cpu_energy_j",
    "dram_energy": "dram_energy_j",
    "total_energy": "total_energy_j",
}
DUPLICATE_POLICIES = ("refuse", "latest", "all")


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


def apply_usage_definition(rows: list[dict[str, Any]]) -> None:
    """One definition of the paper's CPU (RAM) usage per report: system-wide when every run that
    measured its own usage measured the host's too; else the run's process tree for all, said (a
    median of the two definitions means nothing)."""
    for col, (_, own, _, what, _) in SYSTEM_WIDE.items():
        lacking = [r for r in rows if r.get(own) is not None and r.get(f"{col}_system") is None]
        if not lacking:
            continue
        for r in rows:
            if r.get(f"{col}_system") is None or r.get(own) is None:
                continue
            r[col] = r[own]
            notes = json.loads(r["notes"])
            notes[col] = (
                f"{what} usage of the run's own process tree, like every run of this report ({len(lacking)} have no "
                "system-wide figure, written before joulebench measured it), so that no aggregate mixes the two "
                "definitions"
            )
            r["notes"] = json.dumps(notes)


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


EXTRA_SCHEMA: dict[str, Any] = {
    "cell_id": pl.Utf8,
    "repetition": pl.Int64,
    "framework": pl.Utf8,
    "converted": pl.Boolean,
    "configuration": pl.Utf8,
    "conversion": pl.Utf8,
    "options": pl.Utf8,
    "dataset": pl.Utf8,
    "accuracy": pl.Float64,
    "serving": pl.Boolean,
    "requests_ok": pl.Int64,
    "new_tokens": pl.Int64,
    "prompts": pl.Int64,
    "time_per_request_s": pl.Float64,
    "tokens_per_s": pl.Float64,
    "energy_per_request": pl.Float64,
    "energy_per_token": pl.Float64,
    "carbon_g": pl.Float64,
    "load_variable": pl.Utf8,
    "load_value": pl.Float64,
    "sweep_group": pl.Utf8,
    "sweep_points": pl.Int64,
    **{name: pl.Float64 for name in LOAD_FIGURES},
    "energy_per_token_steady": pl.Float64,
    "energy_per_token_steady_gross": pl.Float64,
    "energy_per_token_steady_net": pl.Float64,
    **{
        f"{col}_uncertainty{kind}": pl.Float64
        for col in ("energy_per_request", "energy_per_token", "energy_per_token_steady", "carbon_g")
        for kind in ("", "_gross", "_net")
        if not kind or col == "energy_per_token_steady"
    },
    "kv_cache": pl.Boolean,
    "parity": pl.Float64,
    "parity_gated": pl.Boolean,
    "parity_basis": pl.Utf8,
    "kv_cache_reason": pl.Utf8,
    "trace_path": pl.Utf8,
    "elapsed_s": pl.Float64,
    "gpu_mem_util_percent": pl.Float64,
    "gpu_mem_used_percent": pl.Float64,
    "gpu_mem_used_peak_percent": pl.Float64,
    "cpu_usage_percent": pl.Float64,
    "ram_usage_percent": pl.Float64,
    "cpu_usage_process_percent": pl.Float64,
    "ram_usage_process_percent": pl.Float64,
    "ram_peak_mib": pl.Float64,
    **{col: pl.Float64 for col in ENERGIES},
    **{f"{col}_{kind}": pl.Float64 for col in ENERGIES for kind in ("gross", "net")},
    **{f"{col}_uncertainty": pl.Float64 for col in ENERGIES},
    **{f"{col}_uncertainty_{kind}": pl.Float64 for col in ENERGIES for kind in ("gross", "net")},
    "duration_mode": pl.Boolean,
    "requested_duration_s": pl.Float64,
    "time_per_sample_s": pl.Float64,
    "time_per_sample_ms": pl.Float64,
    "time_per_batch_ms": pl.Float64,
    "energy_per_sample": pl.Float64,
    "energy_per_sample_uncertainty": pl.Float64,
    "gpu_idle_power_w": pl.Float64,
    "gpu_power_gross": pl.Float64,
    "net_reason": pl.Utf8,
    "notes": pl.Utf8,
    "flags": pl.Utf8,
    "model_identity": pl.Utf8,
    "fingerprint_id": pl.Utf8,
    "gpu_identity": pl.Utf8,
    "environment": pl.Utf8,
    "versions": pl.Utf8,
    "gpu_names": pl.Utf8,
    "driver": pl.Utf8,
    "lock_sha256": pl.Utf8,
    "base_digest": pl.Utf8,
    "cluster_host": pl.Utf8,
    "cluster_node": pl.Utf8,
    "cluster_block": pl.Utf8,
    "cluster_moved": pl.Utf8,
}
SCHEMA: dict[str, Any] = {**STORE_COLUMNS, **EXTRA_SCHEMA}


@dataclass
class EnergyKind:
    """Which energies every aggregate of a report (or of a comparison) uses, and why."""

    kind: str | None  # "net", "gross", or None when no run measured energy
    statement: str
    power_kind: str = "gross"
    carbon: CarbonFactor | None = None  # the estimate's factor, when asked for

    @property
    def label(self) -> str:
        return {"net": "net of idle", "gross": "gross (idle not subtracted)"}.get(self.kind or "", "not measured")


def decide_energy_kind(rows: list[dict[str, Any]]) -> EnergyKind:
    """Net for all when every run that measured energy has net figures, else gross for all."""
    measured = [r for r in rows if any(r[f"{c}_gross"] is not None for c in ENERGIES)]
    if not measured:
        return EnergyKind(None, "No run measured energy.")
    lacking = [r for r in measured if any(r[f"{c}_gross"] is not None and r[f"{c}_net"] is None for c in ENERGIES)]
    with_power = [r for r in measured if r["gpu_power_gross"] is not None]
    power = "net" if not lacking and all(r["gpu_idle_power_w"] is not None for r in with_power) else "gross"
    power_text = (
        " GPU power is net of the GPU's idle power too, as in the first paper."
        if power == "net"
        else " GPU power is the mean of the samples, gross (the first paper subtracted the idle power)."
    )
    if not lacking:
        return EnergyKind(
            "net",
            "Energies are net of idle: the stored idle baseline's power × the window is subtracted per domain "
            "(the first paper subtracts idle power too)." + power_text,
            power,
        )
    # The baseline's status says why in most cases; the record's own reason when the baseline was fine.
    reasons = sorted(
        {
            f"idle baseline {r['baseline_status']}"
            if r["baseline_status"] not in (None, "ok")
            else (r["net_reason"] or "no reason recorded")
            for r in lacking
        }
    )
    mixed = len(lacking) < len(measured)
    return EnergyKind(
        "gross",
        f"Energies are gross (idle not subtracted): {len(lacking)} of {len(measured)} runs have no idle-subtracted "
        f"figure ({'; '.join(reasons)[:300]})"
        + ("; the others are shown gross too, so that no aggregate mixes net and gross." if mixed else ".")
        + power_text,
        power,
    )


def apply_energy_kind(rows: list[dict[str, Any]], kind: EnergyKind) -> None:
    """Set the energy columns (and the per-request/per-token figures) to one kind, with notes."""
    n_lacking = sum(1 for r in rows if any(r[f"{c}_gross"] is not None and r[f"{c}_net"] is None for c in ENERGIES))
    for r in rows:
        notes = json.loads(r["notes"])
        which = "net" if kind.kind == "net" else "gross"
        for col in ENERGIES:
            gross, net = r[f"{col}_gross"], r[f"{col}_net"]
            r[col] = net if kind.kind == "net" else gross
            r[f"{col}_uncertainty"] = r[f"{col}_uncertainty_{which}"]
            if f"{col}_uncertainty_{which}" in notes:
                notes[f"{col}_uncertainty"] = notes[f"{col}_uncertainty_{which}"]
            if kind.kind == "gross" and gross is not None:
                if net is None:
                    notes[col] = (
                        f"gross energy: no idle baseline subtracted (baseline {r['baseline_status'] or 'missing'})"
                    )
                else:
                    notes[col] = (
                        f"gross energy: shown gross like every run of this report ({n_lacking} have no "
                        "idle-subtracted figure), so that no aggregate mixes net and gross"
                    )
        power, idle = r["gpu_power_gross"], r["gpu_idle_power_w"]
        r["gpu_power_w"] = (
            power - idle if kind.power_kind == "net" and power is not None and idle is not None else power
        )
        _steady_energy(r, kind, notes)
        total = r["total_energy"]
        samples = r["samples"] if not r["serving"] else None
        r["energy_per_sample"] = total / samples if total is not None and samples else None
        u = r["total_energy_uncertainty"]
        r["energy_per_sample_uncertainty"] = u / samples if u is not None and samples else None
        for col, count in (("energy_per_request", r["requests_ok"]), ("energy_per_token", r["new_tokens"])):
            r[col] = total / count if r["serving"] and total is not None and count else None
            r[f"{col}_uncertainty"] = u / count if r[col] is not None and u is not None else None
            if r["serving"] and "total_energy" in notes:
                notes[col] = notes["total_energy"]
        carbon = kind.carbon
        r["carbon_g"] = carbon.grams(total) if carbon is not None and total is not None else None
        # The grid factor's own uncertainty is not known: the bound is the energy's, converted.
        r["carbon_g_uncertainty"] = (
            carbon.grams(u) if carbon is not None and total is not None and u is not None else None
        )
        if "total_energy" in notes:
            notes["carbon_g"] = notes["total_energy"]
        for col in ("energy_per_request", "energy_per_token", "carbon_g"):
            if "total_energy_uncertainty" in notes:
                notes[f"{col}_uncertainty"] = notes["total_energy_uncertainty"]
        r["notes"] = json.dumps(notes)


def _steady_energy(r: dict[str, Any], kind: EnergyKind, notes: dict[str, str]) -> None:
    """The steady energy per output token of the report's kind: net for a net report, else gross."""
    gross, net = r.get("energy_per_token_steady_gross"), r.get("energy_per_token_steady_net")
    r["energy_per_token_steady"] = net if kind.kind == "net" else gross
    which = "net" if kind.kind == "net" else "gross"
    r["energy_per_token_steady_uncertainty"] = r.get(f"energy_per_token_steady_uncertainty_{which}")
    if f"energy_per_token_steady_uncertainty_{which}" in notes:
        notes["energy_per_token_steady_uncertainty"] = notes[f"energy_per_token_steady_uncertainty_{which}"]
    if kind.kind == "net" and gross is not None and net is None:
        notes["energy_per_token_steady"] = "measured gross only, and this report shows net energies"
    elif kind.kind == "gross" and gross is not None and "total_energy" in notes:
        notes["energy_per_token_steady"] = notes["total_energy"]


@dataclass
class Runs:
    """All records of a folder: ``ok`` (the runs the tables use), ``failed`` (with reasons),
    the files skipped as not run records, and what was said about duplicated cells."""

    folder: Path
    all: pl.DataFrame
    ok: pl.DataFrame
    failed: pl.DataFrame
    energy: EnergyKind
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    skipped_warning: str | None = None


def _duplicates(ok: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ok:
        if r["cell_id"] is not None:
            by.setdefault((r["campaign"], r["cell_id"], r["repetition"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["run_id"]) for k, v in by.items() if len(v) > 1}


def resolve_duplicates(folder: Path, ok: list[dict[str, Any]], policy: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Two ok records of one campaign cell (two campaign runs at once wrote both) are never merged
    silently: refused (default), or kept (``all``: both count) or the latest kept, and said."""
    dups = _duplicates(ok)
    if not dups:
        return ok, []
    shown = "; ".join(f"cell {k[1]}: runs {', '.join(r['run_id'] for r in v)}" for k, v in list(dups.items())[:3])
    more = f" and {len(dups) - 3} more cells" if len(dups) > 3 else ""
    if policy == "refuse":
        raise UserError(
            f"{folder}: {len(dups)} campaign cell(s) have more than one ok record ({shown}{more}), as when two "
            "`campaign run`s of one campaign ran at once; move the extra records out of the folder, or pass "
            "--duplicates all (keep every record as a repetition) or --duplicates latest (keep the latest of each "
            "cell)"
        )
    extra = {r["run_id"] for v in dups.values() for r in v[:-1]}
    said = f"{len(dups)} cell(s) have more than one ok record ({shown}{more}); "
    if policy == "latest":
        return [r for r in ok if r["run_id"] not in extra], [
            said + "only the latest of each is used (--duplicates latest)"
        ]
    return ok, [said + "every record counts as a repetition (--duplicates all)"]


def load_runs(folder: Path | str, duplicates: str = "refuse", carbon: CarbonFactor | None = None) -> Runs:
    if duplicates not in DUPLICATE_POLICIES:
        raise UserError(f"--duplicates {duplicates!r}: use one of {', '.join(DUPLICATE_POLICIES)}")
    found = read_folder(folder)
    rows = []
    for path, record in found.records:
        row = {**flatten(record, path), **extra_row(record)}
        row["cell_id"] = row["cell_id"] or row["run_id"]
        if row["serving"] and row["batch_size"] is None:
            row["batch_size"] = 1  # a serving run sends one prompt per request, as its metrics count it
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    ok, said = resolve_duplicates(found.path, ok, duplicates)
    kind = decide_energy_kind(ok)
    kind.carbon = carbon
    apply_energy_kind(rows, kind)
    apply_usage_definition(ok)

    def frame(part: list[dict[str, Any]]) -> pl.DataFrame:
        return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in part], schema=SCHEMA)

    ok_ids = {r["run_id"] for r in ok}
    return Runs(
        folder=found.path,
        all=frame(rows),
        ok=frame([r for r in rows if r["run_id"] in ok_ids]),
        failed=frame([r for r in rows if r["status"] != "ok"]),
        energy=kind,
        skipped=found.skipped,
        duplicates=said,
        skipped_warning=found.skipped_warning(),
    )


def notes_of(frame: pl.DataFrame, column: str) -> list[str]:
    """The distinct reasons (or gross-energy notes) recorded for ``column`` in these runs."""
    out: list[str] = []
    for text in frame["notes"].to_list():
        note = json.loads(text or "{}").get(column)
        if note and note not in out:
            out.append(note)
    return out


def flags_of(frame: pl.DataFrame, column: str) -> list[tuple[str, str, str]]:
    """(run id, code, message) of every meter flag that puts ``column`` in doubt in these runs."""
    out = []
    for run_id, text in frame.select("run_id", "flags").iter_rows():
        for f in json.loads(text or "[]"):
            if column in f["columns"]:
                out.append((run_id, f["code"], f["message"]))
    return out
