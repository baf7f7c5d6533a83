"""Serving load points in the report: a sweep (``serve --concurrency 1,4,16`` or ``--request-rate
1,2,inf``) is one record per point. The tables that compare configurations (the second paper's
Tables 4-5, its box plots) take one point per configuration and model, the lowest load, rather
than a median over every point of a sweep; the per-model table and the serving curves show every
point. The KV cache (on/off per engine, as the run recorded it) is said beside them.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from controller.report.cells import groups
from controller.report.data import notes_of
from controller.report.table import Table, Value, text_value

CURVE_KEYS = ["configuration", "model", "model_size", "load_variable"]


def load_text(variable: str | None, value: float | None) -> str:
    """The load point in words: concurrency 4, request rate 2/s, request rate inf (all at once); n/a."""
    if variable is None or value is None:
        return "n/a"
    shown = "inf" if math.isinf(value) else f"{value:g}"
    if variable == "concurrency":
        return f"concurrency {shown}"
    return "request rate inf (all at once)" if math.isinf(value) else f"request rate {shown}/s"


def load_key(variable: str | None, value: float | None) -> tuple[int, str, float]:
    """Order of load points: closed loop (concurrency) first, then by value; unknown last."""
    if variable is None or value is None:
        return (2, "", math.inf)
    return (0 if variable == "concurrency" else 1, variable, value)


def _points(frame: pl.DataFrame) -> list[tuple[str | None, float | None]]:
    found = {(v, x) for v, x in frame.select("load_variable", "load_value").iter_rows()}
    return sorted(found, key=lambda p: load_key(*p))


def one_load_point(serving: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """Serving runs with one load point per configuration and model, the lowest, when any of them
    was run at several (a sweep); and the note that says so. Records without a load point stay."""
    keys = ["configuration", "model", "model_size"]
    chosen: dict[tuple[Any, ...], tuple[str | None, float | None]] = {}
    swept = 0
    for key, group in groups(serving.filter(pl.col("load_value").is_not_null()), keys):
        points = _points(group)
        swept += len(points) > 1
        chosen[key] = points[0]
    if not swept:
        return serving, None
    mask = [
        value is None or chosen.get((conf, model, size)) == (variable, value)
        for conf, model, size, variable, value in serving.select(*keys, "load_variable", "load_value").iter_rows()
    ]
    kept = serving.filter(pl.Series(mask, dtype=pl.Boolean))
    lowest = sorted({load_text(*p) for p in chosen.values()})
    note = (
        f"Load points: {swept} configuration(s) and model(s) of these records were run at several load points "
        "(serve --concurrency / --request-rate sweeps); Tables 4-5 and the serving box plots (the paper's Figures "
        f"3-5) use one point per configuration and model, the lowest load ({', '.join(lowest)}), not a median over "
        f"every point; {serving.height - kept.height} of {serving.height} serving runs are left out of them. Every "
        "point is in the per-model serving table and in the serving curves."
    )
    return kept, note


def curve_groups(serving: pl.DataFrame) -> list[tuple[tuple[Any, ...], pl.DataFrame]]:
    """(configuration, model, model size, load variable) with more than one load point."""
    loaded = serving.filter(pl.col("load_value").is_not_null())
    return [(k, g) for k, g in groups(loaded, CURVE_KEYS) if g["load_value"].n_unique() > 1]


def kv_cache_value(t: Table, runs: pl.DataFrame) -> Value:
    """on / off / n/a for these runs' KV cache, the reasons (why off, why unknown) as footnotes."""
    values = runs["kv_cache"].to_list()
    known = [v for v in values if v is not None]
    notes = [t.note(f"KV cache: {n}") for n in notes_of(runs, "kv_cache")]
    if not known:
        return Value("n/a", None, notes=notes or [t.note("KV cache: not recorded")])
    if len(known) == len(values) and len(set(known)) == 1:
        v = text_value("on" if known[0] else "off")
    else:
        v = text_value(f"on in {sum(known)} of {len(values)} runs")
    v.notes = notes
    return v


def parity_value(t: Table, runs: pl.DataFrame) -> Value:
    """The lowest share of transformers' greedy tokens these runs' engine gave at load; quantised
    artifacts (not gated) say so, and what is unknown is n/a with its reason."""
    values = [v for v in runs["parity"].to_list() if v is not None]
    notes = [t.note(f"Greedy parity: {n}") for n in notes_of(runs, "parity")]
    if not values:
        return Value("n/a", None, notes=notes or [t.note("Greedy parity: not recorded")])
    low = min(values)
    ungated = any(g is False for g in runs["parity_gated"].to_list())
    text = "text" in runs["parity_basis"].to_list()
    v = Value(f"{low:.0%}" + (" of prompts' text" if text else "") + (" (not gated)" if ungated else ""), low)
    v.notes = notes
    return v


def kv_cache_remark(serving: pl.DataFrame, labels: dict[str, str]) -> str:
    """One line: the KV cache of each serving configuration, and why when off or unknown."""
    parts = []
    for (conf,), runs in sorted(groups(serving, ["configuration"]), key=lambda kg: labels[kg[0][0]]):
        t = Table("kv", "", [])
        v = kv_cache_value(t, runs)
        why = f" ({'; '.join(t.footnotes).replace('KV cache: ', '')})" if t.footnotes else ""
        parts.append(f"{labels[conf]} {v.text}{why}")
    return "KV cache (result.generation.kv_cache of each run): " + "; ".join(parts) + "."
