"""The papers' headline figures, computed from the tables with the papers' definitions.

The first paper's unit is one point per configuration, as in its Table 1 (means over
repetitions): Spearman's rho of time vs total energy and of GPU utilisation vs GPU power, the ratio
of mean CPU energy to mean GPU energy, and its "x-fold" and "% more / % less" comparisons. Pooling
repetitions as separate points (pseudo-replication) is kept, labelled, beside it.

The second paper's savings compare per-model medians: saving = 1 - E(best) / E(other), its range
over the models and the other configurations.

Each function takes plain rows (dicts), so that the published tables rebuild the published
figures in the tests.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass
class Correlation:
    unit: str
    x: str
    y: str
    n: int
    rho: float | None
    p: float | None
    note: str = ""


def spearman(rows: list[Row], x: str, y: str, unit: str) -> Correlation:
    from scipy import stats

    pairs = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    if len(pairs) < 3:
        return Correlation(unit, x, y, len(pairs), None, None, f"{len(pairs)} points measure both; Spearman needs 3")
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        return Correlation(unit, x, y, len(pairs), None, None, "one of the two is constant over these points")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(xs, ys)
    rho, p = float(res.statistic), float(res.pvalue)
    return Correlation(unit, x, y, len(pairs), rho, p)


def energy_ratio(rows: list[Row]) -> tuple[float | None, int, str]:
    """Mean CPU energy / mean GPU energy over the rows that measured both (the first paper: 51.71 %)."""
    both = [r for r in rows if r.get("cpu_energy") is not None and r.get("gpu_energy") is not None]
    if not both:
        return None, 0, "no configuration measured both CPU and GPU energy"
    gpu = statistics.fmean(r["gpu_energy"] for r in both)
    if gpu <= 0:
        return None, len(both), "mean GPU energy is not positive"
    return statistics.fmean(r["cpu_energy"] for r in both) / gpu, len(both), ""


@dataclass
class Versus:
    where: str
    metric: str
    name: str
    reference: str
    value: float
    reference_value: float

    @property
    def ratio(self) -> float:
        """``value`` as a multiple of the reference: the papers' "x-fold" (3.3x)."""
        return self.value / self.reference_value

    @property
    def change(self) -> float:
        """value / reference - 1: "+10 %" (more), "-38.66 %" (less than the reference)."""
        return self.value / self.reference_value - 1.0

    @property
    def saving(self) -> float:
        """1 - reference / value: what the reference saves against this one (the second paper's
        "energy savings"; the first paper's "PyTorch uses 3.78 % less energy than MXNet")."""
        return 1.0 - self.reference_value / self.value


def _group(rows: Iterable[Row], keys: tuple[str, ...]) -> dict[tuple[Any, ...], list[Row]]:
    out: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def where_label(key: tuple[Any, ...]) -> str:
    return " ".join(f"b{v}" if i == 1 else str(v) for i, v in enumerate(key) if v not in (None, ""))


def versus_best(rows: list[Row], keys: tuple[str, ...], metric: str, name: str = "framework") -> list[Versus]:
    """Each row against the best (lowest) of its group, e.g. every native framework vs the best."""
    out = []
    for key, group in _group(rows, keys).items():
        measured = [r for r in group if r.get(metric) is not None and r[metric] > 0]
        if len(measured) < 2:
            continue
        best = min(measured, key=lambda r: r[metric])
        for r in measured:
            if r is not best:
                out.append(Versus(where_label(key), metric, r[name], best[name], r[metric], best[metric]))
    return out


def versus_reference(
    rows: list[Row], keys: tuple[str, ...], metric: str, reference: Callable[[Row, list[Row]], Row | None]
) -> list[Versus]:
    """Each row against the row ``reference`` picks in its group (its native source, its CUDA twin)."""
    out = []
    for key, group in _group(rows, keys).items():
        for r in group:
            ref = reference(r, group)
            if ref is None or r.get(metric) is None or not ref.get(metric):
                continue
            out.append(Versus(where_label(key), metric, r["framework"], ref["framework"], r[metric], ref[metric]))
    return out


SOURCES = {"torch2": "torch", "tf2": "tensorflow", "mx2": "mxnet"}
NATIVE_NAMES = {"tf": "tensorflow", "mx": "mxnet"}


def native_source(row: Row, group: list[Row]) -> Row | None:
    """The native row a converted one came from (torch2onnx -> torch), in the same group."""
    fw = str(row.get("framework") or "")
    if "2" not in fw:
        return None
    source = SOURCES.get(fw.split("2", 1)[0] + "2")
    names = {source, {v: k for k, v in NATIVE_NAMES.items()}.get(source or "")}
    return next((g for g in group if g.get("framework") in names and "2" not in str(g["framework"])), None)


def cuda_twin(row: Row, group: list[Row]) -> Row | None:
    """The CUDA execution provider row of the same conversion, for a TensorRT row."""
    if row.get("provider") != "tensorrt":
        return None
    return next(
        (g for g in group if g.get("provider") == "cuda" and g.get("conversion") == row.get("conversion")), None
    )


@dataclass
class Savings:
    best: str
    metric: str
    low: float
    high: float
    n: int
    low_at: str
    high_at: str


def savings_range(
    per_model: dict[str, dict[str, float]], best: str, others: Iterable[str], metric: str
) -> Savings | None:
    """The second paper's "saves 37.99 %-89.16 %": 1 - value(best) / value(other) for every model
    and every other configuration both measured; its minimum and maximum."""
    found = []
    for model, confs in per_model.items():
        if confs.get(best) is None:
            continue
        for other in others:
            if other != best and confs.get(other):
                found.append((1.0 - confs[best] / confs[other], f"{model} vs {other}"))
    if not found:
        return None
    lo, hi = min(found), max(found)
    return Savings(best, metric, lo[0], hi[0], len(found), lo[1], hi[1])
