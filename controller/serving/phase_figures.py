"""A load point's energy split the way its requests spent it, as record figures: prefill and decode
(per domain, static and active), J per prompt token and per output token from each phase's own
energy, static and active over the window and the steady window, each request's energy and its
distribution, ML.ENERGY's steady window beside ours, and the least-squares cross-check.

Every figure is unavailable with the reason where it cannot be had: no meter (``cpu_energy_j``
... all unavailable), or, for static and active, no idle baseline. ``value`` is gross (what the
meters measured in the phase); ``static_j`` the idle baseline's power over the phase's time;
``active_j`` the rest. Bounds: ``uncertainty_j`` (of the gross figure; its parts in
``uncertainty_components``: the meters, and the attribution's own where phases shared time) and
``active_uncertainty_j`` (adding what the idle baseline's spread allows over the phase's time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.meters.timeline import domain_curves
from controller.serving.client import RequestResult
from controller.serving.load import LoadPoint
from controller.serving.metrics import tokens_between
from controller.serving.mlenergy import mlenergy_window
from controller.serving.phase_fit import cross_check, fit
from controller.serving.phases import FIT_COLUMNS, Attribution, Idle, attribute
from controller.serving.request_energy import DISTRIBUTIONS, distribution, request_fields, static_power

Summarize = Callable[[int, int], dict[str, Any]]
PHASE_KEYS = {"prefill": "prefill_energy_j", "decode": "decode_energy_j", "other": "other_energy_j"}
METHOD = (
    "the window cut at the meters' sampling interval and at every request's phase boundaries; each piece's "
    "energy (each domain's cumulative energy at its ends: counters placed at their update instants, valued "
    "between them as a window edge is) shared among the requests working in it in proportion to their work "
    "(prompt tokens processed in prefill, output tokens generated in decode, each weighed by its cost per token "
    "as the least-squares fit over the window finds it, else one unit each: see weights); static = the idle "
    "baseline's power x the piece, shared the same way; pieces where no request worked are 'other'"
)
PHASE_TIMES = (
    "prefill: from the request sent (or, where the server says how long its prefill took, that long before "
    "the first token) to its first token; decode: first token to last; the engine's own token times where "
    "the server gives them, else the client's"
)


def _unavailable(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": None, "unit": "J", "available": False, "reason": reason, **extra}


# -- the idle baseline -----------------------------------------------------------------------


def idle_of(meters: Any, measurements: dict[str, Any]) -> Idle:
    """Idle power per domain as the window's figures subtracted it, and the bound of idle power over
    a span (the baseline's spread at that length, as a net figure's bound allows it)."""
    metrics = measurements.get("metrics") or {}
    power: dict[str, float | None] = {}
    reason: dict[str, str] = {}
    for d in ("cpu", "dram", "gpu"):
        m = metrics.get(f"{d}_energy_j") or {}
        power[d] = m.get("idle_power_w")
        if power[d] is None:
            reason[d] = m.get("net_reason") or "no idle baseline"
    status = getattr(meters, "baseline", None)
    baseline = status.baseline if status is not None and status.usable else None
    gpus = [g.uuid for g in meters.nvml.gpus] if meters.nvml.gpus else meters.gpu_uuids

    def bound(domain: str, seconds: float) -> float | None:
        if baseline is None or seconds <= 0:
            return 0.0 if baseline is not None else None
        spread = baseline.spread(domain, seconds, gpus)
        return None if spread is None else (2.0 * spread[0] + spread[1]) * seconds

    return Idle(power, reason, bound)


# -- static and active over a window ---------------------------------------------------------


def window_static_active(measurements: dict[str, Any] | None, idle: Idle | None, scope: str) -> dict[str, Any]:
    """``static`` and ``active`` over a whole window from its measured total (idle_j and net_j)."""
    names = ("static_energy_j", "active_energy_j")
    total = ((measurements or {}).get("metrics") or {}).get("total_energy_j") or {}
    if not total.get("available"):
        why = total.get("reason") or f"no {scope} measured"
        return {n: _unavailable(n, why, scope=scope) for n in names}
    if total.get("net_j") is None:
        why = f"no idle baseline to split static from active: {total.get('net_reason')}"
        return {n: _unavailable(n, why, scope=scope) for n in names}
    window_s = float(measurements.get("window_s") or 0.0)  # type: ignore[union-attr]
    parts = [idle.bound(d, window_s) for d in total.get("covers") or []] if idle else [None]
    static_bound = sum(p for p in parts if p is not None) if parts and None not in parts else None
    common = {"unit": "J", "available": True, "reason": None, "scope": scope, "covers": total.get("covers")}
    return {
        "static_energy_j": {
            "name": "static_energy_j",
            "value": total["idle_j"],
            "uncertainty_j": static_bound,
            "definition": "the idle baseline's power x the window, per domain",
            **common,
        },
        "active_energy_j": {
            "name": "active_energy_j",
            "value": total["net_j"],
            "uncertainty_j": total.get("net_uncertainty_j"),
            "definition": "the window's energy less its static part (net of idle)",
            **common,
        },
    }


# -- phases ----------------------------------------------------------------------------------


def _domain(attr: Attribution, phase: str, d: str, idle: Idle) -> dict[str, Any]:
    s = attr.phases
    gross, meters = s.gross[phase][d], s.meter_bound[phase][d]
    out: dict[str, Any] = {"gross_j": gross, "uncertainty_j": meters + s.split_bound[phase][d]}
    if idle.power_w.get(d) is None:
        return out | {"static_j": None, "active_j": None, "active_reason": idle.reason.get(d, "no idle baseline")}
    idle_bound = idle.bound(d, s.time_s[phase])
    out["static_j"] = s.static[phase][d]
    out["active_j"] = gross - s.static[phase][d]
    out["active_uncertainty_j"] = None if idle_bound is None else meters + s.split_bound_active[phase][d] + idle_bound
    return out


def phase_metric(attr: Attribution, phase: str, covers: list[str], idle: Idle, tokens: float) -> dict[str, Any]:
    """One phase's figure over the covered domains (see the module's docstring)."""
    name = PHASE_KEYS[phase]
    missing = {d: attr.unavailable.get(d, "no curve") for d in covers if d not in attr.domains}
    if missing:
        why = "; ".join(f"{d}: {r}" for d, r in missing.items())
        return _unavailable(name, f"the window's energy cannot be cut at instants inside it: {why}")
    per = {d: _domain(attr, phase, d, idle) for d in covers}
    s = attr.phases
    statics = [p["static_j"] for p in per.values()]
    active_ok = all(x is not None for x in statics)
    active_bounds = [p.get("active_uncertainty_j") for p in per.values()]
    reasons = sorted({p["active_reason"] for p in per.values() if p.get("active_reason")})
    return {
        "name": name,
        "value": sum(p["gross_j"] for p in per.values()),
        "unit": "J",
        "available": True,
        "reason": None,
        "covers": covers,
        "time_s": s.time_s[phase],
        "tokens": tokens,
        "uncertainty_j": sum(p["uncertainty_j"] for p in per.values()),
        "uncertainty_components": {
            "meters": sum(s.meter_bound[phase][d] for d in covers),
            "phase_split": sum(s.split_bound[phase][d] for d in covers),
        },
        "static_j": sum(x for x in statics if x is not None) if active_ok else None,
        "active_j": sum(p["active_j"] for p in per.values()) if active_ok else None,
        "active_uncertainty_j": sum(b for b in active_bounds if b is not None)
        if active_ok and None not in active_bounds
        else None,
        "active_reason": None if active_ok else "; ".join(reasons),
        "per_domain": per,
    }


def per_token(name: str, phase: dict[str, Any], count: float, what: str, divides: str) -> dict[str, Any]:
    """A phase's energy per token of its own (gross ``value``, ``active_j``, and their bounds)."""
    if not phase.get("available"):
        return _unavailable(name, phase.get("reason") or "no phase energy", divides=divides)
    if count <= 0:
        return _unavailable(name, f"no {what} in the window", divides=divides)

    def share(v: float | None) -> float | None:
        return None if v is None else v / count

    return {
        "name": name,
        "value": phase["value"] / count,
        "unit": "J",
        "available": True,
        "reason": None,
        "divides": divides,
        "count": count,
        "uncertainty_j": share(phase.get("uncertainty_j")),
        "active_j": share(phase.get("active_j")),
        "active_uncertainty_j": share(phase.get("active_uncertainty_j")),
        "active_reason": phase.get("active_reason"),
        "per_domain": {
            d: {
                "value": share(p.get("gross_j")),
                "uncertainty_j": share(p.get("uncertainty_j")),
                "active_j": share(p.get("active_j")),
                "active_uncertainty_j": share(p.get("active_uncertainty_j")),
            }
            for d, p in (phase.get("per_domain") or {}).items()
        },
    }


def _tokens(attr: Attribution) -> tuple[float | None, float]:
    """Prompt tokens (None: a server did not say them) and output tokens of the requests placed."""
    works = attr.works.values()
    prompt = sum(w.prompt_units for w in works) if all(w.prompt_known for w in works) else None
    return prompt, float(sum(w.output_tokens for w in works))


# -- one load point --------------------------------------------------------------------------


def split_energy(
    results: list[RequestResult],
    window: tuple[int, int],
    curves: dict[str, Any],
    idle: Idle,
    grid_s: float,
    covers: list[str],
) -> tuple[Attribution, dict[str, Any]]:
    """The attribution, with a prompt token and an output token weighed by their costs where the
    least-squares fit over the window (which the first pass, one unit each, gives) tells them apart
    (both positive, each larger than its standard error); else one unit each, and why."""
    first = attribute(results, window, curves, idle, grid_s)
    fitted = fit(first.gram, static_power(idle, covers))
    a, b = fitted.get("j_per_prompt_token"), fitted.get("j_per_output_token")
    if not fitted.get("available") or a is None or b is None:
        return first, {"prompt_token": 1.0, "output_token": 1.0, "basis": f"one unit each: {fitted.get('reason')}"}
    if a <= fitted["j_per_prompt_token_se"] or b <= fitted["j_per_output_token_se"]:
        why = f"one unit each: the fit's costs ({a:.3g} and {b:.3g} J) are not told apart from 0 by their errors"
        return first, {"prompt_token": 1.0, "output_token": 1.0, "basis": why}
    weights = {"prompt_token": a, "output_token": b, "basis": "the costs per token the least-squares fit found"}
    return attribute(results, window, curves, idle, grid_s, (a, b)), weights


def _mlenergy(
    results: list[RequestResult], point: LoadPoint | None, engines: dict[str, Any] | None, summarize: Summarize
) -> dict[str, Any]:
    name = "energy_per_output_token_mlenergy_steady_j"
    win = mlenergy_window(results, point, engines)
    if not win["available"]:
        return {"mlenergy_steady_window": win, name: _unavailable(name, win["reason"])}
    tokens = tokens_between(results, win["t0_ns"], win["t1_ns"])
    total = summarize(win["t0_ns"], win["t1_ns"])["metrics"].get("total_energy_j") or {}
    if not total.get("available") or tokens <= 0:
        why = total.get("reason") if not total.get("available") else "no output token inside the window"
        return {"mlenergy_steady_window": win, name: _unavailable(name, str(why))}
    net, net_bound = total.get("net_j"), total.get("net_uncertainty_j")
    return {
        "mlenergy_steady_window": win
        | {"output_tokens": tokens, "energy_j": total["value"], "energy_uncertainty_j": total.get("uncertainty_j")},
        name: {
            "name": name,
            "value": total["value"] / tokens,
            "unit": "J",
            "available": True,
            "reason": None,
            "uncertainty_j": None if total.get("uncertainty_j") is None else total["uncertainty_j"] / tokens,
            "net_j": None if net is None else net / tokens,
            "net_uncertainty_j": None if net_bound is None else net_bound / tokens,
            "covers": total.get("covers"),
        },
    }


def _attribution_block(attr: Attribution, meters: Any, curves: dict[str, Any], total: dict[str, Any]) -> dict[str, Any]:
    phases_j = sum(attr.phases.gross[ph][d] for ph in attr.phases.gross for d in attr.domains)
    bases = [w.basis for w in attr.works.values()]
    return {
        "method": METHOD,
        "phase_times": PHASE_TIMES,
        "phase_times_basis": {b: bases.count(b) for b in sorted(set(bases))},
        "sampling_interval_s": meters.interval_s,
        "pieces": attr.pieces,
        "domains": {
            d: {"available": c.available, "source": c.source, "resolution_s": c.resolution_s, "reason": c.reason}
            for d, c in curves.items()
        },
        "requests_unlocated": attr.unlocated,
        "peak_power_w": attr.peak_power_w,
        "peak_power": "the highest mean power over one whole sampling interval, all measured domains",
        "mixed_phase_s": attr.mixed_s,
        "uncertainty": "meters: each share's changes times the bound of the cumulative energy where it changes; "
        "phase_split: where prefill and decode shared a piece, all of it either way; per request: the meters "
        "only (shares among requests working together are a convention, not a measurement)",
        "sum_check": {
            "phases_j": phases_j,
            "window_j": total.get("value"),
            "difference_j": phases_j - total["value"] if total.get("value") is not None else None,
        },
    }


def _fit_block(attr: Attribution, idle: Idle, figures: dict[str, Any], covers: list[str]) -> dict[str, Any]:
    static = static_power(idle, covers)
    main = fit(attr.gram, static)
    prompt, output = _tokens(attr)
    checks = {
        "prefill": cross_check(main, figures["prefill_energy_j"], attr.phases.time_s["prefill"], prompt, "prefill")
        if prompt is not None
        else {"available": False, "reason": "the server did not say how many tokens the prompts had"},
        "decode": cross_check(
            main,
            figures["decode_energy_j"],
            attr.phases.time_s["decode"],
            sum(w.decode_units for w in attr.works.values()),
            "decode",
        ),
    }
    return {
        "columns": list(FIT_COLUMNS),
        "gram": attr.gram,
        "rows": attr.fit_rows,
        "idle_power_w": static,
        "fit": main,
        "fit_static_free": fit(attr.gram) if static is not None else main,
        "cross_check": checks,
    }


def phase_figures(
    results: list[RequestResult],
    window: tuple[int, int],
    measurements: dict[str, Any] | None,
    steady_measurements: dict[str, Any] | None,
    summarize: Summarize,
    meters: Any,
    point: LoadPoint | None,
    engines: dict[str, Any] | None,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every figure of the module's docstring for one load point; ``rows``, the record's per-request
    dicts in ``results``' order, get each request's own."""
    out: dict[str, Any] = _mlenergy(results, point, engines, summarize)
    total = ((measurements or {}).get("metrics") or {}).get("total_energy_j") or {}
    idle = idle_of(meters, measurements) if meters is not None and measurements else None
    out.update(window_static_active(measurements, idle, "measure window"))
    steady = window_static_active(steady_measurements, idle, "steady window")
    out["static_energy_steady_j"], out["active_energy_steady_j"] = steady["static_energy_j"], steady["active_energy_j"]
    attr: Attribution | None = None
    weights: dict[str, Any] = {}
    if not total.get("available") or meters is None or idle is None:
        why = total.get("reason") or "no meter measured this window"
    else:
        curves = domain_curves(meters, measurements or {}, *window)
        attr, weights = split_energy(results, window, curves, idle, meters.interval_s, total.get("covers") or [])
        why = None
    static_why = None if total.get("net_j") is not None else f"no idle baseline: {total.get('net_reason')}"
    covers = list(total.get("covers") or [])
    for r, row in zip(results, rows, strict=True):
        row.update(request_fields(attr, r, why, static_why, idle, covers))
    out.update(_points_figures(attr, why, idle, total, curves if attr is not None else {}, meters))
    if out.get("phase_attribution"):
        out["phase_attribution"]["weights"] = weights
    for key in DISTRIBUTIONS:
        out.update(distribution(rows, key))
    return out


def _points_figures(
    attr: Attribution | None,
    why: str | None,
    idle: Idle | None,
    total: dict[str, Any],
    curves: dict[str, Any],
    meters: Any,
) -> dict[str, Any]:
    names = [*PHASE_KEYS.values(), "energy_per_prompt_token_prefill_j", "energy_per_output_token_decode_j"]
    if attr is None or idle is None:
        reason = why or "no meter measured this window"
        return {n: _unavailable(n, reason) for n in names} | {"phase_attribution": None, "phase_fit": None}
    covers = list(total.get("covers") or [])
    prompt, output = _tokens(attr)
    out: dict[str, Any] = {
        PHASE_KEYS[ph]: phase_metric(attr, ph, covers, idle, n)
        for ph, n in (("prefill", prompt or 0.0), ("decode", output), ("other", 0.0))
    }
    out["energy_per_prompt_token_prefill_j"] = (
        per_token(
            "energy_per_prompt_token_prefill_j",
            out["prefill_energy_j"],
            prompt,
            "prompt token",
            "the prefill phase's energy by the prompt tokens",
        )
        if prompt is not None
        else _unavailable("energy_per_prompt_token_prefill_j", "the server did not say how many tokens the prompts had")
    )
    out["energy_per_output_token_decode_j"] = per_token(
        "energy_per_output_token_decode_j",
        out["decode_energy_j"],
        output,
        "output token",
        "the decode phase's energy by the output tokens (MLCommons' energy_per_token_joules)",
    )
    out["phase_attribution"] = _attribution_block(attr, meters, curves, total)
    out["phase_fit"] = _fit_block(attr, idle, out, covers)
    return out
