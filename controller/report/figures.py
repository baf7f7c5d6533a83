"""The papers' headline figures, computed from the tables with the papers' definitions.

The first paper's unit is one point per configuration, as in its Table 1 (means over
repetitions): Spearman's rho of time vs total energy and of GPU utilisation vs GPU power, the ratio
of mean CPU energy to mean GPU energy, and its "x-fold" and "% more / % less" comparisons. Pooling
repetitions as separate points (pseudo-replication) is kept, labelled, beside it.

Spearman's p: exact (every permutation of the ranks) up to ``EXACT_SPEARMAN_MAX`` points, where
the asymptotic t approximation is far off (4 points at rho = 1: t gives p = 0, the exact p is 1/12);
above, the asymptotic p, named as such.

An energy comparison carries the bounds of its two figures: its change is known to lie in an
interval, and where that interval holds 0 the sign is not separated by the measurement and the
comparison says so rather than claim "N % less".

The second paper's savings compare per-model medians: saving = 1 - E(best) / E(other), its range
over the models and the other configurations.

Each function takes plain rows (dicts), so that the published tables rebuild the published
figures in the tests.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

Row = dict[str, Any]
EXACT_SPEARMAN_MAX = 9  # 9! = 362,880 permutations


@dataclass
class Correlation:
    unit: str
    x: str
    y: str
    n: int
    rho: float | None
    p: float | None
    note: str = ""
    method: str = ""  # how p was computed: exact permutation, or asymptotic


@lru_cache(maxsize=4)
def _permutations(n: int) -> Any:
    import itertools

    import numpy as np

    flat = itertools.chain.from_iterable(itertools.permutations(range(n)))
    return np.fromiter(flat, dtype=np.int8, count=n * math.factorial(n)).reshape(-1, n)


def exact_spearman_p(xs: list[float], ys: list[float]) -> float:
    """Two-sided p of Spearman's rho by every permutation of the ranks: the share of the n!
    pairings whose |rho| reaches the observed one (ties: average ranks, permuted as they are)."""
    import numpy as np
    from scipy.stats import rankdata

    rx, ry = rankdata(xs), rankdata(ys)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    observed = abs(float(rx @ ry))
    every = np.abs(ry[_permutations(len(xs))] @ rx)
    # A relative tolerance: the observed pairing must count itself despite rounding.
    return float(np.mean(every >= observed * (1 - 1e-9) - 1e-12))


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
    n = len(pairs)
    if n <= EXACT_SPEARMAN_MAX:
        return Correlation(
            unit, x, y, n, rho, exact_spearman_p(xs, ys), method=f"exact: all {math.factorial(n):,} permutations"
        )
    return Correlation(unit, x, y, n, rho, p, method="asymptotic: Student's t, n − 2 degrees of freedom")


def _mean_bound(rows: list[Row], key: str) -> float | None:
    bounds = [r.get(f"{key}_uncertainty") for r in rows]
    return statistics.fmean(float(u) for u in bounds if u is not None) if all(u is not None for u in bounds) else None


def energy_ratio(rows: list[Row]) -> tuple[float | None, int, str]:
    """Mean CPU energy / mean GPU energy over the rows that measured both (the first paper: 51.71 %)."""
    both = [r for r in rows if r.get("cpu_energy") is not None and r.get("gpu_energy") is not None]
    if not both:
        return None, 0, "no configuration measured both CPU and GPU energy"
    gpu = statistics.fmean(r["gpu_energy"] for r in both)
    if gpu <= 0:
        return None, len(both), "mean GPU energy is not positive"
    return statistics.fmean(r["cpu_energy"] for r in both) / gpu, len(both), ""


def energy_ratio_bounds(rows: list[Row]) -> tuple[float, float] | None:
    """The interval the CPU/GPU energy ratio lies in when every configuration's CPU and GPU energy
    lies within its bound; None when a bound is missing (or the GPU's could reach 0)."""
    both = [r for r in rows if r.get("cpu_energy") is not None and r.get("gpu_energy") is not None]
    uc, ug = _mean_bound(both, "cpu_energy"), _mean_bound(both, "gpu_energy")
    if not both or uc is None or ug is None:
        return None
    cpu = statistics.fmean(r["cpu_energy"] for r in both)
    gpu = statistics.fmean(r["gpu_energy"] for r in both)
    if gpu - ug <= 0:
        return None
    return max(cpu - uc, 0.0) / (gpu + ug), (cpu + uc) / (gpu - ug)


@dataclass
class Versus:
    where: str
    metric: str
    name: str
    reference: str
    value: float
    reference_value: float
    value_bound: float | None = None  # the 95 % bounds of the two figures (energy); None: none stated
    reference_bound: float | None = None

    @property
    def change_bounds(self) -> tuple[float, float] | None:
        """The interval of value / reference − 1 with each figure anywhere within its bound."""
        if self.value_bound is None or self.reference_bound is None:
            return None
        low_ref = self.reference_value - self.reference_bound
        if low_ref <= 0:
            return None
        low = (self.value - self.value_bound) / (self.reference_value + self.reference_bound) - 1.0
        return low, (self.value + self.value_bound) / low_ref - 1.0

    @property
    def separated(self) -> bool | None:
        """Whether the bounds decide the sign of the change (None: no bounds to decide with)."""
        bounds = self.change_bounds
        if bounds is None:
            return None
        return bounds[0] > 0 or bounds[1] < 0

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
                out.append(
                    Versus(
                        where_label(key),
                        metric,
                        r[name],
                        best[name],
                        r[metric],
                        best[metric],
                        r.get(f"{metric}_uncertainty"),
                        best.get(f"{metric}_uncertainty"),
                    )
                )
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
            out.append(
                Versus(
                    where_label(key),
                    metric,
                    r["framework"],
                    ref["framework"],
                    r[metric],
                    ref[metric],
                    r.get(f"{metric}_uncertainty"),
                    ref.get(f"{metric}_uncertainty"),
                )
            )
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
    # The comparisons whose bounds overlap (the saving's sign is not separated by the measurement),
    # and how many comparisons had bounds to judge with.
    not_separated: list[str] | None = None
    judged: int = 0


def savings_range(
    per_model: dict[str, dict[str, float]],
    best: str,
    others: Iterable[str],
    metric: str,
    bounds: dict[str, dict[str, float | None]] | None = None,
) -> Savings | None:
    """The second paper's "saves 37.99 %-89.16 %": 1 - value(best) / value(other) for every model
    and every other configuration both measured; its minimum and maximum; with ``bounds`` (the
    figures' own), the comparisons the bounds do not separate."""
    found, unseparated, judged = [], [], 0
    for model, confs in per_model.items():
        if confs.get(best) is None:
            continue
        for other in others:
            if other != best and confs.get(other):
                found.append((1.0 - confs[best] / confs[other], f"{model} vs {other}"))
                ub, uo = ((bounds or {}).get(model) or {}).get(best), ((bounds or {}).get(model) or {}).get(other)
                if ub is not None and uo is not None:
                    judged += 1
                    if abs(confs[other] - confs[best]) <= ub + uo:
                        unseparated.append(f"{model} vs {other}")
    if not found:
        return None
    lo, hi = min(found), max(found)
    return Savings(best, metric, lo[0], hi[0], len(found), lo[1], hi[1], unseparated if judged else None, judged)
