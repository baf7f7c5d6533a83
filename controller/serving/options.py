"""The load, SLO and prompt-length options of ``serve`` (and of anything else that builds a
ServingSettings from text), checked before anything starts: each mistake is one UserError line."""

from __future__ import annotations

from typing import Any

from controller.errors import UserError
from controller.serving.load import LoadError, plan_points
from controller.serving.metrics import parse_slo
from suite.prompts import PromptError, parse_synthetic


def load_fields(
    *,
    concurrency: str | None = None,
    request_rate: str | None = None,
    burstiness: float = 1.0,
    seed: int = 0,
    slo: str | None = None,
    synthetic: str | None = None,
    image: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """ServingSettings fields: ``load`` (the points), ``concurrency``, ``slo``, ``synthetic``."""
    if not image and not endpoint:
        raise UserError("serve needs --image (start our server) or --endpoint URL (a server already running)")
    try:
        points = plan_points(concurrency, request_rate, burstiness, seed)
        fields: dict[str, Any] = {
            "load": tuple(points),
            "concurrency": points[0].concurrency or 1,
            "slo": parse_slo(slo) if slo is not None else None,
            "synthetic": parse_synthetic(synthetic) if synthetic is not None else None,
        }
    except (LoadError, PromptError, ValueError) as exc:
        raise UserError(str(exc)) from None
    check_bounds(points, fields["synthetic"])
    return fields


MAX_POINTS = 64  # load points in one sweep: each is a measured window and a record
MAX_TOKENS = 2**20  # a synthetic prompt's or answer's length
MAX_BURSTINESS = 1000.0  # the gamma shape of arrival gaps: beyond this they are evenly spaced anyway


def check_bounds(points: list[Any], synthetic: dict[str, float] | None) -> None:
    """Upper bounds the parsers leave open: a sweep, a concurrency, a synthetic length."""
    from controller.inputs import COUNTS

    if len(points) > MAX_POINTS:
        raise UserError(f"a sweep of {len(points)} load points is more than {MAX_POINTS}: sweep fewer values")
    values = [p.value for p in points]
    twice = sorted({f"{v:g}" if isinstance(v, float) else str(v) for v in values if values.count(v) > 1})
    if twice:
        raise UserError(f"--{points[0].variable.replace('_', '-')} names {', '.join(twice)} twice: each point once")
    highest = COUNTS["concurrency"].highest
    for point in points:
        if not point.burstiness <= MAX_BURSTINESS:  # above 0 and not NaN: plan_points checked
            raise UserError(f"--burstiness {point.burstiness:g} is more than {MAX_BURSTINESS:g}: give a smaller shape")
        if point.concurrency is not None and point.concurrency > highest:
            raise UserError(f"--concurrency {point.concurrency} is more than {highest} requests in flight: give fewer")
    for key in ("input", "output"):
        if synthetic is not None and synthetic[key] > MAX_TOKENS:
            raise UserError(f"--synthetic {key}={synthetic[key]:g} tokens is more than {MAX_TOKENS}: give fewer")
