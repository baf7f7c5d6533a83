"""Stability and provenance per configuration, the meters' flags per run, and failed runs."""

from __future__ import annotations

import json
import statistics

import polars as pl

from controller.report.cells import groups, model_label
from controller.report.data import notes_of
from controller.report.table import Table, Value, num_value, text_value

CV_WARNING = 0.05


def cv(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def stability(ok: pl.DataFrame) -> Table:
    t = Table(
        "stability",
        "Stability and provenance per configuration",
        [
            "Model",
            "Batch",
            "Configuration",
            "Runs",
            "Inference time (s)",
            "CV time",
            "CV total energy",
            "Warning",
            "Hosts",
            "GPUs / driver",
            "Image / environment",
            "Lock / base",
        ],
    )
    for (model, size, batch, conf), runs in groups(ok, ["model", "model_size", "batch_size", "configuration"]):
        times = [v for v in runs["window_s"].to_list() if v is not None]
        energies = [v for v in runs["total_energy"].to_list() if v is not None]
        cv_t, cv_e = cv(times), cv(energies)
        warn = []
        if runs.height < 3:
            warn.append(f"only {runs.height} repetition{'s' if runs.height != 1 else ''}")
        for name, c in (("time", cv_t), ("energy", cv_e)):
            if c is not None and c > CV_WARNING:
                warn.append(f"{name} CV {c:.1%} > {CV_WARNING:.0%}")
        flagged = sum(1 for text in runs["flags"].to_list() if any(f["columns"] for f in json.loads(text or "[]")))
        if flagged:
            warn.append(f"{flagged} run{'s' if flagged != 1 else ''} flagged by the meters")

        def pct(c: float | None, what: str, energies: list[float] = energies, runs: pl.DataFrame = runs) -> Value:
            if c is not None:
                return Value(f"{c:.1%}", c)
            if what == "energy" and not energies:
                return Value("n/a", None, notes=[t.note(n) for n in notes_of(runs, "total_energy")])
            return Value("n/a", None, notes=[t.note("fewer than 2 measured repetitions")])

        hosts = sorted({f"{h} ({fp})" for h, fp in runs.select("host", "fingerprint_id").iter_rows()})
        gpus = sorted({f"{g} / {d}" for g, d in runs.select("gpu_names", "driver").iter_rows()})
        envs = sorted(set(runs["environment"].to_list()))
        builds = sorted(
            {
                f"lock {str(lock)[:12]}, base {base or 'n/a'}"
                for lock, base in runs.select("lock_sha256", "base_digest").iter_rows()
                if lock
            }
        )
        t.rows.append(
            [
                text_value(model_label(model, size)),
                Value(str(batch), batch),
                text_value(conf),
                Value(str(runs.height), runs.height),
                num_value(statistics.fmean(times) if times else None),
                pct(cv_t, "time"),
                pct(cv_e, "energy"),
                text_value("; ".join(warn) or "-"),
                text_value(", ".join(hosts)),
                text_value(", ".join(gpus)),
                text_value(" | ".join(envs)),
                text_value(" | ".join(builds) or "n/a (not a Docker run of a locked image)"),
            ]
        )
    t.remarks.append(
        f"CV: coefficient of variation (sample standard deviation / mean); warning above {CV_WARNING:.0%}."
    )
    return t


def flags_table(ok: pl.DataFrame) -> Table | None:
    """Every flag the meters (or a serving point's checks) raised on the runs the tables use, and the
    columns it marks."""
    t = Table(
        "flags",
        "Flags raised by the meters and the serving checks",
        ["Run", "Configuration", "Model", "Batch", "Flag", "Marks", "Message"],
    )
    informative: dict[str, int] = {}
    for r in ok.sort("run_id").iter_rows(named=True):
        for f in json.loads(r["flags"] or "[]"):
            if not f["columns"]:
                informative[f["code"]] = informative.get(f["code"], 0) + 1
                continue
            t.rows.append(
                [
                    text_value(r["run_id"]),
                    text_value(r["configuration"] or "-"),
                    text_value(model_label(r["model"], r["model_size"])),
                    Value(str(r["batch_size"]), r["batch_size"]),
                    text_value(f["code"]),
                    text_value(", ".join(f["columns"])),
                    text_value(f["message"]),
                ]
            )
    if not t.rows and not informative:
        return None
    t.remarks.append(
        "A table cell built from a run flagged for its column carries ⚠ and a footnote; it is never averaged silently."
    )
    if informative:
        shown = ", ".join(f"{code} on {n} run{'s' if n != 1 else ''}" for code, n in sorted(informative.items()))
        t.remarks.append(f"Flags that put no figure in doubt (the energy kind above says what they mean): {shown}.")
    return t


def failures(failed: pl.DataFrame, ok: pl.DataFrame) -> Table:
    t = Table("failures", "Failed runs", ["Run", "Cell", "Configuration", "Model", "Batch", "Reason", "Later ok"])
    ok_cells = set(ok["cell_id"].to_list())
    for r in failed.sort("run_id").iter_rows(named=True):
        t.rows.append(
            [
                text_value(r["run_id"]),
                text_value(r["cell_id"] or "-"),
                text_value(r["configuration"] or "-"),
                text_value(model_label(r["model"], r["model_size"])),
                Value(str(r["batch_size"]), r["batch_size"]),
                text_value(r["failure_reason"] or "?"),
                text_value("yes" if r["cell_id"] in ok_cells else "no"),
            ]
        )
    return t
