"""The load, SLO, prompt-length and extra request-field options of ``serve`` (and of anything else
that builds a ServingSettings from text), checked before anything starts: each mistake is one
UserError line."""

from __future__ import annotations

import json
from typing import Any

from controller.errors import UserError
from controller.serving.load import LoadError, plan_points
from controller.serving.metrics import parse_slo
from controller.serving.settings import OWN_REQUEST_FIELDS
from suite.prompts import PromptError, parse_synthetic


def check_extra_inputs(fields: dict[str, Any], where: str = "--extra-input") -> dict[str, Any]:
    """Request fields to send with every request, refused where joulebench sets the field itself."""
    for key in fields:
        if not isinstance(key, str) or not key:
            raise UserError(f"{where}: a field name must be a non-empty string, got {key!r}")
        if key in OWN_REQUEST_FIELDS:
            raise UserError(f"{where} {key}: joulebench sets {key} itself; use {OWN_REQUEST_FIELDS[key]}")
    return dict(fields)


def parse_extra_inputs(items: list[str] | None) -> dict[str, Any] | None:
    """``KEY=VALUE`` each (VALUE as JSON when it is JSON: 64, 1.0, true, {"a": 1}; else the string)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(
                f"--extra-input {item!r} is not KEY=VALUE, e.g. --extra-input min_tokens=64 --extra-input "
                "repeat_penalty=1.0"
            )
        if key in out:
            raise UserError(f"--extra-input {key} is given twice")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return check_extra_inputs(out)


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
    extra_inputs: list[str] | None = None,
) -> dict[str, Any]:
    """ServingSettings fields: ``load`` (the points), ``concurrency``, ``slo``, ``synthetic``, ``extra_inputs``."""
    if not image and not endpoint:
        raise UserError("serve needs --image (start our server) or --endpoint URL (a server already running)")
    try:
        points = plan_points(concurrency, request_rate, burstiness, seed)
        fields: dict[str, Any] = {
            "load": tuple(points),
            "concurrency": points[0].concurrency or 1,
            "slo": parse_slo(slo) if slo is not None else None,
            "synthetic": parse_synthetic(synthetic) if synthetic is not None else None,
            "extra_inputs": parse_extra_inputs(extra_inputs),
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
