"""Each request's own energy figures, as its row in ``serving.requests`` holds them (gross, static
and active, prefill and decode, per output token, with bounds), and their distribution over a load
point's requests (mean, median, p90, p99, each with the bound a distribution of bounded figures
allows). The window's split among the requests is ``phase_figures.py``'s."""

from __future__ import annotations

import statistics
from typing import Any

from controller.record import percentile
from controller.serving.client import RequestResult
from controller.serving.phases import Attribution, Idle

STATS = ("mean", "median", "p90", "p99")

# A request's own energy figures, as its row in ``serving.requests`` holds them (and the Parquet table).
REQUEST_ENERGY_KEYS = (
    "request_energy_j",
    "request_energy_uncertainty_j",
    "request_static_energy_j",
    "request_active_energy_j",
    "request_active_energy_uncertainty_j",
    "request_prefill_energy_j",
    "request_decode_energy_j",
    "request_energy_per_output_token_j",
    "request_energy_per_output_token_uncertainty_j",
)


def request_fields(
    attr: Attribution | None,
    r: RequestResult,
    reason: str | None,
    static_reason: str | None,
    idle: Idle | None = None,
    covers: list[str] | None = None,
) -> dict[str, Any]:
    """The request's own energy figures (its row in ``serving.requests``): all None with ``reason``
    when the window's energy was not split; static and active None when ``static_reason``. The
    active part's bound adds what the idle baseline's spread allows over the request's share of time
    (``idle`` and ``covers``: the domains the window's figure covers)."""
    got = attr.requests.get(r.index) if attr is not None else None
    if got is None:
        why = reason or "no token: nothing places its work in time"
        return {**dict.fromkeys(REQUEST_ENERGY_KEYS), "request_energy_reason": why, "phase_basis": None}
    work = attr.works[r.index]  # type: ignore[union-attr]
    static_ok = static_reason is None
    tokens = work.output_tokens
    active_bound = _active_bound(got.bound, got.static, idle, covers) if static_ok else None
    return {
        "request_energy_j": got.gross,
        "request_energy_uncertainty_j": got.bound,
        "request_static_energy_j": got.static if static_ok else None,
        "request_active_energy_j": got.gross - got.static if static_ok else None,
        "request_active_energy_uncertainty_j": active_bound,
        "request_prefill_energy_j": got.prefill,
        "request_decode_energy_j": got.decode,
        "request_energy_per_output_token_j": got.gross / tokens if tokens else None,
        "request_energy_per_output_token_uncertainty_j": got.bound / tokens if tokens else None,
        "request_energy_reason": None,
        "request_static_reason": static_reason,
        "phase_basis": work.basis,
        "prefill_start_ns": work.prefill[0],
        "prefill_end_ns": work.prefill[1],
    }


def _active_bound(meters: float, static: float, idle: Idle | None, covers: list[str] | None) -> float | None:
    """A request's active energy's bound: the meters', plus the idle baseline's over the time its static
    share stands for (static / idle power); None where that cannot be said."""
    power = static_power(idle, covers) if idle is not None and covers else None
    if idle is None or not power:
        return None
    parts = [idle.bound(d, static / power) for d in covers or []]
    return None if None in parts else meters + sum(p for p in parts if p is not None)


#: Each distribution's figure: the key of the per-request bound it is drawn with.
DISTRIBUTIONS = {
    "request_energy_j": "request_energy_uncertainty_j",
    "request_active_energy_j": "request_active_energy_uncertainty_j",
    "request_energy_per_output_token_j": "request_energy_per_output_token_uncertainty_j",
}
DISTRIBUTION_BOUND = (
    "mean: the mean of the requests' bounds; median, p90, p99: the largest request's bound (moving every "
    "request's figure by at most its bound moves any order statistic by at most the largest); the meters only, "
    "shares among requests working together being a convention"
)


def distribution(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """``{key}_mean``, ``_median``, ``_p90``, ``_p99`` over the successful requests that have it, and
    ``{key}_uncertainty``: each one's bound (None with the reason where a request has none)."""
    have = [r for r in rows if r.get("ok") and isinstance(r.get(key), (int, float))]
    v = sorted(float(r[key]) for r in have)
    out: dict[str, Any] = {
        f"{key}_mean": statistics.fmean(v) if v else None,
        f"{key}_median": percentile(v, 0.5) if v else None,
        f"{key}_p90": percentile(v, 0.9) if v else None,
        f"{key}_p99": percentile(v, 0.99) if v else None,
    }
    bounds = [r.get(DISTRIBUTIONS[key]) for r in have] if key in DISTRIBUTIONS else [None]
    if not v or any(not isinstance(b, (int, float)) for b in bounds):
        why = "no request has this figure" if not v else "a request's figure has no bound"
        out[f"{key}_uncertainty"] = {"mean": None, "median": None, "p90": None, "p99": None, "reason": why}
        return out
    largest = max(float(b) for b in bounds if b is not None)
    out[f"{key}_uncertainty"] = {
        "mean": statistics.fmean(float(b) for b in bounds if b is not None),
        "median": largest,
        "p90": largest,
        "p99": largest,
        "reason": None,
        "basis": DISTRIBUTION_BOUND,
    }
    return out


def static_power(idle: Idle, covers: list[str]) -> float | None:
    """The idle baseline's power summed over the covered domains (None: one has none)."""
    powers = [idle.power_w.get(d) for d in covers]
    return sum(p for p in powers if p is not None) if powers and None not in powers else None
