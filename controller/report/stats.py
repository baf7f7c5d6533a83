"""Statistics per metric across configurations, as the second paper did.

Per model × batch size and metric: Shapiro-Wilk per configuration and Levene across them; when
every configuration looks normal (Shapiro-Wilk p > alpha, n >= 3), Welch's ANOVA with Games-Howell
post-hoc (pingouin; Welch's needs no equal variances, Levene is reported), else Kruskal-Wallis
(scipy) with Dunn's post-hoc, Holm-corrected (scikit-posthocs). Spearman's rho between time and
energy (and GPU utilisation and power) across all runs, as the first paper reported.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from controller.report.data import METRICS, notes_of
from controller.report.papers import _groups, model_label
from controller.report.table import Table, Value, fmt_number, fmt_p, num_value, text_value

ALPHA = 0.05
STAT_METRICS = (
    "window_s",
    "throughput_sps",
    "latency_ms_p50",
    "total_energy",
    "cpu_energy",
    "gpu_energy",
    "gpu_power_w",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "cpu_percent",
    "ram_peak_mib",
)
# Serving runs: the second paper's dependent variables (its Table 2), per request and per token.
SERVING_STAT_METRICS = (
    "total_energy",
    "cpu_energy",
    "gpu_energy",
    "window_s",
    "energy_per_token",
    "tokens_per_s",
    "cpu_percent",
    "ram_peak_mib",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_power_w",
)
CORRELATIONS = (("window_s", "total_energy"), ("gpu_util_percent", "gpu_power_w"))


@dataclass
class Test:
    group: str
    metric: str
    samples: dict[str, list[float]]
    shapiro_p: dict[str, float | None] = field(default_factory=dict)
    levene_p: float | None = None
    test: str = ""
    statistic: float | None = None
    p: float | None = None
    posthoc_name: str = ""
    posthoc: list[tuple[str, str, float]] = field(default_factory=list)
    note: str = ""

    @property
    def normal(self) -> bool:
        return bool(self.shapiro_p) and all(p is not None and p > ALPHA for p in self.shapiro_p.values())


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def compare(group: str, metric: str, samples: dict[str, list[float]]) -> Test:
    """Choose and run the omnibus test and its post-hoc for one metric across configurations."""
    import pandas as pd
    import pingouin as pg
    import scikit_posthocs as sp
    from scipy import stats

    t = Test(group, metric, samples)
    if len(samples) < 2:
        t.note = "one configuration: nothing to compare"
        return t
    values = [v for vs in samples.values() for v in vs]
    if max(values) == min(values):
        t.note = "every value is identical: no test"
        return t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, vs in samples.items():
            if len(vs) >= 3 and max(vs) > min(vs):
                t.shapiro_p[name] = _finite(stats.shapiro(vs).pvalue)
            else:
                t.shapiro_p[name] = None
        t.levene_p = _finite(stats.levene(*samples.values()).pvalue)
        frame = pd.DataFrame([(k, v) for k, vs in samples.items() for v in vs], columns=["configuration", "value"])
        if t.normal:
            aov = pg.welch_anova(data=frame, dv="value", between="configuration")
            t.test, t.statistic, t.p = "Welch's ANOVA", _finite(aov["F"].iloc[0]), _finite(aov["p_unc"].iloc[0])
            gh = pg.pairwise_gameshowell(data=frame, dv="value", between="configuration")
            t.posthoc_name = "Games-Howell"
            t.posthoc = [(str(r.A), str(r.B), float(r.pval)) for r in gh.itertuples()]
            if t.levene_p is not None:
                equal = "equal" if t.levene_p > ALPHA else "unequal"
                t.note = f"normal (Shapiro-Wilk p > {ALPHA}); variances {equal} (Levene)"
        else:
            kw = stats.kruskal(*samples.values())
            t.test, t.statistic, t.p = "Kruskal-Wallis", _finite(kw.statistic), _finite(kw.pvalue)
            dunn = sp.posthoc_dunn(frame, val_col="value", group_col="configuration", p_adjust="holm")
            names = list(dunn.columns)
            t.posthoc_name = "Dunn (Holm)"
            t.posthoc = [(str(a), str(b), float(dunn.loc[a, b])) for i, a in enumerate(names) for b in names[i + 1 :]]
            small = [k for k, p in t.shapiro_p.items() if p is None]
            t.note = (
                f"normality not testable (n < 3 or constant) for {', '.join(small)}"
                if small
                else f"not normal (Shapiro-Wilk p <= {ALPHA} somewhere)"
            )
    return t


def run_tests(ok: pl.DataFrame) -> tuple[list[Test], list[str]]:
    """Tests for every model × batch and metric with data; and why the other metrics have none."""
    tests: list[Test] = []
    unmeasured: dict[str, list[str]] = {}
    for (model, size, batch), group in _groups(ok, ["model", "model_size", "batch_size"]):
        serving = bool(group["serving"].any())
        label = f"{model_label(model, size)} {'serving' if serving else f'b{batch}'}"
        for metric in SERVING_STAT_METRICS if serving else STAT_METRICS:
            samples = {
                conf: [v for v in runs[metric].to_list() if v is not None]
                for (conf,), runs in _groups(group, ["configuration"])
            }
            samples = {k: v for k, v in samples.items() if v}
            if not samples:
                unmeasured.setdefault(metric, notes_of(group, metric))
                continue
            tests.append(compare(label, metric, samples))
    notes = [
        f"{METRICS[m].label}: not measured in these runs ({'; '.join(r) or 'no reason recorded'})"
        for m, r in unmeasured.items()
    ]
    return tests, notes


@dataclass
class Correlation:
    x: str
    y: str
    n: int
    rho: float | None
    p: float | None
    note: str = ""


def correlations(ok: pl.DataFrame) -> list[Correlation]:
    from scipy import stats

    out = []
    for x, y in CORRELATIONS:
        pairs = [(a, b) for a, b in ok.select(x, y).iter_rows() if a is not None and b is not None]
        if len(pairs) < 3:
            missing = [c for c in (x, y) if ok[c].null_count() == ok.height]
            why = "; ".join(f"{METRICS[c].label}: {'; '.join(notes_of(ok, c)) or 'not measured'}" for c in missing)
            out.append(Correlation(x, y, len(pairs), None, None, why or "fewer than 3 runs measure both"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        out.append(Correlation(x, y, len(pairs), _finite(res.statistic), _finite(res.pvalue)))
    return out


# --- as tables ------------------------------------------------------------------------------


def tests_table(tests: list[Test], unmeasured: list[str]) -> Table:
    t = Table(
        "stats",
        "Statistics per metric across configurations",
        [
            "Group",
            "Metric",
            "Configurations (n)",
            "Shapiro-Wilk min p",
            "Levene p",
            "Test",
            "Statistic",
            "p",
            f"p < {ALPHA}",
        ],
    )
    for x in tests:
        sw = [p for p in x.shapiro_p.values() if p is not None]
        row = [
            text_value(x.group),
            text_value(f"{METRICS[x.metric].label} ({METRICS[x.metric].unit})"),
            text_value(", ".join(f"{k} ({len(v)})" for k, v in x.samples.items())),
            Value(fmt_p(min(sw)) if sw else "n/a", min(sw) if sw else None),
            Value(fmt_p(x.levene_p), x.levene_p),
            text_value(x.test or "-"),
            Value(fmt_number(x.statistic), x.statistic),
            Value(fmt_p(x.p), x.p),
            text_value("-" if x.p is None else ("yes" if x.p < ALPHA else "no")),
        ]
        if x.note:
            row[5].notes.append(t.note(x.note))
        if not sw:
            row[3].notes.append(t.note("normality not testable: fewer than 3 repetitions or constant values"))
        t.rows.append(row)
    t.remarks += unmeasured
    t.remarks.append(
        "Normal everywhere: Welch's ANOVA and Games-Howell; otherwise Kruskal-Wallis and Dunn with Holm "
        "correction (the second paper's procedure)."
    )
    return t


def posthoc_table(tests: list[Test]) -> Table:
    t = Table("posthoc", "Post-hoc pairwise comparisons", ["Group", "Metric", "Test", "A", "B", "p", f"p < {ALPHA}"])
    for x in tests:
        for a, b, p in x.posthoc:
            t.rows.append(
                [
                    text_value(x.group),
                    text_value(METRICS[x.metric].label),
                    text_value(x.posthoc_name),
                    text_value(a),
                    text_value(b),
                    Value(fmt_p(p), p),
                    text_value("yes" if p < ALPHA else "no"),
                ]
            )
    return t


def descriptive_table(tests: list[Test]) -> Table:
    t = Table(
        "descriptive",
        "Descriptive statistics per configuration",
        ["Group", "Metric", "Configuration", "n", "Mean", "Median", "SD", "CV"],
    )
    for x in tests:
        for conf, vs in x.samples.items():
            sd = statistics.stdev(vs) if len(vs) > 1 else None
            mean = statistics.fmean(vs)
            cv = sd / mean if sd is not None and mean else None
            t.rows.append(
                [
                    text_value(x.group),
                    text_value(f"{METRICS[x.metric].label} ({METRICS[x.metric].unit})"),
                    text_value(conf),
                    Value(str(len(vs)), len(vs)),
                    num_value(mean),
                    num_value(statistics.median(vs)),
                    num_value(sd),
                    Value("n/a" if cv is None else f"{cv:.1%}", cv),
                ]
            )
    return t


def correlation_table(corrs: list[Correlation]) -> Table:
    t = Table("correlations", "Spearman's rank correlation across all runs", ["X", "Y", "n", "ρ", "p"])
    for c in corrs:
        row = [
            text_value(METRICS[c.x].label),
            text_value(METRICS[c.y].label),
            Value(str(c.n), c.n),
            Value("n/a" if c.rho is None else f"{c.rho:.3f}", c.rho),
            Value(fmt_p(c.p), c.p),
        ]
        if c.note:
            row[3].notes.append(t.note(c.note))
        t.rows.append(row)
    return t
