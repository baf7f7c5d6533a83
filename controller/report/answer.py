"""The report's answer, placed before the papers' tables: for each model (and batch size, or serving
load point), the configurations ranked by energy per unit of work, and how sure that ranking is.

- Unit of work: a sample for batch runs (sample and duration mode alike: per sample actually done),
  an output token for serving runs (a request where a run counted no tokens).
- Figures: the median over a configuration's runs; an energy ± the median's bound (how far it moves
  when every run moves within its own 95 % bound, ``cells.aggregate_bound``).
- Ranked by energy; by time per unit of work where no configuration of the group measured energy,
  said with the reason. A configuration without energy beside others with it is listed, not ranked.
- Separated from the best: the exact distribution-free interval of the ratio other / best that
  ``compare`` uses (``controller.compare.interval``: Hodges-Lehmann by Mann-Whitney inversion, 95 %),
  widened at each end by the two configurations' relative energy bounds in quadrature (a bias all runs
  of one configuration may share, which their spread cannot show), lies wholly on one side of 1.
  Otherwise the runs do not say which is lower: said, with the runs a side that would separate them
  at the spread seen, or why no number of runs would.
- Energy the meters flagged is ranked and marked, not judged (as ``compare`` does not judge it).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from controller.compare.interval import (
    MIN_REPETITIONS,
    log_spread,
    min_repetitions,
    repetitions_to_decide,
    shift_interval,
)
from controller.compare.options import DEFAULT_ALPHA
from controller.report.cells import aggregate_bound, groups, model_label
from controller.report.data import flags_of, notes_of
from controller.report.kinds import EnergyKind
from controller.report.loads import load_key, load_text

ENERGY, TIME = "energy", "time"
RUNTIMES = {
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "torch": "PyTorch",
    "torchscript": "TorchScript",
    "tensorflow": "TensorFlow",
    "tensorrt": "TensorRT",
    "mxnet": "MXNet",
    "llamacpp": "llama.cpp",
    "llamacpp-server": "llama.cpp server",
    "ortgenai": "ONNX Runtime GenAI",
    "openvino-genai": "OpenVINO GenAI",
    "vllm": "vLLM",
}
PROVIDERS = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT EP", "openvino": "OpenVINO EP"}


@dataclass(frozen=True)
class Unit:
    noun: str  # "sample", "output token", "request"
    energy: str  # the frame's column of energy per unit (its bound: ``<column>_uncertainty``)
    throughput: str  # "samples/s", "tokens/s", "requests/s"


SAMPLE = Unit("sample", "energy_per_sample", "samples/s")
TOKEN = Unit("output token", "energy_per_token", "tokens/s")
REQUEST = Unit("request", "energy_per_request", "requests/s")


@dataclass
class Config:
    """One configuration of a group: its runs' figures per unit of work."""

    name: str
    label: str
    runs: int
    energy: list[float] = field(default_factory=list)
    bounds: list[float | None] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # seconds per unit
    throughput: list[float] = field(default_factory=list)
    doubt: str = ""  # why its energy is not judged (flagged by the meters, not positive)
    missing: str = ""  # why it has no energy figure

    def values(self, by: str) -> list[float]:
        return self.energy if by == ENERGY else self.time

    def median(self, by: str) -> float:
        return statistics.median(self.values(by))

    @property
    def energy_bound(self) -> float | None:
        """The bound of the median energy; None when a run states none (records before bounds)."""
        if not self.energy or any(u is None for u in self.bounds):
            return None
        return aggregate_bound(self.energy, [float(u or 0.0) for u in self.bounds], "median")

    @property
    def relative_bound(self) -> float | None:
        """The median of the runs' relative bounds, as ``compare`` widens by; None when a run states none."""
        pairs = [(e, u) for e, u in zip(self.energy, self.bounds, strict=True) if e > 0]
        if not pairs or any(u is None for _, u in pairs):
            return None
        return statistics.median(float(u or 0.0) / e for e, u in pairs)


@dataclass
class Against:
    """A configuration against the group's best: ratio other / best (the median of the pairwise
    ratios), its interval, and whether the runs separate the two."""

    ratio: float
    low: float | None = None
    high: float | None = None
    separated: bool | None = None  # None: not judged
    needed: int | None = None  # runs a side that would separate them at the spread seen
    why: str = ""  # not separated or not judged: why, and what would decide it
    unbounded: bool = False  # a side states no energy bound: the interval holds the spread only


@dataclass
class Group:
    model: str
    where: str  # "at batch 2", "serving, concurrency 4"
    unit: Unit
    by: str  # ENERGY or TIME
    ranked: list[Config]
    against: list[Against | None]  # aligned with ``ranked``; None for the best
    unranked: list[Config]  # no energy while others of the group have it
    missing: str = ""  # why energy was not measured (ranked by time, or the unranked ones)
    covers: str = ""  # said when the totals cover different domains

    @property
    def title(self) -> str:
        return f"{self.model} {self.where}"


@dataclass
class Answer:
    groups: list[Group]
    alpha: float
    energy: str = ""  # which energies: "net of idle", "gross: idle not subtracted"; "" when none measured

    @property
    def level(self) -> str:
        return f"{100 * (1 - self.alpha):g} %"


def runtime_label(engine: str | None, provider: str | None) -> str:
    """ONNX Runtime / CPU: how a user names what runs."""
    return f"{RUNTIMES.get(engine or '?', engine or '?')} / {PROVIDERS.get(provider or '?', provider or '?')}"


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _per_unit(row: dict[str, Any], unit: Unit) -> tuple[float | None, float | None]:
    """(seconds per unit, units per second) of one run."""
    if unit is SAMPLE:
        return _number(row["time_per_sample_s"]), _number(row["throughput_sps"])
    count = row["new_tokens"] if unit is TOKEN else row["requests_ok"]
    window = _number(row["window_s"])
    if not count or window is None or window <= 0:
        return None, None
    return window / count, count / window


def energy_missing(runs: pl.DataFrame) -> str:
    """Why these runs have no total energy: the CPU's and GPU's recorded reasons."""
    parts = [
        f"{label}: {'; '.join(notes)}"
        for label, col in (("CPU", "cpu_energy"), ("GPU", "gpu_energy"))
        if (notes := notes_of(runs, col))
    ]
    return "; ".join(parts) or "; ".join(notes_of(runs, "total_energy")) or "not measured (no reason recorded)"


def _doubt(runs: pl.DataFrame, energy: list[float]) -> str:
    flagged = flags_of(runs, "total_energy")
    if flagged:
        n = len({r for r, _, _ in flagged})
        codes = ", ".join(sorted({c for _, c, _ in flagged}))
        return f"the meters flagged its energy in {n} of {runs.height} runs ({codes})"
    if any(e <= 0 for e in energy):
        return "an energy figure is not positive (net of idle below zero): no ratio can be formed"
    return ""


def config_of(name: str, runs: pl.DataFrame, unit: Unit) -> Config:
    r0 = runs.row(0, named=True)
    c = Config(name, f"{name} ({runtime_label(r0['engine'], r0['provider'])})", runs.height)
    measured = runs.filter(pl.col(unit.energy).is_not_null())
    for row in runs.iter_rows(named=True):
        energy = _number(row[unit.energy])
        if energy is not None:
            c.energy.append(energy)
            c.bounds.append(_number(row[f"{unit.energy}_uncertainty"]))
        time, rate = _per_unit(row, unit)
        if time is not None and time > 0:
            c.time.append(time)
        if rate is not None:
            c.throughput.append(rate)
    if not c.energy:
        c.missing = energy_missing(runs)
    else:
        c.doubt = _doubt(measured, c.energy)
    return c


def _widening(best: Config, other: Config) -> tuple[float, bool]:
    """The log-scale widening of an energy interval (both relative bounds in quadrature), and
    whether a side states no bound."""
    bounds = (best.relative_bound, other.relative_bound)
    return math.sqrt(sum(math.log1p(b) ** 2 for b in bounds if b is not None)), None in bounds


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if abs(x) < 0.1 else f"{100 * x:.0f} %"


def _needed(a: list[float], b: list[float], est: float, widen: float, alpha: float) -> tuple[int | None, str]:
    """The runs a side that would separate two configurations if their difference stays as seen, or why none."""
    sigma = log_spread(a, b)
    change = _pct(math.expm1(abs(est)))
    if sigma is None:
        return None, f"too few runs to see their spread (at least {min_repetitions(alpha)} a side)"
    n = repetitions_to_decide(abs(est), sigma, alpha, widen)
    if n is not None:
        n = max(n, max(len(a), len(b)) + 1)  # these runs did not separate them: more are needed
        return n, f"more runs would be needed: about {n} a side at the spread seen, if the difference ({change}) stays"
    if widen > 0 and abs(est) <= widen:
        return None, (
            f"no number of runs: the energy figures' own bounds (±{_pct(math.expm1(widen))}) are wider than the "
            f"difference ({change})"
        )
    return None, f"no number of runs at the spread seen: the difference ({change}) is too small"


def against(best: Config, other: Config, by: str, alpha: float) -> Against:
    a, b = best.values(by), other.values(by)
    if by == ENERGY and (best.doubt or other.doubt):
        ratio = other.median(by) / best.median(by) if best.median(by) > 0 else math.nan
        whose = best if best.doubt else other
        return Against(ratio, why=f"not judged: {whose.name}: {whose.doubt}")
    est = statistics.median(math.log(y) - math.log(x) for x in a for y in b)
    widen, unbounded = _widening(best, other) if by == ENERGY else (0.0, False)
    out = Against(math.exp(est), unbounded=unbounded)
    shift = shift_interval(a, b, alpha)
    few = len(a) < MIN_REPETITIONS or len(b) < MIN_REPETITIONS
    if shift is not None and not few:
        out.low, out.high = math.exp(shift.log_low - widen), math.exp(shift.log_high + widen)
        out.separated = out.low > 1 or out.high < 1
        if out.separated:
            return out
    out.separated = False
    out.needed, out.why = _needed(a, b, est, widen, alpha)
    if shift is None or few:
        out.why = (
            f"{len(a)} and {len(b)} runs allow no {100 * (1 - alpha):g} % interval (at least "
            f"{max(min_repetitions(alpha), MIN_REPETITIONS)} a side); {out.why}"
        )
    return out


def _covers(frame: pl.DataFrame) -> str:
    covers = sorted({c for c in frame["total_energy_covers"].to_list() if c})
    if len(covers) < 2:
        return ""
    return (
        f"total energies cover different domains here ({', '.join(covers)}): a configuration whose total leaves "
        "out a device it did not use is not charged for that device's idle power"
    )


def group_of(model: str, where: str, frame: pl.DataFrame, unit: Unit, alpha: float) -> Group:
    configs = [config_of(name, runs, unit) for (name,), runs in groups(frame, ["configuration"])]
    by = ENERGY if any(c.energy for c in configs) else TIME
    ranked = sorted((c for c in configs if c.values(by)), key=lambda c: (c.median(by), c.name))
    unranked = [c for c in configs if not c.values(by)]
    g = Group(model, where, unit, by, ranked, [], unranked)
    g.against = [None] + [against(ranked[0], c, by, alpha) for c in ranked[1:]] if ranked else []
    missing = sorted({c.missing for c in configs if c.missing})
    g.missing = "; ".join(missing)
    g.covers = _covers(frame) if by == ENERGY else ""
    return g


def _serving_unit(frame: pl.DataFrame) -> Unit:
    tokens = frame["new_tokens"].to_list()
    return TOKEN if all(t for t in tokens) else REQUEST


def ranked_answer(ok: pl.DataFrame, energy: EnergyKind | None = None, alpha: float = DEFAULT_ALPHA) -> Answer:
    """The answer for the report's runs (duration-mode runs: per sample actually done)."""
    out: list[Group] = []
    batch = ok.filter(~pl.col("serving"))
    found = sorted(
        groups(batch, ["model", "model_size", "batch_size"]), key=lambda kg: (model_label(*kg[0][:2]), kg[0][2])
    )
    for (model, size, batch_size), frame in found:
        out.append(group_of(model_label(model, size), f"at batch {batch_size}", frame, SAMPLE, alpha))
    serving = ok.filter(pl.col("serving"))
    keys = ["model", "model_size", "load_variable", "load_value"]
    points = sorted(groups(serving, keys), key=lambda kg: (model_label(*kg[0][:2]), load_key(*kg[0][2:])))
    for (model, size, variable, value), frame in points:
        load = load_text(variable, value)
        where = "serving" + ("" if load == "n/a" else f" at {load}")
        out.append(group_of(model_label(model, size), where, frame, _serving_unit(frame), alpha))
    kind = {"net": "net of idle", "gross": "gross: idle not subtracted"}.get(energy.kind or "", "") if energy else ""
    return Answer(out, alpha, kind)
