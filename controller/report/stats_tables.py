"""The statistics as tables: per group and metric, the pairs, the descriptive figures, and the
summary across model groups that the papers' claims rest on ("significant in k of 12 models")."""

from __future__ import annotations

import statistics

from controller.report.cells import aggregate_bound
from controller.report.columns import COLUMNS, header
from controller.report.stats import ALPHA, LEVENE, LEVENE_MEAN, PAPER_PROCEDURE, Comparison, Omnibus
from controller.report.table import Table, Value, bounded_value, fmt_number, fmt_p, num_value, text_value

PROCEDURES = (("chosen", "data-driven"), ("paper", "the paper's"))


def _p(t: Table, p: float | None, reason: str = "") -> Value:
    v = Value(fmt_p(p), p)
    if p is None and reason:
        v.notes.append(t.note(reason))
    return v


def _yes(p: float | None) -> Value:
    return text_value("-" if p is None else ("yes" if p < ALPHA else "no"))


def _omnibus_cells(t: Table, o: Omnibus | None, absent: str) -> list[Value]:
    if o is None:
        return [
            text_value("-"),
            text_value("-"),
            Value("-", None, notes=[t.note(absent)]),
            text_value("-"),
            text_value("-"),
        ]
    test = text_value(o.test or "n/a")
    return [
        test,
        Value(fmt_number(o.statistic), o.statistic),
        _p(t, o.p, o.reason),
        Value(fmt_p(o.p_holm), o.p_holm),
        _yes(o.p),
    ]


def tests_table(tests: list[Comparison], unmeasured: list[str]) -> Table:
    t = Table(
        "stats",
        "Statistics per metric across configurations: the data-driven choice and the paper's procedure",
        [
            "Group",
            "Metric",
            "Configurations (n)",
            "Shapiro-Wilk min p",
            f"{LEVENE} p",
            f"{LEVENE_MEAN} p",
            "Test",
            "Statistic",
            "p",
            "p Holm (across groups)",
            f"p < {ALPHA}",
            "Paper's test",
            "Paper's statistic",
            "Paper's p",
            "Paper's p Holm (across groups)",
            f"Paper's p < {ALPHA}",
        ],
    )
    for x in tests:
        sw = [p for p in x.shapiro_p.values() if p is not None]
        row = [
            text_value(x.group),
            text_value(header(x.metric)),
            text_value(", ".join(f"{k} ({len(v)})" for k, v in x.samples.items())),
            Value(fmt_p(min(sw)) if sw else "n/a", min(sw) if sw else None),
            _p(t, x.levene_p, x.levene_reason),
            _p(t, x.levene_mean_p, x.levene_reason),
        ]
        if not sw and x.shapiro_p:
            row[3].notes.append(t.note("normality not testable: fewer than 3 values or constant values"))
        row += _omnibus_cells(t, x.chosen, x.note or "nothing to compare")
        row += _omnibus_cells(t, x.paper, "not one of the second paper's dependent variables: it assigns no test")
        if x.note and x.chosen is not None:
            row[6].notes.append(t.note(x.note))
        if x.flagged:
            row[1].notes.append(t.note(x.flagged))
        t.rows.append(row)
    t.remarks += unmeasured
    t.remarks.append(
        "Test / Statistic / p: the data-driven choice (Welch's ANOVA + Games-Howell when Shapiro-Wilk finds every "
        "configuration normal, else Kruskal-Wallis + Dunn). Paper's test: the second paper's Table 3 assignment per "
        "variable (Welch's ANOVA for energy, time, CPU and RAM usage; Kruskal-Wallis for GPU usage, GPU memory "
        "utilisation and GPU used memory), whatever the data. p is uncorrected; p Holm corrects it across the "
        "model groups of the same metric (the paper names no correction). n/a: fewer than 3 values per "
        "configuration, or zero variance, with the reason."
    )
    t.remarks.append(
        f"Levene's test, two centrings: {LEVENE} — deviations from each configuration's median, robust to "
        f"skew; the one the data-driven choice reads — and {LEVENE_MEAN}, beside it. The second paper used "
        '"a Levene test" in Python without naming its centring; Python\'s usual tools (scipy.stats.levene, and '
        "pingouin.homoscedasticity, which calls it) centre on the median by default, so the median-centred one is "
        "taken as the paper's."
    )
    return t


def posthoc_table(tests: list[Comparison]) -> Table:
    t = Table(
        "posthoc",
        "Post-hoc pairwise comparisons",
        [
            "Group",
            "Metric",
            "Procedure",
            "Test",
            "A",
            "B",
            "p uncorrected",
            "p Holm",
            "p Games-Howell",
            f"differ (family-wise p < {ALPHA})",
        ],
    )
    for x in tests:
        shown: list[tuple[str, Omnibus]] = []
        for which, label in PROCEDURES:
            o: Omnibus | None = getattr(x, which)
            if o is None or not o.pairs:
                continue
            if shown and shown[0][1].test == o.test:
                continue  # the paper's test is the data-driven choice here: one set of rows
            shown.append((label, o))
        both = len(shown) == 1 and x.paper is not None and x.chosen is not None and x.paper.test == x.chosen.test
        for label, o in shown:
            for pair in o.pairs:
                t.rows.append(
                    [
                        text_value(x.group),
                        text_value(COLUMNS[x.metric].label),
                        text_value("data-driven = the paper's" if both else label),
                        text_value(o.posthoc),
                        text_value(pair.a),
                        text_value(pair.b),
                        Value(fmt_p(pair.p_uncorrected), pair.p_uncorrected),
                        Value(fmt_p(pair.p_holm), pair.p_holm),
                        Value(fmt_p(pair.p_gameshowell), pair.p_gameshowell),
                        _yes(pair.p_familywise),
                    ]
                )
    t.remarks.append(
        "Dunn: p uncorrected and Holm-corrected over the pairs (scikit-posthocs). Games-Howell: its own p is "
        "family-wise by construction (studentized range, pingouin); beside it the uncorrected pairwise Welch "
        "t-test p (scipy) and its Holm correction. 'differ' uses the family-wise p: Games-Howell's, or Dunn's Holm."
    )
    return t


def _centre(t: Table, x: Comparison, conf: str, stat: str) -> Value:
    """The mean (median) of a configuration's values; an energy with its bound, or why it has none."""
    vs = x.samples[conf]
    centre = statistics.fmean(vs) if stat == "mean" else statistics.median(vs)
    if conf not in x.bounds:
        return num_value(centre)
    bounds = x.bounds[conf]
    if any(u is None for u in bounds):
        v = bounded_value(centre, None)
        missing = sum(u is None for u in bounds)
        v.notes.append(
            t.note(
                f"no ±: {missing} of {len(bounds)} runs state no bound (written before joulebench stated bounds, "
                "or a net figure whose idle baseline has no spread)"
            )
        )
        return v
    return bounded_value(centre, aggregate_bound(vs, [float(u or 0.0) for u in bounds], stat))


def descriptive_table(tests: list[Comparison]) -> Table:
    t = Table(
        "descriptive",
        "Descriptive statistics per configuration",
        ["Group", "Metric", "Configuration", "n", "Mean", "Median", "SD", "CV"],
    )
    t.bounded = {4, 5}
    for x in tests:
        for conf, vs in x.samples.items():
            sd = statistics.stdev(vs) if len(vs) > 1 else None
            mean = statistics.fmean(vs)
            cv = sd / mean if sd is not None and mean else None
            t.rows.append(
                [
                    text_value(x.group),
                    text_value(header(x.metric)),
                    text_value(conf),
                    Value(str(len(vs)), len(vs)),
                    _centre(t, x, conf, "mean"),
                    _centre(t, x, conf, "median"),
                    num_value(sd),
                    Value("n/a" if cv is None else f"{cv:.1%}", cv),
                ]
            )
    t.remarks.append(
        "Energy: Mean ± and Median ± bound the measurement (each run within its own 95 % bound); SD and CV are the "
        "spread across runs, a different thing. A record written before joulebench stated bounds shows its energy "
        "without ±."
    )
    return t


def _k_of(tests: list[Omnibus | None], attr: str) -> tuple[int, int]:
    done = [o for o in tests if o is not None and getattr(o, attr) is not None]
    return sum(1 for o in done if getattr(o, attr) < ALPHA), len(done)


def summary_table(tests: list[Comparison]) -> Table:
    """Per metric and procedure: in how many model groups the configurations differ."""
    t = Table(
        "summary",
        "Across model groups: in how many does the configuration make a significant difference",
        [
            "Metric",
            "Procedure",
            "Tests used",
            "Groups",
            f"Significant (p < {ALPHA})",
            "Significant, Holm across groups",
            "Not tested",
        ],
    )
    metrics = list(dict.fromkeys(x.metric for x in tests))
    metrics.sort(
        key=lambda m: (m not in PAPER_PROCEDURE, list(PAPER_PROCEDURE).index(m) if m in PAPER_PROCEDURE else 0)
    )
    for metric in metrics:
        mine = [x for x in tests if x.metric == metric and len(x.samples) > 1]
        if not mine:
            continue
        start = len(t.rows)
        t.group_starts.add(start)
        for which, label in PROCEDURES:
            omni = [getattr(x, which) for x in mine]
            if which == "paper" and all(o is None for o in omni):
                continue
            used = [o.test for o in omni if o is not None and o.p is not None]
            counts = ", ".join(f"{name} × {used.count(name)}" for name in dict.fromkeys(used)) or "-"
            k, n = _k_of(omni, "p")
            kh, _ = _k_of(omni, "p_holm")
            why = sorted({o.reason for o in omni if o is not None and o.p is None and o.reason})
            missing = len(mine) - n
            not_tested = Value(f"{missing}" if missing else "0", missing)
            if why:
                not_tested.notes.append(t.note("; ".join(why)))
            t.rows.append(
                [
                    text_value(header(metric)),
                    text_value(label),
                    text_value(counts),
                    Value(str(len(mine)), len(mine)),
                    text_value(f"in {k} of {n} tested"),
                    text_value(f"in {kh} of {n} tested"),
                    not_tested,
                ]
            )
    t.remarks.append(
        "A group is one model × batch size (batch runs) or one model (serving runs). The second paper states its "
        "results this way (e.g. execution time did not differ between two configurations in 3 of the 12 models)."
    )
    return t


def pairs_summary_table(tests: list[Comparison]) -> Table:
    """Per metric, procedure and pair of configurations: in how many groups the pair differs."""
    t = Table(
        "pairs_summary",
        "Across model groups: in how many does each pair of configurations differ (post-hoc)",
        ["Metric", "Procedure", "Post-hoc", "A", "B", "Groups tested", "Differ (family-wise)", "Differ (uncorrected)"],
    )
    for metric in dict.fromkeys(x.metric for x in tests):
        for which, label in PROCEDURES:
            counts: dict[tuple[str, str, str], list[tuple[float | None, float | None]]] = {}
            for x in tests:
                o: Omnibus | None = getattr(x, which)
                if x.metric != metric or o is None:
                    continue
                for p in o.pairs:
                    a, b = sorted((p.a, p.b))
                    counts.setdefault((o.posthoc, a, b), []).append((p.p_familywise, p.p_uncorrected))
            for (posthoc, a, b), ps in sorted(counts.items()):
                fam = sum(1 for f, _ in ps if f is not None and f < ALPHA)
                unc = sum(1 for _, u in ps if u is not None and u < ALPHA)
                t.rows.append(
                    [
                        text_value(COLUMNS[metric].label),
                        text_value(label),
                        text_value(posthoc),
                        text_value(a),
                        text_value(b),
                        Value(str(len(ps)), len(ps)),
                        text_value(f"in {fam} of {len(ps)}"),
                        text_value(f"in {unc} of {len(ps)}"),
                    ]
                )
    return t
