"""Statistics per metric across configurations, two ways, labelled.

- The second paper's procedure as its table of hypotheses assigns it, per variable: Welch's ANOVA
  with Games-Howell for energy, execution time, CPU usage and RAM usage; Kruskal-Wallis with Dunn
  for GPU usage, GPU memory utilisation and GPU used memory.
- The data-driven choice its text describes: Welch's ANOVA + Games-Howell when Shapiro-Wilk finds
  every configuration normal (p > alpha), else Kruskal-Wallis + Dunn. Levene is reported.

Levene's test comes in two centrings: on the mean (Levene 1960) and on the median (Brown-Forsythe
1974, robust to skewed data). The second paper says it used "a Levene test" in Python without
naming a centring or a package; Python's usual tools centre on the median by default
(``scipy.stats.levene``, and ``pingouin.homoscedasticity``, which calls it), so the median-centred
test is the one reported as the paper's, and the mean-centred one beside it, each named.

The paper names no multiple-comparison correction: Dunn's p is shown uncorrected and with Holm;
Games-Howell's p is family-wise by construction (studentized range), shown beside the uncorrected
pairwise Welch t-test p and its Holm correction. Omnibus p-values are also Holm-corrected across
the model groups of one metric. A test on fewer than 3 values per configuration, or Welch's on a
configuration of zero variance, is n/a with the reason (at n = 2 Levene's p is 0 by construction).

Numbers come from scipy, pingouin and scikit-posthocs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from controller.report.cells import groups, model_label
from controller.report.columns import COLUMNS
from controller.report.data import flags_of, notes_of

ALPHA = 0.05
WELCH, KRUSKAL = "Welch's ANOVA", "Kruskal-Wallis"
LEVENE = "Levene, median-centred (Brown-Forsythe)"  # scipy's and pingouin's default: the paper's
LEVENE_MEAN = "Levene, mean-centred (Levene 1960)"
POSTHOC = {WELCH: "Games-Howell", KRUSKAL: "Dunn"}
STAT_METRICS = (
    "window_s",
    "throughput_sps",
    "latency_ms_p50",
    "total_energy",
    "cpu_energy",
    "dram_energy",
    "gpu_energy",
    "gpu_power_w",
    "cpu_usage_percent",
    "ram_usage_percent",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
    "cpu_usage_process_percent",
    "ram_usage_process_percent",
    "cpu_percent",
    "ram_peak_mib",
)
# Serving runs: the second paper's dependent variables (its Table 2), per token, and ours.
SERVING_STAT_METRICS = (
    "total_energy",
    "cpu_energy",
    "gpu_energy",
    "window_s",
    "cpu_usage_percent",
    "ram_usage_percent",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_mem_used_percent",
    "energy_per_token",
    "tokens_per_s",
    "gpu_power_w",
    "cpu_usage_process_percent",
    "ram_usage_process_percent",
    "cpu_percent",
    "ram_peak_mib",
)
# The second paper's Table 3: the test it assigns to each of its dependent variables.
PAPER_PROCEDURE = {
    "total_energy": WELCH,
    "window_s": WELCH,
    "cpu_usage_percent": WELCH,
    "ram_usage_percent": WELCH,
    "gpu_util_percent": KRUSKAL,
    "gpu_mem_util_percent": KRUSKAL,
    "gpu_mem_used_percent": KRUSKAL,
}


@dataclass
class Pair:
    a: str
    b: str
    p_uncorrected: float | None
    p_holm: float | None
    p_gameshowell: float | None = None  # family-wise by construction

    @property
    def p_familywise(self) -> float | None:
        return self.p_gameshowell if self.p_gameshowell is not None else self.p_holm


@dataclass
class Omnibus:
    test: str
    statistic: float | None = None
    p: float | None = None
    reason: str = ""  # why there is no p
    pairs: list[Pair] = field(default_factory=list)
    p_holm: float | None = None  # Holm across the model groups of one metric

    @property
    def posthoc(self) -> str:
        return POSTHOC.get(self.test, "")


@dataclass
class Comparison:
    group: str
    metric: str
    samples: dict[str, list[float]]
    shapiro_p: dict[str, float | None] = field(default_factory=dict)
    levene_p: float | None = None  # median-centred (Brown-Forsythe): LEVENE
    levene_reason: str = ""
    levene_mean_p: float | None = None  # mean-centred: LEVENE_MEAN
    bounds: dict[str, list[float | None]] = field(default_factory=dict)  # energy: each value's 95 % bound
    chosen: Omnibus | None = None  # the data-driven choice
    paper: Omnibus | None = None  # the paper's assigned test; None: not one of its variables
    note: str = ""
    flagged: str = ""

    @property
    def normal(self) -> bool:
        return bool(self.shapiro_p) and all(p is not None and p > ALPHA for p in self.shapiro_p.values())


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def too_few(samples: dict[str, list[float]]) -> str:
    small = [f"{k} (n = {len(v)})" for k, v in samples.items() if len(v) < 3]
    return f"fewer than 3 values in {', '.join(small)}" if small else ""


def holm(ps: list[float]) -> list[float]:
    import pingouin as pg

    if not ps:
        return []
    _, corrected = pg.multicomp(list(ps), alpha=ALPHA, method="holm")
    return [float(p) for p in corrected]


def _frame(samples: dict[str, list[float]]) -> Any:
    import pandas as pd

    return pd.DataFrame([(k, v) for k, vs in samples.items() for v in vs], columns=["configuration", "value"])


def welch(samples: dict[str, list[float]]) -> Omnibus:
    """Welch's ANOVA and Games-Howell (pingouin), with the uncorrected pairwise Welch t-tests."""
    import pingouin as pg
    from scipy import stats

    out = Omnibus(WELCH)
    if few := too_few(samples):
        out.reason = few
        return out
    zero = [k for k, v in samples.items() if max(v) == min(v)]
    if zero:
        out.reason = f"zero variance in {', '.join(zero)} (Welch's ANOVA weighs each configuration by 1/variance)"
        return out
    frame = _frame(samples)
    aov = pg.welch_anova(data=frame, dv="value", between="configuration")
    out.statistic, out.p = _finite(aov["F"].iloc[0]), _finite(aov["p_unc"].iloc[0])
    gh = pg.pairwise_gameshowell(data=frame, dv="value", between="configuration")
    pairs = [(str(r.A), str(r.B), float(r.pval)) for r in gh.itertuples()]
    raw = [float(stats.ttest_ind(samples[a], samples[b], equal_var=False).pvalue) for a, b, _ in pairs]
    out.pairs = [Pair(a, b, p, h, g) for (a, b, g), p, h in zip(pairs, raw, holm(raw), strict=True)]
    return out


def kruskal(samples: dict[str, list[float]]) -> Omnibus:
    """Kruskal-Wallis (scipy) and Dunn (scikit-posthocs), uncorrected and Holm."""
    import scikit_posthocs as sp
    from scipy import stats

    out = Omnibus(KRUSKAL)
    if few := too_few(samples):
        out.reason = few
        return out
    values = [v for vs in samples.values() for v in vs]
    if max(values) == min(values):
        out.reason = "every value is identical"
        return out
    kw = stats.kruskal(*samples.values())
    out.statistic, out.p = _finite(kw.statistic), _finite(kw.pvalue)
    frame = _frame(samples)
    raw = sp.posthoc_dunn(frame, val_col="value", group_col="configuration", p_adjust=None)
    adj = sp.posthoc_dunn(frame, val_col="value", group_col="configuration", p_adjust="holm")
    names = list(raw.columns)
    out.pairs = [
        Pair(str(a), str(b), float(raw.loc[a, b]), float(adj.loc[a, b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return out


def _checks(c: Comparison) -> None:
    """Shapiro-Wilk per configuration and Levene across them, n/a where degenerate."""
    from scipy import stats

    for name, vs in c.samples.items():
        c.shapiro_p[name] = _finite(stats.shapiro(vs).pvalue) if len(vs) >= 3 and max(vs) > min(vs) else None
    if few := too_few(c.samples):
        c.levene_reason = few
    elif all(max(v) == min(v) for v in c.samples.values()):
        c.levene_reason = "zero variance in every configuration"
    else:
        c.levene_p = _finite(stats.levene(*c.samples.values(), center="median").pvalue)
        c.levene_mean_p = _finite(stats.levene(*c.samples.values(), center="mean").pvalue)
        if c.levene_p is None:
            c.levene_reason = "undefined (zero spread around the medians)"


def compare(group: str, metric: str, samples: dict[str, list[float]]) -> Comparison:
    """Both procedures for one metric across configurations."""
    c = Comparison(group, metric, samples)
    if len(samples) < 2:
        c.note = "one configuration: nothing to compare"
        return c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _checks(c)
        run = {WELCH: welch, KRUSKAL: kruskal}
        if few := too_few(samples):
            c.chosen = Omnibus("", reason=f"{few}: normality cannot be checked")
        elif c.normal:
            c.chosen = welch(samples)
            equal = "n/a" if c.levene_p is None else ("equal" if c.levene_p > ALPHA else "unequal")
            c.note = f"normal (Shapiro-Wilk p > {ALPHA} everywhere); variances {equal} ({LEVENE})"
        else:
            c.chosen = kruskal(samples)
            small = [k for k, p in c.shapiro_p.items() if p is None]
            c.note = (
                f"normality not testable (constant values) for {', '.join(small)}"
                if small
                else f"not normal (Shapiro-Wilk p <= {ALPHA} somewhere)"
            )
        if metric in PAPER_PROCEDURE:
            test = PAPER_PROCEDURE[metric]
            same = c.chosen is not None and c.chosen.test == test and not c.chosen.reason
            # A copy when the tests agree: its Holm correction runs over another family.
            c.paper = replace(c.chosen) if same and c.chosen is not None else run[test](samples)
    return c


def _correct_across_groups(comparisons: list[Comparison]) -> None:
    for metric in {c.metric for c in comparisons}:
        for which in ("chosen", "paper"):
            done = [o for c in comparisons if c.metric == metric and (o := getattr(c, which)) is not None]
            done = [o for o in done if o.p is not None]
            for o, p in zip(done, holm([float(o.p or 0.0) for o in done]), strict=True):
                o.p_holm = p


def _samples(group: pl.DataFrame, metric: str) -> tuple[dict[str, list[float]], dict[str, list[float | None]]]:
    """Per configuration, the measured values of ``metric`` and (an energy) each one's bound."""
    bound = f"{metric}_uncertainty"
    samples: dict[str, list[float]] = {}
    bounds: dict[str, list[float | None]] = {}
    for (conf,), runs in groups(group, ["configuration"]):
        cols = [metric, bound] if bound in runs.columns else [metric]
        rows = [r for r in runs.select(cols).iter_rows() if r[0] is not None]
        if rows:
            samples[conf] = [r[0] for r in rows]
            if len(cols) == 2:
                bounds[conf] = [r[1] for r in rows]
    return samples, bounds


def run_tests(ok: pl.DataFrame) -> tuple[list[Comparison], list[str]]:
    """Tests for every model × batch and metric with data; and why the other metrics have none."""
    comparisons: list[Comparison] = []
    unmeasured: dict[str, list[str]] = {}
    for (model, size, batch), group in groups(ok, ["model", "model_size", "batch_size"]):
        serving = bool(group["serving"].any())
        label = f"{model_label(model, size)} {'serving' if serving else f'b{batch}'}"
        for metric in SERVING_STAT_METRICS if serving else STAT_METRICS:
            samples, bounds = _samples(group, metric)
            if not samples:
                unmeasured.setdefault(metric, notes_of(group, metric))
                continue
            c = compare(label, metric, samples)
            c.bounds = bounds
            flagged = flags_of(group, metric)
            if flagged:
                runs_flagged = len({r for r, _, _ in flagged})
                codes = ", ".join(sorted({code for _, code, _ in flagged}))
                c.flagged = f"{runs_flagged} of {group.height} runs flagged by the meters for this metric ({codes})"
            comparisons.append(c)
    _correct_across_groups(comparisons)
    notes = [
        f"{COLUMNS[m].label}: not measured in these runs ({'; '.join(r) or 'no reason recorded'})"
        for m, r in unmeasured.items()
    ]
    return comparisons, notes
