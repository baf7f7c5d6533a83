"""Where the joules of the serving runs went: per configuration and load point, the energy of prefill,
decode, the rest of the window and its static part, J per 1k prompt tokens (prefill) and per 1k
output tokens (decode), each request's energy, ML.ENERGY's steady state beside ours; the
least-squares cross-check pooled over each configuration's load points; plots of the split as
stacked bars, of the per-request distribution, and of J per output token (decode) against the load.

The figures are read from each record's metrics (``controller/serving/phase_figures.py``); energies
follow the report's kind: net of idle (the phases' active parts, the window's static part stacked
beside them) or gross (the phases' energy, static not separated). Medians over repetitions, each
with the bound its runs allow. The papers' tables are left as they are.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import polars as pl

from controller.report.cells import aggregate_bound, groups, model_label
from controller.report.kinds import EnergyKind
from controller.report.loads import load_key, load_text
from controller.report.paper2 import configuration_labels
from controller.report.plots import MODEL_COLOURS, Plot, pyplot, save
from controller.report.records import read_folder
from controller.report.table import Table, Value, bounded_value, num_value, text_value
from controller.serving.phase_fit import add_grams, fit

PARTS = ("static", "prefill", "decode", "other")
PART_COLOURS = {"static": "#bbbbbb", "prefill": "#4363d8", "decode": "#e6194b", "other": "#f5d76e"}
# (column, header, bounded)
COLUMNS = (
    ("prefill", "Prefill (J)", True),
    ("decode", "Decode (J)", True),
    ("other", "Other (J)", True),
    ("static", "Static (J)", True),
    ("prefill_per_1k_prompt", "Prefill J / 1k prompt tokens", True),
    ("decode_per_1k_output", "Decode J / 1k output tokens", True),
    ("request_median", "Request energy, median (J)", True),
    ("request_p90", "Request energy, p90 (J)", True),
    ("steady_per_token", "Steady J / output token (ours)", True),
    ("mlenergy_per_token", "Steady J / output token (ML.ENERGY)", True),
)
PHASE_KEY = "serving-phases"
BARS_KEY = "serving-phases-stacked"
REQUESTS_KEY = "serving-request-energy"
CURVE_KEY = "serving-decode-energy-per-token"


def _get(m: dict[str, Any], name: str, net: bool, scale: float = 1.0) -> tuple[float | None, float | None, str | None]:
    """(value, bound, why missing) of a record figure, active (net) or gross."""
    f = m.get(name)
    if not isinstance(f, dict):
        return None, None, f"the record has no {name} (written before joulebench split serving energy by phase)"
    if not f.get("available"):
        return None, None, str(f.get("reason") or "not measured")
    key, bound = ("active_j", "active_uncertainty_j") if net else ("value", "uncertainty_j")
    if "net_j" in f and net:  # the steady figures name the net part net_j
        key, bound = "net_j", "net_uncertainty_j"
    v = f.get(key)
    if not isinstance(v, (int, float)):
        return None, None, str(f.get("active_reason") or f.get("net_reason") or "no idle baseline")
    u = f.get(bound)
    return v * scale, u * scale if isinstance(u, (int, float)) else None, None


def _row(record: dict[str, Any], net: bool) -> tuple[dict[str, Any], dict[str, str]]:
    m = record.get("metrics") or {}
    row: dict[str, Any] = {}
    why: dict[str, str] = {}
    sources = {
        "prefill": ("prefill_energy_j", 1.0),
        "decode": ("decode_energy_j", 1.0),
        "other": ("other_energy_j", 1.0),
        "prefill_per_1k_prompt": ("energy_per_prompt_token_prefill_j", 1000.0),
        "decode_per_1k_output": ("energy_per_output_token_decode_j", 1000.0),
        "steady_per_token": ("energy_per_output_token_steady_j", 1.0),
        "mlenergy_per_token": ("energy_per_output_token_mlenergy_steady_j", 1.0),
    }
    for col, (name, scale) in sources.items():
        row[col], row[f"{col}_u"], reason = _get(m, name, net, scale)
        if reason:
            why[col] = reason
    static = m.get("static_energy_j") or {}
    row["static"] = static.get("value") if net and static.get("available") else None
    row["static_u"] = static.get("uncertainty_j") if row["static"] is not None else None
    if row["static"] is None:
        why["static"] = (
            "energies are gross in this report: static is not separated"
            if not net and static.get("available")
            else str(static.get("reason") or "the record has no static_energy_j")
        )
    prefix = "request_active_energy_j" if net else "request_energy_j"
    bounds = m.get(f"{prefix}_uncertainty") or {}
    for col, stat in (("request_median", "median"), ("request_p90", "p90")):
        row[col] = m.get(f"{prefix}_{stat}")
        row[f"{col}_u"] = bounds.get(stat) if row[col] is not None else None
        if row[col] is None:
            why[col] = "no request has an energy of its own (see the prefill column's note)"
    fitted = m.get("phase_fit") or {}
    row["gram"] = json.dumps(fitted.get("gram")) if fitted.get("gram") else None
    row["idle_w"] = fitted.get("idle_power_w")
    return row, why


def phase_frame(ok: pl.DataFrame, folder: Path, kind: EnergyKind) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """One row per serving run with the figures of the table; and every record's requests."""
    serving = ok.filter(pl.col("serving"))
    if not serving.height:
        return pl.DataFrame(), []
    ids = set(serving["run_id"].to_list())
    records = {r["run_id"]: r for _, r in read_folder(folder).records if r.get("run_id") in ids}
    labels = configuration_labels(serving)
    net = kind.kind == "net"
    rows, requests = [], []
    keys = ("run_id", "configuration", "model", "model_size", "load_variable", "load_value")
    for run_id, conf, model, size, variable, value in serving.select(*keys).iter_rows():
        row, why = _row(records[run_id], net)
        head = {"run_id": run_id, "label": labels[conf], "model": model_label(model, size)}
        head |= {"load_variable": variable, "load_value": value, "notes": json.dumps(why)}
        rows.append(head | row)
        key = "request_active_energy_j" if net else "request_energy_j"
        bound = "request_active_energy_uncertainty_j" if net else "request_energy_uncertainty_j"
        for r in (records[run_id].get("serving") or {}).get("requests") or []:
            if r.get("ok") and isinstance(r.get(key), (int, float)):
                requests.append(head | {"energy_j": r[key], "bound_j": r.get(bound), "tokens": r.get("new_tokens")})
    return pl.DataFrame(rows, infer_schema_length=None), requests


def _cell(t: Table, runs: pl.DataFrame, col: str, bounded: bool) -> Value:
    bounds = runs[f"{col}_u"].to_list() if bounded else [None] * runs.height
    pairs = [(v, u) for v, u in zip(runs[col].to_list(), bounds, strict=True) if v is not None]
    if not pairs:
        reasons = sorted({json.loads(n).get(col, "not measured") for n in runs["notes"].to_list()})
        return Value("n/a", None, notes=[t.note(r) for r in reasons[:2]])
    values = [float(v) for v, _ in pairs]
    mid = statistics.median(values)
    if not bounded or any(u is None for _, u in pairs):
        return num_value(mid)
    return bounded_value(mid, aggregate_bound(values, [float(u) for _, u in pairs], "median"))


def phase_table(frame: pl.DataFrame, kind: EnergyKind) -> Table:
    """Per model, load point and configuration (medians over repetitions)."""
    what = "active (net of idle)" if kind.kind == "net" else "gross (idle included)"
    t = Table(
        PHASE_KEY,
        f"Serving: where the joules go, per load point and configuration ({what}; medians over repetitions)",
        ["Model", "Load", "Serving configuration", "Runs", *(h for _, h, _ in COLUMNS)],
    )
    t.bounded = {4 + i for i, (_, _, b) in enumerate(COLUMNS) if b}
    points = groups(frame, ["model", "load_variable", "load_value"])
    points.sort(key=lambda kg: (str(kg[0][0]), load_key(kg[0][1], kg[0][2])))
    for (model, variable, value), group in points:
        t.group_starts.add(len(t.rows))
        for (label,), runs in groups(group, ["label"]):
            row = [text_value(model), text_value(load_text(variable, value)), text_value(label)]
            row.append(Value(str(runs.height), runs.height))
            row += [_cell(t, runs, col, b) for col, _, b in COLUMNS]
            t.rows.append(row)
    t.remarks.append(
        "Each piece of a load point's window (the sampling interval, cut at every request's phase boundaries) is "
        "shared among the requests working in it by their work: prompt tokens in prefill (sent, or the server's own "
        "prefill start, -> first token), output tokens in decode (first -> last token), each weighed by its cost per "
        "token where the load point's least-squares fit tells them apart, else one unit each; Other: pieces "
        "where no request worked. Static: the idle baseline's power over the window; prefill + decode + other + "
        "static = the window's energy. J per 1k prompt tokens divides prefill's energy alone, J per 1k output "
        "tokens decode's alone (MLCommons' energy_per_token_joules). Request energy: each request's shares. "
        "Steady (ours): the load at its target; ML.ENERGY: from the B-th first token to the (N-B-1)-th response."
    )
    t.remarks.append(
        "± : the medians' bounds: the meters' (at every instant a share changes) plus, where prefill and decode "
        "shared a piece, all of it either way; the shares among requests working together are a convention. "
        "A request percentile's bound: the largest request's."
    )
    return t


def fit_table(frame: pl.DataFrame) -> Table | None:
    """The least-squares cross-check per configuration and model, its rows pooled over every load point."""
    if "gram" not in frame.columns or frame.filter(pl.col("gram").is_not_null()).height == 0:
        return None
    t = Table(
        "serving-phase-fit",
        "Serving: least-squares cross-check E = static·t + a·prompt tokens + b·output tokens, over the sampling "
        "intervals of every load point of a configuration",
        ["Model", "Serving configuration", "Load points", "Intervals", "Static (W)", "a: J / prompt token",
         "b: J / output token", "R²"],
    )  # fmt: skip
    for (model, label), runs in groups(frame.filter(pl.col("gram").is_not_null()), ["model", "label"]):
        grams = [json.loads(g) for g in runs["gram"].to_list()]
        idle = [w for w in runs["idle_w"].to_list() if w is not None]
        static = idle[0] if idle and len(idle) == runs.height and max(idle) - min(idle) < 1e-9 else None
        f = fit(add_grams(grams), static)
        if not f["available"]:
            na = Value("n/a", None, notes=[t.note(f["reason"])])
            points = Value(str(runs.height), runs.height)
            t.rows.append([text_value(model), text_value(label), points, na, na, na, na, na])
            continue
        t.rows.append(
            [
                text_value(model),
                text_value(label),
                Value(str(runs.height), runs.height),
                Value(str(f["rows"]), f["rows"]),
                text_value(
                    f"{f['static_w']:.4g}" + (" (baseline)" if static is not None else f" ± {_g(f['static_w_se'])}")
                ),
                text_value(f"{f['j_per_prompt_token']:.4g} ± {_g(f['j_per_prompt_token_se'])}"),
                text_value(f"{f['j_per_output_token']:.4g} ± {_g(f['j_per_output_token_se'])}"),
                num_value(f["r2"]),
            ]
        )
    t.remarks.append(
        "± : one standard error, as if the intervals were independent (consecutive intervals share meter errors, "
        "so the true spread is wider). With an idle baseline static is held at its power and a, b fit the active "
        "energy; a and b set beside the attributed prefill and decode energies say whether the split is consistent."
    )
    return t


def _g(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2g}"


def tables(ok: pl.DataFrame, folder: Path, kind: EnergyKind) -> list[Table]:
    """The tables of this module for the serving runs among ``ok`` (none without serving runs)."""
    frame, _ = phase_frame(ok, folder, kind)
    if not frame.height:
        return []
    out = [phase_table(frame, kind)]
    fitted = fit_table(frame)
    return out + ([fitted] if fitted is not None else [])


# -- plots -------------------------------------------------------------------------------------


def _median(runs: pl.DataFrame, col: str) -> float | None:
    v = [x for x in runs[col].to_list() if x is not None]
    return statistics.median(v) if v else None


def _stack(runs: pl.DataFrame, parts: list[str]) -> tuple[dict[str, float], list[str], float | None]:
    """One bar: each measured part's median, the parts not measured (drawn as nothing, named), and the
    bar's bound (the parts' medians' bounds added; None where one has none)."""
    heights: dict[str, float] = {}
    missing: list[str] = []
    bound: float | None = 0.0
    for part in parts:
        if runs[part].drop_nulls().len() == 0:
            missing.append(part)
            continue
        value, u = _bounded_median(runs, part)
        heights[part] = value
        bound = None if bound is None or u is None else bound + u
    return heights, missing, bound


def stacked_bars(frame: pl.DataFrame, folder: Path, kind: EnergyKind) -> Plot | str:
    """A panel per model; a bar per configuration and load point, stacked static / prefill / decode /
    other; the bar's bound as an error bar on its top, a part not measured named above it (never drawn as 0)."""
    measured = frame.filter(pl.col("prefill").is_not_null())
    if not measured.height:
        return "Serving phases (stacked bars): no run split its energy by phase (the table's notes say why)"
    plt = pyplot()
    models = sorted(set(measured["model"].to_list()))
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.0, 4.5 * len(models)), 4.2), squeeze=False)
    parts = [p for p in PARTS if measured[p].drop_nulls().len()]
    for ax, model in zip(axes[0], models, strict=True):
        bars = groups(measured.filter(pl.col("model") == model), ["label", "load_variable", "load_value"])
        bars.sort(key=lambda kg: (kg[0][0], load_key(kg[0][1], kg[0][2])))
        stacks = [_stack(runs, parts) for _, runs in bars]
        bottom = [0.0] * len(bars)
        for part in parts:
            xs = [i for i, st in enumerate(stacks) if part in st[0]]
            heights = [stacks[i][0][part] for i in xs]
            ax.bar(xs, heights, bottom=[bottom[i] for i in xs], color=PART_COLOURS[part], label=part,
                   edgecolor="white", linewidth=0.5)  # fmt: skip
            for i, h in zip(xs, heights, strict=True):
                bottom[i] += h
        for i, (_, missing, bound) in enumerate(stacks):
            if bound is not None:
                ax.errorbar([i], [bottom[i]], yerr=[bound], fmt="none", ecolor="black", capsize=3, linewidth=0.8)
            notes = [f"{p} n/a" for p in missing] + ([] if bound is not None else ["± n/a"])
            if notes:
                ax.annotate("\n".join(notes), (i, bottom[i]), xytext=(0, 4), textcoords="offset points",
                            ha="center", va="bottom", fontsize=6)  # fmt: skip
        ax.set_xticks(
            range(len(bars)), [f"{k[0]}\n{load_text(k[1], k[2])}" for k, _ in bars], fontsize=6, rotation=30,
            ha="right",
        )  # fmt: skip
        ax.set_title(model, fontsize=9)
        what = "static + each part's active energy" if kind.kind == "net" else "gross, static not separated"
        ax.set_ylabel(f"Energy of the window (J; {what})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    title = "Serving: where the joules go per configuration and load point (medians over runs; bars: their bounds)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, folder, BARS_KEY, title)


def request_boxes(requests: list[dict[str, Any]], folder: Path, kind: EnergyKind) -> Plot | str:
    """A panel per model; a box per configuration and load point of its requests' own energies."""
    if not requests:
        return "Serving per-request energy: no request has an energy of its own (the table's notes say why)"
    plt = pyplot()
    frame = pl.DataFrame(requests)
    models = sorted(set(frame["model"].to_list()))
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.0, 4.5 * len(models)), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        boxes = groups(frame.filter(pl.col("model") == model), ["label", "load_variable", "load_value"])
        boxes.sort(key=lambda kg: (kg[0][0], load_key(kg[0][1], kg[0][2])))
        ax.boxplot([g["energy_j"].to_list() for _, g in boxes], showmeans=True)
        for i, (_, g) in enumerate(boxes, start=1):
            bounds = g["bound_j"].to_list() if "bound_j" in g.columns else [None]
            median = statistics.median(g["energy_j"].to_list())
            if all(isinstance(u, (int, float)) for u in bounds):
                ax.errorbar([i + 0.3], [median], yerr=[max(bounds)], fmt="none", ecolor="black", capsize=2)
            else:
                ax.annotate("± n/a", (i, median), xytext=(12, 0), textcoords="offset points", fontsize=6)
        ax.set_xticks(
            range(1, len(boxes) + 1), [f"{k[0]}\n{load_text(k[1], k[2])}" for k, _ in boxes], fontsize=6, rotation=30,
            ha="right",
        )  # fmt: skip
        ax.set_title(model, fontsize=9)
        ax.set_ylabel(f"Energy per request (J, {kind.label})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    title = (
        f"Serving: each request's own energy, per configuration and load point ({kind.label}; "
        "beside each box: its median's bound, the largest request's)"
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, folder, REQUESTS_KEY, title)


def decode_curve(frame: pl.DataFrame, folder: Path, kind: EnergyKind) -> Plot | str:
    """J per output token (decode alone) against the load, a line per configuration, a panel per model
    and swept variable; bars: the medians' bounds."""
    measured = frame.filter(pl.col("decode_per_1k_output").is_not_null())
    if not measured.height:
        return "Serving J per output token against the load: no run measured decode energy (the table's notes say why)"
    plt = pyplot()
    panels = groups(measured, ["model", "load_variable"])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 4.5 * len(panels)), 4.0), squeeze=False)
    labels = sorted(set(measured["label"].to_list()))
    for ax, ((model, variable), part) in zip(axes[0], panels, strict=True):
        for (label,), runs in groups(part, ["label"]):
            points = sorted(groups(runs, ["load_value"]), key=lambda kg: kg[0][0])
            xs = [k[0] for k, _ in points]
            cells = [_bounded_median(g, "decode_per_1k_output") for _, g in points]
            ys = [c[0] / 1000 for c in cells]
            colour = MODEL_COLOURS[labels.index(label) % len(MODEL_COLOURS)]
            bounded = all(c[1] is not None for c in cells)
            ax.plot(xs, ys, marker="o", color=colour, label=label if bounded else f"{label} (bound n/a)")
            if bounded:
                ax.errorbar(xs, ys, yerr=[(c[1] or 0.0) / 1000 for c in cells], fmt="none", ecolor=colour, capsize=2)
        ax.set_xlabel(str(variable).replace("_", " "), fontsize=8)
        ax.set_ylabel(f"Decode energy per output token (J, {kind.label})", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    title = f"Serving: decode energy per output token against the load ({kind.label}; bars: the medians' bounds)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, folder, CURVE_KEY, title)


def _bounded_median(runs: pl.DataFrame, col: str) -> tuple[float, float | None]:
    pairs = [(float(v), u) for v, u in runs.select(col, f"{col}_u").iter_rows() if v is not None]
    values = [v for v, _ in pairs]
    if any(u is None for _, u in pairs):
        return statistics.median(values), None
    return statistics.median(values), aggregate_bound(values, [float(u) for _, u in pairs], "median")


def plots(ok: pl.DataFrame, runs_folder: Path, folder: Path, kind: EnergyKind) -> tuple[list[Plot], list[str]]:
    """This module's plots of the serving runs among ``ok``; what could not be drawn, and why."""
    frame, requests = phase_frame(ok, runs_folder, kind)
    if not frame.height:
        return [], []
    drawn = [stacked_bars(frame, folder, kind), request_boxes(requests, folder, kind)]
    drawn.append(decode_curve(frame, folder, kind))
    return [p for p in drawn if isinstance(p, Plot)], [p for p in drawn if isinstance(p, str)]


def files(runs: Any, folder: Path) -> list[Path]:
    """Per serving load point: MLCommons' energy fields as JSON (``mlcommons/RUN_ID.json``) and its
    per-request table as Parquet (``requests/RUN_ID.parquet``, and ``requests/requests.parquet`` of all)."""
    from controller.serving.mlcommons import write_mlcommons, write_request_tables

    serving = runs.ok.filter(pl.col("serving"))
    if not serving.height:
        return []
    kept = set(serving["run_id"].to_list())
    records = [(p, r) for p, r in read_folder(runs.folder).records if r.get("run_id") in kept]
    labels = configuration_labels(serving)
    by_run = {rid: labels[conf] for rid, conf in serving.select("run_id", "configuration").iter_rows()}
    return write_mlcommons(records, folder / "mlcommons") + write_request_tables(records, by_run, folder / "requests")
