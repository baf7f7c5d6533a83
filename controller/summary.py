"""The one-screen summaries printed after a run: batch or serving, energy lines shared."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from controller.accuracy import describe as describe_accuracy
from controller.serving.metrics import metric_lines


def summary(record: dict[str, Any], path: Path) -> str:
    """The summary of any record."""
    if record.get("mode") == "serving":
        return serving_summary(record, path)
    return batch_summary(record, path)


def batch_summary(record: dict[str, Any], path: Path) -> str:
    """The one-screen summary printed after a batch run."""
    runner = record.get("runner", {})
    where = runner.get("kind", "?")
    if where == "docker":
        where += f" ({runner.get('image_id', '')[:19]})"
    spec = record.get("spec", {})
    own = record.get("model_source")
    model = (
        f"model      {record['model']} ({own['kind']} {own['location']}, sha256 {str(own['sha256'])[:12]})"
        if own
        else f"model      {record['model']} ({record['model_size']})   "
        f"weights {record['weights_label'] or record['weights']}"
    )
    lines = [
        f"run        {record['run_id']}  [{record.get('status', '?').upper()}]",
        f"image      {record['image']}   engine {record['engine']}   provider {record['provider']}",
        model,
        f"batch      {spec.get('batch_size', '?')}   runner {where}",
    ]
    art = record.get("artifact")
    if art:
        from controller.artifacts import describe_parity

        lines.append(
            f"artifact   {art['conversion']} {'(cached)' if art['reused'] else '(new)'}  "
            f"{describe_parity(art.get('parity', {}))}"
        )
    if record.get("status") == "ok":
        m = record["metrics"]
        lines += [
            f"samples    {m['samples']} in {m['batches']} batches over {m['window_s']:.3f} s",
            f"throughput {m['throughput_sps']:.2f} samples/s",
            f"latency    p50 {m['latency_ms_p50']:.2f} ms   p90 {m['latency_ms_p90']:.2f} ms   "
            f"p99 {m['latency_ms_p99']:.2f} ms   (per batch)",
        ]
        result = record.get("result", {})
        if result.get("load_s") is not None:
            setup = f"setup      load {result['load_s']:.2f} s"
            if result.get("compile_s") is not None:
                setup += f", compile {result['compile_s']:.2f} s ({result.get('compile_step')})"
            lines.append(setup + "   (outside the window)")
        shown = describe_accuracy(m.get("accuracy"))
        if shown:
            lines.append(shown)
        lines += energy_lines(record.get("measurements"))
    else:
        failure = record.get("failure", {})
        lines.append(f"failed     {failure.get('reason')}")
        for line in failure.get("log_tail", [])[-8:]:
            lines.append(f"  | {line}")
    lines.append(f"record     {path}")
    return "\n".join(lines)


ENERGY_SHOWN = ("total_energy_j", "cpu_energy_j", "dram_energy_j", "gpu_energy_j", "wall_energy_j")


def energy_lines(measurements: dict[str, Any] | None) -> list[str]:
    """Energy and resource figures for the summary; unavailable ones say why, never 0. Each
    energy is ``E ± u`` with its bound (records older than the bounds show ``E`` alone)."""
    if not measurements:
        return ["energy     not measured (no measure window)"]
    metrics = measurements["metrics"]
    flags = measurements.get("flags", [])
    over = {f.get("metric"): f for f in flags if f.get("code") == "energy_uncertainty_high"}
    lines = []
    for name in ENERGY_SHOWN:
        m = metrics.get(name)
        if m is None:
            continue
        label = name.removesuffix("_energy_j")
        if m["available"]:
            net = m.get("net_j")
            extra = (
                f", net of idle {net:.3f}{_pm(m.get('net_uncertainty_j'))} J"
                if net is not None
                else ", gross (no idle subtracted)"
            )
            covers = f" covers {'+'.join(m['covers'])}" if m.get("covers") else ""
            limit = f"   bound over the {over[name]['limit']:.1%} limit" if name in over else ""
            lines.append(f"energy     {label:<6} {m['value']:.3f}{_pm(m.get('uncertainty_j'))} J{extra}{covers}{limit}")
        elif name == "total_energy_j":
            lines.append(f"energy     {label:<6} unavailable: {m['reason'].split(':')[0]}")
        elif name in ("cpu_energy_j", "gpu_energy_j"):
            lines.append(f"energy     {label:<6} unavailable: {m['reason']}")
    cpu, ram = metrics.get("cpu_percent"), metrics.get("ram_peak_bytes")
    if cpu and cpu["available"] and ram and ram["available"]:
        lines.append(f"resources  CPU {cpu['value']:.0f} % of a core, RAM peak {ram['value'] / 2**20:.0f} MiB")
    host_cpu, host_ram = metrics.get("system_cpu_percent"), metrics.get("system_ram_used_percent")
    if host_cpu and host_cpu["available"] and host_ram and host_ram["available"]:
        lines.append(
            f"host       CPU {host_cpu['value']:.0f} % of all cores, RAM {host_ram['value']:.0f} % used (system-wide)"
        )
    for flag in flags:
        if flag.get("code") == "idle_baseline_not_used":
            continue  # said once when the run started
        lines.append(f"warning    {flag['message']}")
    return lines


def _pm(bound: float | None) -> str:
    """`` ± u`` for a figure with a bound; nothing for one without (an older record)."""
    return f" ± {bound:.3g}" if bound is not None else ""


def _load_text(s: dict[str, Any]) -> str:
    load = s.get("load") or {"kind": "closed-loop", "concurrency": s.get("concurrency")}
    sweep = s.get("sweep") or {}
    shown = ", ".join(f"{k} {v}" for k, v in load.items() if v is not None)
    if len(sweep.get("values") or []) > 1:
        shown += f"   (point {sweep['index'] + 1} of {len(sweep['values'])} of a {sweep['variable']} sweep)"
    return shown


def _max_tokens_text(s: dict[str, Any]) -> str:
    """The max_tokens the requests asked for (a synthetic prompt asks its own output length)."""
    asked = s.get("max_tokens_asked") or {}
    low, high = asked.get("min"), asked.get("max")
    if low is None:
        return str(s.get("max_new_tokens"))  # a record from before max_tokens_asked
    shown = str(low) if low == high else f"{low}-{high}"
    return shown + (" (ignore_eos)" if s.get("ignore_eos") else "")


def _in_flight(s: dict[str, Any]) -> float | None:
    """Requests the load point keeps in flight: its concurrency, or inf for arrivals at a rate."""
    load = s.get("load") or {}
    if load.get("concurrency") is not None:
        return float(load["concurrency"])
    return math.inf if load.get("request_rate") is not None else None


def serving_summary(record: dict[str, Any], path: Path) -> str:
    """The one-screen summary printed after a serving run."""
    s = record.get("serving", {})
    lines = [
        f"run        {record['run_id']}  [{record.get('status', '?').upper()}]  serving",
        f"image      {record['image']}   engine {record['engine']}   provider {record['provider']}",
        f"model      {record['model']}   runner {record.get('runner', {}).get('kind', '?')}",
        f"prompts    {s.get('prompts', {}).get('count')} ({s.get('prompts', {}).get('source')})   "
        f"max new tokens {_max_tokens_text(s)}   load {_load_text(s)}",
    ]
    if s.get("extra_inputs"):
        lines.append(f"request    extra fields {json.dumps(s['extra_inputs'], sort_keys=True)}")
    art = record.get("artifact")
    if art:
        parity = art.get("parity", {})
        agreement = parity.get("greedy_token_agreement")
        checked = (
            f"greedy-token parity {agreement:.0%} of {parity.get('prompts_checked')} prompts"
            if isinstance(agreement, (int, float))
            else "greedy-token parity checked when the engine loads"
        )
        lines.append(f"artifact   {record['conversion']} {'(cached)' if art.get('reused') else '(new)'}  {checked}")
    if record.get("status") == "ok":
        if "load_s" in (record.get("result") or {}):
            gen = record["result"].get("generation") or {}
            cache = "on" if gen.get("kv_cache") else f"off ({gen.get('kv_cache_reason')})"
            at_load = gen.get("load_parity") or {}
            share, what = at_load.get("token_agreement"), "tokens"
            if share is None:  # a runtime's own server: its text, per prompt
                share, what = at_load.get("greedy_text_agreement"), "text"
            parity_text = (
                f"   greedy {what} as transformers': {share:.0%}"
                + ("" if at_load.get("gated", True) else " (recorded, not a gate)")
                if isinstance(share, (int, float))
                else ""
            )
            lines.append(
                f"load       {record['result']['load_s']:.2f} s (outside the window)   KV cache {cache}{parity_text}"
            )
        lines += metric_lines(record["metrics"], _in_flight(s))
        lines += energy_lines(record.get("measurements"))
    else:
        failure = record.get("failure", {})
        lines.append(f"failed     [{failure.get('phase')}] {failure.get('reason')}")
        for line in failure.get("log_tail", [])[-8:]:
            lines.append(f"  | {line}")
    lines.append(f"record     {path}")
    return "\n".join(lines)
