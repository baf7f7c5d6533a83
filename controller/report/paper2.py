"""The second paper's tables from serving runs (medians, as the paper).

Tables 4 (CPU execution provider) and 5 (CUDA): per model-size category × serving configuration,
the median over every run of the category's models; then, per configuration, the mean of the
category medians (the paper's "1,2,3" section). A per-model table adds the paper's resource
metrics (its Figures 4-5) and ours beside them.
"""

from __future__ import annotations

import statistics

import polars as pl

from controller.report.cells import (
    bounded_columns,
    energy_remarks,
    groups,
    mark_best,
    measured_columns,
    median_value,
    with_carbon,
)
from controller.report.columns import BOUNDED, header
from controller.report.data import notes_of
from controller.report.kinds import EnergyKind
from controller.report.loads import (
    kv_cache_remark,
    kv_cache_value,
    load_key,
    load_text,
    one_load_point,
    parity_value,
)
from controller.report.paper1 import GPU_PROVIDERS
from controller.report.table import Table, Value, bounded_value, num_value, text_value

# The second paper's names of the serving configurations: <runtime engine, execution provider>.
ENGINE_SHORT = {
    "torch": "TORCH",
    "onnxruntime": "ONNX",
    "openvino": "OV",
    "torchscript": "JIT",
    "llamacpp": "LLAMA.CPP",
    "ortgenai": "ORT-GENAI",
    "openvino-genai": "OV-GENAI",
    "llamacpp-server": "LLAMA.CPP SERVER",
    "vllm": "VLLM",
}
# The paper ran <JIT, *> and left it out of its results (error-prone outputs): shown, never bold.
NOT_IN_PAPER_RESULTS = ("torchscript",)
TABLE4_METRICS = ("total_energy", "window_s")
TABLE5_METRICS = ("cpu_energy", "gpu_energy", "dram_energy", "total_energy", "window_s")
SERVING_TABLE_METRICS = (
    "total_energy",
    "energy_per_request",
    "energy_per_token",
    "window_s",
    "time_per_request_s",
    "tokens_per_s",
    "cpu_usage_percent",
    "ram_usage_percent",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
    "cpu_usage_process_percent",
    "ram_usage_process_percent",
    "cpu_percent",
    "ram_peak_mib",
    "gpu_mem_used_peak_percent",
)
# A serving load point's own figures, in the per-model table when the records have load points.
LOAD_TABLE_METRICS = (
    "ttft_ms_median",
    "ttft_ms_p99",
    "tpot_ms_median",
    "itl_ms_median",
    "e2el_ms_median",
    "e2el_ms_p99",
    "request_throughput_rps",
    "output_token_throughput_tps",
    "goodput_rps",
    "energy_per_token_steady",
)
SERVING_HEADERS = {"total_energy": "Global energy (J)", "window_s": "Execution time (s)"}
PAPER_TOTAL = "CPU + GPU energy (Global energy)"


def serving_label(engine: str | None, provider: str | None) -> str:
    """<ONNX, CPU>, as the paper names a serving configuration."""
    return f"<{ENGINE_SHORT.get(engine or '?', (engine or '?').upper())}, {(provider or '?').upper()}>"


def category_of(model_size: str | None) -> str:
    """'1', '2', '3' for the paper's size categories; 'uncategorised' for other models."""
    size = model_size or ""
    return size.removeprefix("category-") if size.startswith("category-") else "uncategorised"


def category_order(category: str) -> tuple[int, str]:
    return (0, category) if category.isdigit() else (1, category)


def mean_of_category_medians(medians: list[float]) -> float:
    """The paper's "1,2,3" row: the plain mean of the category medians (not a median of all runs)."""
    return statistics.fmean(medians)


def configuration_labels(frame: pl.DataFrame) -> dict[str, str]:
    """configuration -> <ENGINE, PROVIDER>, with the configuration's name where two share a label."""
    pairs = {
        conf: serving_label(engine, provider)
        for conf, engine, provider in frame.select("configuration", "engine", "provider").unique().iter_rows()
    }
    labels = list(pairs.values())
    return {c: (lab if labels.count(lab) == 1 else f"{lab} {c}") for c, lab in pairs.items()}


def _bold_rows(rows: list[int], eligible: list[bool]) -> list[int]:
    return [r for r, ok in zip(rows, eligible, strict=True) if ok]


def _mean_cell(
    t: Table, runs: pl.DataFrame, column: str, medians: list[tuple[float, float | None]], categories: int
) -> Value:
    """A cell of the "1,2,3" section: the mean of the category medians (an energy with the mean of
    their bounds), or n/a with the reasons."""
    if not medians:
        return median_value(t, runs, column)
    mean = mean_of_category_medians([m for m, _ in medians])
    bounds = [u for _, u in medians if u is not None]
    v = num_value(mean)
    if column in BOUNDED:
        v = bounded_value(mean, statistics.fmean(bounds) if len(bounds) == len(medians) else None)
        if v.uncertainty is None:
            v.notes += [t.note(n) for n in notes_of(runs, f"{column}_uncertainty")]
    if len(medians) < categories:
        v.notes.append(t.note(f"mean of the {len(medians)} of {categories} categories that measured it"))
    v.notes += [t.note(n) for n in notes_of(runs, column) if t.note(n) not in v.notes]
    return v


def _serving_table(key: str, title: str, part: pl.DataFrame, wanted: tuple[str, ...], kind: EnergyKind) -> Table:
    metrics = measured_columns(part, with_carbon(wanted, kind))
    headers = [SERVING_HEADERS.get(c, header(c)) for c in metrics]
    t = Table(key, title, ["Model size category", "Serving configuration", "Models", "Runs", *headers])
    first = 4
    t.bounded = bounded_columns(first, metrics)
    labels = configuration_labels(part)
    by_conf: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    categories = sorted({category_of(s) for s in part["model_size"].to_list()}, key=category_order)
    jit_note = (
        "beyond the paper's results (it left TorchScript out for error-prone outputs): shown, not eligible for bold"
    )

    def label_cell(conf: str, engine: str) -> Value:
        v = text_value(labels[conf])
        if engine in NOT_IN_PAPER_RESULTS:
            v.notes.append(t.note(jit_note))  # numbered where a cell points to it, else not listed
        return v

    def by_label(kgs: list[tuple[tuple, pl.DataFrame]]) -> list[tuple[tuple, pl.DataFrame]]:
        return sorted(kgs, key=lambda kg: labels[kg[0][0]])

    for category in categories:
        group = part.filter(pl.col("model_size").map_elements(category_of, return_dtype=pl.Utf8) == category)
        start, eligible = len(t.rows), []
        t.group_starts.add(start)
        for (conf,), runs in by_label(groups(group, ["configuration"])):
            engine = runs["engine"][0]
            models = sorted(set(runs["model"].to_list()))
            row = [text_value(category), label_cell(conf, engine), Value(str(len(models)), len(models))]
            row.append(Value(str(runs.height), runs.height))
            for c in metrics:
                v = median_value(t, runs, c)
                row.append(v)
                if isinstance(v.raw, (int, float)):
                    by_conf.setdefault(conf, {}).setdefault(c, []).append((float(v.raw), v.uncertainty))
            t.rows.append(row)
            eligible.append(engine not in NOT_IN_PAPER_RESULTS)
        rows = _bold_rows(list(range(start, len(t.rows))), eligible)
        mark_best(t, rows, [(first + i, c) for i, c in enumerate(metrics)])
    if len(categories) > 1:
        start, eligible = len(t.rows), []
        t.group_starts.add(start)
        for (conf,), runs in by_label(groups(part, ["configuration"])):
            engine = runs["engine"][0]
            cats = sorted({category_of(s) for s in runs["model_size"].to_list()}, key=category_order)
            row = [text_value(",".join(cats)), label_cell(conf, engine)]
            row += [Value(str(len(set(runs["model"].to_list()))), None), Value(str(runs.height), runs.height)]
            row += [_mean_cell(t, runs, c, by_conf.get(conf, {}).get(c, []), len(cats)) for c in metrics]
            t.rows.append(row)
            eligible.append(engine not in NOT_IN_PAPER_RESULTS)
        rows = _bold_rows(list(range(start, len(t.rows))), eligible)
        mark_best(t, rows, [(first + i, c) for i, c in enumerate(metrics)])
    prompts = sorted({p for p in part["prompts"].to_list() if p is not None})
    t.remarks.append(
        "Medians over every run (every repetition of every model) of the size category, per serving "
        "configuration — the paper's aggregated median; the last section is the mean of the category medians "
        "per configuration, as in the paper. Best (lowest) values are bold within each section."
    )
    t.remarks.append(
        "Execution time: the measured window of a run, the client replaying all of its prompts "
        f"({', '.join(map(str, prompts)) or '?'} per run here; the paper: 164). Global energy: the energy "
        "measured in that window (the paper: CPU + GPU)."
    )
    t.remarks += energy_remarks(part, kind, PAPER_TOTAL)
    return t


def tables45(ok: pl.DataFrame, kind: EnergyKind) -> list[Table] | str:
    """The second paper's Tables 4 (CPU execution provider) and 5 (CUDA), by model-size category;
    or why there are none."""
    serving = ok.filter(pl.col("serving"))
    if serving.height == 0:
        return (
            "Tables 4-5 (second paper: energy and time per serving configuration and model-size category) "
            "need serving runs; these records have none (run suite/campaigns/code-slm-serving.toml, or its "
            "CPU variant code-slm-serving-cpu.toml)."
        )
    serving, load_note = one_load_point(serving)
    cpu = serving.filter(~pl.col("provider").is_in(GPU_PROVIDERS))
    gpu = serving.filter(pl.col("provider").is_in(GPU_PROVIDERS))
    out: list[Table] = []
    if cpu.height:
        title = "Table 4: CPU execution provider — median energy and execution time by model size category"
        out.append(_serving_table("table4", title, cpu, TABLE4_METRICS, kind))
    if gpu.height:
        title = (
            "Table 5: CUDA execution provider — median CPU, GPU and global energy and execution time by "
            "model size category"
        )
        out.append(_serving_table("table5", title, gpu, TABLE5_METRICS, kind))
    missing = "Table 5 (CUDA execution provider)" if not gpu.height else "Table 4 (CPU execution provider)"
    if not (cpu.height and gpu.height):
        out[0].remarks.append(f"{missing}: no serving run of these records used it.")
    for t, part in zip(out, [p for p in (cpu, gpu) if p.height], strict=True):
        t.remarks.append(kv_cache_remark(part, configuration_labels(part)))
        if load_note:
            t.remarks.append(load_note)
    return out


def _has_loads(serving: pl.DataFrame) -> bool:
    return serving.height > 0 and serving["load_value"].null_count() < serving.height


def serving_models(ok: pl.DataFrame, kind: EnergyKind) -> Table:
    """Every serving model × load point × configuration: medians over repetitions, per request and
    per token, the load point's latencies, throughputs and goodput, the KV cache, and the paper's
    resource metrics (its Figures 4-5) with ours beside them."""
    serving = ok.filter(pl.col("serving"))
    loads = _has_loads(serving)
    wanted = SERVING_TABLE_METRICS + (LOAD_TABLE_METRICS if loads else ())
    metrics = measured_columns(serving, with_carbon(wanted, kind))
    fixed = [
        "Model",
        "Category",
        "Serving configuration",
        *(["Load"] if loads else []),
        "KV cache",
        "Greedy parity",
        "Runs",
    ]
    t = Table(
        "serving",
        "Serving runs per model" + (", load point" if loads else "") + " and configuration (medians over repetitions)",
        [*fixed, *(header(c) for c in metrics)],
    )
    first = len(fixed)
    t.bounded = bounded_columns(first, metrics)
    labels = configuration_labels(serving) if serving.height else {}
    points = groups(serving, ["model", "model_size", "load_variable", "load_value"])
    points.sort(key=lambda kg: (str(kg[0][0]), str(kg[0][1]), load_key(kg[0][2], kg[0][3])))
    for (model, size, variable, value), group in points:
        start = len(t.rows)
        t.group_starts.add(start)
        for (conf,), runs in sorted(groups(group, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
            row = [text_value(model), text_value(category_of(size)), text_value(labels[conf])]
            if loads:
                row.append(text_value(load_text(variable, value)))
            row += [kv_cache_value(t, runs), parity_value(t, runs), Value(str(runs.height), runs.height)]
            row += [median_value(t, runs, c) for c in metrics]
            t.rows.append(row)
        mark_best(t, list(range(start, len(t.rows))), [(first + i, c) for i, c in enumerate(metrics)])
    t.remarks.append(
        "Energy per request and per generated token divide the run's energy (the same as Global energy) by "
        "its requests and by the tokens it generated; time per request is the client's mean latency."
    )
    t.remarks.append(
        "Greedy parity: the share of transformers' greedy tokens the engine gave on the reference prompts when "
        "it loaded (up to each prompt's first difference; the lowest of the runs). Full-precision artifacts must "
        "give all of them or the run fails; quantised ones serve whatever they give, and a runtime's own server "
        "(its text, not tokens: the share of prompts whose text matches) is recorded only; both say not gated."
    )
    if loads:
        t.remarks.append(LOAD_DEFINITIONS)
    t.remarks.append(RESOURCE_DEFINITIONS)
    t.remarks += energy_remarks(serving, kind, PAPER_TOTAL)
    return t


LOAD_DEFINITIONS = (
    "Load: the load point of the run (closed loop: requests in flight; open loop: arrivals per second; a sweep "
    "is one record per point); best values are bold among the configurations at one load point. TTFT, TPOT, "
    "ITL, E2EL: the client's per-request times over the point's successful requests (median, p99); throughputs "
    "over its measure window; goodput: requests/s that met the SLO given (n/a without --slo); steady energy per "
    "output token: the energy of the steady window (the load at its target) over the tokens generated in it. "
    "KV cache: whether the engine kept one (off or n/a: the footnote says why)."
)


RESOURCE_DEFINITIONS = (
    "The second paper's resource metrics (its Table 2), as it defines them: CPU usage = the mean share of all "
    "the host's logical CPUs busy over the window, system-wide (every process of the host, as EnergiBridge "
    "measures it); RAM usage = the mean share of the host's RAM in use, system-wide; GPU utilisation and GPU "
    "memory utilisation = NVML's mean over the samples; GPU used memory = the mean memory allocated on the GPUs "
    "as a share of their total. A record written before joulebench measured the system-wide figures shows the "
    "run's own process tree there instead, footnoted. Ours beside them: CPU and RAM usage of the run's own "
    "process tree (or container) as shares of the host, CPU load (100 % = one core busy), RAM peak (MiB), GPU "
    "used memory peak (% of total)."
)
